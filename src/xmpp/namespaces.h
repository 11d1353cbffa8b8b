// XML namespaces used by the stream layer and the IM modules.
#pragma once

#include <string_view>

namespace nines::xmpp::ns {

inline constexpr std::string_view kStream = "http://etherx.jabber.org/streams";
inline constexpr std::string_view kClient = "jabber:client";
inline constexpr std::string_view kComponent = "jabber:component:accept";  // XEP-0114
inline constexpr std::string_view kTls = "urn:ietf:params:xml:ns:xmpp-tls";
inline constexpr std::string_view kSasl = "urn:ietf:params:xml:ns:xmpp-sasl";
inline constexpr std::string_view kBind = "urn:ietf:params:xml:ns:xmpp-bind";
inline constexpr std::string_view kSession = "urn:ietf:params:xml:ns:xmpp-session";
inline constexpr std::string_view kStreamErrors = "urn:ietf:params:xml:ns:xmpp-streams";
inline constexpr std::string_view kStanzaErrors = "urn:ietf:params:xml:ns:xmpp-stanzas";
inline constexpr std::string_view kRegister = "jabber:iq:register";
inline constexpr std::string_view kRegisterFeature = "http://jabber.org/features/iq-register";
inline constexpr std::string_view kPing = "urn:xmpp:ping";
inline constexpr std::string_view kSaslChannelBinding = "urn:xmpp:sasl-cb:0";  // XEP-0440
inline constexpr std::string_view kCsi = "urn:xmpp:csi:0";                          // XEP-0352
inline constexpr std::string_view kSm = "urn:xmpp:sm:3";                            // XEP-0198

}  // namespace nines::xmpp::ns
