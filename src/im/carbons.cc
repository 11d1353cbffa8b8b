// XEP-0280 Message Carbons (urn:xmpp:carbons:2): every device of an account
// sees the conversations the others have.
//
// Policy (src/im/README.md, "Carbons"):
//  * A resource that sent <enable/> gets a <received/> copy of each eligible
//    message delivered to another resource of its account, and a <sent/>
//    copy of each eligible message another resource of its account sent.
//  * Eligible (§6): type 'chat', or 'normal' with a <body/>, or a message
//    carrying receipts, chat markers or chat states; never 'groupchat',
//    'headline' or 'error', nor one marked <private/> (removed before
//    delivery, §7) or XEP-0334 <no-copy/>.
//  * Copies of an archived message go out with the message itself, once it
//    is durable, and carry its <stanza-id/>.

#include <algorithm>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"

namespace nines::im {

namespace {

constexpr std::string_view kCarbons = "urn:xmpp:carbons:2";

std::string Wrap(std::string_view bare, std::string_view to, std::string_view kind, std::string_view type,
                 std::string_view stanza) {
  std::string out;
  out.reserve(stanza.size() + 200);
  out.append("<message");
  AppendAttr(out, "from", bare);
  AppendAttr(out, "to", to);
  if (!type.empty()) AppendAttr(out, "type", type);
  out.append("><");
  out.append(kind);
  out.append(" xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>");
  out.append(WithNamespace(stanza, xmpp::ns::kClient));
  out.append("</forwarded></");
  out.append(kind);
  out.append("></message>");
  return out;
}

std::string_view TypeName(MsgType type) { return type == MsgType::kChat ? "chat" : ""; }

void Toggle(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const std::string& name = call->payload().name();
  if (name != "enable" && name != "disable") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  Resource* res = st->FindByRef(call->origin);
  if (res == nullptr) {
    hub.ReplyError(*call, "not-allowed", "carbons are a setting of a bound resource");
    return;
  }
  res->carbons = name == "enable";
  hub.ReplyResult(*call);
}

}  // namespace

bool HubImpl::CarbonsEligible(const MessageTraits& t, MsgType type) {
  if (type != MsgType::kChat && type != MsgType::kNormal) return false;
  if (t.carbons_private || t.no_copy) return false;
  return type == MsgType::kChat || t.body || t.im_payload;
}

void HubImpl::ReceivedCarbons(AccountState& st, const RoutedPtr& r,
                              const std::vector<xmpp::SessionRef>& delivered) {
  if (!r->carbons_ok) return;
  for (const auto& res : st.resources) {
    if (!res.carbons || !res.available) continue;
    if (std::find(delivered.begin(), delivered.end(), res.ref) != delivered.end()) continue;
    if (r->has_origin && res.ref == r->origin) continue;  // a note to self from this very resource
    // Each copy names its resource in 'to', so each is built on its own.
    DeliverTo(res,
              std::make_shared<const std::string>(
                  Wrap(st.bare, res.full, "received", TypeName(r->msg_type()), r->xml)),
              {}, r->archive_id);
  }
}

void HubImpl::SentCarbons(const RoutedPtr& r, int64_t archive_id, size_t current) {
  if (!r->carbons_ok || !r->has_origin || r->external) return;
  const std::string_view sender = BareOf(r->from);
  if (sender == BareOf(r->to)) return;  // to oneself: the other resources get <received/> copies
  // Most senders have no other resource with carbons on. When the sender's
  // account lives on this loop and has nothing queued, that is checked here,
  // saving the copy of its name, the posted operation and the second lookup
  // on every message.
  if (const size_t home = HomeOf(sender); home == current) {
    const AccountState* st = FindAccount(home, sender);
    if (st != nullptr && st->Ready() && st->queue.empty() &&
        std::none_of(st->resources.begin(), st->resources.end(), [&](const Resource& res) {
          return res.carbons && res.available && res.ref != r->origin;
        })) {
      return;
    }
  }
  PostToAccount(std::string(sender), [this, r, archive_id](AccountState& st) {
    std::string inner;  // the message with the sender's own archive id (XEP-0359), built once
    for (const auto& res : st.resources) {
      if (!res.carbons || !res.available || res.ref == r->origin) continue;
      if (inner.empty()) {
        inner = archive_id != 0 ? WithStanzaId(r->xml, st.bare, archive_id) : r->xml;
      }
      DeliverTo(res, std::make_shared<const std::string>(
                         Wrap(st.bare, res.full, "sent", TypeName(r->msg_type()), inner)));
    }
  });
}

std::string HubImpl::ReceivedCopy(std::string_view bare, std::string_view to, bool chat,
                                  std::string_view stanza) {
  return Wrap(bare, to, "received", chat ? "chat" : "", stanza);
}

void HubImpl::RegisterCarbons() {
  registry_.Add({std::string(kCarbons), true, kScopeSelf, "", {}, Toggle});
  registry_.AddFeature(kScopeServer, std::string(kCarbons));
}

}  // namespace nines::im
