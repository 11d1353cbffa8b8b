// XEP-0357 push notifications.
//
// A phone cannot hold a connection open while it sleeps. Its client
// registers an app server (an XMPP service, here always an external
// component: XEP-0114) and a node there with <enable/>; the registration is
// written to the store before the client hears "result", so it survives a
// restart. From then on, whenever a message arrives that the device cannot
// take itself, the server publishes a notification to that node, and the app
// server wakes the phone through its vendor's push service; the phone then
// reconnects (or resumes) and fetches the message.
//
// When a device "cannot take it itself" (MaybePush, on the recipient's home):
//   * offline: no resource of the account could take the message and it
//     went to offline storage: every registration is notified;
//   * not connected: the resource that enabled the registration is not
//     bound, and the message was archived (the device will find it with
//     MAM), even if another device of the account got it;
//   * asleep: that resource is bound but detached (XEP-0198, waiting to be
//     resumed) or inactive (XEP-0352), and the message went to it (directly,
//     to the bare JID, or as a carbon).
// Only messages offline storage would keep count (a body, an encrypted
// payload, a receipt...; not chat states or groupchat). The summary form
// (urn:xmpp:push:summary) carries message-count: the messages in offline
// storage, or for a device that is asleep or not connected while another is,
// the notifications since it was last awake; last-message-sender and last-message-body only if
// push.include_sender / push.include_body say so, because notifications pass
// through the app server and the phone vendor.
//
// An app server that answers a notification with an error of type 'cancel'
// or 'auth' (the node is gone, the registration was revoked) loses its
// registration (XEP-0357 §8: the server may remove it); 'wait' and 'modify'
// keep it. The notification's id carries the node, so the answer can be
// matched even after the account's state left memory.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xml/stream_parser.h"
#include "xmpp/base64.h"
#include "xmpp/jid/jid.h"
#include "xmpp/namespaces.h"

namespace nines::im {

namespace {

constexpr std::string_view kPush = "urn:xmpp:push:0";
constexpr std::string_view kData = "jabber:x:data";
constexpr std::string_view kIdPrefix = "xep0357-";  // "push-" is taken by roster pushes
constexpr size_t kMaxNode = 1024;
constexpr size_t kMaxOptions = 4096;
constexpr size_t kMaxWaiting = 256;  // messages waiting for the registrations to load

// The text of the root's <body/> in a serialised jabber:client message.
std::string BodyOf(std::string_view stanza) {
  std::optional<xml::Element> message = ParseElement(stanza);
  if (!message) return {};
  if (const xml::Element* body = message->Child("body", xmpp::ns::kClient)) return body->Text();
  return {};
}

void AppendField(std::string& out, std::string_view var, std::string_view value) {
  out.append("<field");
  AppendAttr(out, "var", var);
  out.append("><value>");
  xml::AppendEscapedText(out, value);
  out.append("</value></field>");
}

// The app server's JID of an <enable/> or <disable/>, normalised; empty if
// missing or malformed.
std::string ServiceJid(const xml::Element& payload) {
  auto jid = xmpp::Jid::Parse(payload.Attr("jid"));
  return jid.ok() ? jid->Full() : std::string();
}

void Enable(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& enable = call->payload();
  if (enable.name() != "enable") {
    hub.ReplyError(*call, "bad-request", "expected <enable/> or <disable/>");
    return;
  }
  const Config& config = hub.ConfigOn(st->home);
  store::PushRegistration reg;
  reg.username = st->user;
  reg.jid = ServiceJid(enable);
  reg.node = std::string(enable.Attr("node"));
  if (reg.jid.empty() || reg.node.empty()) {
    hub.ReplyError(*call, "bad-request", "<enable/> needs the app server's 'jid' and a 'node'");
    return;
  }
  if (reg.node.size() > kMaxNode) {
    hub.ReplyError(*call, "not-acceptable", "the node is longer than this server accepts");
    return;
  }
  // Notifications go out through a connected external component only (no
  // server-to-server): refuse an app server this server could never reach.
  if (config.ComponentSecret(SplitJid(reg.jid).domain).empty()) {
    hub.ReplyError(*call, "remote-server-not-found", "this server cannot reach that app server");
    return;
  }
  if (const xml::Element* form = enable.Child("x", kData)) {
    reg.options = form->Serialize();
    if (reg.options.size() > kMaxOptions) {
      hub.ReplyError(*call, "not-acceptable", "the publish-options form is larger than this server accepts");
      return;
    }
  }
  reg.resource = std::string(SplitJid(call->from).resource);
  reg.created_ms = NowUnixMs();
  hub.WithPushes(*st, [&hub, call, reg = std::move(reg)](AccountState& st, bool ok) mutable {
    if (!ok) {
      hub.ReplyError(*call, "internal-server-error");
      return;
    }
    const bool replaces = std::any_of(st.pushes.begin(), st.pushes.end(), [&](const auto& p) {
      return p.reg.jid == reg.jid && p.reg.node == reg.node;
    });
    if (!replaces && static_cast<int64_t>(st.pushes.size()) >= hub.ConfigOn(st.home).push_max_registrations) {
      hub.ReplyError(*call, "resource-constraint", "this account holds as many push registrations as allowed");
      return;
    }
    ++st.busy;
    store::PushRegistration copy = reg;
    hub.store().PutPushRegistration(
        std::move(copy),
        store::Reply<void>(hub.loop(st.home).executor(), [&hub, call, home = st.home, bare = st.bare,
                                                          reg = std::move(reg)](const Result<void>& r) mutable {
          AccountState* st = hub.FindAccount(home, bare);
          if (!r.ok()) {
            spdlog::warn("im: storing a push registration for {} failed: {}", bare, r.error().message);
            hub.ReplyError(*call, "internal-server-error");
          } else {
            if (st != nullptr && st->push_load == AccountState::PushLoad::kLoaded) {
              auto it = std::find_if(st->pushes.begin(), st->pushes.end(), [&](const auto& p) {
                return p.reg.jid == reg.jid && p.reg.node == reg.node;
              });
              if (it == st->pushes.end()) {
                st->pushes.push_back({std::move(reg), 0});
              } else {
                it->reg = std::move(reg);
              }
            }
            hub.ReplyResult(*call);
          }
          if (st != nullptr) {
            --st->busy;
            hub.MaybeEvict(*st);
          }
        }));
  });
}

void Disable(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& disable = call->payload();
  if (disable.name() != "disable") {
    hub.ReplyError(*call, "bad-request", "expected <enable/> or <disable/>");
    return;
  }
  std::string jid = ServiceJid(disable);
  if (jid.empty()) {
    hub.ReplyError(*call, "bad-request", "<disable/> needs the app server's 'jid'");
    return;
  }
  std::string node(disable.Attr("node"));  // none: every node at that app server
  // After any load in flight, as Enable: a load that read the store before
  // the delete would otherwise bring the removed registration back.
  hub.WithPushes(*st, [&hub, call, jid = std::move(jid), node = std::move(node)](AccountState& st, bool) {
    ++st.busy;
    hub.store().DeletePushRegistrations(
        st.user, jid, node,
        store::Reply<int64_t>(hub.loop(st.home).executor(), [&hub, call, home = st.home, bare = st.bare, jid,
                                                             node](const Result<int64_t>& r) {
          AccountState* st = hub.FindAccount(home, bare);
          if (!r.ok()) {
            spdlog::warn("im: removing push registrations of {} failed: {}", bare, r.error().message);
            hub.ReplyError(*call, "internal-server-error");
          } else {
            if (st != nullptr) {
              std::erase_if(st->pushes, [&](const auto& p) {
                return p.reg.jid == jid && (node.empty() || p.reg.node == node);
              });
            }
            hub.ReplyResult(*call);  // also when nothing matched (XEP-0357 §6: nothing to say)
          }
          if (st != nullptr) {
            --st->busy;
            hub.MaybeEvict(*st);
          }
        }));
  });
}

void EnableOrDisable(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (call->payload().name() == "disable") {
    Disable(hub, call, st);
  } else {
    Enable(hub, call, st);
  }
}

}  // namespace

void HubImpl::WithPushes(AccountState& st, PushOp op) {
  if (st.push_load == AccountState::PushLoad::kLoaded) {
    op(st, true);
    return;
  }
  st.push_waiting.push_back(std::move(op));
  if (st.push_load == AccountState::PushLoad::kLoading) return;
  st.push_load = AccountState::PushLoad::kLoading;
  ++st.busy;
  store_->ListPushRegistrations(
      st.user, store::Reply<std::vector<store::PushRegistration>>(
                   loop(st.home).executor(), [this, home = st.home, bare = st.bare](
                                                 Result<std::vector<store::PushRegistration>> regs) {
                     AccountState* st = FindAccount(home, bare);
                     if (st == nullptr) return;
                     --st->busy;
                     ++st->running;
                     const bool ok = regs.ok();
                     if (ok) {
                       st->pushes.clear();
                       for (auto& reg : *regs) st->pushes.push_back({std::move(reg), 0});
                       st->push_load = AccountState::PushLoad::kLoaded;
                     } else {
                       spdlog::warn("im: loading push registrations of {} failed: {}", bare,
                                    regs.error().message);
                       st->push_load = AccountState::PushLoad::kNone;  // the next need retries
                     }
                     auto waiting = std::move(st->push_waiting);
                     st->push_waiting.clear();
                     for (auto& op : waiting) op(*st, ok);
                     --st->running;
                     MaybeEvict(*st);
                   }));
}

void HubImpl::PushSeen(AccountState& st, std::string_view name) {
  for (auto& p : st.pushes) {
    if (p.reg.resource == name) p.pending = 0;
  }
}

void HubImpl::MaybePush(AccountState& st, const RoutedPtr& r, std::span<const xmpp::SessionRef> delivered_now,
                        bool offline) {
  if (!r->offline_ok || !st.Ready()) return;  // nothing a person would be woken for
  const Config& config = ConfigOn(st.home);
  if (!config.push_enabled) return;
  if (st.push_load == AccountState::PushLoad::kLoaded && st.pushes.empty()) return;  // the common case
  if (st.push_load != AccountState::PushLoad::kLoaded && st.push_waiting.size() >= kMaxWaiting) return;
  std::vector<xmpp::SessionRef> delivered(delivered_now.begin(), delivered_now.end());
  WithPushes(st, [this, r, delivered = std::move(delivered), offline](AccountState& st, bool ok) {
    if (!ok) return;
    const Config& config = ConfigOn(st.home);
    std::string body;  // read once, if wanted
    bool body_read = false;
    for (auto& p : st.pushes) {
      bool notify = offline;
      if (!notify) {
        const Resource* res = st.FindByName(p.reg.resource);
        if (res == nullptr) {
          notify = r->archive_id != 0;  // there for the device to fetch
        } else if (res->asleep) {
          notify = std::find(delivered.begin(), delivered.end(), res->ref) != delivered.end() ||
                   (res->carbons && res->available && r->carbons_ok);
        }
      }
      if (!notify) continue;
      // Offline, the count is what offline storage holds (it outlives this
      // state, which goes when no device is bound).
      p.pending = offline ? std::max(p.pending + 1, st.offline_count) : p.pending + 1;
      std::string id(kIdPrefix);
      id += std::to_string(p.pending);
      id.push_back('-');
      id += xmpp::HexEncode(p.reg.node);
      std::string out;
      out.reserve(512 + p.reg.options.size());
      out.append("<iq type='set'");
      AppendAttr(out, "from", st.bare);
      AppendAttr(out, "to", p.reg.jid);
      AppendAttr(out, "id", id);
      out.append("><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish");
      AppendAttr(out, "node", p.reg.node);
      out.append("><item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='submit'>");
      AppendField(out, "FORM_TYPE", "urn:xmpp:push:summary");
      AppendField(out, "message-count", std::to_string(p.pending));
      if (config.push_include_sender) AppendField(out, "last-message-sender", BareOf(r->from));
      if (config.push_include_body) {
        if (!body_read) {
          body = BodyOf(r->xml);
          body_read = true;
        }
        if (!body.empty()) AppendField(out, "last-message-body", body);
      }
      out.append("</x></notification></item></publish>");
      if (!p.reg.options.empty()) {
        out.append("<publish-options>");
        out.append(p.reg.options);
        out.append("</publish-options>");
      }
      out.append("</pubsub></iq>");
      spdlog::debug("im: push notification {} for {} to {}", p.pending, st.bare, p.reg.jid);
      Route(MakeServerStanza(Kind::kIq, static_cast<uint8_t>(IqType::kSet), st.bare, p.reg.jid, std::move(out)),
            st.home);
    }
  });
}

bool HubImpl::HandlePushReply(const xml::Element& iq, const Config& config) {
  std::string_view id = iq.Attr("id");
  std::string_view type = iq.Attr("type");
  if (id.substr(0, kIdPrefix.size()) != kIdPrefix || (type != "result" && type != "error")) return false;
  JidView to = SplitJid(iq.Attr("to"));
  if (to.domain != config.domain || to.local.empty() || !to.IsBare()) return false;
  if (type == "result") return true;
  const xml::Element* error = iq.Child("error");
  std::string_view error_type = error != nullptr ? error->Attr("type") : std::string_view();
  if (error_type != "cancel" && error_type != "auth") return true;  // try again next time
  std::string_view rest = id.substr(kIdPrefix.size());
  size_t dash = rest.find('-');
  if (dash == std::string_view::npos) return true;
  std::optional<std::string> decoded = xmpp::HexDecode(rest.substr(dash + 1));
  if (!decoded || decoded->empty()) return true;
  std::string node = std::move(*decoded);
  std::string service(iq.Attr("from"));
  std::string bare(to.Bare());
  std::string user(to.local);
  spdlog::info("im: app server {} refused a notification for {} ({}): removing that registration", service, bare,
               error_type);
  // Through WithPushes, so that the removal is ordered after any load of
  // the registrations: a load started before the delete is durable could
  // read the refused registration back and notify it again.
  PostToAccount(bare, [this, user = std::move(user), service = std::move(service),
                       node = std::move(node)](AccountState& st) mutable {
    if (!st.Ready()) return;
    WithPushes(st, [this, user = std::move(user), service = std::move(service), node = std::move(node)](
                       AccountState& st, bool) {
      std::erase_if(st.pushes, [&](const auto& p) { return p.reg.jid == service && p.reg.node == node; });
      ++st.busy;  // keeps the loaded list (without it) until the delete is durable
      store_->DeletePushRegistrations(
          user, service, node,
          store::Reply<int64_t>(
              loop(st.home).executor(), [this, home = st.home, bare = st.bare](const Result<int64_t>& r) {
                if (!r.ok())
                  spdlog::warn("im: removing a push registration of {} failed: {}", bare, r.error().message);
                AccountState* st = FindAccount(home, bare);
                if (st == nullptr) return;
                --st->busy;
                MaybeEvict(*st);
              }));
    });
  });
  return true;
}

void HubImpl::RegisterPush() {
  auto enabled = [](const Config& c) { return c.push_enabled; };
  registry_.Add(IqHandler{std::string(kPush), true, kScopeSelf, std::string(kPush), enabled, EnableOrDisable});
}

}  // namespace nines::im
