#include "xmpp/sasl/plain_mechanism.h"

#include <cstddef>
#include <utility>

#include "xmpp/jid/precis.h"
#include "xmpp/sasl/credentials.h"

namespace nines::xmpp::sasl::internal {
namespace {

// RFC 4616 §2 asks servers to accept at least 255 octets per field; allow
// room for long localparts and passphrases while keeping pre-auth input small.
constexpr size_t kMaxMessageBytes = 4096;

// The password is checked against the account's SCRAM-SHA-1 keys. Every
// account has both key sets (DeriveKeys runs for both wherever an account or
// password is made), and the check is as strong with either: someone holding
// the stored keys attacks the cheaper set anyway. SHA-1's PBKDF2 is the
// cheaper one here (crypto.cc, ~490 us against ~630 us for SHA-256 at 4096
// iterations), and PBKDF2 is most of what a PLAIN login costs the server.
constexpr Hash kPlainHash = Hash::kSha1;

}  // namespace

StepResult PlainMechanism::Fail(Failure failure) {
  state_ = State::kDone;
  Wipe(password_.value());
  StepResult result;
  result.kind = StepResult::Kind::kFailure;
  result.failure = failure;
  return result;
}

StepResult PlainMechanism::Start(std::optional<std::string_view> initial) {
  if (state_ != State::kNew) return Fail(Failure::kMalformedRequest);
  if (!initial) {
    state_ = State::kAwaitMessage;
    StepResult result;
    result.kind = StepResult::Kind::kChallenge;
    return result;
  }
  return HandleMessage(*initial);
}

StepResult PlainMechanism::Step(std::string_view response) {
  if (state_ == State::kNew || state_ == State::kAwaitMessage) return HandleMessage(response);
  return Fail(Failure::kMalformedRequest);
}

StepResult PlainMechanism::HandleMessage(std::string_view message) {
  // message = [authzid] UTF8NUL authcid UTF8NUL passwd
  if (message.size() > kMaxMessageBytes) return Fail(Failure::kMalformedRequest);
  size_t first_nul = message.find('\0');
  if (first_nul == std::string_view::npos) return Fail(Failure::kMalformedRequest);
  size_t second_nul = message.find('\0', first_nul + 1);
  if (second_nul == std::string_view::npos) return Fail(Failure::kMalformedRequest);
  if (message.find('\0', second_nul + 1) != std::string_view::npos) return Fail(Failure::kMalformedRequest);
  std::string_view authzid = message.substr(0, first_nul);
  std::string_view authcid = message.substr(first_nul + 1, second_nul - first_nul - 1);
  std::string_view password = message.substr(second_nul + 1);
  if (authcid.empty() || password.empty()) return Fail(Failure::kMalformedRequest);

  Result<std::string> username = precis::UsernameCaseMapped(authcid);
  if (!username.ok()) return Fail(PrecisFailure(username.error()));
  if (!AuthzidAllowed(authzid, authcid, *username)) return Fail(Failure::kInvalidAuthzid);
  Result<std::string> prepared = precis::OpaqueString(password);
  // No stored key can come from a password the profile rejects.
  if (!prepared.ok()) return Fail(PrecisFailure(prepared.error()));
  password_.value() = std::move(prepared).value();

  username_ = std::move(username).value();
  state_ = State::kAwaitKeys;
  StepResult result;
  result.kind = StepResult::Kind::kNeedKeys;
  result.username = username_;
  result.key_hash = kPlainHash;
  return result;
}

StepResult PlainMechanism::ProvideKeys(const store::ScramKeys* keys) {
  if (state_ != State::kAwaitKeys) return Fail(Failure::kTemporaryAuthFailure);
  constexpr Hash kHash = kPlainHash;

  bool known = UsableKeys(kHash, keys);
  std::string salt;
  int iterations = 0;
  if (known) {
    salt = keys->salt;
    iterations = static_cast<int>(keys->iterations);  // UsableKeys bounds it by INT_MAX
  } else {
    FakeCredentials fake = FakeCredentialsFor(kHash, username_);
    salt = std::move(fake.salt);
    iterations = fake.iterations;
  }

  SecretString salted_password(Pbkdf2(kHash, password_.value(), salt, iterations));
  Wipe(password_.value());
  SecretString client_key(Hmac(kHash, salted_password.value(), kClientKeyLabel));
  // Compare even for an unknown user, against a key nothing can match, so
  // both paths do the same work.
  std::string expected = known ? keys->stored_key : RandomBytes(DigestSize(kHash));
  bool match = ConstantTimeEquals(Digest(kHash, client_key.value()), expected);
  if (!match || !known) return Fail(Failure::kNotAuthorized);

  state_ = State::kDone;
  StepResult result;
  result.kind = StepResult::Kind::kSuccess;
  result.username = username_;
  return result;
}

}  // namespace nines::xmpp::sasl::internal
