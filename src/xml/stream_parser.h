// StreamParser: incremental, hardened parser for one XMPP stream.
//
// Feed() takes whatever bytes arrived and returns the events they completed:
// the stream header, each complete top-level stanza (depth-1 child of
// <stream:stream>) as an Element, the stream's close, or an error. Bytes are
// consumed completely; partial stanzas are buffered inside (bounded by
// Limits::max_stanza_bytes).
//
// Hardening (RFC 6120 §11.1): a DOCTYPE, entity declaration, processing
// instruction (other than the XML declaration) or comment is an error
// (kRestrictedXml). Invalid UTF-8 is kBadFormat... see Error below. Limits
// are checked while parsing, so a hostile peer can't make us allocate more
// than the stanza cap before we stop.
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
  size_t max_attributes = 64;            // per element
  size_t max_name_length = 256;          // element or attribute name, bytes (prefix included)
};

// Each error maps to one RFC 6120 §4.9.3 stream error condition.
enum class ParseError {
  kNone,
  kNotWellFormed,      // <not-well-formed/>
  kRestrictedXml,      // <restricted-xml/>: DTD, entity, PI, comment
  kPolicyViolation,    // <policy-violation/>: a size/depth/count limit
  kInvalidNamespace,   // <invalid-namespace/>: wrong stream namespace
  kBadFormat,          // <bad-format/>: e.g. stream root is not <stream:stream>
  kUnsupportedEncoding,// <unsupported-encoding/>: a non-UTF-8 declaration or invalid UTF-8
};

const char* StreamErrorCondition(ParseError error);

struct ParseEvent {
  enum class Kind { kStreamOpen, kStanza, kStreamClose, kError };
  Kind kind = Kind::kStanza;
  // kStreamOpen: the <stream:stream> element with its attributes, no children.
  // kStanza: the stanza.
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

  // Parses `data`, appending completed events to `out`. After an error event
  // the parser is dead: further calls return immediately with no events.
  void Feed(std::string_view data, std::vector<ParseEvent>& out);

  // Starts a new stream (after STARTTLS or SASL success), dropping any state.
  void Reset();

  // Limits may be loosened after authentication; applies from the next stanza.
  void SetLimits(ParserLimits limits);

  // True while a stanza has started but not finished (for the slowloris timer).
  bool InStanza() const;

  // Frees the expat parser and its buffers when no stanza is in progress (an
  // idle session then costs almost nothing). The next Feed() re-creates the
  // parser and silently replays the stream header, so namespaces stay in scope.
  void Compact();

  // Approximate heap bytes held (for memory accounting and tests).
  size_t MemoryUsage() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nines::xml
