// XEP-0191 blocking.
//
// The list is stored (store::Store::Block/Unblock), loaded with the account,
// and kept in AccountState::blocked as an immutable BlockList that is
// replaced whole on every change. Changes are written before the client gets
// its result, and only then applied and pushed.
//
// Where it is enforced:
//   inbound, at the blocking account's home: messages from a blocked JID are
//     bounced with <service-unavailable/> before they are archived; presence
//     of every kind is dropped without an answer; IQ get/set to a resource or
//     answered on the account's behalf get <service-unavailable/>, other IQs
//     are dropped (§3.3). The contact sees the user as offline.
//   outbound, on the sender's session loop: each loop keeps the block lists
//     of its sessions' accounts (Shard::session_settings), so a stanza to a
//     blocked JID is refused before it is routed, with <not-acceptable/> and
//     <blocked xmlns='urn:xmpp:blocking:errors'/> (§3.3). Presence broadcasts
//     skip blocked subscribers (FanOutToSubscribers).
//   on block, contacts now blocked that could see the user's presence get
//     unavailable presence; on unblock, those now unblocked get the current
//     presence (§3.3, §3.4). Subscriptions are kept ("polite blocking", §5).
// Resources that asked for the list get each change as a push (§3.3).
//
// A session's outbound checks start once its account is loaded; a stanza
// sent in the few milliseconds between bind and that load is not checked.

#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/jid/jid.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace {

constexpr std::string_view kBlocking = "urn:xmpp:blocking";
constexpr std::string_view kBlockingErrors = "urn:xmpp:blocking:errors";

void AppendItems(std::string& out, const std::vector<std::string>& jids) {
  for (const auto& jid : jids) {
    out.append("<item");
    AppendAttr(out, "jid", jid);
    out.append("/>");
  }
}

// The <item jid/> children of a <block/> or <unblock/>, normalised. Errors:
// the condition to answer with.
Result<std::vector<std::string>> ParseItems(const xml::Element& payload) {
  std::vector<std::string> jids;
  for (const xml::Element* child : payload.Children()) {
    if (child->name() != "item" || child->ns() != kBlocking) continue;
    auto jid = xmpp::Jid::Parse(child->Attr("jid"));
    if (!jid.ok()) return MakeError(Errc::kInvalidArgument, "jid-malformed");
    std::string text = jid->Full();
    if (std::find(jids.begin(), jids.end(), text) == jids.end()) jids.push_back(std::move(text));
  }
  return jids;
}

// The roster contacts who may see the user's presence (§3.3: "only if the
// contact is allowed to receive presence notifications") and whom `list`
// blocks.
std::vector<std::string> WatchersBlockedBy(const AccountState& st, const BlockList* list) {
  std::vector<std::string> out;
  if (list == nullptr) return out;
  for (const auto& [jid, item] : st.roster) {
    if (HasFrom(item.subscription) && list->Blocks(jid)) out.push_back(jid);
  }
  return out;
}

void PushChange(HubImpl& hub, AccountState& st, std::string_view verb, const std::vector<std::string>& jids) {
  for (const auto& res : st.resources) {
    if (!res.blocklist) continue;
    std::string out = "<iq type='set'";
    AppendAttr(out, "to", res.full);
    AppendAttr(out, "id", "block-" + xmpp::RandomId(10));
    out.append("><");
    out.append(verb);
    out.append(" xmlns='urn:xmpp:blocking'");
    if (jids.empty()) {
      out.append("/></iq>");
    } else {
      out.push_back('>');
      AppendItems(out, jids);
      out.append("</");
      out.append(verb);
      out.append("></iq>");
    }
    hub.DeliverTo(res, std::make_shared<const std::string>(std::move(out)));
  }
}

void GetBlocklist(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (call->payload().name() != "blocklist") {
    hub.ReplyError(*call, "bad-request", "expected <blocklist/>");
    return;
  }
  if (Resource* res = st->FindByRef(call->origin)) res->blocklist = true;
  std::string inner = "<blocklist xmlns='urn:xmpp:blocking'";
  if (st->blocked == nullptr || st->blocked->jids.empty()) {
    inner.append("/>");
  } else {
    inner.push_back('>');
    for (const auto& jid : st->blocked->jids) {
      inner.append("<item");
      AppendAttr(inner, "jid", jid);
      inner.append("/>");
    }
    inner.append("</blocklist>");
  }
  hub.ReplyResult(*call, inner);
}

void Change(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& payload = call->payload();
  const bool block = payload.name() == "block";
  if (!block && payload.name() != "unblock") {
    hub.ReplyError(*call, "bad-request", "expected <block/> or <unblock/>");
    return;
  }
  auto jids = ParseItems(payload);
  if (!jids.ok()) {
    hub.ReplyError(*call, "jid-malformed", "an <item/> has no valid 'jid'");
    return;
  }
  if (block && jids->empty()) {
    hub.ReplyError(*call, "bad-request", "<block/> needs at least one <item jid/>");  // §3.3
    return;
  }
  if (block) {
    size_t after = st->blocked ? st->blocked->jids.size() : 0;
    for (const auto& jid : *jids) {
      if (!st->blocked || st->blocked->jids.count(jid) == 0) ++after;
    }
    if (static_cast<int64_t>(after) > hub.ConfigOn(st->home).limits.blocklist_items) {
      hub.ReplyError(*call, "resource-constraint", "the block list would be longer than this server allows");
      return;
    }
  }
  ++st->busy;
  auto done = [&hub, call, home = st->home, bare = st->bare, block, jids = *jids](bool ok) {
    AccountState* st = hub.FindAccount(home, bare);
    if (st == nullptr) return;
    --st->busy;
    ++st->running;
    if (!ok) {
      hub.ReplyError(*call, "internal-server-error");
    } else {
      auto next = std::make_shared<BlockList>();
      if (st->blocked) next->jids = st->blocked->jids;
      std::vector<std::string> watchers_before = WatchersBlockedBy(*st, st->blocked.get());
      if (block) {
        next->jids.insert(jids.begin(), jids.end());
      } else if (jids.empty()) {
        next->jids.clear();
      } else {
        for (const auto& jid : jids) next->jids.erase(jid);
      }
      std::vector<std::string> watchers_after = WatchersBlockedBy(*st, next.get());
      const bool had = st->HasSessionSettings();
      st->blocked = next->jids.empty() ? nullptr : BlockListPtr(std::move(next));
      if (had || st->HasSessionSettings()) hub.PublishSettings(*st);
      hub.ReplyResult(*call);
      PushChange(hub, *st, block ? "block" : "unblock", jids);
      // Presence: the newly blocked see the user leave, the newly unblocked
      // see it come back.
      for (const auto& jid : block ? watchers_after : watchers_before) {
        const auto& other = block ? watchers_before : watchers_after;
        if (std::find(other.begin(), other.end(), jid) != other.end()) continue;
        if (block) {
          hub.SendUnavailableTo(*st, jid);
        } else {
          hub.SendAvailableTo(*st, jid);
        }
      }
    }
    --st->running;
    hub.MaybeEvict(*st);
  };
  auto executor = hub.loop(st->home).executor();
  if (block) {
    hub.store().Block(st->user, *jids, store::Reply<void>(executor, [done](const Result<void>& r) {
      if (!r.ok()) spdlog::warn("im: storing a block failed: {}", r.error().message);
      done(r.ok());
    }));
  } else {
    hub.store().Unblock(st->user, *jids, store::Reply<int64_t>(executor, [done](const Result<int64_t>& r) {
      if (!r.ok()) spdlog::warn("im: storing an unblock failed: {}", r.error().message);
      done(r.ok());
    }));
  }
}

}  // namespace

std::vector<std::string> BlockKeysFor(std::string_view jid) {
  std::vector<std::string> keys{std::string(jid)};
  JidView v = SplitJid(jid);
  if (!v.IsBare()) keys.emplace_back(v.Bare());
  if (!v.local.empty() && !v.resource.empty()) keys.push_back(std::string(v.domain) + "/" + std::string(v.resource));
  for (std::string_view d = v.domain; !d.empty();) {
    keys.emplace_back(d);
    size_t dot = d.find('.');
    if (dot == std::string_view::npos) break;
    d.remove_prefix(dot + 1);
  }
  return keys;
}

bool BlockList::Blocks(std::string_view jid) const {
  if (jids.empty()) return false;
  JidView v = SplitJid(jid);
  if (jids.count(jid) != 0) return true;  // as given: full, bare or domain
  if (!v.IsBare() && jids.count(v.Bare()) != 0) return true;
  if (!v.local.empty() && !v.resource.empty()) {
    std::string domain_resource(v.domain);
    domain_resource.push_back('/');
    domain_resource.append(v.resource);
    if (jids.count(domain_resource) != 0) return true;
  }
  // The domain and every parent domain.
  for (std::string_view d = v.domain; !d.empty();) {
    if (jids.count(d) != 0) return true;
    size_t dot = d.find('.');
    if (dot == std::string_view::npos) break;
    d.remove_prefix(dot + 1);
  }
  return false;
}

void HubImpl::PublishSettings(AccountState& st, const xmpp::SessionRef* only) {
  SessionSettings settings{st.blocked, st.archive_policy};
  for (const auto& res : st.resources) {
    if (only != nullptr && !(res.ref == *only)) continue;
    xmpp::SessionRef ref = res.ref;
    loop(ref.loop).Post([this, ref, settings] {
      if (settings.blocked || settings.archive) {
        shard(ref.loop).session_settings[ref.id] = settings;
      } else {
        shard(ref.loop).session_settings.erase(ref.id);
      }
    });
  }
}

void HubImpl::ForgetSettings(xmpp::SessionRef ref) {
  loop(ref.loop).Post([this, ref] { shard(ref.loop).session_settings.erase(ref.id); });
}

bool HubImpl::RefuseIfBlocked(xmpp::SessionRef ref, const xml::Element& stanza) {
  auto& settings = shard(ref.loop).session_settings;
  if (settings.empty()) return false;
  auto it = settings.find(ref.id);
  if (it == settings.end() || !it->second.blocked) return false;
  const std::string* to = stanza.FindAttr("to");
  if (to == nullptr || !it->second.blocked->Blocks(*to)) return false;
  std::string_view type = stanza.Attr("type");
  const bool answerable = stanza.name() == "iq" ? (type == "get" || type == "set") : type != "error";
  if (answerable) {
    xml::Element reply = xmpp::MakeErrorReply(stanza, "cancel", "not-acceptable");
    if (xml::Element* error = reply.Child("error")) error->AddChild("blocked", std::string(kBlockingErrors));
    port_->Deliver(ref, std::make_shared<const std::string>(reply.Serialize(xmpp::ns::kClient)), {});
  }
  return true;
}

void HubImpl::RegisterBlocking() {
  registry_.Add(IqHandler{std::string(kBlocking), false, kScopeSelf, "", {}, GetBlocklist});
  registry_.Add(IqHandler{std::string(kBlocking), true, kScopeSelf, "", {}, Change});
  // §3.1: advertised by the server.
  registry_.AddFeature(kScopeServer | kScopeSelf, std::string(kBlocking));
}

}  // namespace nines::im
