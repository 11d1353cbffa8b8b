// Server-side SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1, SCRAM-SHA-256,
// their -PLUS variants with tls-exporter channel binding (RFC 5802, RFC 7677,
// RFC 9266), and PLAIN (RFC 4616).
//
// A mechanism is a small state machine driven by the stream. Credentials are
// looked up asynchronously by the caller: when Step() answers kNeedKeys, the
// caller fetches the account's ScramKeys from the store (on no account, passes
// std::nullopt) and calls ProvideKeys(), which answers the next step. The
// server never sees or stores a password except transiently in PLAIN, where it
// is checked against the stored salted keys and then wiped.
//
// Thread safety: one mechanism object per authentication attempt, used on its
// connection's loop only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "store/store.h"

namespace nines::xmpp::sasl {

enum class Hash { kSha1, kSha256 };

// RFC 6120 §6.5 failure conditions.
enum class Failure {
  kNone,
  kAborted,
  kAccountDisabled,
  kEncryptionRequired,
  kIncorrectEncoding,
  kInvalidAuthzid,
  kInvalidMechanism,
  kMalformedRequest,
  kMechanismTooWeak,
  kNotAuthorized,
  kTemporaryAuthFailure,
};

const char* FailureCondition(Failure failure);  // "not-authorized", ...

struct StepResult {
  enum class Kind {
    kChallenge,  // send <challenge> with `data`
    kNeedKeys,   // look up keys for `username`, then call ProvideKeys()
    kSuccess,    // send <success> with `data` as additional data; `username` is authenticated
    kFailure,    // send <failure> with `failure`
  };
  Kind kind = Kind::kFailure;
  std::string data;      // raw bytes (the stream base64-encodes them)
  std::string username;  // normalised localpart (kNeedKeys, kSuccess)
  Failure failure = Failure::kNone;
};

// What the transport offers for channel binding.
struct ChannelBinding {
  bool tls = false;                 // the stream is encrypted
  std::string tls_exporter;         // RFC 9266 data (32 bytes), empty if unavailable (e.g. TLS 1.2 without EMS)
  bool server_offers_plus = false;  // a -PLUS mechanism was advertised (for the 'y' downgrade check)
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  // `initial` is the decoded initial response; absent means none was sent
  // (an empty one, "=", is present and empty).
  virtual StepResult Start(std::optional<std::string_view> initial) = 0;
  virtual StepResult Step(std::string_view response) = 0;
  // Called once after kNeedKeys. `keys` is null when the account does not exist;
  // the mechanism then fails with not-authorized without revealing that.
  virtual StepResult ProvideKeys(const store::ScramKeys* keys) = 0;
};

// Names a mechanism, in RFC spelling: "SCRAM-SHA-256-PLUS".
// Returns null for a name we do not implement, or a -PLUS name when the
// binding has no tls_exporter data.
std::unique_ptr<Mechanism> CreateMechanism(std::string_view name, const ChannelBinding& binding);

// Derives keys for storage from a password (PRECIS OpaqueString-prepared
// inside). kInvalidArgument if the password is not valid under the profile or empty.
Result<store::ScramKeys> DeriveKeys(Hash hash, std::string_view password, int64_t iterations);
// Same with a fixed salt (for tests against RFC vectors).
Result<store::ScramKeys> DeriveKeysWithSalt(Hash hash, std::string_view password, std::string_view salt,
                                            int64_t iterations);

}  // namespace nines::xmpp::sasl
