// Server-side SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1, SCRAM-SHA-256,
// their -PLUS variants with tls-exporter channel binding (RFC 5802, RFC 7677,
// RFC 9266), and PLAIN (RFC 4616).
//
// A mechanism is a small state machine driven by the stream. Credentials are
// looked up asynchronously by the caller: when Step() answers kNeedKeys, the
// caller fetches the account's ScramKeys from the store (the key set named by
// StepResult::key_hash; on no account, passes nullptr) and calls
// ProvideKeys(), which answers the next step. The server never sees or stores
// a password except transiently in PLAIN, where it is checked against the
// stored salted keys and then wiped.
//
// Every answer after kSuccess or kFailure is kFailure: a mechanism object is
// good for one attempt. Peer input never asserts; a malformed message is
// kFailure with kMalformedRequest.
//
// Authorization identity: nines does not support proxy authentication. An
// authzid is accepted only when it is absent/empty or names the authenticating
// user itself (the authcid as sent, or its normalised form); anything else,
// including a bare JID, fails with kInvalidAuthzid. The authenticated identity
// is always StepResult::username.
//
// Thread safety: one mechanism object per authentication attempt, used on its
// connection's loop only. The free functions are safe from any thread.
#pragma once

#include <cstdint>
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

// The RFC 6120 §6.5 element name: "not-authorized", "malformed-request", ...
// kNone has no element and answers "".
const char* FailureCondition(Failure failure);

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
  // kNeedKeys: which of the account's key sets to pass to ProvideKeys().
  // SCRAM asks for its own hash; PLAIN always asks for kSha1 (the cheaper
  // PBKDF2; plain_mechanism.cc).
  Hash key_hash = Hash::kSha256;
};

// What the transport offers for channel binding.
struct ChannelBinding {
  bool tls = false;          // the stream is encrypted
  std::string tls_exporter;  // RFC 9266 data (32 bytes), empty if unavailable (e.g. TLS 1.2 without EMS)
  bool server_offers_plus = false;  // a -PLUS mechanism was advertised (for the 'y' downgrade check)
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  // `initial` is the decoded initial response; absent means none was sent
  // (an empty one, "=", is present and empty). With none, the answer is an
  // empty kChallenge and the client's first message comes through Step().
  virtual StepResult Start(std::optional<std::string_view> initial) = 0;
  virtual StepResult Step(std::string_view response) = 0;
  // Called once after kNeedKeys. `keys` is null when the account does not exist;
  // the mechanism then fails with not-authorized without revealing that (SCRAM
  // still answers a challenge with a fake salt, PLAIN still runs PBKDF2).
  // `keys` is only read during the call. Keys that cannot be used (wrong key
  // length for the hash, iterations out of range) are treated as no account.
  virtual StepResult ProvideKeys(const store::ScramKeys* keys) = 0;
};

// Names a mechanism, in RFC spelling: "SCRAM-SHA-256-PLUS".
// Returns null for a name we do not implement, or a -PLUS name when the
// binding has no tls_exporter data. Whether PLAIN may be used on an
// unencrypted stream is the caller's policy (see MechanismNames).
std::unique_ptr<Mechanism> CreateMechanism(std::string_view name, const ChannelBinding& binding);

// The mechanisms to advertise, strongest first: the -PLUS variants when
// tls_exporter data exists, then SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN only
// when binding.tls is set. If the result holds a -PLUS name, the caller must
// set server_offers_plus on the binding it passes to CreateMechanism.
std::vector<std::string> MechanismNames(const ChannelBinding& binding);

// Sets the process-wide secret from which fake salts for unknown users are
// derived (HMAC-SHA-256(secret, hash name, username)), and the iteration
// count shown with them. For the fake to be indistinguishable from a real
// account, the secret must be stable across restarts and the iterations must
// match what DeriveKeys is called with. Until called, a random per-process
// secret and 4096 iterations are used. An empty secret selects a new random
// one; iterations outside [1, 2^31) leave the count unchanged. Safe from any
// thread; call it at startup, before logins are served.
void SetUnknownUserSecret(std::string_view secret, int64_t iterations = 4096);

// Derives keys for storage from a password (PRECIS OpaqueString-prepared
// inside). kInvalidArgument if the password is not valid under the profile or
// empty, or iterations is not in [1, 2^31). The salt is 16 random bytes.
// Runs PBKDF2: CPU-bound, keep it off event loops for large iteration counts.
Result<store::ScramKeys> DeriveKeys(Hash hash, std::string_view password, int64_t iterations);
// Same with a fixed salt (for tests against RFC vectors). kInvalidArgument if
// the salt is empty.
Result<store::ScramKeys> DeriveKeysWithSalt(Hash hash, std::string_view password, std::string_view salt,
                                            int64_t iterations);

// TEST ONLY. As CreateMechanism, but a SCRAM mechanism uses `server_nonce`
// verbatim instead of a random one, so RFC example exchanges can be replayed.
// Never call this outside tests: a fixed nonce allows replay attacks.
std::unique_ptr<Mechanism> CreateMechanismForTesting(std::string_view name, const ChannelBinding& binding,
                                                     std::string server_nonce);

}  // namespace nines::xmpp::sasl
