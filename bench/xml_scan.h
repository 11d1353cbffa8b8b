// StanzaScanner: finds the stream header, stanza boundaries and the stream's
// end in the bytes an XMPP server sends, without building a tree.
//
// Why not xml::StreamParser: the load generator must never be the bottleneck
// of a measurement. StreamParser is a hardened, validating parser that builds
// an Element tree per stanza (a dozen allocations for a <message/>) and holds
// an expat instance per connection (about 10 KiB). The bench trusts the
// server it measures, so it only needs framing: it tracks tag depth, quoted
// attribute values, CDATA, comments and PIs, and hands out each depth-1
// element as a view into the caller's buffer. xml_scan_test.cc has the
// measured cost of both on a typical <message/> (ScannerVsStreamParser).
//
// Usage: the caller keeps the bytes of an incomplete stanza in a buffer,
// appends new input, and calls Next() until it returns kNeedMore. Then it
// drops buf[0..KeepFrom()) and calls Rebase(KeepFrom()). The scanner never
// rescans a byte. State is 12 bytes.
//
// Namespaces are not resolved: callers compare local names (the part after
// any prefix), which is unambiguous for the elements a client sees.
//
// Thread safety: a plain value, one per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nines::bench {

class StanzaScanner {
 public:
  enum class Event : uint8_t {
    kNeedMore,     // everything up to len is scanned; keep buf[KeepFrom()..len)
    kStreamOpen,   // `element` is the <stream:stream ...> start tag
    kStanza,       // `element` is a complete depth-1 element
    kStreamClose,  // </stream:stream>
    kError,        // not XML we can frame (a DOCTYPE, a stray end tag)
  };

  // Scans buf[0..len) from where the previous call stopped. `element` views
  // into `buf` and is valid until the caller modifies the buffer.
  Event Next(const char* buf, size_t len, std::string_view& element);

  // After kNeedMore: the first byte the caller must keep (the start of an
  // incomplete stanza or tag); everything before it may be discarded.
  size_t KeepFrom() const;
  // Tells the scanner that the caller dropped the first `dropped` bytes.
  void Rebase(size_t dropped) {
    pos_ -= static_cast<uint32_t>(dropped);
    mark_ -= static_cast<uint32_t>(dropped);
  }
  // Starts a new stream (after STARTTLS or SASL success).
  void Reset() { *this = StanzaScanner(); }

  // Bytes of the stanza in progress (0 between stanzas); for size limits.
  size_t Pending(size_t len) const { return len - KeepFrom(); }

 private:
  enum Mode : uint8_t { kText, kTagOpen, kStartTag, kEndTag, kPi, kBang, kCData, kComment };
  uint32_t pos_ = 0;   // next byte to scan
  uint32_t mark_ = 0;  // start of the current depth-1 element or top-level token
  uint16_t depth_ = 0;
  Mode mode_ = kText;
  uint8_t aux_ = 0;  // open quote in a start tag; run of ']' '-' '?' in CDATA, comments, PIs
};

// Helpers over one complete element's bytes, as the scanner hands them out.
// They assume well-formed input and never read outside the view.

// "message" for "<message ...>", "features" for "<stream:features>".
std::string_view LocalName(std::string_view element);
// The raw (still escaped) value of attribute `name` on the element's start
// tag; false if absent. `name` is matched literally ("xml:lang").
bool GetAttr(std::string_view element, std::string_view name, std::string_view& value);
// What lies between the start and end tag; empty for <x/>.
std::string_view Content(std::string_view element);
// Walks the direct children of a content view: sets `child` to the next
// child element at or after `pos` and advances `pos` past it. False at the end.
bool NextChild(std::string_view content, size_t& pos, std::string_view& child);
// The first direct child whose local name is `local_name`.
bool FindChild(std::string_view element, std::string_view local_name, std::string_view& child);
// Text content with the five predefined entities and character references
// decoded (child elements are skipped).
std::string Unescape(std::string_view text);

}  // namespace nines::bench
