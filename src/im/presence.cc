// Presence (RFC 6121 §4) and presence subscriptions (RFC 6121 §3).
//
// Outbound work runs on the sender's home loop (it reads the sender's roster
// and changes the sender's resources); inbound work runs on the recipient's
// home. Roster changes are written first; the stanzas that announce them
// (pushes, routed subscription stanzas) go out from the write's Reply.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace ns = xmpp::ns;
using store::RosterItem;

namespace {

constexpr size_t kMaxDirected = 1000;        // directed-presence targets remembered per resource
constexpr size_t kMaxPresenceErrors = 1000;  // contacts remembered as answering with errors


SubState StateOf(const RosterItem& item) { return {item.subscription, item.ask_out, item.pending_in}; }

void Apply(RosterItem& item, Direction direction, SubVerb verb) {
  SubState s = Transition(StateOf(item), direction, verb);
  item.subscription = s.subscription;
  item.ask_out = s.pending_out;
  item.pending_in = s.pending_in;
}

std::string SimplePresence(std::string_view from, std::string_view to, std::string_view type) {
  std::string out = "<presence";
  AppendAttr(out, "from", from);
  AppendAttr(out, "to", to);
  if (!type.empty()) AppendAttr(out, "type", type);
  out.append("/>");
  return out;
}

PresType VerbType(SubVerb verb) {
  switch (verb) {
    case SubVerb::kSubscribe:
      return PresType::kSubscribe;
    case SubVerb::kSubscribed:
      return PresType::kSubscribed;
    case SubVerb::kUnsubscribe:
      return PresType::kUnsubscribe;
    case SubVerb::kUnsubscribed:
      return PresType::kUnsubscribed;
  }
  return PresType::kSubscribe;
}

}  // namespace

// ---------------------------------------------------------------------------
// Outbound

void HubImpl::ClientPresence(AccountState& st, xmpp::SessionRef ref, xml::Element stanza, PresType type,
                             std::shared_ptr<OriginNotifier> done) {
  Resource* res = st.FindByRef(ref);
  if (res == nullptr) return;  // the session is gone or was replaced
  if (!st.Ready()) {
    // The roster could not be loaded (logged there). A subscription would
    // change it: say so rather than drop it unanswered.
    if (done) SendToSessionError(ref, stanza, "internal-server-error");
    return;
  }
  switch (type) {
    case PresType::kAvailable:
    case PresType::kUnavailable: {
      const std::string* to = stanza.FindAttr("to");
      if (to == nullptr || *to == st.bare) {
        BroadcastPresence(st, *res, std::move(stanza), type == PresType::kAvailable);
      } else {
        DirectedPresence(st, *res, std::move(stanza), type == PresType::kAvailable);
      }
      return;
    }
    case PresType::kSubscribe:
      OutboundSubscription(st, ref, std::move(stanza), SubVerb::kSubscribe, std::move(done));
      return;
    case PresType::kSubscribed:
      OutboundSubscription(st, ref, std::move(stanza), SubVerb::kSubscribed, std::move(done));
      return;
    case PresType::kUnsubscribe:
      OutboundSubscription(st, ref, std::move(stanza), SubVerb::kUnsubscribe, std::move(done));
      return;
    case PresType::kUnsubscribed:
      OutboundSubscription(st, ref, std::move(stanza), SubVerb::kUnsubscribed, std::move(done));
      return;
    case PresType::kProbe:
    case PresType::kError:
    case PresType::kInvalid:
      return;
  }
}

void HubImpl::FanOutToSubscribers(AccountState& st, const std::string& xml, PresType type,
                                  const std::string& from) {
  const Config& config = ConfigOn(st.home);
  for (const auto& [jid, item] : st.roster) {
    if (!HasFrom(item.subscription) || !IsLocal(jid, config) || st.Blocks(jid)) continue;
    if (std::find(st.presence_errors.begin(), st.presence_errors.end(), jid) != st.presence_errors.end())
      continue;
    SendPresence(from, jid, WithTo(xml, jid), type, st.home);
  }
}

// RFC 6121 §4.2 (initial), §4.4 (subsequent), §4.5 (unavailable).
void HubImpl::BroadcastPresence(AccountState& st, Resource& res, xml::Element stanza, bool available) {
  stanza.RemoveAttr("to");
  if (available) AddAvatarHash(st, stanza);  // XEP-0398 §4
  auto xml = std::make_shared<const std::string>(stanza.Serialize(ns::kClient));
  if (!available) {
    if (!res.available) return;  // not available: nothing to withdraw
    res.available = false;
    res.presence.reset();
    FanOutToSubscribers(st, *xml, PresType::kUnavailable, res.full);
    DeliverToAvailable(st, std::make_shared<const std::string>(WithTo(*xml, st.bare)));
    for (const auto& target : res.directed) {
      SendPresence(res.full, target, WithTo(*xml, target), PresType::kUnavailable, st.home);
    }
    res.directed.clear();
    return;
  }

  CapsPtr before = res.available ? res.caps : nullptr;  // what it has had PEP items for
  BroadcastAvailable(st, res, std::move(xml), xmpp::PresencePriority(stanza));
  NoteCaps(st, res, stanza, std::move(before));
}

void HubImpl::BroadcastAvailable(AccountState& st, Resource& res, std::shared_ptr<const std::string> xml,
                                 int priority, int64_t replayed_up_to) {
  const bool initial = !res.available;
  const bool was_negative = res.priority < 0;
  res.available = true;
  res.priority = priority;
  res.presence = xml;

  // To contacts subscribed to us, and to all our available resources,
  // including this one (§4.2.2).
  FanOutToSubscribers(st, *xml, PresType::kAvailable, res.full);
  DeliverToAvailable(st, std::make_shared<const std::string>(WithTo(*xml, st.bare)));

  if (initial) {
    const Config& config = ConfigOn(st.home);
    // §4.2.2: probe the contacts we are subscribed to; their homes answer.
    for (const auto& [jid, item] : st.roster) {
      if (!HasTo(item.subscription) || !IsLocal(jid, config) || st.Blocks(jid)) continue;
      std::string probe = "<presence type='probe'";
      AppendAttr(probe, "from", res.full);
      AppendAttr(probe, "to", jid);
      probe.append("/>");
      SendPresence(res.full, jid, std::move(probe), PresType::kProbe, st.home);
    }
    // The presence of our other resources, to the new one.
    for (const auto& other : st.resources) {
      if (&other == &res || !other.available || !other.presence) continue;
      DeliverTo(res, std::make_shared<const std::string>(WithTo(*other.presence, res.full)));
    }
    // §3.1.3: subscription requests still waiting for an answer.
    for (const auto& [jid, item] : st.roster) {
      if (!item.pending_in) continue;
      std::string request =
          item.pending_in_stanza.empty() ? SimplePresence(jid, st.bare, "subscribe") : item.pending_in_stanza;
      DeliverTo(res, std::make_shared<const std::string>(std::move(request)));
    }
  }
  // XEP-0160: stored messages go to the first resource that becomes
  // available with a non-negative priority.
  if (res.priority >= 0 && (initial || was_negative) && st.offline_count > 0)
    DeliverOffline(st, res.ref, replayed_up_to);
}

// RFC 6121 §4.6.
void HubImpl::DirectedPresence(AccountState& st, Resource& res, xml::Element stanza, bool available) {
  if (available) AddAvatarHash(st, stanza);  // XEP-0398 §4: directed presence too (room joins)
  std::string to(stanza.Attr("to"));
  const RosterItem* item = st.FindItem(BareOf(to));
  auto it = std::find(res.directed.begin(), res.directed.end(), to);
  if (available) {
    // Subscribers hear of our going away anyway; remember the others.
    bool subscriber = item != nullptr && HasFrom(item->subscription);
    if (!subscriber && it == res.directed.end() && res.directed.size() < kMaxDirected)
      res.directed.push_back(to);
  } else if (it != res.directed.end()) {
    res.directed.erase(it);
  }
  auto r = std::make_shared<Routed>();
  r->kind = Kind::kPresence;
  r->type = static_cast<uint8_t>(available ? PresType::kAvailable : PresType::kUnavailable);
  r->has_origin = true;
  r->origin = res.ref;
  r->from = res.full;
  r->id = std::string(stanza.Attr("id"));
  r->to = std::move(to);
  stanza.SerializeTo(r->xml, ns::kClient);
  Route(std::move(r), st.home);
}

// RFC 6121 §3 and Appendix A.2, on the user's home.
// `done` (see ClientPresence) goes with each roster write's callback, so the
// sender's session counts the stanza handled once that write has landed and
// the stanza has been routed; a failed write is bounced.
void HubImpl::OutboundSubscription(AccountState& st, xmpp::SessionRef ref, xml::Element stanza, SubVerb verb,
                                   std::shared_ptr<OriginNotifier> done) {
  const std::string* to_attr = stanza.FindAttr("to");
  if (to_attr == nullptr) return;
  std::string contact(BareOf(*to_attr));
  const Config& config = ConfigOn(st.home);
  JidView cv = SplitJid(contact);
  if (contact == st.bare || (cv.local.empty() && cv.domain == config.domain)) return;

  // The stanza as the contact gets it: from our bare JID (§3.1.2), to theirs.
  stanza.SetAttr("from", st.bare);
  stanza.SetAttr("to", contact);
  auto routed = std::make_shared<Routed>();
  routed->kind = Kind::kPresence;
  routed->type = static_cast<uint8_t>(VerbType(verb));
  routed->has_origin = true;
  routed->origin = ref;
  routed->from = st.bare;
  routed->to = contact;
  routed->id = std::string(stanza.Attr("id"));
  stanza.SerializeTo(routed->xml, ns::kClient);
  RoutedPtr r = std::move(routed);

  RosterItem* item = st.FindItem(contact);
  RosterItem before;
  if (item != nullptr) {
    before = *item;
  } else {
    before.jid = contact;
  }
  RosterItem after = before;
  const bool roster_full =
      item == nullptr && static_cast<int64_t>(st.roster.size()) >= config.limits.roster_size;

  switch (verb) {
    case SubVerb::kSubscribe: {
      if (roster_full) {
        Bounce(*r, "policy-violation", "the roster is full");
        return;
      }
      Apply(after, Direction::kOutbound, verb);
      if (item != nullptr && StateOf(before) == StateOf(after)) {
        Route(r, st.home);  // §3.1.2: route it even without a state change
        return;
      }
      PutItem(st, after, [this, r, after, done](AccountState& st, bool ok, int64_t version) {
        if (!ok) {
          Bounce(*r, "internal-server-error");
          return;
        }
        PushItem(st, after, version);
        Route(r, st.home);
      });
      return;
    }
    case SubVerb::kSubscribed: {
      if (item != nullptr && item->pending_in) {
        // §3.1.5: approving a pending request.
        Apply(after, Direction::kOutbound, verb);
        after.pending_in_stanza.clear();
        after.preapproved = false;
        PutItem(st, after, [this, r, after, done](AccountState& st, bool ok, int64_t version) {
          if (!ok) {
            Bounce(*r, "internal-server-error");
            return;
          }
          PushItem(st, after, version);
          Route(r, st.home);
          SendAvailableTo(st, after.jid);
        });
        return;
      }
      if (item != nullptr && (HasFrom(item->subscription) || item->preapproved)) return;  // nothing to change
      // §3.4: no request yet, so this pre-approves one.
      if (roster_full) {
        Bounce(*r, "policy-violation", "the roster is full");
        return;
      }
      after.preapproved = true;
      PutItem(st, after, [this, r, after, done](AccountState& st, bool ok, int64_t version) {
        if (!ok) {
          Bounce(*r, "internal-server-error");
          return;
        }
        PushItem(st, after, version);
      });
      return;
    }
    case SubVerb::kUnsubscribe: {
      Apply(after, Direction::kOutbound, verb);
      if (item == nullptr || StateOf(before) == StateOf(after)) {
        Route(r, st.home);
        return;
      }
      PutItem(st, after, [this, r, after, done](AccountState& st, bool ok, int64_t version) {
        if (!ok) {
          Bounce(*r, "internal-server-error");
          return;
        }
        PushItem(st, after, version);
        Route(r, st.home);
      });
      return;
    }
    case SubVerb::kUnsubscribed: {
      Apply(after, Direction::kOutbound, verb);
      after.preapproved = false;  // §3.4: also cancels a pre-approval
      if (!after.pending_in) after.pending_in_stanza.clear();
      if (item == nullptr || (StateOf(before) == StateOf(after) && before.preapproved == after.preapproved)) {
        Route(r, st.home);
        return;
      }
      const bool had_from = HasFrom(before.subscription);
      auto then = [this, r, after, had_from, done](AccountState& st, bool ok, int64_t version) {
        if (!ok) {
          Bounce(*r, "internal-server-error");
          return;
        }
        PushItem(st, after, version);
        Route(r, st.home);
        // §3.2.2: the contact no longer gets our presence; say goodbye.
        if (had_from) SendUnavailableTo(st, after.jid);
      };
      if (IsHiddenItem(before) && IsEmptyItem(after)) {
        // A refused request that never made it into the roster.
        DeleteItem(st, contact, [this, r, done](AccountState& st, bool ok, int64_t) {
          if (!ok) {
            Bounce(*r, "internal-server-error");
            return;
          }
          Route(r, st.home);
        });
      } else {
        PutItem(st, after, std::move(then));
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Inbound

void HubImpl::InboundPresence(size_t home, const RoutedPtr& r) {
  const PresType type = r->pres_type();
  JidView to = SplitJid(r->to);
  std::string_view bare = to.Bare();
  switch (type) {
    case PresType::kAvailable:
    case PresType::kUnavailable:
    case PresType::kError: {
      // §8.5.2.2.2 / §8.5.3.2.2: nobody online, nothing to do; no load.
      AccountState* st = FindAccount(home, bare);
      if (st == nullptr || st->Blocks(r->from)) return;  // XEP-0191: dropped without a word
      if (type == PresType::kError) {
        std::string from(BareOf(r->from));
        if (std::find(st->presence_errors.begin(), st->presence_errors.end(), from) ==
                st->presence_errors.end() &&
            st->presence_errors.size() < kMaxPresenceErrors) {
          st->presence_errors.push_back(std::move(from));
        }
      }
      if (!to.IsBare()) {
        if (Resource* res = st->FindByName(to.resource)) DeliverTo(*res, SharedXml(r));
        return;
      }
      DeliverToAvailable(*st, SharedXml(r));
      return;
    }
    case PresType::kProbe: {
      if (FindAccount(home, bare) == nullptr) {
        // Not online (probes come only from the server, for contacts with a
        // subscription): §4.3.2 says answer unavailable. Done without loading.
        SendPresence(std::string(bare), r->from, SimplePresence(bare, r->from, "unavailable"),
                     PresType::kUnavailable, home);
        return;
      }
      RunOnAccount(home, bare, [this, r](AccountState& st) { AnswerProbe(st, r); });
      return;
    }
    case PresType::kSubscribe:
    case PresType::kSubscribed:
    case PresType::kUnsubscribe:
    case PresType::kUnsubscribed: {
      SubVerb verb = type == PresType::kSubscribe     ? SubVerb::kSubscribe
                     : type == PresType::kSubscribed  ? SubVerb::kSubscribed
                     : type == PresType::kUnsubscribe ? SubVerb::kUnsubscribe
                                                      : SubVerb::kUnsubscribed;
      RunOnAccount(home, bare, [this, r, verb](AccountState& st) { InboundSubscription(st, r, verb); });
      return;
    }
    case PresType::kInvalid:
      return;
  }
}

// RFC 6121 §4.3.2, on the contact's home.
void HubImpl::AnswerProbe(AccountState& st, const RoutedPtr& r) {
  if (!st.Ready()) return;  // no such account (or it cannot be loaded): stay silent
  if (st.Blocks(r->from)) return;  // XEP-0191
  const RosterItem* item = st.FindItem(BareOf(r->from));
  if (item == nullptr || !HasFrom(item->subscription)) return;  // not subscribed: reveal nothing
  bool any = false;
  for (const auto& res : st.resources) {
    if (res.available && res.presence) {
      any = true;
      break;
    }
  }
  if (any) {
    SendAvailableTo(st, r->from);
  } else {
    SendPresence(st.bare, r->from, SimplePresence(st.bare, r->from, "unavailable"), PresType::kUnavailable,
                 st.home);
  }
}

// RFC 6121 §3 and Appendix A.3, on the contact's home (`st` is the contact,
// r->from the user).
void HubImpl::InboundSubscription(AccountState& st, const RoutedPtr& r, SubVerb verb) {
  if (!st.Ready()) return;  // §8.5.1: no such account, silently ignored
  if (st.Blocks(r->from)) return;  // XEP-0191: dropped without a word
  std::string from(BareOf(r->from));
  if (from == st.bare) return;
  const Config& config = ConfigOn(st.home);
  RosterItem* item = st.FindItem(from);
  RosterItem before;
  if (item != nullptr) {
    before = *item;
  } else {
    before.jid = from;
  }
  RosterItem after = before;

  switch (verb) {
    case SubVerb::kSubscribe: {
      if (item != nullptr && HasFrom(item->subscription)) {
        // §3.1.3: already subscribed; answer on the contact's behalf.
        SendPresence(st.bare, from, SimplePresence(st.bare, from, "subscribed"), PresType::kSubscribed,
                     st.home);
        return;
      }
      if (item != nullptr && item->preapproved) {
        // §3.4: pre-approved, so approve now without asking.
        Apply(after, Direction::kInbound, SubVerb::kSubscribe);
        Apply(after, Direction::kOutbound, SubVerb::kSubscribed);
        after.preapproved = false;
        after.pending_in_stanza.clear();
        PutItem(st, after, [this, after](AccountState& st, bool ok, int64_t version) {
          if (!ok) return;
          PushItem(st, after, version);
          SendPresence(st.bare, after.jid, SimplePresence(st.bare, after.jid, "subscribed"),
                       PresType::kSubscribed, st.home);
          SendAvailableTo(st, after.jid);
        });
        return;
      }
      if (item == nullptr && static_cast<int64_t>(st.roster.size()) >= config.limits.roster_size) return;
      Apply(after, Direction::kInbound, verb);
      if (item != nullptr && StateOf(before) == StateOf(after)) return;  // already pending
      // Kept until answered, and shown again at each login (§3.1.3).
      after.pending_in_stanza = r->xml;
      PutItem(st, after, [this, r](AccountState& st, bool ok, int64_t) {
        if (ok) DeliverToAvailable(st, SharedXml(r));
      });
      return;
    }
    case SubVerb::kSubscribed:
    case SubVerb::kUnsubscribed: {
      if (item == nullptr) return;
      Apply(after, Direction::kInbound, verb);
      if (StateOf(before) == StateOf(after)) return;  // Appendix A: no change, not delivered
      const bool subscribed_now = HasTo(after.subscription) && !HasTo(before.subscription);
      PutItem(st, after, [this, r, after, subscribed_now](AccountState& st, bool ok, int64_t version) {
        if (!ok) return;
        PushItem(st, after, version);
        DeliverToAvailable(st, SharedXml(r));
        // XEP-0163 §4.3.4: a new subscriber gets the contact's last items.
        if (subscribed_now) LastItemsForNewSubscription(st, after.jid);
      });
      return;
    }
    case SubVerb::kUnsubscribe: {
      if (item == nullptr) return;
      Apply(after, Direction::kInbound, verb);
      if (StateOf(before) == StateOf(after)) return;
      if (!after.pending_in) after.pending_in_stanza.clear();
      const bool had_from = HasFrom(before.subscription);
      auto then = [this, r, after, had_from](AccountState& st, bool ok, int64_t version) {
        if (!ok) return;
        PushItem(st, after, version);
        DeliverToAvailable(st, SharedXml(r));
        if (had_from) SendUnavailableTo(st, after.jid);
      };
      if (IsHiddenItem(before) && IsEmptyItem(after)) {
        // A withdrawn request that never made it into the roster.
        DeleteItem(st, from, [this, r](AccountState& st, bool ok, int64_t) {
          if (ok) DeliverToAvailable(st, SharedXml(r));
        });
      } else {
        PutItem(st, after, std::move(then));
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

void HubImpl::SendPresence(std::string from, std::string to, std::string xml, PresType type, size_t current) {
  if (!IsLocal(to, ConfigOn(current))) return;  // no server-to-server yet
  Route(MakeServerStanza(Kind::kPresence, static_cast<uint8_t>(type), std::move(from), std::move(to),
                         std::move(xml)),
        current);
}

void HubImpl::CancelSubscriptions(AccountState& st) {
  // XEP-0077 §3.2: as if the user had cancelled each subscription itself
  // (RFC 6121 §3.2 and §3.3), without writing its own roster, which the
  // store has deleted. Contacts that had its presence get unavailable
  // first (§3.2.2); local contacts' rosters change on their side
  // (InboundSubscription). Remote ones would need server-to-server.
  for (const auto& [jid, item] : st.roster) {
    const bool had_from = HasFrom(item.subscription);
    if (had_from) SendUnavailableTo(st, jid);
    if (HasTo(item.subscription) || item.ask_out) {
      SendPresence(st.bare, jid, SimplePresence(st.bare, jid, "unsubscribe"), PresType::kUnsubscribe,
                   st.home);
    }
    if (had_from || item.pending_in) {
      SendPresence(st.bare, jid, SimplePresence(st.bare, jid, "unsubscribed"), PresType::kUnsubscribed,
                   st.home);
    }
  }
}

void HubImpl::SendAvailableTo(AccountState& st, const std::string& to) {
  for (const auto& res : st.resources) {
    if (!res.available || !res.presence) continue;
    SendPresence(res.full, to, WithTo(*res.presence, to), PresType::kAvailable, st.home);
  }
}

void HubImpl::SendUnavailableTo(AccountState& st, const std::string& to) {
  for (const auto& res : st.resources) {
    if (!res.available) continue;
    SendPresence(res.full, to, SimplePresence(res.full, to, "unavailable"), PresType::kUnavailable, st.home);
  }
}

void HubImpl::ResourceGone(AccountState& st, Resource gone) {
  RunOnAccount(st.home, st.bare, [this, gone = std::move(gone)](AccountState& st) {
    std::string xml = "<presence type='unavailable'";
    AppendAttr(xml, "from", gone.full);
    xml.append("/>");
    if (gone.available && st.Ready()) {
      // §4.5.2: to subscribers and to our other available resources.
      FanOutToSubscribers(st, xml, PresType::kUnavailable, gone.full);
      DeliverToAvailable(st, std::make_shared<const std::string>(WithTo(xml, st.bare)));
    }
    // §4.6.3: and to everyone that got directed presence.
    for (const auto& target : gone.directed) {
      SendPresence(gone.full, target, WithTo(xml, target), PresType::kUnavailable, st.home);
    }
  });
}

}  // namespace nines::im
