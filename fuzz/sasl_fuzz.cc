// libFuzzer target: the server's SASL mechanisms (src/xmpp/sasl).
//
// Input layout: byte 0 picks the mechanism and the channel binding, byte 1
// whether an initial response is sent and whether the account exists; the
// rest is the client's messages, separated by "\xff\xfe". The mechanism is
// driven exactly as C2sSession drives it: Start, then Step per message,
// ProvideKeys when it asks.
//
// Besides crashes and sanitizer reports, two properties are checked:
//  * after kSuccess or kFailure every further step is kFailure;
//  * soundness: SCRAM never succeeds (the fuzzer cannot compute a proof for
//    a random server nonce), and PLAIN succeeds only for the right password
//    of an existing account.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/sasl/sasl.h"

namespace {

namespace sasl = nines::xmpp::sasl;

constexpr std::string_view kPassword = "pencil";
constexpr std::string_view kSeparator = "\xff\xfe";

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

struct Keys {
  nines::store::ScramKeys sha1;
  nines::store::ScramKeys sha256;
};

const Keys& AccountKeys() {
  static const Keys keys = [] {
    // One iteration: the fuzzer is after parsing, not PBKDF2.
    sasl::SetUnknownUserSecret("fuzz", 1);
    Keys k;
    k.sha1 = sasl::DeriveKeysWithSalt(sasl::Hash::kSha1, kPassword, "salt-of-fuzz", 1).value();
    k.sha256 = sasl::DeriveKeysWithSalt(sasl::Hash::kSha256, kPassword, "salt-of-fuzz", 1).value();
    return k;
  }();
  return keys;
}

std::vector<std::string_view> Split(std::string_view rest) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = rest.find(kSeparator);
    parts.push_back(rest.substr(0, at));
    if (at == std::string_view::npos) return parts;
    rest.remove_prefix(at + kSeparator.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Keys& keys = AccountKeys();
  static const char* const kNames[] = {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                                       "SCRAM-SHA-256-PLUS"};
  const uint8_t pick = data[0];
  const uint8_t flags = data[1];
  const std::string_view name = kNames[pick % 5];
  sasl::ChannelBinding binding;
  binding.tls = (pick & 0x08) != 0;
  if (pick & 0x10) binding.tls_exporter = std::string(32, '\x5a');
  binding.server_offers_plus = (pick & 0x20) != 0;
  const bool send_initial = (flags & 1) != 0;
  const bool account_exists = (flags & 2) != 0;

  auto mechanism = sasl::CreateMechanism(name, binding);
  if (mechanism == nullptr) {
    Check(name.ends_with("-PLUS") && binding.tls_exporter.empty());
    return 0;
  }
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::vector<std::string_view> messages = Split(input);
  size_t next = 0;

  sasl::StepResult r = send_initial ? mechanism->Start(messages[next++]) : mechanism->Start(std::nullopt);
  for (int steps = 0; steps < 16; ++steps) {
    if (r.kind == sasl::StepResult::Kind::kNeedKeys) {
      const nines::store::ScramKeys* k = nullptr;
      if (account_exists && r.username == "user") k = r.key_hash == sasl::Hash::kSha1 ? &keys.sha1 : &keys.sha256;
      r = mechanism->ProvideKeys(k);
      continue;
    }
    if (r.kind == sasl::StepResult::Kind::kSuccess) {
      Check(!r.username.empty());
      Check(name == "PLAIN");  // no SCRAM proof can be guessed
      Check(account_exists && r.username == "user" && input.find(kPassword) != std::string_view::npos);
    }
    if (r.kind == sasl::StepResult::Kind::kSuccess || r.kind == sasl::StepResult::Kind::kFailure) {
      if (r.kind == sasl::StepResult::Kind::kFailure) Check(r.failure != sasl::Failure::kNone);
      Check(mechanism->Step("again").kind == sasl::StepResult::Kind::kFailure);
      return 0;
    }
    // kChallenge: the client answers with its next message (or an empty one).
    r = mechanism->Step(next < messages.size() ? messages[next++] : std::string_view());
  }
  return 0;
}
