#include "xmpp/csi.h"

namespace nines::xmpp {

namespace {

// The value of attribute `name` in the start tag `tag` ('' or "" quoted).
std::string_view AttrOf(std::string_view tag, std::string_view name) {
  size_t at = 0;
  while ((at = tag.find(name, at)) != std::string_view::npos) {
    size_t eq = at + name.size();
    bool boundary = at > 0 && (tag[at - 1] == ' ' || tag[at - 1] == '\t' || tag[at - 1] == '\n');
    if (boundary && eq + 1 < tag.size() && tag[eq] == '=' && (tag[eq + 1] == '\'' || tag[eq + 1] == '"')) {
      char quote = tag[eq + 1];
      size_t end = tag.find(quote, eq + 2);
      if (end == std::string_view::npos) return {};
      return tag.substr(eq + 2, end - eq - 2);
    }
    at = eq;
  }
  return {};
}

bool Has(std::string_view xml, std::string_view what) { return xml.find(what) != std::string_view::npos; }

}  // namespace

CsiClass ClassifyForCsi(std::string_view xml) {
  CsiClass out;
  size_t tag_end = xml.find('>');
  if (tag_end == std::string_view::npos) return out;
  std::string_view tag = xml.substr(0, tag_end);
  const bool presence = tag.starts_with("<presence");
  const bool message = tag.starts_with("<message");
  if (!presence && !message) return out;  // iq: someone waits for it
  std::string_view type = AttrOf(tag, "type");
  std::string_view from = AttrOf(tag, "from");
  if (type == "error") return out;
  if (presence) {
    // Subscription requests and their answers need the person; probes do not reach clients.
    if (!type.empty() && type != "unavailable") return out;
    out.important = false;
    out.collapse_key = "p ";
    out.collapse_key += from;
    return out;
  }
  // A message: important if it carries something a person reads or answers.
  if (Has(xml, "<body") || Has(xml, "<encrypted") || Has(xml, "<subject") || Has(xml, "urn:xmpp:jingle-message") ||
      Has(xml, "jabber:x:conference")) {
    return out;
  }
  const bool chat_state = Has(xml, "http://jabber.org/protocol/chatstates");
  // XEP-0163 events (a contact's new nick or avatar, a bookmark from another
  // device): kept in order, never collapsed (two items of one node are two
  // different things, as with bookmarks).
  const bool pep_event = type == "headline" && Has(xml, "http://jabber.org/protocol/pubsub#event");
  const bool receipt_or_marker =
      Has(xml, "urn:xmpp:receipts") || Has(xml, "urn:xmpp:chat-markers") || pep_event;
  if (!chat_state && !receipt_or_marker) return out;  // unknown payload: do not guess
  out.important = false;
  if (chat_state && !receipt_or_marker) {
    out.collapse_key = "c ";
    out.collapse_key += from;
  }
  return out;
}

}  // namespace nines::xmpp
