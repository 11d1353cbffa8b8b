// XEP-0049 private XML storage: a client keeps small XML documents on the
// server, one per (element name, namespace), readable only by the account
// itself. Clients still use it for settings and for XEP-0048 bookmarks.
//
//   get  <query xmlns='jabber:iq:private'><name xmlns='ns'/></query>: what
//        is stored for that element and namespace, or the empty element as
//        sent if nothing is (XEP-0049 §2.2).
//   set  one or more elements, each replacing what was stored for it. They
//        are written one after another; the result goes out after the last,
//        and a failure stops there (those before it are kept).
// Errors: another account's data <forbidden/>; no element, or more than one
// in a get, <bad-request/>; an element without a namespace or in jabber:client,
// jabber:server or jabber:iq:private <not-acceptable/> (§3); larger than
// limits.private_item_size <not-acceptable/>; one more than
// limits.private_items <resource-constraint/>.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "im/hub_impl.h"

namespace nines::im {

namespace {

constexpr std::string_view kPrivate = "jabber:iq:private";

std::string KeyOf(const xml::Element& e) { return std::string(e.ns()) + " " + e.name(); }

// The condition to refuse `e` with, or "".
std::string_view Refusal(const xml::Element& e) {
  std::string_view ns = e.ns();
  if (ns.empty() || ns == "jabber:client" || ns == "jabber:server" || ns == kPrivate) return "not-acceptable";
  return {};
}

void Get(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& query = call->payload();
  std::vector<const xml::Element*> children = query.Children();
  if (query.name() != "query" || children.size() != 1) {
    hub.ReplyError(*call, "bad-request", "ask for exactly one element");
    return;
  }
  const xml::Element& wanted = *children.front();
  if (std::string_view why = Refusal(wanted); !why.empty()) {
    hub.ReplyError(*call, why, "that namespace cannot be stored");
    return;
  }
  if (HubImpl::IsLegacyBookmarks(KeyOf(wanted))) {
    hub.LegacyBookmarksGet(call, *st, wanted.Serialize());  // XEP-0402 §5: a view of the PEP node
    return;
  }
  std::string empty = "<query xmlns='jabber:iq:private'>" + wanted.Serialize() + "</query>";
  hub.store().GetPrivate(
      st->user, KeyOf(wanted),
      store::Reply<std::string>(hub.loop(st->home).executor(), [&hub, call, empty](Result<std::string> xml) {
        if (xml.ok()) {
          hub.ReplyResult(*call, "<query xmlns='jabber:iq:private'>" + *xml + "</query>");
        } else if (xml.error().code == Errc::kNotFound) {
          hub.ReplyResult(*call, empty);
        } else {
          hub.ReplyError(*call, "internal-server-error");
        }
      }));
}

struct Writes {
  std::vector<std::pair<std::string, std::string>> items;  // key, xml
  size_t next = 0;
};

void WriteNext(HubImpl& hub, const IqCallPtr& call, size_t home, std::string user, std::shared_ptr<Writes> w) {
  if (w->next == w->items.size()) {
    hub.ReplyResult(*call);
    return;
  }
  auto& [key, xml] = w->items[w->next++];
  const int64_t max_items = hub.ConfigOn(home).limits.private_items;
  hub.store().SetPrivate(user, key, xml, max_items,
                         store::Reply<void>(hub.loop(home).executor(), [&hub, call, home, user, w](const Result<void>& r) {
                           if (r.ok()) {
                             WriteNext(hub, call, home, user, w);
                           } else if (r.error().code == Errc::kLimitExceeded) {
                             hub.ReplyError(*call, "resource-constraint",
                                            "this account keeps as many private elements as allowed");
                           } else {
                             spdlog::warn("im: private storage write for {} failed: {}", user, r.error().message);
                             hub.ReplyError(*call, "internal-server-error");
                           }
                         }));
}

void Set(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& query = call->payload();
  std::vector<const xml::Element*> children = query.Children();
  if (query.name() != "query" || children.empty()) {
    hub.ReplyError(*call, "bad-request", "nothing to store");
    return;
  }
  const int64_t max_size = hub.ConfigOn(st->home).limits.private_item_size;
  auto writes = std::make_shared<Writes>();
  for (const xml::Element* child : children) {
    if (std::string_view why = Refusal(*child); !why.empty()) {
      hub.ReplyError(*call, why, "that namespace cannot be stored");
      return;
    }
    std::string xml = child->Serialize();  // with its xmlns, ready to splice into a result
    if (static_cast<int64_t>(xml.size()) > max_size) {
      hub.ReplyError(*call, "not-acceptable", "the element is larger than this server keeps");
      return;
    }
    writes->items.emplace_back(KeyOf(*child), std::move(xml));
  }
  // XEP-0402 §5: legacy bookmarks go into the PEP node first (the stored
  // copy keeps what the node cannot hold).
  auto legacy = std::find_if(writes->items.begin(), writes->items.end(),
                             [](const auto& item) { return HubImpl::IsLegacyBookmarks(item.first); });
  if (legacy != writes->items.end()) {
    hub.LegacyBookmarksSet(call, *st, legacy->second,
                           [&hub, call, home = st->home, user = st->user, writes](bool ok) mutable {
                             if (!ok) {
                               hub.ReplyError(*call, "internal-server-error");
                               return;
                             }
                             WriteNext(hub, call, home, std::move(user), std::move(writes));
                           });
    return;
  }
  WriteNext(hub, call, st->home, st->user, std::move(writes));
}

void Forbidden(HubImpl& hub, const IqCallPtr& call, AccountState*) {
  hub.ReplyError(*call, "forbidden", "private data is readable only by its owner");
}

}  // namespace

void HubImpl::RegisterPrivateStorage() {
  registry_.Add(IqHandler{std::string(kPrivate), false, kScopeSelf, "", {}, Get});
  registry_.Add(IqHandler{std::string(kPrivate), true, kScopeSelf, "", {}, Set});
  registry_.Add(IqHandler{std::string(kPrivate), false, kScopeAccount, "", {}, Forbidden});
  registry_.Add(IqHandler{std::string(kPrivate), true, kScopeAccount, "", {}, Forbidden});
}

}  // namespace nines::im
