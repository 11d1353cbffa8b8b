// Offline messages (XEP-0160) with XEP-0203 delay stamps.
//
// Policy (src/im/README.md):
//  * Stored: messages of type 'normal' or 'chat' (no type is 'normal') that
//    carry something a person would miss: a <body/> or <subject/>, an XEP-0334
//    <store/> hint, or any payload other than chat states and <thread/>
//    (receipts, encrypted payloads, ...). Not stored: XEP-0334 <no-store/>,
//    chat-state-only messages (dropped without an error), and 'groupchat',
//    'headline' and 'error' messages (XEP-0160 §3, RFC 6121 §8.5.2.2.1).
//  * When the account already holds limits.offline_messages messages, the
//    sender gets <service-unavailable/> (XEP-0160 §3: "the recipient's
//    offline message queue is full").
//  * Stored messages go to the first resource that becomes available with a
//    non-negative priority, each with <delay from='domain' stamp='...'/>,
//    oldest first; then everything up to the last one handed over is deleted.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"

namespace nines::im {

namespace {

// The resources bare-JID messages would go to now (highest non-negative priority).
std::vector<const Resource*> BestResources(const AccountState& st) {
  int best = -1;
  for (const auto& res : st.resources) {
    if (res.available && res.priority > best) best = res.priority;
  }
  std::vector<const Resource*> out;
  if (best < 0) return out;
  for (const auto& res : st.resources) {
    if (res.available && res.priority == best) out.push_back(&res);
  }
  return out;
}

}  // namespace

bool HubImpl::OfflineEligible(const MessageTraits& traits, MsgType type) {
  if (type != MsgType::kNormal && type != MsgType::kChat) return false;
  if (traits.no_store) return false;
  return traits.content || traits.store_hint;
}

void HubImpl::StoreOffline(AccountState& st, const RoutedPtr& r) {
  if (!r->offline_ok) return;  // nothing worth keeping (e.g. a chat state)
  const Config& config = ConfigOn(st.home);
  if (st.offline_count >= config.limits.offline_messages) {
    Bounce(*r, "service-unavailable", "the recipient's offline storage is full");
    return;
  }
  store::OfflineMessage message;
  if (r->stamp_ms != 0) {
    // Back from a delivery whose session vanished: keep the first receipt
    // time, and take off the delay we added then.
    message.stamp_ms = r->stamp_ms;
    message.stanza = r->xml;
    std::string delay = DelayXml(config.domain, r->stamp_ms);
    if (size_t at = message.stanza.find(delay); at != std::string::npos)
      message.stanza.erase(at, delay.size());
  } else {
    message.stamp_ms = NowUnixMs();
    message.stanza = r->xml;
  }
  ++st.offline_count;
  ++st.busy;
  store_->StoreOffline(
      st.user, std::move(message),
      store::Reply<int64_t>(
          loop(st.home).executor(), [this, home = st.home, bare = st.bare, r](const Result<int64_t>& id) {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;
            --st->busy;
            ++st->running;
            if (!id.ok()) {
              spdlog::warn("im: storing an offline message for {} failed: {}", bare, id.error().message);
              st->offline_count = std::max<int64_t>(0, st->offline_count - 1);
              Bounce(*r, "internal-server-error");
            } else if (r->stamp_ms == 0 && !BestResources(*st).empty()) {
              // A resource came online while this write was in flight, and its
              // offline load may have missed it. (Not for a message that came
              // back from a vanished session: those wait for the next login, or
              // a session that is going away would bounce it round forever.)
              DeliverOffline(*st, {});
            }
            --st->running;
            MaybeEvict(*st);
          }));
}

// The archive id in a stored message's <stanza-id by='bare'/> (archive.cc
// puts it there before the message is delivered or stored), or 0.
static int64_t ArchiveIdIn(std::string_view stanza, std::string_view bare) {
  std::string marker = "<stanza-id xmlns='urn:xmpp:sid:0'";
  AppendAttr(marker, "by", bare);
  marker += " id='";
  size_t at = stanza.rfind(marker);
  if (at == std::string_view::npos) return 0;
  int64_t id = 0;
  const char* begin = stanza.data() + at + marker.size();
  auto [end, ec] = std::from_chars(begin, stanza.data() + stanza.size(), id);
  if (ec != std::errc() || end == stanza.data() + stanza.size() || *end != '\'') return 0;
  return id;
}

void HubImpl::DeliverOffline(AccountState& st, xmpp::SessionRef ref, int64_t replayed_up_to) {
  if (st.offline_loading) {
    st.offline_again = true;
    return;
  }
  st.offline_loading = true;
  store_->LoadOffline(
      st.user,
      store::Reply<std::vector<store::OfflineMessage>>(
          loop(st.home).executor(),
          [this, home = st.home, bare = st.bare, ref,
           replayed_up_to](Result<std::vector<store::OfflineMessage>> messages) {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;
            st->offline_loading = false;
            ++st->running;
            if (!messages.ok()) {
              spdlog::warn("im: loading offline messages for {} failed: {}", bare, messages.error().message);
            } else {
              // The resource that asked, if still there; else whoever is best now.
              std::vector<const Resource*> targets;
              const Resource* asker = st->FindByRef(ref);
              if (asker != nullptr && asker->available && asker->priority >= 0) {
                targets.push_back(asker);
              } else {
                targets = BestResources(*st);
              }
              const Config& config = ConfigOn(home);
              int64_t last = 0;
              int64_t delivered = 0;
              for (auto& m : *messages) {
                if (targets.empty()) break;  // nobody to give them to: they stay stored
                if (m.id <= st->offline_delivered_up_to) continue;
                if (replayed_up_to > 0 && asker != nullptr) {
                  // Only what the replay gave the restored resource: one it
                  // left out (to another full JID, carbons off) is delivered.
                  if (asker->Replayed(ArchiveIdIn(m.stanza, bare))) {
                    last = m.id;  // the restored resource has it: only delete it
                    ++delivered;
                    continue;
                  }
                }
                std::string xml = m.stanza;
                AppendChildXml(xml, DelayXml(config.domain, m.stamp_ms));
                auto routed = std::make_shared<Routed>();
                routed->kind = Kind::kMessage;
                routed->type = static_cast<uint8_t>(MsgType::kChat);
                routed->offline_ok = true;
                routed->stamp_ms = m.stamp_ms;
                routed->to = bare;
                routed->xml = std::move(xml);
                RoutedPtr r = std::move(routed);
                for (const Resource* target : targets) {
                  std::function<void()> on_gone;
                  if (targets.size() == 1) on_gone = [this, r, gone = target->ref] { Reroute(r, gone, 1); };
                  DeliverTo(*target, SharedXml(r), std::move(on_gone));
                }
                last = m.id;
                ++delivered;
              }
              if (last > 0) {
                st->offline_delivered_up_to = last;
                st->offline_count = std::max<int64_t>(0, st->offline_count - delivered);
                ++st->busy;
                store_->DeleteOffline(
                    st->user, last,
                    store::Reply<void>(loop(home).executor(), [this, home, bare](const Result<void>& r) {
                      AccountState* st = FindAccount(home, bare);
                      if (!r.ok()) {
                        spdlog::warn("im: deleting delivered offline messages for {} failed: {}", bare,
                                     r.error().message);
                      }
                      if (st == nullptr) return;
                      --st->busy;
                      MaybeEvict(*st);
                    }));
              }
            }
            if (st->offline_again) {
              st->offline_again = false;
              DeliverOffline(*st, ref, replayed_up_to);
            }
            --st->running;
            MaybeEvict(*st);
          }));
}

void HubImpl::RegisterOffline() { registry_.AddFeature(kScopeServer, "msgoffline"); }

}  // namespace nines::im
