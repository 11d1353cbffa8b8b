// im::Hub: the account-level half of the server (RFC 6121 and basic XEPs).
//
// What it does
//   Resource binding bookkeeping (RFC 6120 §7), stanza routing for local
//   accounts (RFC 6121 §8.5), presence broadcast, probes and directed
//   presence (RFC 6121 §4), the subscription state machine with
//   pre-approval (RFC 6121 §3, Appendix A), the roster with versioning
//   (RFC 6121 §2), offline storage with XEP-0203 delay stamps (XEP-0160),
//   and an IQ registry with disco (XEP-0030), version (XEP-0092), ping
//   (XEP-0199), vCard-temp (XEP-0054) and legacy session establishment.
//
// Threading (see docs/architecture.md, "Accounts have a home loop")
//   Every account (bare JID) has a home loop: loops->loop(hash(bare) % size).
//   All state of the account — bound resources and their presence, the
//   cached roster, the offline-message counter — lives in the hub's shard
//   for that loop and is touched only on it; work moves there by posting.
//   There are no locks. The xmpp::Hub methods are called on the calling
//   session's loop and return at once; their effects happen on home loops.
//
// Lifetime
//   Construct after the LoopPool and before sessions can call in. The hub
//   must outlive every loop task and store Reply that captured it: destroy
//   it only after LoopPool::Stop()/Join() (store replies posted to a stopped
//   loop are never run, which is fine).
//
// Ordering
//   Stanzas from one session to one recipient are handled in order within
//   each path: messages and IQs go straight to the recipient's home loop,
//   presence goes through the sender's home loop first (it changes the
//   sender's state). A message may therefore overtake a presence stanza the
//   same client sent just before it (src/im/README.md, "Deviations").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/config.h"
#include "net/loop_pool.h"
#include "store/store.h"
#include "xmpp/hub.h"
#include "xmpp/sessions.h"

namespace nines::im {

class HubImpl;
class SessionPort;
class IqRegistry;

struct HubDeps {
  net::LoopPool* loops = nullptr;
  xmpp::Sessions* sessions = nullptr;
  store::Store* store = nullptr;
  const ConfigSource* config = nullptr;
  // Test seam: when set, the hub delivers through this instead of
  // `sessions` (which may then be null). Not owned; must outlive the hub.
  SessionPort* port = nullptr;
};

class Hub final : public xmpp::Hub {
 public:
  // All pointers in `deps` must be non-null (except the optional ones noted
  // above) and outlive the hub.
  explicit Hub(HubDeps deps);
  ~Hub() override;
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  void Bind(xmpp::SessionRef ref, const xmpp::Jid& bare, const std::string& requested,
            std::function<void(Result<xmpp::Jid>)> done) override;
  void Restore(xmpp::SessionRef ref, const xmpp::Jid& bare, xmpp::RestoredResource restored,
               std::function<void(Result<xmpp::Jid>)> done) override;
  bool HandleStanza(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, uint64_t ticket) override;
  void HandleFromComponent(xmpp::SessionRef ref, xml::Element stanza) override;
  void SetAsleep(xmpp::SessionRef ref, const xmpp::Jid& full, bool asleep) override;
  void Unbind(xmpp::SessionRef ref, const xmpp::Jid& full) override;
  void AccountRemoved(xmpp::SessionRef by, const xmpp::Jid& bare) override;

  // The handlers and features in effect; immutable after construction, safe
  // from any thread. Disco#info answers are built from it.
  const IqRegistry& registry() const;

  // Stream features the session layer should advertise after
  // authentication because the hub implements them: registry().StreamFeatures()
  // (RFC 6121 §2.6 roster versioning, §3.4 pre-approval), as serialised
  // elements.
  // The same as booleans, for code that builds the features itself.
  static constexpr bool kSupportsRosterVersioning = true;
  static constexpr bool kSupportsPreApproval = true;

 private:
  std::unique_ptr<HubImpl> impl_;
};

}  // namespace nines::im
