#include "xmpp/sasl/crypto.h"

#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstdlib>
#include <limits>

namespace nines::xmpp::sasl::internal {
namespace {

const EVP_MD* Md(Hash hash) { return hash == Hash::kSha1 ? EVP_sha1() : EVP_sha256(); }

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// OpenSSL failing on a fixed, valid digest and in-memory buffers means the
// library is broken (e.g. a FIPS provider refusing SHA-1); no caller can
// recover, and carrying on would authenticate against garbage.
[[noreturn]] void CryptoFailure() { std::abort(); }

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

size_t DigestSize(Hash hash) { return hash == Hash::kSha1 ? 20 : 32; }

const char* HashName(Hash hash) { return hash == Hash::kSha1 ? "SHA-1" : "SHA-256"; }

std::string Digest(Hash hash, std::string_view data) {
  std::string out(DigestSize(hash), '\0');
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &size, Md(hash),
                 nullptr) != 1 ||
      size != out.size()) {
    CryptoFailure();
  }
  return out;
}

std::string Hmac(Hash hash, std::string_view key, std::string_view data) {
  std::string out(DigestSize(hash), '\0');
  unsigned int size = 0;
  if (key.size() > static_cast<size_t>(std::numeric_limits<int>::max())) CryptoFailure();
  if (HMAC(Md(hash), key.data(), static_cast<int>(key.size()), Bytes(data), data.size(),
           reinterpret_cast<unsigned char*>(out.data()), &size) == nullptr ||
      size != out.size()) {
    CryptoFailure();
  }
  return out;
}

// PBKDF2 through nettle, not OpenSSL: OpenSSL 3's PKCS5_PBKDF2_HMAC copies
// and cleanses an EVP HMAC context (with a malloc and free) on every one of
// the 4096 iterations. perf on a PLAIN login storm had that overhead at ~75%
// of the PBKDF2 time; nettle keys the inner and outer hashes once and copies
// plain structs. Measured here: 765-932 us (OpenSSL) vs 434 us (nettle) for
// SHA-256 at 4096 iterations; both give the same bytes (sasl_test checks).
// The keyed HMAC state is password-equivalent: it lives in a context we own
// and wipe, rather than inside nettle's pbkdf2_hmac_*, which leaves it on
// the stack.
std::string Pbkdf2(Hash hash, std::string_view password, std::string_view salt, int iterations) {
  std::string out(DigestSize(hash), '\0');
  if (iterations < 1) CryptoFailure();
  auto* key = reinterpret_cast<const uint8_t*>(password.data());
  auto* salt_bytes = reinterpret_cast<const uint8_t*>(salt.data());
  auto* dst = reinterpret_cast<uint8_t*>(out.data());
  const auto rounds = static_cast<unsigned>(iterations);
  if (hash == Hash::kSha1) {
    struct hmac_sha1_ctx ctx;
    hmac_sha1_set_key(&ctx, password.size(), key);
    PBKDF2(&ctx, hmac_sha1_update, hmac_sha1_digest, SHA1_DIGEST_SIZE, rounds, salt.size(), salt_bytes,
           out.size(), dst);
    OPENSSL_cleanse(&ctx, sizeof ctx);
  } else {
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, password.size(), key);
    PBKDF2(&ctx, hmac_sha256_update, hmac_sha256_digest, SHA256_DIGEST_SIZE, rounds, salt.size(), salt_bytes,
           out.size(), dst);
    OPENSSL_cleanse(&ctx, sizeof ctx);
  }
  return out;
}

std::string RandomBytes(size_t size) {
  std::string out(size, '\0');
  if (size > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) != 1) {
    CryptoFailure();
  }
  return out;
}

std::string Base64Encode(std::string_view data) {
  // EVP_EncodeBlock writes 4 bytes per 3 input bytes plus a NUL.
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  if (data.size() > static_cast<size_t>(std::numeric_limits<int>::max() / 2)) CryptoFailure();
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), Bytes(data),
                                static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(written));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  // EVP_DecodeBlock is lenient (it skips surrounding whitespace and counts
  // padding as output), so the alphabet and padding are checked here first.
  if (text.size() % 4 != 0 || text.size() > static_cast<size_t>(std::numeric_limits<int>::max() / 2)) {
    return std::nullopt;
  }
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++padding;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    if (!IsBase64Char(text[i])) return std::nullopt;
  }
  if (text.empty()) return std::string();
  std::string out(text.size() / 4 * 3, '\0');
  int written = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), Bytes(text),
                                static_cast<int>(text.size()));
  if (written < 0 || static_cast<size_t>(written) != out.size()) return std::nullopt;
  out.resize(out.size() - padding);
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void Wipe(std::string& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

}  // namespace nines::xmpp::sasl::internal
