// Helpers for building stanzas and stanza errors (RFC 6120 §8.3).
#pragma once

#include <string>
#include <string_view>

#include "base/config.h"
#include "xml/element.h"
#include "xml/stream_parser.h"

namespace nines::xmpp {

// An error reply to `stanza`: same name and id, 'to' and 'from' swapped,
// type='error', with <error type='...'><condition/><text/></error>.
// `type` is one of auth, cancel, continue, modify, wait.
xml::Element MakeErrorReply(const xml::Element& stanza, std::string_view type, std::string_view condition,
                            std::string_view text = {});

// An empty IQ result for `iq`: id kept, 'to'/'from' swapped.
xml::Element MakeIqResult(const xml::Element& iq);

// The stanza error type RFC 6120 §8.3.3 gives for a condition.
std::string_view DefaultErrorType(std::string_view condition);

// What is wrong with an <iq/> as RFC 6120 §8.2.3 shapes it (an id, a type
// of get/set/result/error, exactly one child in a request), as the text for
// a <bad-request/>; "" if nothing is.
std::string_view IqShapeProblem(const xml::Element& iq);

// The parser caps of limits.*: the pre-authentication ones until the peer
// has authenticated (SASL, or a component's handshake).
xml::ParserLimits ParserLimitsFor(const Limits& limits, bool authenticated);

// Random alphanumeric id of `length` characters (unguessable: OpenSSL RAND).
std::string RandomId(size_t length);

// The <priority/> of a presence stanza (RFC 6121 §4.7.2.3): an integer in
// -128..127; absent or anything else counts as 0.
int PresencePriority(const xml::Element& presence);

// <stream:error> with an RFC 6120 §4.9.3 condition, optional text and an
// application-specific condition element (serialised), then the stream's
// close tag.
std::string StreamErrorXml(std::string_view condition, std::string_view text = {}, std::string_view app = {});

}  // namespace nines::xmpp
