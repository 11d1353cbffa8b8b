// XEP-0402 PEP native bookmarks with #compat: XEP-0048 bookmarks stored
// through XEP-0049 private storage are a view of the urn:xmpp:bookmarks:1
// node, so a client of either kind sees what the other saved.
//
//   The node holds the bookmarks: one item per room, its id the room's JID,
//   its payload <conference xmlns='urn:xmpp:bookmarks:1'/>.
//   A private-storage get of <storage xmlns='storage:bookmarks'/> is built
//   from the node's items (plus what the stored legacy copy has that XEP-0402
//   cannot hold, such as <url/> bookmarks). Without a node it is the stored
//   copy, as before.
//   A private-storage set replaces the node's items with the conferences it
//   lists (new and changed ones are notified, missing ones retracted), then
//   the legacy copy is stored as well. A conference it says the same of as
//   the node (name, autojoin, nick, password) leaves the item untouched, so
//   a legacy client saving its list back announces nothing and loses none
//   of the <extensions/> an XEP-0402 client put there.
//   The first publish to the node, if the account has legacy bookmarks and
//   no node yet, starts the node with them, so nothing saved the old way is
//   hidden by the new.
// The node is created with the options XEP-0402 §3 asks for: whitelist
// access, items persisted, as many as the server keeps, never sent on
// presence.

#include <spdlog/spdlog.h>

#include <map>
#include <memory>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/jid/jid.h"

namespace nines::im {

namespace {

constexpr std::string_view kBookmarks = "urn:xmpp:bookmarks:1";
constexpr std::string_view kLegacy = "storage:bookmarks";
constexpr std::string_view kLegacyKey = "storage:bookmarks storage";  // private_storage.cc's KeyOf

bool IsTrue(std::string_view v) { return v == "true" || v == "1"; }

store::PepNode BookmarksNode(const AccountState& st, const Config& config) {
  store::PepNode node;
  node.username = st.user;
  node.node = std::string(kBookmarks);
  node.access_model = "whitelist";
  node.max_items = config.limits.pep_items;
  node.send_last = "never";
  return node;
}

// The XEP-0402 items for the conferences of a legacy <storage/>; rooms that
// are not valid JIDs are left out (they could not be joined either).
std::vector<store::PepItem> ItemsOf(const xml::Element& storage, const std::string& publisher) {
  std::map<std::string, store::PepItem> by_room;  // a room listed twice keeps its last entry
  for (const xml::Element* conference : storage.Children()) {
    if (conference->name() != "conference" || conference->ns() != kLegacy) continue;
    auto room = xmpp::Jid::Parse(conference->Attr("jid"));
    if (!room.ok()) continue;
    store::PepItem item;
    item.id = room->BareString();
    item.publisher = publisher;
    item.xml = "<conference xmlns='urn:xmpp:bookmarks:1'";
    if (conference->HasAttr("name")) AppendAttr(item.xml, "name", conference->Attr("name"));
    if (IsTrue(conference->Attr("autojoin"))) item.xml.append(" autojoin='true'");
    std::string inner;
    for (std::string_view child : {"nick", "password"}) {
      if (const xml::Element* e = conference->Child(child, kLegacy)) {
        inner.append("<").append(child).append(">");
        xml::AppendEscapedText(inner, e->Text());
        inner.append("</").append(child).append(">");
      }
    }
    if (inner.empty()) {
      item.xml.append("/>");
    } else {
      item.xml.append(">").append(inner).append("</conference>");
    }
    by_room[item.id] = std::move(item);
  }
  std::vector<store::PepItem> items;
  for (auto& [room, item] : by_room) items.push_back(std::move(item));
  return items;
}

// A legacy <conference/> for one XEP-0402 item.
std::string ConferenceOf(const store::PepItem& item) {
  std::string out = "<conference";
  AppendAttr(out, "jid", item.id);
  std::optional<xml::Element> payload = ParseElement(item.xml);
  if (!payload || payload->name() != "conference" || payload->ns() != kBookmarks) return out + "/>";
  if (payload->HasAttr("name")) AppendAttr(out, "name", payload->Attr("name"));
  if (IsTrue(payload->Attr("autojoin"))) out.append(" autojoin='true'");
  std::string inner;
  for (std::string_view child : {"nick", "password"}) {
    if (const xml::Element* e = payload->Child(child, kBookmarks)) {
      inner.append("<").append(child).append(">");
      xml::AppendEscapedText(inner, e->Text());
      inner.append("</").append(child).append(">");
    }
  }
  if (inner.empty()) return out + "/>";
  return out + ">" + inner + "</conference>";
}

// What a legacy client can say about a bookmark, for comparing: name,
// autojoin, nick and password.
std::string MeaningOf(const xml::Element& conference) {
  return std::string(conference.Attr("name")) + '\n' + (IsTrue(conference.Attr("autojoin")) ? "1" : "0") + '\n' +
         conference.ChildText("nick", kBookmarks) + '\n' + conference.ChildText("password", kBookmarks);
}

// §5.3.2: a legacy set that says the same about a bookmark as the node
// leaves the node's item as it is (no notification, and what XEP-0048
// cannot express, such as <extensions/>, is kept); a changed bookmark keeps
// the stored item's <extensions/>.
std::string MergeBookmark(const std::string& stored, const std::string& given) {
  std::optional<xml::Element> old = ParseElement(stored);
  std::optional<xml::Element> now = ParseElement(given);
  if (!old || !now) return given;
  if (MeaningOf(*old) == MeaningOf(*now)) return stored;
  const xml::Element* extensions = old->Child("extensions", kBookmarks);
  if (extensions == nullptr) return given;
  now->AddChild(extensions->Clone());
  return now->Serialize();
}

}  // namespace

bool HubImpl::IsLegacyBookmarks(std::string_view key) { return key == kLegacyKey; }

void HubImpl::LegacyBookmarksGet(const IqCallPtr& call, AccountState& st, std::string empty) {
  WithPep(st, [this, call, empty = std::move(empty)](AccountState& st, bool ok) {
    if (!ok) {
      ReplyError(*call, "internal-server-error");
      return;
    }
    // The stored legacy copy: the answer without a node, and the source of
    // what XEP-0402 has no place for with one.
    const bool node = st.pep_nodes.count(kBookmarks) != 0;
    ++st.busy;
    store_->GetPrivate(
        st.user, std::string(kLegacyKey),
        store::Reply<std::string>(loop(st.home).executor(), [this, call, empty, node, home = st.home, bare = st.bare](
                                                                 Result<std::string> legacy) {
          AccountState* st = FindAccount(home, bare);
          if (st == nullptr) return;
          if (!legacy.ok() && legacy.error().code != Errc::kNotFound) {
            ReplyError(*call, "internal-server-error");
            Release(home, bare);
            return;
          }
          if (!node) {
            ReplyResult(*call, "<query xmlns='jabber:iq:private'>" + (legacy.ok() ? *legacy : empty) + "</query>");
            Release(home, bare);
            return;
          }
          std::string others;  // legacy children that are not conferences (<url/>)
          if (legacy.ok()) {
            if (std::optional<xml::Element> storage = ParseElement(*legacy)) {
              for (const xml::Element* child : storage->Children()) {
                if (child->name() != "conference") others.append(child->Serialize(kLegacy));
              }
            }
          }
          store_->GetPepItems(
              st->user, std::string(kBookmarks), {}, -1,
              store::Reply<std::vector<store::PepItem>>(
                  loop(home).executor(), [this, call, others, home, bare](Result<std::vector<store::PepItem>> items) {
                    if (!items.ok() && items.error().code != Errc::kNotFound) {
                      ReplyError(*call, "internal-server-error");
                    } else {
                      std::string inner = "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>";
                      if (items.ok()) {
                        for (auto i = items->rbegin(); i != items->rend(); ++i) inner.append(ConferenceOf(*i));
                      }
                      inner.append(others).append("</storage></query>");
                      ReplyResult(*call, inner);
                    }
                    Release(home, bare);
                  }));
        }));
  });
}

void HubImpl::LegacyBookmarksSet(const IqCallPtr& call, AccountState& st, std::string xml,
                                 UniqueFunction<void(bool)> done) {
  std::optional<xml::Element> storage = ParseElement(xml);
  if (!storage) {
    done(false);
    return;
  }
  std::vector<store::PepItem> items = ItemsOf(*storage, st.bare);
  if (static_cast<int64_t>(items.size()) > ConfigOn(st.home).limits.pep_items) {
    ReplyError(*call, "not-acceptable", "more bookmarks than this server keeps");
    return;
  }
  WithPep(st, [this, items = std::move(items), done = std::move(done)](AccountState& st, bool ok) mutable {
    if (!ok) {
      done(false);
      return;
    }
    auto it = st.pep_nodes.find(kBookmarks);
    store::PepNode node = it != st.pep_nodes.end() ? it->second : BookmarksNode(st, ConfigOn(st.home));
    PepReplaceItems(
        st, std::move(node), std::move(items),
        [done = std::move(done)](AccountState&, const Result<void>& r) mutable { done(r.ok()); }, MergeBookmark);
  });
}

void HubImpl::BeforeFirstBookmark(AccountState& st, const std::string& node, UniqueFunction<void(AccountState&)> then) {
  if (node != kBookmarks || st.pep_nodes.count(node) != 0) {
    then(st);
    return;
  }
  ++st.busy;
  auto fn = std::make_shared<UniqueFunction<void(AccountState&)>>(std::move(then));
  store_->GetPrivate(
      st.user, std::string(kLegacyKey),
      store::Reply<std::string>(loop(st.home).executor(), [this, home = st.home, bare = st.bare,
                                                           fn](Result<std::string> legacy) mutable {
        AccountState* st = FindAccount(home, bare);
        if (st == nullptr) return;
        --st->busy;
        ++st->running;
        std::vector<store::PepItem> items;
        if (legacy.ok()) {
          if (std::optional<xml::Element> storage = ParseElement(*legacy)) items = ItemsOf(*storage, st->bare);
        }
        if (items.empty() || st->pep_nodes.count(kBookmarks) != 0) {
          (*fn)(*st);
        } else {
          spdlog::info("im: {} moves to XEP-0402: {} legacy bookmarks go into the node first", bare, items.size());
          PepReplaceItems(*st, BookmarksNode(*st, ConfigOn(home)), std::move(items),
                          [fn](AccountState& st, const Result<void>&) { (*fn)(st); });
        }
        --st->running;
        MaybeEvict(*st);
      }));
}

void HubImpl::RegisterBookmarks() {
  // §5: XEP-0048 through private storage is kept in step with the node.
  registry_.AddFeature(kScopeSelf, std::string(kBookmarks) + "#compat");
}

}  // namespace nines::im
