// Internal to nines_sasl: PLAIN (RFC 4616), checked against the stored
// SCRAM-SHA-1 keys so no password is ever stored (SHA-1 because its PBKDF2
// is the cheaper of the two; plain_mechanism.cc says why that is safe).
//
// Exchange: message (authzid NUL authcid NUL passwd) -> kNeedKeys (SHA-1)
// -> ProvideKeys -> kSuccess | kFailure.
//
// The password is PRECIS OpaqueString-prepared, held in a buffer that is
// wiped after the check (or when the object dies), and never logged. The
// caller owns the decoded message it passes in and should wipe it too.
//
// Failure conditions: a message without exactly two NULs, or with an empty
// authcid or password, is malformed-request. A username or password that
// PRECIS rejects, an unknown user and a wrong password are not-authorized. An
// authzid other than the user itself is invalid-authzid.
//
// ProvideKeys runs PBKDF2 with the stored iteration count on the calling
// thread (about half a millisecond at 4096 iterations of SHA-1); for an unknown
// user it runs the same work against a fake salt, so timing does not reveal
// whether the account exists.
//
// Thread safety: as Mechanism (one connection loop).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "xmpp/sasl/crypto.h"
#include "xmpp/sasl/sasl.h"

namespace nines::xmpp::sasl::internal {

class PlainMechanism final : public Mechanism {
 public:
  PlainMechanism() = default;

  StepResult Start(std::optional<std::string_view> initial) override;
  StepResult Step(std::string_view response) override;
  StepResult ProvideKeys(const store::ScramKeys* keys) override;

 private:
  enum class State { kNew, kAwaitMessage, kAwaitKeys, kDone };

  StepResult HandleMessage(std::string_view message);
  StepResult Fail(Failure failure);

  State state_ = State::kNew;
  std::string username_;
  SecretString password_;  // OpaqueString-prepared
};

}  // namespace nines::xmpp::sasl::internal
