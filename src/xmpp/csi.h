// XEP-0352 client state indication: which stanzas may wait while a client
// says it is inactive.
//
// While inactive, a session holds stanzas a person would not miss for a
// while: presence updates and chat states, collapsed so that only the
// latest from each sender is kept, and receipts, chat markers and PEP events
// (XEP-0163), kept in order. Everything else (a message with a body, an encrypted message, a
// call, a subscription request, any iq) is important: it goes out at once,
// after whatever is held, so that order is kept. `<active/>` flushes
// everything held.
//
// Stanzas are classified from their serialised form, which this server
// produced (xml::Element::Serialize): one scan, only for inactive sessions.
#pragma once

#include <string>
#include <string_view>

namespace nines::xmpp {

struct CsiClass {
  bool important = true;
  // Non-empty: a later stanza with the same key replaces this one (presence
  // from one full JID; a chat state from one full JID).
  std::string collapse_key;
};

CsiClass ClassifyForCsi(std::string_view xml);

}  // namespace nines::xmpp
