#include "xmpp/sasl/scram_mechanism.h"

#include <cstddef>
#include <utility>
#include <vector>

#include "xmpp/jid/precis.h"
#include "xmpp/sasl/credentials.h"

namespace nines::xmpp::sasl::internal {
namespace {

// Generous for a 1023-byte localpart escaped three-fold plus nonces; real
// messages are under 200 bytes. Pre-auth input stays small.
constexpr size_t kMaxMessageBytes = 8192;
constexpr size_t kServerNonceBytes = 24;
constexpr std::string_view kTlsExporter = "tls-exporter";

bool IsAlpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// printable = %x21-2B / %x2D-7E
bool IsPrintableNonce(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7E || c == ',') return false;
  }
  return true;
}

// cb-name = 1*(ALPHA / DIGIT / "." / "-")
bool IsCbName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '.' && c != '-') return false;
  }
  return true;
}

// Splits on ','. Values in SCRAM never hold a raw ',' (saslname escapes it,
// base64 and printable exclude it), so this is exact.
std::vector<std::string_view> SplitAttributes(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    if (comma == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
}

// attr-val = ALPHA "=" value; returns the value if `part` is `name`=value.
std::optional<std::string_view> Attribute(std::string_view part, char name) {
  if (part.size() < 2 || part[0] != name || part[1] != '=') return std::nullopt;
  return part.substr(2);
}

// An extension: ALPHA "=" 1*value-char, and not the reserved "m".
bool IsAcceptableExtension(std::string_view part) {
  return part.size() >= 3 && IsAlpha(part[0]) && part[0] != 'm' && part[1] == '=';
}

bool IsBase64Text(std::string_view s) { return Base64Decode(s).has_value(); }

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

std::optional<std::string> DecodeSaslName(std::string_view name) {
  if (name.empty()) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == ',' || c == '\0') return std::nullopt;
    if (c != '=') {
      out.push_back(c);
      continue;
    }
    std::string_view escape = name.substr(i + 1, 2);
    if (escape == "2C") {
      out.push_back(',');
    } else if (escape == "3D") {
      out.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

std::optional<ClientFirst> ParseClientFirst(std::string_view message) {
  if (message.size() > kMaxMessageBytes || HasNul(message)) return std::nullopt;
  ClientFirst first;

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  size_t first_comma = message.find(',');
  if (first_comma == std::string_view::npos) return std::nullopt;
  std::string_view flag = message.substr(0, first_comma);
  if (flag == "n" || flag == "y") {
    first.cbind_flag = flag[0];
  } else if (auto cb_name = Attribute(flag, 'p'); cb_name && IsCbName(*cb_name)) {
    first.cbind_flag = 'p';
    first.cb_name = std::string(*cb_name);
  } else {
    return std::nullopt;
  }
  size_t second_comma = message.find(',', first_comma + 1);
  if (second_comma == std::string_view::npos) return std::nullopt;
  std::string_view authzid = message.substr(first_comma + 1, second_comma - first_comma - 1);
  if (!authzid.empty()) {
    auto value = Attribute(authzid, 'a');
    if (!value) return std::nullopt;
    first.authzid = DecodeSaslName(*value);
    if (!first.authzid) return std::nullopt;
  }
  first.gs2_header = std::string(message.substr(0, second_comma + 1));

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  std::string_view bare = message.substr(second_comma + 1);
  first.bare = std::string(bare);
  std::vector<std::string_view> parts = SplitAttributes(bare);
  if (parts.size() < 2) return std::nullopt;
  auto username = Attribute(parts[0], 'n');
  if (!username) return std::nullopt;  // also rejects a leading reserved "m="
  auto decoded = DecodeSaslName(*username);
  if (!decoded) return std::nullopt;
  first.authcid = std::move(*decoded);
  auto nonce = Attribute(parts[1], 'r');
  if (!nonce || !IsPrintableNonce(*nonce)) return std::nullopt;
  first.client_nonce = std::string(*nonce);
  for (size_t i = 2; i < parts.size(); ++i) {
    if (!IsAcceptableExtension(parts[i])) return std::nullopt;
  }
  return first;
}

std::optional<ClientFinal> ParseClientFinal(std::string_view message) {
  if (message.size() > kMaxMessageBytes || HasNul(message)) return std::nullopt;
  // client-final-message = channel-binding "," nonce ["," extensions] "," proof
  std::vector<std::string_view> parts = SplitAttributes(message);
  if (parts.size() < 3) return std::nullopt;
  ClientFinal final_message;
  auto binding = Attribute(parts[0], 'c');
  if (!binding || binding->empty() || !IsBase64Text(*binding)) return std::nullopt;
  final_message.channel_binding = std::string(*binding);
  auto nonce = Attribute(parts[1], 'r');
  if (!nonce || !IsPrintableNonce(*nonce)) return std::nullopt;
  final_message.nonce = std::string(*nonce);
  for (size_t i = 2; i + 1 < parts.size(); ++i) {
    if (!IsAcceptableExtension(parts[i])) return std::nullopt;
  }
  auto proof = Attribute(parts.back(), 'p');
  if (!proof || proof->empty() || !IsBase64Text(*proof)) return std::nullopt;
  final_message.proof = std::string(*proof);
  final_message.without_proof = std::string(message.substr(0, message.size() - parts.back().size() - 1));
  return final_message;
}

ScramMechanism::ScramMechanism(Hash hash, bool plus, ChannelBinding binding, std::string server_nonce)
    : hash_(hash), plus_(plus), binding_(std::move(binding)), server_nonce_(std::move(server_nonce)) {
  if (server_nonce_.empty()) server_nonce_ = Base64Encode(RandomBytes(kServerNonceBytes));
}

StepResult ScramMechanism::Fail(Failure failure) {
  state_ = State::kDone;
  StepResult result;
  result.kind = StepResult::Kind::kFailure;
  result.failure = failure;
  return result;
}

StepResult ScramMechanism::Start(std::optional<std::string_view> initial) {
  if (state_ != State::kNew) return Fail(Failure::kMalformedRequest);
  if (!initial) {
    // No initial response: ask for client-first with an empty challenge
    // (RFC 6120 §6.4.2).
    state_ = State::kAwaitClientFirst;
    StepResult result;
    result.kind = StepResult::Kind::kChallenge;
    return result;
  }
  return HandleClientFirst(*initial);
}

StepResult ScramMechanism::Step(std::string_view response) {
  switch (state_) {
    case State::kNew:
    case State::kAwaitClientFirst:
      return HandleClientFirst(response);
    case State::kAwaitClientFinal:
      return HandleClientFinal(response);
    case State::kAwaitKeys:
    case State::kDone:
      break;
  }
  return Fail(Failure::kMalformedRequest);
}

StepResult ScramMechanism::HandleClientFirst(std::string_view message) {
  std::optional<ClientFirst> first = ParseClientFirst(message);
  if (!first) return Fail(Failure::kMalformedRequest);

  // RFC 5802 §6 and RFC 9266. These checks need no account, so they fail at
  // once without revealing anything about users.
  if (plus_) {
    // A client that picked -PLUS must bind, and with the one type we offer.
    if (first->cbind_flag != 'p' || first->cb_name != kTlsExporter) return Fail(Failure::kNotAuthorized);
  } else {
    // 'p' names a binding the non-PLUS mechanism does not do. 'y' says "I
    // could bind but saw no -PLUS": if we offered one, someone removed it.
    if (first->cbind_flag == 'p') return Fail(Failure::kNotAuthorized);
    if (first->cbind_flag == 'y' && binding_.server_offers_plus) return Fail(Failure::kNotAuthorized);
  }

  Result<std::string> username = precis::UsernameCaseMapped(first->authcid);
  // No account can carry a name the profile rejects, so this reveals nothing.
  if (!username.ok()) return Fail(PrecisFailure(username.error()));
  if (first->authzid && !AuthzidAllowed(*first->authzid, first->authcid, *username)) {
    return Fail(Failure::kInvalidAuthzid);
  }

  gs2_header_ = std::move(first->gs2_header);
  cbind_flag_ = first->cbind_flag;
  client_first_bare_ = std::move(first->bare);
  nonce_ = std::move(first->client_nonce);
  username_ = std::move(username).value();
  state_ = State::kAwaitKeys;

  StepResult result;
  result.kind = StepResult::Kind::kNeedKeys;
  result.username = username_;
  result.key_hash = hash_;
  return result;
}

StepResult ScramMechanism::ProvideKeys(const store::ScramKeys* keys) {
  if (state_ != State::kAwaitKeys) return Fail(Failure::kTemporaryAuthFailure);

  std::string salt;
  int64_t iterations = 0;
  if (UsableKeys(hash_, keys)) {
    salt = keys->salt;
    iterations = keys->iterations;
    stored_key_.value() = keys->stored_key;
    server_key_.value() = keys->server_key;
  } else {
    // Run the same exchange with keys nobody knows; the final step fails.
    FakeCredentials fake = FakeCredentialsFor(hash_, username_);
    salt = std::move(fake.salt);
    iterations = fake.iterations;
    stored_key_.value() = RandomBytes(DigestSize(hash_));
    server_key_.value() = RandomBytes(DigestSize(hash_));
    unknown_user_ = true;
  }

  nonce_ += server_nonce_;
  server_first_ = "r=" + nonce_ + ",s=" + Base64Encode(salt) + ",i=" + std::to_string(iterations);
  state_ = State::kAwaitClientFinal;

  StepResult result;
  result.kind = StepResult::Kind::kChallenge;
  result.data = server_first_;
  return result;
}

StepResult ScramMechanism::HandleClientFinal(std::string_view message) {
  std::optional<ClientFinal> final_message = ParseClientFinal(message);
  if (!final_message) return Fail(Failure::kMalformedRequest);
  std::optional<std::string> proof = Base64Decode(final_message->proof);
  if (!proof || proof->size() != DigestSize(hash_)) return Fail(Failure::kMalformedRequest);

  // c= must repeat the gs2 header, followed by the binding data when the
  // client bound ('p'; RFC 5802 §7 cbind-input).
  std::string cbind_input = gs2_header_;
  if (cbind_flag_ == 'p') cbind_input += binding_.tls_exporter;
  if (!ConstantTimeEquals(final_message->channel_binding, Base64Encode(cbind_input))) {
    return Fail(Failure::kNotAuthorized);
  }
  if (!ConstantTimeEquals(final_message->nonce, nonce_)) return Fail(Failure::kNotAuthorized);

  // AuthMessage = client-first-message-bare "," server-first-message ","
  //               client-final-message-without-proof
  std::string auth_message = client_first_bare_ + "," + server_first_ + "," + final_message->without_proof;
  // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); check H(ClientKey) == StoredKey.
  SecretString client_key(Hmac(hash_, stored_key_.value(), auth_message));
  std::string& key = client_key.value();
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(key[i] ^ (*proof)[i]);
  bool proof_ok = ConstantTimeEquals(Digest(hash_, client_key.value()), stored_key_.value());
  if (!proof_ok || unknown_user_) return Fail(Failure::kNotAuthorized);

  state_ = State::kDone;
  StepResult result;
  result.kind = StepResult::Kind::kSuccess;
  result.data = "v=" + Base64Encode(Hmac(hash_, server_key_.value(), auth_message));
  result.username = username_;
  return result;
}

}  // namespace nines::xmpp::sasl::internal
