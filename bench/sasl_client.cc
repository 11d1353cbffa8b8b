#include "bench/sasl_client.h"

#include <openssl/evp.h>
#include <nettle/pbkdf2.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <tuple>

namespace nines::bench {
namespace {

const EVP_MD* Md(ScramHash hash) { return hash == ScramHash::kSha1 ? EVP_sha1() : EVP_sha256(); }

std::string Hmac(ScramHash hash, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(Md(hash), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Digest(ScramHash hash, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, Md(hash), nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

// RFC 5802 §5.1: ',' and '=' in the username are escaped.
std::string SaslName(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

// Splits "a=x,b=y" and returns the value of attribute `key`, or false.
bool FindAttr(std::string_view message, char key, std::string_view& value) {
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find(',', pos);
    if (end == std::string_view::npos) end = message.size();
    std::string_view part = message.substr(pos, end - pos);
    if (part.size() >= 2 && part[0] == key && part[1] == '=') {
      value = part.substr(2);
      return true;
    }
    pos = end + 1;
  }
  return false;
}

struct CacheKey {
  ScramHash hash;
  std::string password;
  std::string salt;
  uint32_t iterations;
  bool operator<(const CacheKey& o) const {
    return std::tie(hash, password, salt, iterations) < std::tie(o.hash, o.password, o.salt, o.iterations);
  }
};

std::mutex g_cache_mutex;
std::map<CacheKey, ScramKeys>* g_cache = nullptr;  // leaked on purpose: used until exit
std::atomic<uint64_t> g_derivations{0};

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool Base64Decode(std::string_view text, std::string& out) {
  if (text.size() % 4 != 0) return false;
  out.assign(3 * text.size() / 4, '\0');
  if (text.empty()) return true;
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return false;
  // EVP_DecodeBlock keeps the bytes produced by padding; drop them.
  size_t pad = 0;
  if (text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return true;
}

std::string PlainInitialResponse(std::string_view user, std::string_view password) {
  std::string raw;
  raw.reserve(user.size() + password.size() + 2);
  raw += '\0';
  raw += user;
  raw += '\0';
  raw += password;
  return Base64Encode(raw);
}

ScramKeys DeriveScramKeys(ScramHash hash, std::string_view password, std::string_view salt, uint32_t iterations) {
  CacheKey key{hash, std::string(password), std::string(salt), iterations};
  {
    std::lock_guard lock(g_cache_mutex);
    if (g_cache == nullptr) g_cache = new std::map<CacheKey, ScramKeys>();
    auto it = g_cache->find(key);
    if (it != g_cache->end()) return it->second;
  }
  // Derived outside the lock: two threads may race to derive the same keys;
  // both get the same answer and one insert wins.
  // nettle, as in the server (src/xmpp/sasl/crypto.cc): about twice as fast
  // as OpenSSL 3's PBKDF2, and a SCRAM login storm against accounts with
  // distinct salts is bound by this client-side derivation.
  unsigned char salted[EVP_MAX_MD_SIZE];
  const int len = EVP_MD_get_size(Md(hash));
  if (hash == ScramHash::kSha1) {
    pbkdf2_hmac_sha1(password.size(), reinterpret_cast<const uint8_t*>(password.data()), iterations, salt.size(),
                     reinterpret_cast<const uint8_t*>(salt.data()), static_cast<size_t>(len), salted);
  } else {
    pbkdf2_hmac_sha256(password.size(), reinterpret_cast<const uint8_t*>(password.data()), iterations, salt.size(),
                       reinterpret_cast<const uint8_t*>(salt.data()), static_cast<size_t>(len), salted);
  }
  g_derivations.fetch_add(1, std::memory_order_relaxed);
  std::string salted_password(reinterpret_cast<char*>(salted), static_cast<size_t>(len));
  ScramKeys keys;
  keys.client_key = Hmac(hash, salted_password, "Client Key");
  keys.stored_key = Digest(hash, keys.client_key);
  keys.server_key = Hmac(hash, salted_password, "Server Key");
  std::lock_guard lock(g_cache_mutex);
  g_cache->emplace(std::move(key), keys);
  return keys;
}

uint64_t ScramKeyDerivations() { return g_derivations.load(std::memory_order_relaxed); }

ScramClient::ScramClient(ScramHash hash, std::string_view user, std::string_view password, std::string_view nonce)
    : hash_(hash), user_(user), password_(password), nonce_(nonce) {
  if (nonce_.empty()) {
    unsigned char raw[18];
    RAND_bytes(raw, sizeof raw);
    nonce_ = Base64Encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
  }
}

std::string ScramClient::ClientFirst() {
  client_first_bare_ = "n=" + SaslName(user_) + ",r=" + nonce_;
  return "n,," + client_first_bare_;
}

bool ScramClient::ClientFinal(std::string_view server_first, std::string& out, std::string& error) {
  std::string_view nonce, salt_b64, iter_text;
  if (!FindAttr(server_first, 'r', nonce) || !FindAttr(server_first, 's', salt_b64) ||
      !FindAttr(server_first, 'i', iter_text)) {
    error = "scram: malformed server-first-message";
    return false;
  }
  if (nonce.size() <= nonce_.size() || nonce.substr(0, nonce_.size()) != nonce_) {
    error = "scram: server nonce does not extend the client nonce";
    return false;
  }
  uint32_t iterations = 0;
  auto [ptr, ec] = std::from_chars(iter_text.data(), iter_text.data() + iter_text.size(), iterations);
  if (ec != std::errc() || ptr != iter_text.data() + iter_text.size() || iterations == 0 ||
      iterations > 10'000'000) {
    error = "scram: bad iteration count";
    return false;
  }
  std::string salt;
  if (!Base64Decode(salt_b64, salt) || salt.empty()) {
    error = "scram: bad salt";
    return false;
  }
  ScramKeys keys = DeriveScramKeys(hash_, password_, salt, iterations);
  std::string without_proof = "c=biws,r=";
  without_proof += nonce;
  std::string auth_message = client_first_bare_;
  auth_message += ',';
  auth_message += server_first;
  auth_message += ',';
  auth_message += without_proof;
  std::string signature = Hmac(hash_, keys.stored_key, auth_message);
  std::string proof = keys.client_key;
  for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(proof[i] ^ signature[i]);
  expected_server_signature_ = Hmac(hash_, keys.server_key, auth_message);
  out = std::move(without_proof);
  out += ",p=";
  out += Base64Encode(proof);
  return true;
}

bool ScramClient::VerifyServerFinal(std::string_view server_final, std::string& error) const {
  std::string_view value;
  if (FindAttr(server_final, 'e', value)) {
    error = "scram: server error " + std::string(value);
    return false;
  }
  std::string signature;
  if (!FindAttr(server_final, 'v', value) || !Base64Decode(value, signature)) {
    error = "scram: malformed server-final-message";
    return false;
  }
  if (expected_server_signature_.empty() || signature != expected_server_signature_) {
    error = "scram: wrong server signature";
    return false;
  }
  return true;
}

}  // namespace nines::bench
