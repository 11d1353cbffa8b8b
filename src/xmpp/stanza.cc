#include "xmpp/stanza.h"

#include <charconv>

#include <openssl/rand.h>

#include "xmpp/namespaces.h"

namespace nines::xmpp {

xml::Element MakeErrorReply(const xml::Element& stanza, std::string_view type, std::string_view condition,
                            std::string_view text) {
  xml::Element reply(stanza.name(), std::string(ns::kClient));
  if (auto id = stanza.FindAttr("id")) reply.SetAttr("id", *id);
  if (auto from = stanza.FindAttr("from")) reply.SetAttr("to", *from);
  if (auto to = stanza.FindAttr("to")) reply.SetAttr("from", *to);
  reply.SetAttr("type", "error");
  auto& error = reply.AddChild("error", std::string(ns::kClient));
  error.SetAttr("type", std::string(type));
  error.AddChild(std::string(condition), std::string(ns::kStanzaErrors));
  if (!text.empty()) {
    auto& t = error.AddChild("text", std::string(ns::kStanzaErrors));
    t.SetAttr("xml:lang", "en");
    t.AddText(text);
  }
  return reply;
}

xml::Element MakeIqResult(const xml::Element& iq) {
  xml::Element reply("iq", std::string(ns::kClient));
  if (auto id = iq.FindAttr("id")) reply.SetAttr("id", *id);
  if (auto from = iq.FindAttr("from")) reply.SetAttr("to", *from);
  if (auto to = iq.FindAttr("to")) reply.SetAttr("from", *to);
  reply.SetAttr("type", "result");
  return reply;
}

std::string_view DefaultErrorType(std::string_view c) {
  if (c == "bad-request" || c == "jid-malformed" || c == "not-acceptable" || c == "policy-violation" ||
      c == "redirect" || c == "gone") {
    return "modify";
  }
  if (c == "not-authorized" || c == "forbidden" || c == "registration-required" ||
      c == "subscription-required") {
    return "auth";
  }
  if (c == "resource-constraint" || c == "internal-server-error" || c == "remote-server-timeout" ||
      c == "recipient-unavailable") {
    return "wait";
  }
  return "cancel";
}

std::string RandomId(size_t length) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string out(length, '\0');
  std::string raw(length, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(length));
  for (size_t i = 0; i < length; ++i) out[i] = kAlphabet[static_cast<unsigned char>(raw[i]) % 62];
  return out;
}

// RFC 6121 §4.7.2.3: an integer in -128..127; anything else counts as 0.
int PresencePriority(const xml::Element& presence) {
  const xml::Element* p = presence.Child("priority", ns::kClient);
  if (p == nullptr) return 0;
  std::string text = p->Text();
  std::string_view v = text;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t' || v.front() == '\n' || v.front() == '\r')) {
    v.remove_prefix(1);
  }
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\n' || v.back() == '\r')) {
    v.remove_suffix(1);
  }
  if (!v.empty() && v.front() == '+') v.remove_prefix(1);
  int value = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || end != v.data() + v.size() || value < -128 || value > 127) return 0;
  return value;
}

std::string StreamErrorXml(std::string_view condition, std::string_view text, std::string_view app) {
  std::string out = "<stream:error><";
  out += condition;
  out += " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>";
  if (!text.empty()) {
    out += "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>";
    xml::AppendEscaped(out, text);
    out += "</text>";
  }
  out += app;
  out += "</stream:error></stream:stream>";
  return out;
}

xml::ParserLimits ParserLimitsFor(const Limits& l, bool authenticated) {
  if (authenticated) {
    return {static_cast<size_t>(l.stanza_size), static_cast<size_t>(l.depth), static_cast<size_t>(l.attributes),
            static_cast<size_t>(l.name_length)};
  }
  return {static_cast<size_t>(l.stanza_size_preauth), static_cast<size_t>(l.depth_preauth),
          static_cast<size_t>(l.attributes_preauth), static_cast<size_t>(l.name_length_preauth)};
}

std::string_view IqShapeProblem(const xml::Element& iq) {
  std::string_view type = iq.Attr("type");
  const bool request = type == "get" || type == "set";
  if (!iq.HasAttr("id") || (!request && type != "result" && type != "error")) {
    return "an iq needs an id and a valid type";
  }
  if (request && iq.Children().size() != 1) return "an iq request has exactly one child";
  return {};
}

}  // namespace nines::xmpp
