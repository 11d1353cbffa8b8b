#include "xmpp/sasl/credentials.h"

#include <limits>
#include <mutex>

#include "xmpp/sasl/crypto.h"

namespace nines::xmpp::sasl::internal {
namespace {

struct UnknownUserSettings {
  std::mutex mutex;
  std::string secret;  // guarded by mutex; empty until first use or SetUnknownUserSecret
  int iterations = 4096;
};

UnknownUserSettings& Settings() {
  static UnknownUserSettings settings;
  return settings;
}

}  // namespace

bool UsableKeys(Hash hash, const store::ScramKeys* keys) {
  return keys != nullptr && !keys->salt.empty() && keys->iterations >= 1 &&
         keys->iterations <= std::numeric_limits<int>::max() && keys->stored_key.size() == DigestSize(hash) &&
         keys->server_key.size() == DigestSize(hash);
}

FakeCredentials FakeCredentialsFor(Hash hash, std::string_view username) {
  FakeCredentials fake;
  std::string secret;
  {
    UnknownUserSettings& settings = Settings();
    std::lock_guard lock(settings.mutex);
    if (settings.secret.empty()) settings.secret = RandomBytes(32);
    secret = settings.secret;
    fake.iterations = settings.iterations;
  }
  // Domain-separated so the fake salts of the two hashes differ, as real
  // ones do (DeriveKeys draws a fresh salt per key set).
  std::string input = "nines-sasl-fake-salt";
  input.push_back('\0');
  input += HashName(hash);
  input.push_back('\0');
  input += username;
  fake.salt = Hmac(Hash::kSha256, secret, input).substr(0, kSaltBytes);
  Wipe(secret);
  return fake;
}

bool AuthzidAllowed(std::string_view authzid, std::string_view authcid, std::string_view username) {
  return authzid.empty() || authzid == authcid || authzid == username;
}

Failure PrecisFailure(const Error& error) {
  return error.code == Errc::kInternal ? Failure::kTemporaryAuthFailure : Failure::kNotAuthorized;
}

}  // namespace nines::xmpp::sasl::internal

namespace nines::xmpp::sasl {

void SetUnknownUserSecret(std::string_view secret, int64_t iterations) {
  internal::UnknownUserSettings& settings = internal::Settings();
  std::lock_guard lock(settings.mutex);
  internal::Wipe(settings.secret);
  // An empty secret would mean "not set"; keep a random one instead.
  settings.secret = secret.empty() ? internal::RandomBytes(32) : std::string(secret);
  if (iterations >= 1 && iterations <= std::numeric_limits<int>::max()) {
    settings.iterations = static_cast<int>(iterations);
  }
}

}  // namespace nines::xmpp::sasl
