// The roster (RFC 6121 §2): get with versioning (§2.6), set, remove, pushes.

#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace {

using store::RosterItem;
using store::Subscription;
using Load = AccountState::Load;

constexpr std::string_view kRosterNs = "jabber:iq:roster";
constexpr size_t kMaxNameBytes = 1023;  // roster item names and group names

std::string PushIq(const std::string& to, std::string_view query) {
  std::string out = "<iq type='set'";
  AppendAttr(out, "id", "push-" + xmpp::RandomId(10));
  AppendAttr(out, "to", to);
  out.push_back('>');
  out.append(query);
  out.append("</iq>");
  return out;
}

void PushQuery(HubImpl& hub, AccountState& st, std::string_view query) {
  for (const auto& res : st.resources) {
    if (res.interested) hub.DeliverTo(res, std::make_shared<const std::string>(PushIq(res.full, query)));
  }
}

// A write failed: the cache may now claim more than the store holds. Drop it;
// the next piece of work for the account reloads it.
void InvalidateRoster(AccountState& st) {
  if (st.load != Load::kReady) return;
  st.load = Load::kNone;
  st.roster.clear();
}

}  // namespace

void HubImpl::AppendItemXml(std::string& out, const RosterItem& item) {
  out.append("<item");
  AppendAttr(out, "jid", item.jid);
  if (!item.name.empty()) AppendAttr(out, "name", item.name);
  AppendAttr(out, "subscription", store::SubscriptionName(item.subscription));
  if (item.ask_out) out.append(" ask='subscribe'");
  if (item.preapproved && !HasFrom(item.subscription)) out.append(" approved='true'");
  if (item.groups.empty()) {
    out.append("/>");
    return;
  }
  out.push_back('>');
  for (const auto& group : item.groups) {
    out.append("<group>");
    xml::AppendEscapedText(out, group);
    out.append("</group>");
  }
  out.append("</item>");
}

void HubImpl::PushItem(AccountState& st, const RosterItem& item, int64_t version) {
  if (IsHiddenItem(item)) return;  // not part of the roster the client sees
  std::string query = "<query xmlns='jabber:iq:roster'";
  AppendAttr(query, "ver", std::to_string(version));
  query.push_back('>');
  AppendItemXml(query, item);
  query.append("</query>");
  PushQuery(*this, st, query);
}

void HubImpl::PushRemoval(AccountState& st, std::string_view jid, int64_t version) {
  std::string query = "<query xmlns='jabber:iq:roster'";
  AppendAttr(query, "ver", std::to_string(version));
  query.append("><item");
  AppendAttr(query, "jid", jid);
  query.append(" subscription='remove'/></query>");
  PushQuery(*this, st, query);
}

void HubImpl::PutItem(AccountState& st, RosterItem item, WriteDone done) {
  st.roster.insert_or_assign(item.jid, item);
  RosterChangedForArchive(st);
  std::string jid = item.jid;
  store_->PutRosterItem(st.user, std::move(item),
                        RosterWriteReply(st, std::move(jid), false, std::move(done)));
}

void HubImpl::DeleteItem(AccountState& st, const std::string& jid, WriteDone done) {
  st.roster.erase(jid);
  RosterChangedForArchive(st);
  store_->RemoveRosterItem(st.user, jid, RosterWriteReply(st, jid, true, std::move(done)));
}

// Back on the account's home loop: the new roster version, or (on failure)
// a roster reloaded from the store on next use. A delete of an item that is
// already gone has reached its goal.
store::Reply<int64_t> HubImpl::RosterWriteReply(AccountState& st, std::string jid, bool is_delete,
                                                WriteDone done) {
  ++st.busy;
  auto callback = std::make_shared<WriteDone>(std::move(done));
  return store::Reply<int64_t>(
      loop(st.home).executor(), [this, home = st.home, bare = st.bare, jid = std::move(jid), is_delete,
                                 callback](Result<int64_t> version) {
        AccountState* st = FindAccount(home, bare);
        if (st == nullptr) return;
        --st->busy;
        ++st->running;
        if (version.ok()) {
          st->roster_version = std::max(st->roster_version, *version);
          (*callback)(*st, true, *version);
        } else if (is_delete && version.error().code == Errc::kNotFound) {
          (*callback)(*st, true, st->roster_version);
        } else {
          spdlog::warn("im: roster {} for {} ({}) failed: {}", is_delete ? "delete" : "write", bare, jid,
                       version.error().message);
          InvalidateRoster(*st);
          (*callback)(*st, false, 0);
        }
        --st->running;
        MaybeEvict(*st);
      });
}

namespace {

// RFC 6121 §2.2, §2.6: roster get, with versioning.
void RosterGet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (Resource* res = st->FindByRef(call->origin)) res->interested = true;
  const xml::Element& query = call->payload();
  const std::string* ver = query.FindAttr("ver");
  std::string version = std::to_string(st->roster_version);
  if (ver != nullptr && *ver == version) {
    // §2.6.3: the client's copy is current; changes will come as pushes.
    hub.ReplyResult(*call);
    return;
  }
  std::string inner = "<query xmlns='jabber:iq:roster'";
  if (ver != nullptr) AppendAttr(inner, "ver", version);
  inner.push_back('>');
  for (const auto& [jid, item] : st->roster) {
    if (!IsHiddenItem(item)) HubImpl::AppendItemXml(inner, item);
  }
  inner.append("</query>");
  hub.ReplyResult(*call, inner);
}

// RFC 6121 §2.5: subscription='remove'.
void RosterRemove(HubImpl& hub, const IqCallPtr& call, AccountState* st, const std::string& jid) {
  const RosterItem* existing = st->FindItem(jid);
  if (existing == nullptr || IsHiddenItem(*existing)) {
    hub.ReplyError(*call, "item-not-found");
    return;
  }
  const RosterItem before = *existing;
  hub.DeleteItem(*st, jid, [&hub, call, before](AccountState& st, bool ok, int64_t version) {
    if (!ok) {
      hub.ReplyError(*call, "internal-server-error");
      return;
    }
    hub.ReplyResult(*call);
    hub.PushRemoval(st, before.jid, version);
    // §2.5.2: cancel both directions with the contact.
    if (HasFrom(before.subscription)) hub.SendUnavailableTo(st, before.jid);
    auto send = [&](std::string_view type, PresType ptype) {
      std::string xml = "<presence";
      AppendAttr(xml, "from", st.bare);
      AppendAttr(xml, "to", before.jid);
      AppendAttr(xml, "type", type);
      xml.append("/>");
      hub.SendPresence(st.bare, before.jid, std::move(xml), ptype, st.home);
    };
    if (HasTo(before.subscription) || before.ask_out) send("unsubscribe", PresType::kUnsubscribe);
    if (HasFrom(before.subscription) || before.pending_in) send("unsubscribed", PresType::kUnsubscribed);
  });
}

// RFC 6121 §2.3, §2.4: add or update an item.
void RosterSet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& query = call->payload();
  std::vector<const xml::Element*> items;
  for (const xml::Element* child : query.Children()) {
    if (child->name() == "item" && child->ns() == kRosterNs) items.push_back(child);
  }
  if (items.size() != 1) {
    hub.ReplyError(*call, "bad-request", "a roster set carries exactly one item");
    return;
  }
  const xml::Element& it = *items.front();
  auto parsed = xmpp::Jid::Parse(it.Attr("jid"));
  if (!parsed.ok() || !parsed->IsBare()) {
    hub.ReplyError(*call, "bad-request", "the item's jid is not a valid bare JID");
    return;
  }
  std::string jid = parsed->BareString();
  const std::string* subscription = it.FindAttr("subscription");
  if (subscription != nullptr && *subscription == "remove") {
    RosterRemove(hub, call, st, jid);
    return;
  }
  if (subscription != nullptr) {
    hub.ReplyError(*call, "bad-request", "only subscription='remove' may be set by a client");
    return;
  }
  if (jid == st->bare) {
    hub.ReplyError(*call, "not-allowed", "an account cannot be in its own roster");
    return;
  }
  std::string name(it.Attr("name"));
  if (name.size() > kMaxNameBytes) {
    hub.ReplyError(*call, "not-acceptable", "the name is too long");
    return;
  }
  std::vector<std::string> groups;
  for (const xml::Element* child : it.Children()) {
    if (child->name() != "group" || child->ns() != kRosterNs) continue;
    std::string group = child->Text();
    if (group.empty()) {
      hub.ReplyError(*call, "not-acceptable", "a group name is empty");
      return;
    }
    if (group.size() > kMaxNameBytes) {
      hub.ReplyError(*call, "not-acceptable", "a group name is too long");
      return;
    }
    if (std::find(groups.begin(), groups.end(), group) != groups.end()) {
      hub.ReplyError(*call, "bad-request", "a group is listed twice");
      return;
    }
    groups.push_back(std::move(group));
  }
  const RosterItem* existing = st->FindItem(jid);
  const Config& config = hub.ConfigOn(st->home);
  if (existing == nullptr && static_cast<int64_t>(st->roster.size()) >= config.limits.roster_size) {
    hub.ReplyError(*call, "policy-violation", "the roster is full");
    return;
  }
  RosterItem item;
  if (existing != nullptr) {
    item = *existing;
  } else {
    item.jid = jid;
  }
  item.name = std::move(name);
  std::sort(groups.begin(), groups.end());
  item.groups = std::move(groups);
  hub.PutItem(*st, item, [&hub, call, item](AccountState& st, bool ok, int64_t version) {
    if (!ok) {
      hub.ReplyError(*call, "internal-server-error");
      return;
    }
    // §2.3.2: the result to the requester, a push to every interested resource.
    hub.ReplyResult(*call);
    hub.PushItem(st, item, version);
  });
}

}  // namespace

void HubImpl::RegisterRoster() {
  // Not advertised in disco#info: the roster is core RFC 6121, and
  // versioning is a stream feature.
  registry_.Add(IqHandler{std::string(kRosterNs), false, kScopeSelf, "", {}, RosterGet});
  registry_.AddStreamFeature("<ver xmlns='urn:xmpp:features:rosterver'/>");     // RFC 6121 §2.6
  registry_.AddStreamFeature("<sub xmlns='urn:xmpp:features:pre-approval'/>");  // RFC 6121 §3.4
  registry_.Add(IqHandler{std::string(kRosterNs), true, kScopeSelf, "", {}, RosterSet});
}

}  // namespace nines::im
