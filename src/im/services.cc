// Small IQ services: XEP-0030 disco, XEP-0092 version, XEP-0199 ping,
// XEP-0054 vCard-temp, and RFC 3921 legacy session establishment.

#include <sys/utsname.h>

#include <spdlog/spdlog.h>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"

namespace nines::im {

namespace {

constexpr std::string_view kDiscoInfo = "http://jabber.org/protocol/disco#info";
constexpr std::string_view kDiscoItems = "http://jabber.org/protocol/disco#items";
constexpr std::string_view kVersion = "jabber:iq:version";
constexpr std::string_view kVCard = "vcard-temp";

// XEP-0030 §3.1 on behalf of an account: only to itself and to entities
// subscribed to its presence (RFC 6121 §8.5.2.1.3 leaves the policy to us).
bool MayDiscoverAccount(const IqCall& call, AccountState* st) {
  if (call.scope != kScopeAccount) return true;
  const store::RosterItem* item = st->FindItem(BareOf(call.from));
  return item != nullptr && HasFrom(item->subscription);
}

void DiscoInfo(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (call->scope == kScopeServer && HubImpl::IsCommandNode(call->payload().Attr("node"))) {
    // XEP-0050 §2.3: a command node describes itself.
    std::string inner = "<query xmlns='http://jabber.org/protocol/disco#info'";
    AppendAttr(inner, "node", call->payload().Attr("node"));
    inner.append("><identity category='automation' type='command-node'/>"
                 "<feature var='http://jabber.org/protocol/commands'/><feature var='jabber:x:data'/></query>");
    hub.ReplyResult(*call, inner);
    return;
  }
  if (call->payload().HasAttr("node")) {
    if (st != nullptr) {
      hub.PepDiscoNode(call, *st);  // XEP-0060 §5.3: a PEP node of the account
    } else {
      hub.ReplyError(*call, "item-not-found", "no such node");
    }
    return;
  }
  if (!MayDiscoverAccount(*call, st)) {
    hub.ReplyError(*call, "service-unavailable");
    return;
  }
  size_t loop = st != nullptr ? st->home : call->origin.loop;
  const Config& config = hub.ConfigOn(loop);
  std::string inner = "<query xmlns='http://jabber.org/protocol/disco#info'>";
  if (call->scope == kScopeServer) {
    inner.append("<identity category='server' type='im'");
    AppendAttr(inner, "name", config.version_name);
    inner.append("/>");
  } else {
    // XEP-0163 §6.1: the account is also a PEP service.
    inner.append("<identity category='account' type='registered'/><identity category='pubsub' type='pep'/>");
  }
  for (const auto& feature : hub.registry().Features(call->scope, config)) {
    inner.append("<feature");
    AppendAttr(inner, "var", feature);
    inner.append("/>");
  }
  inner.append("</query>");
  hub.ReplyResult(*call, inner);
}

void DiscoItems(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (call->scope == kScopeServer && call->payload().Attr("node") == "http://jabber.org/protocol/commands") {
    // XEP-0050 §2.2: the commands this server offers.
    std::string inner = "<query xmlns='http://jabber.org/protocol/disco#items' "
                        "node='http://jabber.org/protocol/commands'>";
    inner.append(hub.CommandItems(hub.ConfigOn(call->origin.loop).domain));
    inner.append("</query>");
    hub.ReplyResult(*call, inner);
    return;
  }
  if (call->payload().HasAttr("node")) {
    hub.ReplyError(*call, "item-not-found", "no such node");
    return;
  }
  if (st == nullptr) {
    hub.ReplyResult(*call, "<query xmlns='http://jabber.org/protocol/disco#items'/>");
    return;
  }
  if (!MayDiscoverAccount(*call, st)) {
    hub.ReplyError(*call, "service-unavailable");
    return;
  }
  // XEP-0060 §5.2: an account's items are its PEP nodes, those the requester
  // may read.
  hub.PepDiscoItems(call, *st);
}

std::string OperatingSystem() {
  struct utsname u {};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

void Version(HubImpl& hub, const IqCallPtr& call, AccountState*) {
  const Config& config = hub.ConfigOn(call->origin.loop);
  std::string inner = "<query xmlns='jabber:iq:version'><name>";
  xml::AppendEscapedText(inner, config.version_name);
  inner.append("</name><version>");
  xml::AppendEscapedText(inner, NINES_VERSION);
  inner.append("</version>");
  if (config.version_show_os) {
    static const std::string os = OperatingSystem();
    inner.append("<os>");
    xml::AppendEscapedText(inner, os);
    inner.append("</os>");
  }
  inner.append("</query>");
  hub.ReplyResult(*call, inner);
}

void Ping(HubImpl& hub, const IqCallPtr& call, AccountState*) { hub.ReplyResult(*call); }

void LegacySession(HubImpl& hub, const IqCallPtr& call, AccountState*) { hub.ReplyResult(*call); }

constexpr std::string_view kEmptyVCard = "<vCard xmlns='vcard-temp'/>";

// XEP-0054 §3.1 (own) and §3.3 (another user's).
void VCardGet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  if (call->payload().name() != "vCard") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (st == nullptr) {
    // The server itself has no vCard to give; an empty one says so.
    hub.ReplyResult(*call, kEmptyVCard);
    return;
  }
  const bool own = call->scope == kScopeSelf;
  hub.store().GetVCard(
      st->user,
      store::Reply<std::string>(hub.loop(st->home).executor(), [&hub, call, own](Result<std::string> vcard) {
        if (vcard.ok()) {
          hub.ReplyResult(*call, *vcard);
        } else if (vcard.error().code == Errc::kNotFound) {
          if (own) {
            hub.ReplyResult(*call, kEmptyVCard);
          } else {
            hub.ReplyError(*call, "item-not-found");
          }
        } else {
          hub.ReplyError(*call, "internal-server-error");
        }
      }));
}

// XEP-0054 §3.2: only one's own.
void VCardSet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& vcard = call->payload();
  if (vcard.name() != "vCard") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  std::string xml = vcard.Serialize();  // with its xmlns, ready to splice into a result
  if (static_cast<int64_t>(xml.size()) > hub.ConfigOn(st->home).limits.vcard_size) {
    hub.ReplyError(*call, "not-acceptable", "the vCard is larger than this server accepts");
    return;
  }
  if (st->vcard_writes > 0) {
    // The avatar conversion is rewriting the vCard (or another set is in
    // flight): after it, so that it cannot write back what it read before.
    st->vcard_waiting.push_back([&hub, call](AccountState& st) { VCardSet(hub, call, &st); });
    return;
  }
  ++st->vcard_writes;
  ++st->busy;
  hub.store().SetVCard(st->user, std::move(xml),
                       store::Reply<void>(hub.loop(st->home).executor(),
                                          [&hub, call, home = st->home, bare = st->bare,
                                           changes = st->avatar_changes](const Result<void>& r) {
                                            AccountState* st = hub.FindAccount(home, bare);
                                            if (r.ok()) {
                                              hub.ReplyResult(*call);
                                              // XEP-0398: the photo becomes the PEP avatar.
                                              // Unless an avatar published since says otherwise.
                                              if (st != nullptr && st->avatar_changes == changes)
                                                hub.AfterVCardSet(*st, call->payload());
                                            } else {
                                              hub.ReplyError(*call, "internal-server-error");
                                            }
                                            if (st != nullptr) hub.AfterVCardWrite(*st);
                                            hub.Release(home, bare);
                                          }));
}

}  // namespace

void HubImpl::RegisterServices() {
  constexpr unsigned kAll = kScopeServer | kScopeSelf | kScopeAccount;
  registry_.Add(IqHandler{std::string(kDiscoInfo), false, kAll, std::string(kDiscoInfo), {}, DiscoInfo});
  registry_.Add(IqHandler{std::string(kDiscoItems), false, kAll, std::string(kDiscoItems), {}, DiscoItems});
  registry_.Add(IqHandler{std::string(kVersion), false, kScopeServer, std::string(kVersion),
                          [](const Config& c) { return c.version_show; }, Version});
  // XEP-0199 §4.2 (server) and §4.3 answered for one's own bare JID.
  registry_.Add(IqHandler{std::string(xmpp::ns::kPing),
                          false,
                          kScopeServer | kScopeSelf,
                          std::string(xmpp::ns::kPing),
                          {},
                          Ping});
  registry_.Add(IqHandler{std::string(kVCard), false, kAll, std::string(kVCard), {}, VCardGet});
  registry_.Add(IqHandler{std::string(kVCard), true, kScopeSelf, std::string(kVCard), {}, VCardSet});
  // RFC 6121 dropped session establishment; old clients still send it. It is
  // answered but not advertised (it is optional, RFC 6121 Appendix E).
  registry_.Add(
      IqHandler{std::string(xmpp::ns::kSession), true, kScopeServer | kScopeSelf, "", {}, LegacySession});
}

}  // namespace nines::im
