// StreamParser: incremental, hardened parser for one XMPP stream.
//
// Feed() takes whatever bytes arrived and returns the events they completed:
// the stream header, each complete top-level stanza (depth-1 child of
// <stream:stream>) as an Element, the stream's close, or an error. Bytes are
// consumed completely; partial stanzas are buffered inside (bounded by
// ParserLimits::max_stanza_bytes).
//
// Events:
//   kStreamOpen  the root, which must be {http://etherx.jabber.org/streams}
//                stream. Its element has name "stream", ns kStreamsNs, the
//                root's attributes (to, from, version, id, xml:lang, ...) and
//                no children. The content namespace is reported as an
//                attribute named "xmlns" holding the default namespace
//                declared on the root (absent if none was declared); the
//                session checks it is jabber:client / jabber:server.
//                Attribute names follow element.h (xml:lang, {uri}local).
//   kStanza      a depth-1 child with all its children and text. Its ns is the
//                resolved namespace: "jabber:client" for <message/> under a
//                jabber:client default, kStreamsNs for <stream:features/> or
//                <stream:error/>. Prefixes are resolved and then forgotten.
//   kStreamClose </stream:stream>. The parser stops; Reset() starts anew.
//   kError       see ParseError. The parser is dead afterwards.
// Whitespace between stanzas (keepalives) produces no event and does not
// count towards any stanza's size.
//
// Errors (RFC 6120 §4.9.3):
//   - a root that is not named "stream": kBadFormat; named "stream" but in
//     another namespace: kInvalidNamespace;
//   - non-whitespace text directly inside <stream:stream>: kBadFormat (it is
//     well-formed XML, but not an XMPP stream);
//   - DOCTYPE, any DTD declaration, entity references other than the five
//     predefined ones, processing instructions (a misplaced XML declaration
//     included) and comments: kRestrictedXml (§11.1). Entities are never
//     expanded: the DOCTYPE is rejected as soon as it starts, before any
//     declaration in it is parsed;
//   - an encoding declaration other than UTF-8, a UTF-16/UTF-32 byte order
//     mark, or a NUL among the first two bytes: kUnsupportedEncoding (§11.6);
//   - malformed XML, invalid UTF-8 or unbound prefixes: kNotWellFormed;
//   - a limit exceeded (ParserLimits): kPolicyViolation.
//
// Limits are checked while parsing, so a hostile peer can't make us allocate
// more than the caps before we stop: input is handed to expat in slices no
// larger than what the current stanza may still grow by, and expat's own
// allocations go through a counting allocator capped by max_memory_bytes.
//
// Cost of a trickled huge tag: expat re-scans an incomplete token from its
// start on every Feed(), so a tag sent a byte at a time would cost
// O(size^2). Once 1 KiB of one token is pending, input is held back until a
// small scanner that follows the token (quotes in tags, "-->", "?>") sees
// where it may end, and is handed over then: O(size) in total. No event is
// delayed by this; an error inside held input is reported once it is handed
// over, or as kPolicyViolation if the size cap is reached first.
//
// Thread safety: one parser per connection, used only on that connection's loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xml/element.h"

namespace nines::xml {

struct ParserLimits {
  size_t max_stanza_bytes = 256 * 1024;  // bytes from a stanza's '<' to its end tag
  size_t max_depth = 32;                 // nesting inside a stanza; the stanza itself is depth 1
  size_t max_attributes = 64;            // per element; namespace declarations count too
  size_t max_name_length = 256;          // element or attribute name, bytes (prefix included)
  // Bytes from the start of the stream to the end of the <stream:stream> tag
  // (XML declaration and prolog whitespace included).
  size_t max_header_bytes = 16 * 1024;
  // Heap held by the parser: expat's buffers plus the stanza being built.
  // 0 means 16 * max_stanza_bytes + 64 KiB. A realistic stanza tree costs
  // 3-8 times its size in bytes; one made of tiny empty elements (<a/>) up to
  // about 40 times, and is refused by this cap before it gets that far.
  size_t max_memory_bytes = 0;
};

// Each error maps to one RFC 6120 §4.9.3 stream error condition.
enum class ParseError {
  kNone,
  kNotWellFormed,      // <not-well-formed/>
  kRestrictedXml,      // <restricted-xml/>: DTD, entity, PI, comment
  kPolicyViolation,    // <policy-violation/>: a size/depth/count limit
  kInvalidNamespace,   // <invalid-namespace/>: wrong stream namespace
  kBadFormat,          // <bad-format/>: e.g. stream root is not <stream:stream>
  kUnsupportedEncoding,// <unsupported-encoding/>: a non-UTF-8 declaration, UTF-16/32 input
};
// An unbound prefix is reported as kNotWellFormed (it breaks namespace
// well-formedness); this parser never yields <bad-namespace-prefix/>.

// The RFC 6120 §4.9.3 condition element name, e.g. "not-well-formed".
// kNone gives "undefined-condition".
const char* StreamErrorCondition(ParseError error);

struct ParseEvent {
  enum class Kind { kStreamOpen, kStanza, kStreamClose, kError };
  Kind kind = Kind::kStanza;
  // kStreamOpen: the <stream:stream> element with its attributes, no children.
  // kStanza: the stanza. The event owns it; move it out freely.
  Element element;
  ParseError error = ParseError::kNone;
  std::string error_text;  // diagnostic for logs only
};

class StreamParser {
 public:
  explicit StreamParser(ParserLimits limits);
  ~StreamParser();
  StreamParser(const StreamParser&) = delete;
  StreamParser& operator=(const StreamParser&) = delete;
  // Movable (the state lives behind a pointer): XEP-0198 resumption hands
  // a stream that is mid-way to the session it resumes.
  StreamParser(StreamParser&&) noexcept;
  StreamParser& operator=(StreamParser&&) noexcept;

  // Parses `data`, appending completed events to `out` (which is not
  // cleared). `data` need not outlive the call. After an error event or the
  // stream close, the parser is dead: further calls return immediately with
  // no events until Reset().
  void Feed(std::string_view data, std::vector<ParseEvent>& out);

  // Starts a new stream (after STARTTLS or SASL success), dropping any state
  // of the old one, including a failure.
  void Reset();

  // Limits may be loosened after authentication. They apply at once when no
  // stanza is in progress, otherwise from the end of the current stanza.
  void SetLimits(ParserLimits limits);

  // XEP-0198's <r xmlns='urn:xmpp:sm:3'/> and <a xmlns='urn:xmpp:sm:3'
  // h='N'/>, in exactly these spellings (either quote) at the top level,
  // are recognised without expat: a client using stream management sends
  // one every few stanzas. They yield the same kStanza event expat would.
  // The count of those taken so (for tests).
  uint64_t SmShortcuts() const;

  // True while a stanza (or the next stanza's start tag) has been partly
  // received after the stream header (for the slowloris timer).
  bool InStanza() const;

  // Frees the expat parser and its buffers when no stanza is in progress (an
  // idle session then costs almost nothing); a no-op otherwise. The next
  // Feed() re-creates the parser and silently replays the stream header (the
  // root's qualified name and namespace declarations only), so prefixes
  // declared on the root stay in scope and no second kStreamOpen is emitted.
  // Returns true when it freed a parser.
  bool Compact();

  // Approximate heap bytes held (for memory accounting and tests): about
  // 10 KiB with a live expat parser, under 1 KiB after Compact().
  size_t MemoryUsage() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nines::xml
