// XEP-0215 external service discovery: the STUN and TURN servers a client
// should use for calls (XEP-0167 / WebRTC), from external_services.uris.
//
//   <services xmlns='urn:xmpp:extdisco:2' [type='turn']/> to the server: every
//     configured service (of that type), one <service/> each.
//   <credentials xmlns='urn:xmpp:extdisco:2'><service host type/></credentials>:
//     fresh credentials for that one (<item-not-found/> if it is not configured).
// With external_services.turn_secret set, turn and turns entries carry
// time-limited credentials in the TURN REST scheme that coturn implements
// (use-auth-secret / static-auth-secret): username "<expiry unix time>:<bare
// JID>", password base64(HMAC-SHA1(secret, username)), plus 'expires' and
// restricted='1'. Nothing is stored: the TURN server checks the HMAC itself.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/base64.h"

namespace nines::im {

namespace {

constexpr std::string_view kExtDisco = "urn:xmpp:extdisco:2";

void AppendService(std::string& out, const ExternalService& s, const Config& config, std::string_view bare) {
  out.append("<service");
  AppendAttr(out, "type", s.type);
  AppendAttr(out, "host", s.host);
  AppendAttr(out, "port", std::to_string(s.port));
  AppendAttr(out, "transport", s.transport);
  const bool turn = s.type == "turn" || s.type == "turns";
  if (turn && !config.turn_secret.empty()) {
    const int64_t expires_s = NowUnixMs() / 1000 + config.turn_credential_lifetime;
    std::string username = std::to_string(expires_s) + ":" + std::string(bare);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha1(), config.turn_secret.data(), static_cast<int>(config.turn_secret.size()),
         reinterpret_cast<const unsigned char*>(username.data()), username.size(), mac, &mac_len);
    AppendAttr(out, "username", username);
    AppendAttr(out, "password", xmpp::Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), mac_len)));
    AppendAttr(out, "expires", FormatTimestamp(expires_s * 1000));
    AppendAttr(out, "restricted", "1");
  }
  out.append("/>");
}

std::vector<ExternalService> Configured(const Config& config) {
  std::vector<ExternalService> out;
  for (const auto& uri : config.external_services) {
    if (auto s = ParseServiceUri(uri); s.ok()) out.push_back(std::move(*s));  // checked at load
  }
  return out;
}

void Services(HubImpl& hub, const IqCallPtr& call, AccountState*) {
  const xml::Element& payload = call->payload();
  const Config& config = hub.ConfigOn(call->origin.loop);
  std::string bare(BareOf(call->from));
  if (payload.name() == "services") {
    std::string_view type = payload.Attr("type");
    std::string inner = "<services xmlns='urn:xmpp:extdisco:2'";
    if (!type.empty()) AppendAttr(inner, "type", type);
    inner.push_back('>');
    for (const auto& s : Configured(config)) {
      if (type.empty() || s.type == type) AppendService(inner, s, config, bare);
    }
    inner.append("</services>");
    hub.ReplyResult(*call, inner);
    return;
  }
  if (payload.name() == "credentials") {
    const xml::Element* want = payload.Child("service", kExtDisco);
    if (want == nullptr || !want->HasAttr("host")) {
      hub.ReplyError(*call, "bad-request", "name the service: <service host='...' type='...'/>");
      return;
    }
    std::string_view type = want->Attr("type");
    for (const auto& s : Configured(config)) {
      if (s.host != want->Attr("host") || (!type.empty() && s.type != type)) continue;
      std::string inner = "<credentials xmlns='urn:xmpp:extdisco:2'>";
      AppendService(inner, s, config, bare);
      inner.append("</credentials>");
      hub.ReplyResult(*call, inner);
      return;
    }
    hub.ReplyError(*call, "item-not-found", "no such service here");
    return;
  }
  hub.ReplyError(*call, "bad-request", "expected <services/> or <credentials/>");
}

}  // namespace

void HubImpl::RegisterExternalServices() {
  registry_.Add(IqHandler{std::string(kExtDisco), false, kScopeServer, std::string(kExtDisco),
                          [](const Config& c) { return !c.external_services.empty(); }, Services});
}

}  // namespace nines::im
