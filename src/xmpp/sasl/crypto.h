// Internal to nines_sasl: thin wrappers over OpenSSL's libcrypto and nettle
// for the SCRAM primitives (RFC 5802 §2.2). No primitive is hand-written:
// hashes, HMAC and randomness are the libraries'. PBKDF2-HMAC-SHA1's
// iteration loop is composed here from nettle's HMAC key schedule and SHA-1
// compression function, because that is ~25% faster than nettle's generic
// PBKDF2 (crypto.cc says why; tests check it against RFC 6070 and OpenSSL).
//
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "xmpp/sasl/sasl.h"

namespace nines::xmpp::sasl::internal {

// Digest size in bytes: 20 for SHA-1, 32 for SHA-256.
size_t DigestSize(Hash hash);
// "SHA-1" / "SHA-256".
const char* HashName(Hash hash);

// H(data).
std::string Digest(Hash hash, std::string_view data);
// HMAC(key, data).
std::string Hmac(Hash hash, std::string_view key, std::string_view data);
// Hi(password, salt, iterations) = PBKDF2-HMAC-H. `iterations` must be in
// [1, INT_MAX]; the caller checks.
std::string Pbkdf2(Hash hash, std::string_view password, std::string_view salt, int iterations);
// `size` bytes from OpenSSL's CSPRNG. Aborts if the CSPRNG fails: running
// without randomness would silently weaken every nonce (an impossible state,
// CONVENTIONS Envoy tier 3).
std::string RandomBytes(size_t size);

// Standard base64 with padding (RFC 4648 §4).
std::string Base64Encode(std::string_view data);
// Strict decoding: only the RFC 4648 §4 alphabet, length a multiple of 4,
// at most two '=' and only at the end. nullopt otherwise.
std::optional<std::string> Base64Decode(std::string_view text);

// Constant-time comparison (CRYPTO_memcmp); false on a length mismatch.
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// OPENSSL_cleanse on the string's bytes, then clears it.
void Wipe(std::string& secret);

// A string that wipes its contents when destroyed, for passwords and
// intermediate keys.
class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  ~SecretString() { Wipe(value_); }

  std::string& value() { return value_; }
  const std::string& value() const { return value_; }

 private:
  std::string value_;
};

}  // namespace nines::xmpp::sasl::internal
