// Hub: where authenticated stanzas go. The stream layer (C2sSession) owns
// connections, TLS, SASL and resource binding; everything an account does
// after that — routing, presence, roster, offline storage, IQ handlers — is
// behind this interface, implemented by im::Hub.
//
// Threading: every method is called on the calling session's loop. An
// implementation that keeps per-account state must move work to the loop that
// owns that state (im::Hub keeps each account on a "home" loop chosen by hash)
// and reach sessions only through Sessions::Deliver/Kick.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "xml/element.h"
#include "xmpp/jid/jid.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {

// What a session resumed from the store (XEP-0198, store::DeviceState) had
// bound, for Hub::Restore.
struct RestoredResource {
  std::string resource;
  std::string presence;  // its last available presence, serialised as the hub broadcast it; "" if none
  int priority = 0;
  bool carbons = false;
  bool roster_requested = false;
  int64_t cursor = 0;      // replay the incoming messages archived after this id
  int64_t max_replay = 0;  // more than this many to replay: kLimitExceeded
};

class Hub {
 public:
  virtual ~Hub() = default;

  // Binds a resource for an authenticated account (RFC 6120 §7). `requested`
  // is the client's normalised resource or empty (then the hub generates one).
  // A resource already bound for the account is taken over: the old session
  // is closed with <conflict/> (RFC 6120 §7.7.2.2, "override"). Errors:
  // kLimitExceeded (too many resources: <resource-constraint/>), kUnavailable.
  // `done` runs on the session's loop with the full JID.
  virtual void Bind(SessionRef ref, const Jid& bare, const std::string& requested,
                    std::function<void(Result<Jid>)> done) = 0;

  // Binds `restored.resource` again for a session resumed from the store,
  // after the process that held it went away: as Bind with that resource
  // (taking it over from a session that still has it), with its XEP-0280
  // and roster-push flags. Then it delivers to the session, in archive
  // order and before anything newer, the incoming messages archived after
  // `restored.cursor` that this resource would have got (its own full JID,
  // the bare JID unless its priority was negative, other resources' as
  // received carbons if it had carbons on), each with its stanza-id and a
  // delay stamp; then it broadcasts the presence again (initial presence:
  // probes, and offline messages it has not just been given). `done` runs
  // on the session's loop after those deliveries were queued to it.
  // Errors: as Bind, kLimitExceeded (more than max_replay messages; nothing
  // is bound), kNotFound (no such account), kUnavailable.
  virtual void Restore(SessionRef ref, const Jid& bare, RestoredResource restored,
                       std::function<void(Result<Jid>)> done) = 0;

  // A stanza from a bound session; `from` is its full JID and the stanza's
  // 'from' has already been stamped with it. `ticket` is the session's own
  // number for the stanza. Returns true if handling finishes later (a message
  // waiting for its archive or offline write): then the hub calls
  // C2sSession::StanzaDone(ticket) on the session's loop once it is durable
  // or refused (if the session still exists), which the session uses for
  // backpressure and for XEP-0198 acknowledgements. False: the stanza is
  // handled already and nothing more will be reported.
  virtual bool HandleStanza(SessionRef ref, const Jid& from, xml::Element stanza, uint64_t ticket) = 0;

  // A stanza from an external component (XEP-0114, ComponentSession) that
  // `ref` is: 'from' is a JID at the component's domain, 'to' is set, both
  // normalised, and the stanza is in jabber:client. Errors about it go back
  // to `ref` through Sessions::Deliver.
  virtual void HandleFromComponent(SessionRef ref, xml::Element stanza) = 0;

  // The bound session `full` can no longer take messages itself, or can
  // again: asleep while it is detached (XEP-0198, waiting to be resumed) or
  // inactive (XEP-0352). Messages it gets while asleep are announced to its
  // push service (XEP-0357), if it registered one.
  virtual void SetAsleep(SessionRef ref, const Jid& full, bool asleep) = 0;

  // The session has ended (any reason). If it was available, the hub
  // broadcasts unavailable presence on its behalf (RFC 6121 §4.5.1).
  virtual void Unbind(SessionRef ref, const Jid& full) = 0;

  // The account `bare` has just been deleted from the store, at the request
  // of its session `by` (XEP-0077 <remove/>), which closes itself. As XEP-0077
  // §3.2 asks, the hub cancels the account's presence subscriptions (its
  // contacts get unavailable presence, then `unsubscribe` and `unsubscribed`
  // as its roster had them) and closes every other session of the account,
  // detached ones included, with <not-authorized/>. Then it forgets what it
  // had loaded: from now on the account is missing (messages to it bounce),
  // and an account made later with the same name starts empty.
  virtual void AccountRemoved(SessionRef by, const Jid& bare) = 0;
};

}  // namespace nines::xmpp
