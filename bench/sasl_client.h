// Client side of SASL PLAIN (RFC 4616) and SCRAM-SHA-1 / SCRAM-SHA-256
// (RFC 5802, RFC 7677) for the load generator.
//
// Every cryptographic step is OpenSSL (PKCS5_PBKDF2_HMAC, HMAC, SHA, RAND).
// SCRAM's SaltedPassword costs `iterations` HMACs; a benchmark logs in
// thousands of accounts that share one password, so the derived keys are
// cached per (hash, password, salt, iterations) in a process-wide table
// (ScramKeyCache). The server still does its full work for every login; only
// the client skips repeating identical PBKDF2 runs.
//
// Limits: no channel binding (the gs2 header is always "n,,"), no authzid,
// and the password is used as given (SASLprep is the identity for the ASCII
// passwords a benchmark uses).
//
// Thread safety: ScramClient is a plain value used on one thread. The key
// cache is guarded by a mutex and may be used from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nines::bench {

enum class ScramHash { kSha1, kSha256 };

// Standard base64 with padding. Decode returns false on malformed input.
std::string Base64Encode(std::string_view data);
bool Base64Decode(std::string_view text, std::string& out);

// The initial response for PLAIN: base64("\0user\0password").
std::string PlainInitialResponse(std::string_view user, std::string_view password);

// Keys derived from a password; the server stores StoredKey and ServerKey.
struct ScramKeys {
  std::string client_key;
  std::string stored_key;
  std::string server_key;
};

// Derives the keys, consulting the process-wide cache first. Thread-safe.
ScramKeys DeriveScramKeys(ScramHash hash, std::string_view password, std::string_view salt, uint32_t iterations);
// How many PBKDF2 runs the cache has performed (for tests).
uint64_t ScramKeyDerivations();

class ScramClient {
 public:
  // `nonce` may be empty, in which case 24 random bytes (base64) are used.
  ScramClient(ScramHash hash, std::string_view user, std::string_view password, std::string_view nonce = {});

  // The client-first-message ("n,,n=user,r=nonce"), to be base64-encoded
  // into <auth/>.
  std::string ClientFirst();

  // Takes the server-first-message (decoded from <challenge/>) and returns
  // the client-final-message in `out`. Returns false with `error` set if the
  // message is malformed, the nonce does not extend ours, or the iteration
  // count is absurd.
  bool ClientFinal(std::string_view server_first, std::string& out, std::string& error);

  // Checks the server-final-message ("v=..."; from <success/> or a final
  // <challenge/>). Returns false with `error` set if it is wrong or an "e=".
  bool VerifyServerFinal(std::string_view server_final, std::string& error) const;

 private:
  ScramHash hash_;
  std::string user_;
  std::string password_;
  std::string nonce_;
  std::string client_first_bare_;
  std::string expected_server_signature_;
};

}  // namespace nines::bench
