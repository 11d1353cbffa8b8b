// SessionPort: the hub's only way to reach client sessions.
//
// In the server it is a thin adapter over xmpp::Sessions (MakeSessionsPort).
// Unit tests pass their own implementation through HubDeps::port, which is
// the test seam: it records deliveries and can pretend a session is gone.
//
// Thread safety: every call may be made from any loop thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "xmpp/on_gone.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {
class Sessions;
}

namespace nines::im {

class SessionPort {
 public:
  virtual ~SessionPort() = default;
  // Queues one serialised stanza for the session. If the session no longer
  // exists, `on_gone` (if set) runs on the session's former loop instead;
  // a session with XEP-0198 enabled runs it if it ends before its client
  // acknowledged the stanza (xmpp/on_gone.h).
  // `archive_id`: for an incoming message the account archived (delivered
  // as is, or as a received carbon) its archive id, else 0. Those reach a
  // session in increasing id order; the session's resumption cursor
  // follows them (xmpp::C2sSession::SendStanza).
  virtual void Deliver(xmpp::SessionRef ref, std::shared_ptr<const std::string> xml, xmpp::OnGone on_gone,
                       int64_t archive_id = 0) = 0;
  // Closes the session with a stream error condition (e.g. "conflict") and
  // its text.
  virtual void Kick(xmpp::SessionRef ref, std::string condition, std::string text) = 0;
  // The stanza `ticket`, for which HandleStanza returned true, is finished
  // (see xmpp/hub.h). Nothing happens if the session is gone.
  virtual void StanzaDone(xmpp::SessionRef ref, uint64_t ticket) = 0;
  // Deliver() to the external component serving `domain` (XEP-0114); false
  // (and nothing happens) if none is connected.
  virtual bool DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                               std::function<void()> on_gone) = 0;
};

// The production port: forwards to `sessions`, which must outlive it.
std::unique_ptr<SessionPort> MakeSessionsPort(xmpp::Sessions* sessions);

}  // namespace nines::im
