#include "xmpp/sasl/sasl.h"

#include <limits>
#include <utility>

#include "xmpp/jid/precis.h"
#include "xmpp/sasl/credentials.h"
#include "xmpp/sasl/crypto.h"
#include "xmpp/sasl/plain_mechanism.h"
#include "xmpp/sasl/scram_mechanism.h"

namespace nines::xmpp::sasl {
namespace {

std::unique_ptr<Mechanism> Create(std::string_view name, const ChannelBinding& binding,
                                  std::string server_nonce) {
  struct Scram {
    std::string_view name;
    Hash hash;
    bool plus;
  };
  static constexpr Scram kScram[] = {
      {"SCRAM-SHA-1", Hash::kSha1, false},
      {"SCRAM-SHA-1-PLUS", Hash::kSha1, true},
      {"SCRAM-SHA-256", Hash::kSha256, false},
      {"SCRAM-SHA-256-PLUS", Hash::kSha256, true},
  };
  for (const Scram& scram : kScram) {
    if (name != scram.name) continue;
    if (scram.plus && binding.tls_exporter.empty()) return nullptr;
    return std::make_unique<internal::ScramMechanism>(scram.hash, scram.plus, binding,
                                                      std::move(server_nonce));
  }
  if (name == "PLAIN") return std::make_unique<internal::PlainMechanism>();
  return nullptr;
}

}  // namespace

const char* FailureCondition(Failure failure) {
  switch (failure) {
    case Failure::kNone:
      return "";
    case Failure::kAborted:
      return "aborted";
    case Failure::kAccountDisabled:
      return "account-disabled";
    case Failure::kEncryptionRequired:
      return "encryption-required";
    case Failure::kIncorrectEncoding:
      return "incorrect-encoding";
    case Failure::kInvalidAuthzid:
      return "invalid-authzid";
    case Failure::kInvalidMechanism:
      return "invalid-mechanism";
    case Failure::kMalformedRequest:
      return "malformed-request";
    case Failure::kMechanismTooWeak:
      return "mechanism-too-weak";
    case Failure::kNotAuthorized:
      return "not-authorized";
    case Failure::kTemporaryAuthFailure:
      return "temporary-auth-failure";
  }
  return "not-authorized";
}

std::unique_ptr<Mechanism> CreateMechanism(std::string_view name, const ChannelBinding& binding) {
  return Create(name, binding, std::string());
}

std::unique_ptr<Mechanism> CreateMechanismForTesting(std::string_view name, const ChannelBinding& binding,
                                                     std::string server_nonce) {
  return Create(name, binding, std::move(server_nonce));
}

std::vector<std::string> MechanismNames(const ChannelBinding& binding) {
  std::vector<std::string> names;
  if (!binding.tls_exporter.empty()) {
    names.emplace_back("SCRAM-SHA-256-PLUS");
    names.emplace_back("SCRAM-SHA-1-PLUS");
  }
  names.emplace_back("SCRAM-SHA-256");
  names.emplace_back("SCRAM-SHA-1");
  if (binding.tls) names.emplace_back("PLAIN");
  return names;
}

Result<store::ScramKeys> DeriveKeys(Hash hash, std::string_view password, int64_t iterations) {
  return DeriveKeysWithSalt(hash, password, internal::RandomBytes(internal::kSaltBytes), iterations);
}

Result<store::ScramKeys> DeriveKeysWithSalt(Hash hash, std::string_view password, std::string_view salt,
                                            int64_t iterations) {
  if (iterations < 1 || iterations > std::numeric_limits<int>::max()) {
    return MakeError(Errc::kInvalidArgument, "iteration count out of range");
  }
  if (salt.empty()) return MakeError(Errc::kInvalidArgument, "empty salt");
  Result<std::string> prepared = precis::OpaqueString(password);
  if (!prepared.ok()) {
    // PRECIS's message may quote the offending input; keep the password out of logs.
    return MakeError(Errc::kInvalidArgument, "password rejected by PRECIS OpaqueString");
  }
  internal::SecretString prepared_password(std::move(prepared).value());
  if (prepared_password.value().empty()) return MakeError(Errc::kInvalidArgument, "empty password");

  // RFC 5802 §3: SaltedPassword = Hi(Normalize(password), salt, i), where
  // Normalize is now PRECIS OpaqueString (RFC 8265 obsoletes SASLprep).
  internal::SecretString salted_password(
      internal::Pbkdf2(hash, prepared_password.value(), salt, static_cast<int>(iterations)));
  internal::SecretString client_key(internal::Hmac(hash, salted_password.value(), internal::kClientKeyLabel));
  store::ScramKeys keys;
  keys.salt = std::string(salt);
  keys.iterations = iterations;
  keys.stored_key = internal::Digest(hash, client_key.value());
  keys.server_key = internal::Hmac(hash, salted_password.value(), internal::kServerKeyLabel);
  return keys;
}

}  // namespace nines::xmpp::sasl
