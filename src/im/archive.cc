// The message archive: XEP-0313 Message Archive Management (urn:xmpp:mam:2
// with #extended), XEP-0059 paging, XEP-0359 stanza-id and origin-id.
//
// Policy (src/im/README.md, "Archive"):
//  * Archived: 'chat' and 'normal' messages between local accounts that
//    carry something a person would miss (the rules of offline storage:
//    body, subject, receipts, markers, encrypted payloads; not chat states),
//    or an XEP-0334 <store/> hint; never with <no-store/> or
//    <no-permanent-store/>. Each message is kept in the sender's and the
//    recipient's archive under one id.
//  * A message is delivered only once its archive write is durable, so
//    whatever a device saw live is in the archive it catches up from (G2);
//    messages to one account are delivered in the order they arrived,
//    archived or not.
//  * The recipient's copy carries <stanza-id by='recipient bare JID'/>.
//    A client cannot forge one: stanza-ids from clients that claim one of
//    our JIDs are removed first (XEP-0359 §5).
//  * A retransmission (the sender's origin-id is already in its archive) is
//    dropped: the first copy was delivered.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <limits>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/jid/jid.h"
#include "xmpp/namespaces.h"

namespace nines::im {

namespace {

constexpr std::string_view kMam = "urn:xmpp:mam:2";
constexpr std::string_view kMamExtended = "urn:xmpp:mam:2#extended";
constexpr std::string_view kSid = "urn:xmpp:sid:0";
constexpr std::string_view kRsm = "http://jabber.org/protocol/rsm";
constexpr std::string_view kData = "jabber:x:data";
constexpr std::string_view kHintsNs = "urn:xmpp:hints";
constexpr std::string_view kChatStatesNs = "http://jabber.org/protocol/chatstates";

bool ParseId(std::string_view text, int64_t& id) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  return ec == std::errc() && end == text.data() + text.size() && id > 0;
}

// A MAM request parsed from its form and RSM set; `error` set if invalid.
struct MamRequest {
  store::ArchiveQuery query;
  std::vector<int64_t> anchors;  // ids that must exist (after/before, RSM or #extended)
  std::string error;             // stanza error condition
  std::string text;
};

MamRequest ParseMamQuery(const xml::Element& query, const Config& config) {
  MamRequest out;
  auto fail = [&](std::string condition, std::string text) {
    out.error = std::move(condition);
    out.text = std::move(text);
    return out;
  };
  auto& q = out.query;
  q.max = std::min<int64_t>(50, config.archive_max_page);
  std::optional<int64_t> start_ms, end_ms;
  if (query.HasAttr("node")) return fail("item-not-found", "a user archive has no nodes");
  if (const xml::Element* form = query.Child("x", kData)) {
    for (const xml::Element* field : form->Children()) {
      if (field->name() != "field") continue;
      std::string_view var = field->Attr("var");
      std::vector<std::string> values;
      for (const xml::Element* v : field->Children()) {
        if (v->name() == "value") values.push_back(v->Text());
      }
      std::string value = values.empty() ? std::string() : values.front();
      if (var == "FORM_TYPE") {
        if (value != kMam) return fail("bad-request", "FORM_TYPE must be urn:xmpp:mam:2");
      } else if (var == "with") {
        if (value.empty()) continue;
        auto jid = xmpp::Jid::Parse(value);
        if (!jid.ok()) return fail("bad-request", "'with' is not a valid JID");
        q.with = jid->BareString();
        q.with_resource = jid->resource();
      } else if (var == "start" || var == "end") {
        if (value.empty()) continue;
        int64_t ms = 0;
        if (!ParseTimestamp(value, ms)) {
          return fail("bad-request", "'" + std::string(var) + "' is not an XEP-0082 DateTime");
        }
        (var == "start" ? start_ms : end_ms) = ms;
      } else if (var == "after-id" || var == "before-id") {
        if (value.empty()) continue;
        int64_t id = 0;
        if (!ParseId(value, id)) return fail("item-not-found", "no message with id '" + value + "'");
        auto& bound = var == "after-id" ? q.after_id : q.before_id;
        bound = id;
        out.anchors.push_back(id);
      } else if (var == "ids") {
        for (const std::string& v : values) {
          int64_t id = 0;
          if (!ParseId(v, id)) return fail("item-not-found", "no message with id '" + v + "'");
          q.ids.push_back(id);
        }
        if (q.ids.size() > static_cast<size_t>(config.archive_max_page)) {
          return fail("policy-violation", "too many ids in one query");
        }
      } else {
        return fail("bad-request", "unknown field '" + std::string(var) + "'");
      }
    }
  }
  if (const xml::Element* set = query.Child("set", kRsm)) {
    if (set->Child("index", kRsm) != nullptr) {
      return fail("feature-not-implemented", "paging by index is not supported; use after/before");
    }
    if (const xml::Element* max = set->Child("max", kRsm)) {
      int64_t n = -1;
      std::string text = max->Text();
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec != std::errc() || end != text.data() + text.size() || n < 0) {
        return fail("bad-request", "<max/> must be a non-negative integer");
      }
      q.max = std::min<int64_t>(n, config.archive_max_page);
    }
    auto anchor = [&](const xml::Element* e, std::optional<int64_t>& bound, bool tighter_is_greater) {
      int64_t id = 0;
      if (!ParseId(e->Text(), id)) return false;
      bound = bound ? (tighter_is_greater ? std::max(*bound, id) : std::min(*bound, id)) : id;
      out.anchors.push_back(id);
      return true;
    };
    if (const xml::Element* after = set->Child("after", kRsm)) {
      if (!anchor(after, q.after_id, true)) return fail("item-not-found", "no message with that id");
    }
    if (const xml::Element* before = set->Child("before", kRsm)) {
      q.from_end = true;  // <before/> (empty) asks for the last page
      if (!before->Text().empty() && !anchor(before, q.before_id, false)) {
        return fail("item-not-found", "no message with that id");
      }
    }
  }
  if (start_ms && end_ms && *start_ms > *end_ms) return fail("bad-request", "'start' is after 'end'");
  // Archive ids are microseconds of storing (store.h, ArchivedMessage), so a
  // time window is an id range; both ends of XEP-0313's window are inclusive.
  if (start_ms) {
    int64_t after = *start_ms * 1000 - 1;
    q.after_id = q.after_id ? std::max(*q.after_id, after) : after;
  }
  if (end_ms) {
    int64_t before = (*end_ms + 1) * 1000;
    q.before_id = q.before_id ? std::min(*q.before_id, before) : before;
  }
  return out;
}

std::string ResultMessage(std::string_view to, std::string_view queryid, const store::ArchivedMessage& m) {
  std::string out;
  out.reserve(m.stanza.size() + 256);
  out.append("<message");
  AppendAttr(out, "to", to);
  out.append("><result xmlns='urn:xmpp:mam:2'");
  if (!queryid.empty()) AppendAttr(out, "queryid", queryid);
  AppendAttr(out, "id", std::to_string(m.id));
  out.append("><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay'");
  AppendAttr(out, "stamp", FormatTimestamp(m.stamp_ms));
  out.append("/>");
  out.append(WithNamespace(m.stanza, xmpp::ns::kClient));
  out.append("</forwarded></result></message>");
  return out;
}

std::string FinXml(const store::ArchivePage& page) {
  std::string out = "<fin xmlns='urn:xmpp:mam:2'";
  if (page.complete) out.append(" complete='true'");
  out.append("><set xmlns='http://jabber.org/protocol/rsm'>");
  // No <count/>: counting a large archive costs more than the page, and
  // XEP-0059 makes it optional. No index on <first/> for the same reason.
  if (!page.messages.empty()) {
    out.append("<first>" + std::to_string(page.messages.front().id) + "</first>");
    out.append("<last>" + std::to_string(page.messages.back().id) + "</last>");
  }
  out.append("</set></fin>");
  return out;
}

constexpr std::string_view kQueryForm =
    "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'>"
    "<field type='hidden' var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>"
    "<field type='jid-single' var='with'/>"
    "<field type='text-single' var='start'/>"
    "<field type='text-single' var='end'/>"
    "<field type='text-single' var='before-id'/>"
    "<field type='text-single' var='after-id'/>"
    "<field type='list-multi' var='ids'><validate xmlns='http://jabber.org/protocol/xdata-validate' "
    "datatype='xs:string'><open/></validate></field>"
    "</x></query>";

void RunQuery(HubImpl& hub, const IqCallPtr& call, const std::string& user, size_t home, MamRequest request) {
  std::string queryid(call->payload().Attr("queryid"));
  const bool from_end = request.query.from_end;
  // A page must fit the session's send queue, or a page of large messages
  // would cut the client off every time it asked (limits.send_queue). A
  // shorter page is allowed (XEP-0059): it ends early with complete unset.
  const size_t budget = static_cast<size_t>(hub.ConfigOn(home).limits.send_queue) / 4;
  hub.store().QueryArchive(
      user, request.query,
      store::Reply<store::ArchivePage>(hub.loop(home).executor(), [&hub, call, queryid, from_end,
                                                                   budget](Result<store::ArchivePage> page) {
        if (!page.ok()) {
          spdlog::warn("im: archive query for {} failed: {}", BareOf(call->from), page.error().message);
          hub.ReplyError(*call, "internal-server-error");
          return;
        }
        std::vector<std::string> results;
        results.reserve(page->messages.size());
        size_t bytes = 0;
        auto& messages = page->messages;
        // Keep the end the client pages from: the oldest going forward, the newest going back.
        for (size_t k = 0; k < messages.size(); ++k) {
          const auto& m = messages[from_end ? messages.size() - 1 - k : k];
          std::string xml = ResultMessage(call->from, queryid, m);
          if (!results.empty() && bytes + xml.size() > budget) {
            page->complete = false;
            break;
          }
          bytes += xml.size();
          results.push_back(std::move(xml));
        }
        if (results.size() < messages.size()) {
          if (from_end) {
            messages.erase(messages.begin(), messages.end() - static_cast<ptrdiff_t>(results.size()));
            std::reverse(results.begin(), results.end());
          } else {
            messages.resize(results.size());
          }
        } else if (from_end) {
          std::reverse(results.begin(), results.end());
        }
        // Results before the IQ result, on the same path, so they arrive first (XEP-0313 §4.2).
        for (auto& xml : results) hub.SendToSession(call->origin, std::move(xml));
        hub.ReplyResult(*call, FinXml(*page));
      }));
}

// XEP-0313 §6.1: <prefs default='...'><always><jid/>...</always><never>...</never></prefs>.
std::string PrefsXml(const AccountState& st) {
  store::ArchivePrefs defaults;
  const store::ArchivePrefs& p = st.archive_policy ? st.archive_policy->prefs : defaults;
  std::string out = "<prefs xmlns='urn:xmpp:mam:2'";
  AppendAttr(out, "default", p.default_mode);
  out.push_back('>');
  for (const auto& [name, list] : {std::pair{"always", &p.always}, std::pair{"never", &p.never}}) {
    out.append("<").append(name).append(">");
    for (const auto& jid : *list) {
      out.append("<jid>");
      xml::AppendEscapedText(out, jid);
      out.append("</jid>");
    }
    out.append("</").append(name).append(">");
  }
  out.append("</prefs>");
  return out;
}

void SetPrefs(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& payload = call->payload();
  store::ArchivePrefs prefs;
  prefs.default_mode = std::string(payload.Attr("default"));
  if (prefs.default_mode != "always" && prefs.default_mode != "never" && prefs.default_mode != "roster") {
    hub.ReplyError(*call, "bad-request", "'default' must be always, never or roster");
    return;
  }
  size_t count = 0;
  for (auto [name, list] : {std::pair{"always", &prefs.always}, std::pair{"never", &prefs.never}}) {
    const xml::Element* wrapper = payload.Child(name, kMam);
    if (wrapper == nullptr) continue;
    for (const xml::Element* child : wrapper->Children()) {
      if (child->name() != "jid") continue;
      auto jid = xmpp::Jid::Parse(child->Text());
      if (!jid.ok()) {
        hub.ReplyError(*call, "jid-malformed", "a <jid/> in the preferences is not a JID");
        return;
      }
      list->push_back(jid->BareString());
      ++count;
    }
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  for (const auto& jid : prefs.always) {
    if (std::binary_search(prefs.never.begin(), prefs.never.end(), jid)) {
      hub.ReplyError(*call, "bad-request", "a JID cannot be both always and never archived");
      return;
    }
  }
  if (static_cast<int64_t>(count) > hub.ConfigOn(st->home).limits.archive_pref_jids) {
    hub.ReplyError(*call, "not-acceptable", "more JIDs in the preferences than this server keeps");
    return;
  }
  ++st->busy;
  store::ArchivePrefs copy = prefs;
  hub.store().SetArchivePrefs(
      st->user, std::move(copy),
      store::Reply<void>(hub.loop(st->home).executor(), [&hub, call, home = st->home, bare = st->bare,
                                                         prefs = std::move(prefs)](const Result<void>& r) mutable {
        AccountState* st = hub.FindAccount(home, bare);
        if (st == nullptr) return;
        --st->busy;
        if (!r.ok()) {
          spdlog::warn("im: storing archive preferences for {} failed: {}", bare, r.error().message);
          hub.ReplyError(*call, "internal-server-error");
        } else {
          hub.SetArchivePolicy(*st, std::move(prefs));
          hub.ReplyResult(*call, PrefsXml(*st));  // §6.1: the preferences now in force
        }
        hub.MaybeEvict(*st);
      }));
}

void MamSet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& payload = call->payload();
  const Config& config = hub.ConfigOn(st->home);
  if (payload.name() == "prefs") {
    SetPrefs(hub, call, st);
    return;
  }
  if (payload.name() != "query") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  MamRequest request = ParseMamQuery(payload, config);
  if (!request.error.empty()) {
    hub.ReplyError(*call, request.error, request.text);
    return;
  }
  size_t home = st->home;
  std::string user = st->user;
  if (request.anchors.empty()) {
    RunQuery(hub, call, user, home, std::move(request));
    return;
  }
  // XEP-0313 §4.1.2 / XEP-0059: an id to page from that is not in the
  // archive is <item-not-found/>.
  store::ArchiveQuery exists;
  exists.ids = request.anchors;
  std::sort(exists.ids.begin(), exists.ids.end());
  exists.ids.erase(std::unique(exists.ids.begin(), exists.ids.end()), exists.ids.end());
  exists.max = static_cast<int64_t>(exists.ids.size());
  size_t wanted = exists.ids.size();
  hub.store().QueryArchive(
      user, std::move(exists),
      store::Reply<store::ArchivePage>(
          hub.loop(home).executor(), [&hub, call, user, home, wanted, request = std::move(request)](
                                         Result<store::ArchivePage> found) mutable {
            if (!found.ok()) {
              hub.ReplyError(*call, "internal-server-error");
              return;
            }
            if (found->messages.size() != wanted) {
              hub.ReplyError(*call, "item-not-found", "no message with that id in the archive");
              return;
            }
            RunQuery(hub, call, user, home, std::move(request));
          }));
}

void MamGet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& payload = call->payload();
  if (payload.name() == "query") {
    hub.ReplyResult(*call, kQueryForm);  // XEP-0313 §5.1: the fields a query may use
    return;
  }
  if (payload.name() == "prefs") {
    hub.ReplyResult(*call, PrefsXml(*st));
    return;
  }
  if (payload.name() != "metadata") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  // XEP-0313 §6: the first and last message of the archive.
  store::ArchiveQuery last;
  last.max = 1;
  last.from_end = true;
  size_t home = st->home;
  std::string user = st->user;
  hub.store().QueryArchive(
      user, last,
      store::Reply<store::ArchivePage>(
          hub.loop(home).executor(), [&hub, call, user, home](Result<store::ArchivePage> newest) {
            if (!newest.ok()) {
              hub.ReplyError(*call, "internal-server-error");
              return;
            }
            if (newest->messages.empty()) {
              hub.ReplyResult(*call, "<metadata xmlns='urn:xmpp:mam:2'/>");
              return;
            }
            store::ArchiveQuery first;
            first.max = 1;
            store::ArchivedMessage end = newest->messages.front();
            hub.store().QueryArchive(
                user, first,
                store::Reply<store::ArchivePage>(
                    hub.loop(home).executor(), [&hub, call, end](Result<store::ArchivePage> oldest) {
                      if (!oldest.ok() || oldest->messages.empty()) {
                        hub.ReplyError(*call, "internal-server-error");
                        return;
                      }
                      auto mark = [](std::string_view name, const store::ArchivedMessage& m) {
                        std::string out = "<";
                        out.append(name);
                        AppendAttr(out, "id", std::to_string(m.id));
                        AppendAttr(out, "timestamp", FormatTimestamp(m.stamp_ms));
                        out.append("/>");
                        return out;
                      };
                      hub.ReplyResult(*call, "<metadata xmlns='urn:xmpp:mam:2'>" +
                                                 mark("start", oldest->messages.front()) + mark("end", end) +
                                                 "</metadata>");
                    }));
          }));
}

}  // namespace

HubImpl::MessageTraits HubImpl::ClassifyMessage(const xml::Element& message) {
  MessageTraits t;
  for (const auto& node : message.nodes()) {
    if (!node.element) continue;
    const xml::Element& child = *node.element;
    const std::string& ns = child.ns();
    if (ns == kHintsNs) {
      if (child.name() == "no-store") t.no_store = true;
      if (child.name() == "no-permanent-store") t.no_permanent_store = true;
      if (child.name() == "store") t.store_hint = true;
      if (child.name() == "no-copy") t.no_copy = true;
    } else if (ns == xmpp::ns::kClient) {
      if (child.name() == "body") t.body = true;
      if (child.name() == "body" || child.name() == "subject") t.content = true;
    } else if (ns == kChatStatesNs) {
      t.im_payload = true;
    } else if (ns == "urn:xmpp:carbons:2") {
      if (child.name() == "private") t.carbons_private = true;
    } else if (ns != kSid) {
      t.content = true;  // receipts, markers, encrypted payloads, ...
      if (ns == "urn:xmpp:receipts" || ns == "urn:xmpp:chat-markers:0") t.im_payload = true;
    }
  }
  return t;
}

bool HubImpl::ArchiveEligible(const MessageTraits& t, MsgType type) {
  if (type != MsgType::kNormal && type != MsgType::kChat) return false;
  if (t.no_store || t.no_permanent_store) return false;
  return t.content || t.store_hint;
}

void HubImpl::SendToSession(xmpp::SessionRef ref, std::string xml) {
  port_->Deliver(ref, std::make_shared<const std::string>(std::move(xml)), {});
}

void HubImpl::ArchiveThenDeliver(AccountState& st, const RoutedPtr& r) {
  const Config& config = ConfigOn(st.home);
  if (st.Blocks(r->from)) {
    Bounce(*r, "service-unavailable");  // XEP-0191 §3.3; not archived, not delivered
    return;
  }
  // XEP-0313 preferences: the recipient's (here) and the local sender's
  // (decided on its session's loop, ClientMessage).
  const bool archived = st.Ready() && r->archive_ok && config.archive_enabled;
  JidView from = archived ? SplitJid(r->from) : JidView{};
  const bool from_local = archived && from.domain == config.domain && !from.local.empty();
  const bool to_self = from_local && from.Bare() == st.bare;
  const bool keep_out = from_local && r->archive_out;
  const bool keep_in =
      archived && !to_self && (st.archive_policy == nullptr || st.archive_policy->Archives(from.Bare()));
  if (!keep_out && !keep_in) {
    if (st.outbox.empty()) {
      if (st.Ready()) SentCarbons(r, 0, st.home);
      MessageToAccount(st, r, false, {}, 0);
    } else {
      st.outbox.push_back({r, true, true});  // behind messages still being archived
    }
    return;
  }
  st.outbox.push_back({r, false, true});
  ++st.busy;
  QueueArchiveCall({&st, r, keep_out, keep_in});
}

void HubImpl::QueueArchiveCall(ArchiveWait wait) {
  const AccountState& st = *wait.st;
  // The store assigns the id (ArchiveBatch: id 0): ids then follow commit
  // order, which a device paging from the last id it saw relies on.
  const Routed& r = *wait.r;
  JidView from = SplitJid(r.from);
  JidView to = SplitJid(r.to);
  std::array<store::ArchiveBatch::Entry, 2> entries;
  size_t n = 0;
  if (wait.keep_out) entries[n++] = {from.local, to.Bare(), to.resource, true, r.origin_id};
  if (wait.keep_in) entries[n++] = {st.user, from.Bare(), from.resource, false, {}};
  Shard& sh = shard(st.home);
  if (sh.archive_batch.empty()) {
    boost::asio::post(loop(st.home).executor(), [this, home = st.home] { FlushArchiveCalls(home); });
  }
  sh.archive_batch.Add(r.xml, std::span(entries.data(), n));
  sh.archive_waits.push_back(std::move(wait));
}

void HubImpl::FlushArchiveCalls(size_t home) {
  Shard& sh = shard(home);
  if (sh.archive_batch.empty()) return;
  store::ArchiveBatch batch = std::move(sh.archive_batch);
  std::vector<ArchiveWait> waits = std::move(sh.archive_waits);
  // The next pass's batch starts with room for one like this.
  sh.archive_batch = store::ArchiveBatch();
  sh.archive_batch.ReserveLike(batch);
  sh.archive_waits = std::vector<ArchiveWait>();
  sh.archive_waits.reserve(waits.size());
  store_->ArchiveMany(
      std::move(batch),
      store::Reply<std::vector<Result<store::ArchiveOutcome>>>(
          loop(home).executor(),
          [this, waits = std::move(waits)](Result<std::vector<Result<store::ArchiveOutcome>>> outcomes) {
            for (size_t i = 0; i < waits.size(); ++i) {
              if (!outcomes.ok()) {
                Archived(waits[i], outcomes.error());
              } else if (i >= outcomes->size()) {
                Archived(waits[i],
                         MakeError(Errc::kInternal, "the store returned fewer archive outcomes than calls"));
              } else {
                Archived(waits[i], std::move((*outcomes)[i]));
              }
            }
          }));
}

void HubImpl::Archived(const ArchiveWait& wait, Result<store::ArchiveOutcome> outcome) {
  AccountState* st = wait.st;
  const RoutedPtr& r = wait.r;
  const std::string& bare = st->bare;
  const size_t home = st->home;
  // kNotFound: an owner's account no longer exists. Deleted in-band, the
  // hub knows already (AccountRemoved); deleted by `nines user del` on the
  // running server, this is how it learns (AccountGoneFromStore).
  const bool owner_missing = !outcome.ok() && outcome.error().code == Errc::kNotFound;
  if (owner_missing && wait.keep_out && wait.keep_in) {
    // One of the two is gone, most likely the local sender (deleted just
    // after sending, from a loop whose store calls do not wait for this
    // one's): the message is still the recipient's, so it is archived for
    // the recipient alone. Its place in the outbox, and busy, stay as they are.
    ArchiveWait again = wait;
    again.keep_out = false;
    again.sender_missing = true;
    QueueArchiveCall(std::move(again));
    return;
  }
  // The sender is the one gone: its own call failed, or the retry without it worked.
  if ((owner_missing && wait.keep_out) || (outcome.ok() && wait.sender_missing)) {
    AccountGoneFromStore(std::string(SplitJid(r->from).Bare()));
  }
  if (owner_missing && wait.keep_out) {
    // Only the sender kept it, and the sender is gone: it is delivered as
    // it came, unarchived, rather than lost (the recipient's preferences
    // left it out of the recipient's archive).
    outcome = store::ArchiveOutcome{};
  }
  --st->busy;
  auto it = std::find_if(st->outbox.begin(), st->outbox.end(),
                         [&](const AccountState::Pending& p) { return !p.ready && p.routed == r; });
  if (it != st->outbox.end()) {
    it->ready = true;
    if (owner_missing && !wait.keep_out) {
      // The recipient is the one gone (a keep_in-only call): no such user
      // (RFC 6121 §8.5.1), and what the hub had of it goes.
      Bounce(*r, "service-unavailable");
      it->deliver = false;
      EndAccount(*st, std::nullopt);
    } else if (!outcome.ok()) {
      spdlog::warn("im: archiving a message for {} failed: {}", bare, outcome.error().message);
      Bounce(*r, "internal-server-error", "the message could not be stored");
      it->deliver = false;
    } else if (outcome->duplicate) {
      it->deliver = false;  // a retransmission: the first copy went out
    } else if (!wait.keep_in) {
      // Only the sender keeps it: delivered as it came, no stanza-id of ours.
      it->carbons_sent = true;
      SentCarbons(r, outcome->id, home);
    } else {
      // The sender's other devices get the text as it came (SentCarbons
      // adds the sender's own stanza-id), so they go first.
      it->carbons_sent = true;
      SentCarbons(r, outcome->id, home);
      if (r.use_count() == 2) {
        // Held only by `wait` and the outbox, both on this loop: no other
        // thread can be reading it (a holder elsewhere would count too; the
        // fence orders a holder's last release before these writes), so it
        // takes the stanza-id in place instead of being copied.
        std::atomic_thread_fence(std::memory_order_acquire);
        auto& archived = const_cast<Routed&>(*r);
        InsertStanzaId(archived.xml, bare, outcome->id);
        archived.archive_id = outcome->id;
        archived.done.reset();  // the sender hears it is done (durable)
      } else {
        // A copy of r with our stanza-id in its text (r's text is not copied twice).
        auto archived = std::make_shared<Routed>(*r, WithStanzaId(r->xml, bare, outcome->id));
        archived->done.reset();  // only the original counts for the sender
        archived->archive_id = outcome->id;
        it->routed = std::move(archived);
      }
    }
  }
  ++st->running;
  FlushOutbox(*st);
  --st->running;
  MaybeEvict(*st);
}

bool ArchivePolicy::Archives(std::string_view peer) const {
  if (std::binary_search(prefs.never.begin(), prefs.never.end(), peer, std::less<>())) return false;
  if (std::binary_search(prefs.always.begin(), prefs.always.end(), peer, std::less<>())) return true;
  if (prefs.default_mode == "never") return false;
  if (prefs.default_mode == "roster") return roster.count(peer) != 0;
  return true;
}

void HubImpl::SetArchivePolicy(AccountState& st, store::ArchivePrefs prefs) {
  const bool had = st.HasSessionSettings();
  if (prefs.default_mode == "always" && prefs.always.empty() && prefs.never.empty()) {
    st.archive_policy.reset();
  } else {
    auto policy = std::make_shared<ArchivePolicy>();
    policy->prefs = std::move(prefs);
    st.archive_policy = std::move(policy);
    if (st.archive_policy->prefs.default_mode == "roster") {
      RosterChangedForArchive(st);  // takes the snapshot and publishes
      return;
    }
  }
  if (had || st.HasSessionSettings()) PublishSettings(st);
}

void HubImpl::RosterChangedForArchive(AccountState& st, bool publish) {
  if (!st.archive_policy || st.archive_policy->prefs.default_mode != "roster") return;
  auto policy = std::make_shared<ArchivePolicy>();
  policy->prefs = st.archive_policy->prefs;
  for (const auto& [jid, item] : st.roster) {
    if (!IsHiddenItem(item)) policy->roster.insert(jid);
  }
  st.archive_policy = std::move(policy);
  if (publish) PublishSettings(st);
}

void HubImpl::FlushOutbox(AccountState& st) {
  // While the account reloads (after a failed roster write) delivery would
  // bounce messages that are already durable: wait for the load, which
  // flushes again when it finishes (FinishLoad).
  if (st.load == AccountState::Load::kNone || st.load == AccountState::Load::kLoading) {
    if (st.load == AccountState::Load::kNone && !st.outbox.empty()) StartLoadWhenQuiet(st);
    return;
  }
  // A restore is replaying the archive to a resource: what is newer waits
  // (restore.cc flushes when it is done).
  if (st.replaying > 0) return;
  while (!st.outbox.empty() && st.outbox.front().ready) {
    AccountState::Pending p = std::move(st.outbox.front());
    st.outbox.pop_front();
    if (!p.deliver) continue;
    if (!p.carbons_sent && st.Ready()) SentCarbons(p.routed, 0, st.home);
    MessageToAccount(st, p.routed, false, {}, 0);
  }
}

void HubImpl::ApplyRetention(AccountState& st) {
  const Config& config = ConfigOn(st.home);
  if (config.archive_retention_days <= 0 && config.archive_retention_count <= 0) return;
  int64_t before = 0;  // an archive id: microseconds (store.h, ArchivedMessage)
  if (config.archive_retention_days > 0)
    before = (NowUnixMs() - config.archive_retention_days * 86'400'000) * 1000;
  int64_t keep = config.archive_retention_count > 0 ? config.archive_retention_count : -1;
  ++st.busy;
  store_->PruneArchive(st.user, before, keep,
                       store::Reply<int64_t>(loop(st.home).executor(),
                                             [this, home = st.home, bare = st.bare](Result<int64_t> deleted) {
                                               if (!deleted.ok()) {
                                                 spdlog::warn("im: archive retention for {} failed: {}", bare,
                                                              deleted.error().message);
                                               }
                                               AccountState* st = FindAccount(home, bare);
                                               if (st == nullptr) return;
                                               --st->busy;
                                               MaybeEvict(*st);
                                             }));
}

void HubImpl::RegisterArchive() {
  // Queries keep working with archive.enabled = false: what was kept can
  // still be read.
  registry_.Add({std::string(kMam), true, kScopeSelf, std::string(kMam), {}, MamSet});
  registry_.Add({std::string(kMam), false, kScopeSelf, std::string(kMamExtended), {}, MamGet});
  registry_.AddFeature(kScopeSelf, std::string(kSid));
}

}  // namespace nines::im
