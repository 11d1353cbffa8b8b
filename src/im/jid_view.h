// JidView: the parts of an already-normalised JID string, without copying.
//
// Stanzas reach the hub with 'to' and 'from' already parsed and normalised
// by the session (xmpp::Jid). Re-running PRECIS on every hop would be the
// most expensive thing on the message path, so the hub splits the
// normalised text instead. Only use this on strings that came out of
// xmpp::Jid (Full()/BareString()) or that the hub built itself.
//
// Thread safety: a view; valid while the viewed string lives and is unchanged.
#pragma once

#include <cstddef>
#include <string_view>

namespace nines::im {

struct JidView {
  std::string_view text;  // the whole JID
  std::string_view local;
  std::string_view domain;
  std::string_view resource;

  bool IsBare() const { return resource.empty(); }
  // "local@domain" (or "domain"): a prefix of `text`.
  std::string_view Bare() const {
    return resource.empty() ? text : text.substr(0, text.size() - resource.size() - 1);
  }
};

// Splits "local@domain/resource". The resource is everything after the first
// '/'; the localpart is what precedes an '@' in front of that.
inline JidView SplitJid(std::string_view text) {
  JidView v;
  v.text = text;
  std::string_view head = text;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    head = text.substr(0, slash);
    v.resource = text.substr(slash + 1);
    if (v.resource.empty()) v.text = head;  // "domain/" is not a full JID
  }
  if (size_t at = head.find('@'); at != std::string_view::npos) {
    v.local = head.substr(0, at);
    v.domain = head.substr(at + 1);
  } else {
    v.domain = head;
  }
  return v;
}

// Bare part of a normalised JID string.
inline std::string_view BareOf(std::string_view jid) { return SplitJid(jid).Bare(); }

}  // namespace nines::im
