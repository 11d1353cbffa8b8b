// Internal to nines_sasl: rules shared by the mechanisms about which stored
// keys are usable, what an unknown user is shown instead, and which
// authorization identities are accepted.
//
// Thread safety: all functions are safe from any thread; the unknown-user
// secret (SetUnknownUserSecret in sasl.h) is guarded by a mutex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "store/store.h"
#include "xmpp/sasl/sasl.h"

namespace nines::xmpp::sasl::internal {

// Salt length of keys made by DeriveKeys, and so of fake salts too.
inline constexpr size_t kSaltBytes = 16;

// True when `keys` is non-null and can be used with `hash`: a non-empty salt,
// iterations in [1, INT_MAX], and keys of the hash's digest size.
bool UsableKeys(Hash hash, const store::ScramKeys* keys);

// What an unknown user is shown: a salt that is stable for (hash, username)
// and looks like a real one, and the configured iteration count.
struct FakeCredentials {
  std::string salt;  // kSaltBytes raw bytes
  int iterations = 4096;
};
FakeCredentials FakeCredentialsFor(Hash hash, std::string_view username);

// The authzid policy of sasl.h: empty, the authcid as sent, or the
// normalised username.
bool AuthzidAllowed(std::string_view authzid, std::string_view authcid, std::string_view username);

// The failure for a username or password PRECIS rejects: not-authorized for
// input the profile disallows, temporary-auth-failure when ICU itself failed.
Failure PrecisFailure(const Error& error);

// ClientKey = HMAC(SaltedPassword, "Client Key") and friends (RFC 5802 §3).
inline constexpr std::string_view kClientKeyLabel = "Client Key";
inline constexpr std::string_view kServerKeyLabel = "Server Key";

}  // namespace nines::xmpp::sasl::internal
