// Internal to nines_sasl: SCRAM-SHA-1 / SCRAM-SHA-256 and their -PLUS
// variants (RFC 5802, RFC 7677, RFC 9266), server side, holding only the
// salted keys (StoredKey, ServerKey).
//
// Exchange, as the stream sees it:
//   client-first  -> kNeedKeys (username)      [Start or Step]
//   ProvideKeys   -> kChallenge server-first   (fake salt if no account)
//   client-final  -> kSuccess "v=..." | kFailure
//
// Failure conditions: syntax errors, the reserved "m" attribute, bad base64
// inside the message and a proof of the wrong size are malformed-request.
// Channel-binding policy failures ('y' while -PLUS was offered, 'n'/'y' on a
// -PLUS mechanism, 'p' on a non-PLUS one, a binding type other than
// tls-exporter, c= not matching), a username PRECIS rejects, a wrong nonce,
// a wrong proof and an unknown user are all not-authorized. An authzid other
// than the user itself is invalid-authzid.
//
// Thread safety: as Mechanism (one connection loop).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "xmpp/sasl/crypto.h"
#include "xmpp/sasl/sasl.h"

namespace nines::xmpp::sasl::internal {

// RFC 5802 §7 saslname: decodes "=2C" to ',' and "=3D" to '='. nullopt for an
// empty name, any other '=' sequence, a raw ',' or a NUL.
std::optional<std::string> DecodeSaslName(std::string_view name);

// RFC 5802 §7 client-first-message, split but not yet judged.
struct ClientFirst {
  char cbind_flag = 'n';               // 'n', 'y' or 'p'
  std::string cb_name;                 // the binding type when cbind_flag is 'p'
  std::optional<std::string> authzid;  // decoded saslname
  std::string gs2_header;              // verbatim, with its trailing ','
  std::string bare;                    // client-first-message-bare, verbatim
  std::string authcid;                 // decoded saslname, not yet normalised
  std::string client_nonce;
};
// nullopt when the message does not match the grammar, or carries "m=".
// Unknown extensions after the nonce are accepted and ignored.
std::optional<ClientFirst> ParseClientFirst(std::string_view message);

// RFC 5802 §7 client-final-message.
struct ClientFinal {
  std::string channel_binding;  // the c= value, still base64
  std::string nonce;
  std::string proof;          // the p= value, still base64
  std::string without_proof;  // client-final-message-without-proof, verbatim
};
std::optional<ClientFinal> ParseClientFinal(std::string_view message);

class ScramMechanism final : public Mechanism {
 public:
  // `plus` selects the -PLUS variant; CreateMechanism has checked that
  // binding.tls_exporter is then non-empty. An empty `server_nonce` means
  // draw a random one (24 bytes, base64); tests pass a fixed one.
  ScramMechanism(Hash hash, bool plus, ChannelBinding binding, std::string server_nonce);

  StepResult Start(std::optional<std::string_view> initial) override;
  StepResult Step(std::string_view response) override;
  StepResult ProvideKeys(const store::ScramKeys* keys) override;

 private:
  enum class State { kNew, kAwaitClientFirst, kAwaitKeys, kAwaitClientFinal, kDone };

  StepResult HandleClientFirst(std::string_view message);
  StepResult HandleClientFinal(std::string_view message);
  StepResult Fail(Failure failure);

  const Hash hash_;
  const bool plus_;
  const ChannelBinding binding_;
  State state_ = State::kNew;

  // From client-first.
  std::string gs2_header_;
  char cbind_flag_ = 'n';
  std::string client_first_bare_;
  std::string username_;
  std::string nonce_;  // client nonce, then client + server nonce

  // From ProvideKeys.
  std::string server_nonce_;
  std::string server_first_;
  bool unknown_user_ = false;
  SecretString stored_key_;
  SecretString server_key_;
};

}  // namespace nines::xmpp::sasl::internal
