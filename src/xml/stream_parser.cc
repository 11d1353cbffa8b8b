#include "xml/stream_parser.h"

#include <strings.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>

#if defined(__SANITIZE_ADDRESS__)
#define NINES_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NINES_ASAN 1
#endif
#endif
#if defined(NINES_ASAN)
#include <sanitizer/asan_interface.h>
#endif

// expat_config.h tells whether the installed expat was built with XML_DTD,
// which gates the billion-laughs protection API in expat.h. Included after
// every other header: it defines generic macros (VERSION, PACKAGE, ...).
#if __has_include(<expat_config.h>)
#include <expat_config.h>
#endif
#include <expat.h>

namespace nines::xml {
namespace {

// Separates namespace URI, local name and prefix in the names expat reports
// ("uri\xFFlocal\xFFprefix"). The byte 0xFF never occurs in UTF-8, so no URI
// or name can contain it and the split is unambiguous.
constexpr XML_Char kSeparator = static_cast<XML_Char>('\xff');

// When at least this many bytes of one token are pending inside expat, input
// is held back until TokenScanner sees a possible end of that token.
constexpr size_t kDeferThreshold = 1024;

bool IsXmlWhitespace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// XEP-0198's <r/> and <a/> in the exact forms clients send, recognised
// without expat (see StreamParser::Impl::PeelSmShortcuts and Feed): a client that
// asks for and gives acknowledgements sends one of these every few
// stanzas, and expat plus a tree cost several thousand instructions for
// each. Anything else, or these in any other spelling, goes to expat.
constexpr std::string_view kSmNs = "urn:xmpp:sm:3";

// Matches `pattern` at `at` (advancing it) with both quote styles: `'` in the pattern stands for
// either quote, the same one at both ends of a value.
bool MatchQuoted(std::string_view data, size_t& at, std::string_view pattern) {
  char quote = 0;
  for (char p : pattern) {
    if (at >= data.size()) return false;
    const char c = data[at];
    if (p == '\'') {
      if (quote == 0) {
        if (c != '\'' && c != '"') return false;
        quote = c;
      } else {
        if (c != quote) return false;
        quote = 0;
      }
    } else if (c != p) {
      return false;
    }
    ++at;
  }
  return true;
}

// The length of an exact <r/> or <a/> at the start of `data` (0 if none),
// and for <a/> its 'h' (1 to 10 digits).
size_t MatchSmShortcut(std::string_view data, bool& is_ack, std::string_view& h) {
  if (data.size() < 26 || data[0] != '<' || (data[1] != 'r' && data[1] != 'a')) return 0;
  size_t at = 2;
  if (data[1] == 'r') {
    if (!MatchQuoted(data, at, " xmlns='urn:xmpp:sm:3'/>")) return 0;
    is_ack = false;
    return at;
  }
  if (!MatchQuoted(data, at, " xmlns='urn:xmpp:sm:3' h=")) return 0;
  if (at >= data.size() || (data[at] != '\'' && data[at] != '"')) return 0;
  const char quote = data[at++];
  const size_t digits = at;
  while (at < data.size() && at - digits <= 10 && data[at] >= '0' && data[at] <= '9') ++at;
  if (at == digits || at - digits > 10) return 0;
  h = data.substr(digits, at - digits);
  if (at + 3 > data.size() || data[at] != quote || data[at + 1] != '/' || data[at + 2] != '>') return 0;
  is_ack = true;
  return at + 3;
}

// Where an exact <r/> or <a/> that ends `data` starts (0 if there is none,
// or it is all of `data`).
size_t TrailingSmShortcut(std::string_view data) {
  if (data.size() < 27 || data.back() != '>') return 0;
  const size_t window = std::min<size_t>(data.size(), 48);
  const size_t from = data.size() - window;
  const void* lt = memrchr(data.data() + from, '<', window);
  if (lt == nullptr) return 0;
  const size_t start = static_cast<size_t>(static_cast<const char*>(lt) - data.data());
  bool is_ack = false;
  std::string_view h;
  if (start == 0 || MatchSmShortcut(data.substr(start), is_ack, h) != data.size() - start) return 0;
  return start;
}

// Where the next exact <r/> or <a/> in `data` starts, at `from` or after
// (from >= 1), or 0 if there is none. Found by its namespace, which both
// forms have ten bytes after their '<'.
size_t NextSmShortcut(std::string_view data, size_t from) {
  constexpr size_t kBefore = 10;  // <r xmlns=' and <a xmlns='
  size_t at = from + kBefore;
  while (at + kSmNs.size() <= data.size()) {
    const void* found = memmem(data.data() + at, data.size() - at, kSmNs.data(), kSmNs.size());
    if (found == nullptr) return 0;
    const size_t start = static_cast<size_t>(static_cast<const char*>(found) - data.data()) - kBefore;
    bool is_ack = false;
    std::string_view h;
    if (MatchSmShortcut(data.substr(start), is_ack, h) != 0) return start;
    at = start + kBefore + 1;
  }
  return 0;
}

// Follows the markup token expat holds incomplete, to tell when new input may
// complete it. expat re-scans an incomplete token from its start on every
// XML_Parse(), so feeding it a huge tag piecemeal costs O(size^2); holding
// input back until this says "may end here" makes it O(size).
//
// It must never miss a real end (that would delay a stanza); reporting an end
// that is not one only costs a re-scan. Starting at the token's first byte:
// a start or end tag ends at a '>' outside quoted attribute values, a comment
// at "-->", a processing instruction at "?>", an entity reference at the
// first byte that cannot be part of its name. For anything else (DOCTYPE and
// other "<!" markup) any '>' may be the end.
class TokenScanner {
 public:
  // Scans `bytes`; true if the token may end within them. The state carries
  // over, so a token that turns out not to have ended can be scanned on.
  bool Scan(std::string_view bytes) {
    bool may_end = false;
    for (const char c : bytes) {
      switch (state_) {
        case State::kStart:
          if (c == '<') {
            state_ = State::kOpen;
          } else if (c == '&') {
            state_ = State::kReference;
          } else if (!IsXmlWhitespace(c)) {  // prolog whitespace has no event
            state_ = State::kOther;
            may_end |= c == '>';
          }
          break;
        case State::kOpen:
          state_ = c == '!' ? State::kBang : c == '?' ? State::kPi : State::kTag;
          may_end |= c == '>';
          break;
        case State::kTag:
          if (c == '\'') state_ = State::kSingleQuoted;
          if (c == '"') state_ = State::kDoubleQuoted;
          may_end |= c == '>';
          break;
        case State::kSingleQuoted:
          if (c == '\'') state_ = State::kTag;
          break;
        case State::kDoubleQuoted:
          if (c == '"') state_ = State::kTag;
          break;
        case State::kBang:
          state_ = c == '-' ? State::kBangDash : State::kOther;
          may_end |= c == '>';
          break;
        case State::kBangDash:
          state_ = c == '-' ? State::kComment : State::kOther;
          may_end |= c == '>';
          break;
        case State::kComment:
          may_end |= c == '>' && dashes_ == 2;
          dashes_ = c == '-' ? static_cast<uint8_t>(dashes_ + (dashes_ < 2)) : 0;
          break;
        case State::kPi:
          may_end |= c == '>' && question_;
          question_ = c == '?';
          break;
        case State::kReference:
          may_end |= !IsNameByte(c);
          break;
        case State::kOther:
          may_end |= c == '>';
          break;
      }
    }
    return may_end;
  }

 private:
  enum class State : uint8_t {
    kStart,
    kOpen,
    kTag,
    kSingleQuoted,
    kDoubleQuoted,
    kBang,
    kBangDash,
    kComment,
    kPi,
    kReference,
    kOther
  };

  // Bytes that may continue a name: ASCII name characters and all of UTF-8's
  // multi-byte sequences (expat does the exact check).
  static bool IsNameByte(char c) {
    const auto b = static_cast<unsigned char>(c);
    return b >= 0x80 || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
           b == '.' || b == '-' || b == '_' || b == ':';
  }

  State state_ = State::kStart;
  uint8_t dashes_ = 0;     // kComment: trailing '-' count, up to 2
  bool question_ = false;  // kPi: the last byte was '?'
};

// ---------------------------------------------------------------------------
// Counting allocator. expat's memory suite has no user-data pointer, so the
// account to charge for new blocks is published in a thread_local for the
// duration of each call into expat (a parser is used on one thread only).
// Each block starts with a header naming its size and account, so realloc and
// free find the account without the thread_local.
//
// A parser's first ~10 KiB (the parser, its buffers, DTD and pools: a dozen
// blocks) are carved from one slab the account owns. Idle sessions free their
// parser (Compact), and thousands of small blocks freed between the
// long-lived objects of other sessions would pin their pages: glibc can give
// back a whole free page but not a page that also holds one live object. One
// slab per parser leaves one large hole whose pages malloc_trim can return
// (base/memory.h). Blocks that do not fit go to malloc as before.

// Under AddressSanitizer the slab's free space is poisoned and every block is
// followed by a poisoned redzone, so overruns inside the slab are still
// caught (ASan sees the slab as one malloc block otherwise).
#if defined(NINES_ASAN)
constexpr size_t kRedzone = 16;
void Poison(void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
void Unpoison(void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
constexpr size_t kRedzone = 0;
void Poison(void*, size_t) {}
void Unpoison(void*, size_t) {}
#endif

struct MemoryAccount {
  size_t expat_bytes = 0;  // held by expat blocks, headers included
  size_t other_bytes = 0;  // stanza tree and held-back input, estimated
  size_t cap = SIZE_MAX;
  bool refused = false;  // an allocation was refused because of `cap`

  // The slab: [slab, slab + kSlabBytes), of which the first slab_used bytes
  // are carved; slab_live blocks in it are not yet freed. Only the top block
  // is reclaimed on free (expat frees in roughly reverse order of
  // allocation only at teardown); the slab is reset when it empties.
  char* slab = nullptr;
  size_t slab_used = 0;
  size_t slab_live = 0;
  size_t slab_block_bytes = 0;  // part of expat_bytes held in the slab

  size_t Total() const { return expat_bytes + other_bytes; }
  bool InSlab(const void* p) const {
    auto* c = static_cast<const char*>(p);
    return slab != nullptr && c >= slab && c < slab + kSlabBytes;
  }
  // Frees the slab once nothing in it is live (the parser was freed).
  void ReleaseSlab() {
    if (slab != nullptr && slab_live == 0) {
      Unpoison(slab, kSlabBytes);
      std::free(slab);
      slab = nullptr;
      slab_used = 0;
    }
  }

  // A fresh expat parser with our handlers holds ~10.3 KiB, ~12.5 KiB after
  // its pools have seen typical stanzas (stream_parser_test measures this).
  static constexpr size_t kSlabBytes = 12 * 1024;
};

thread_local MemoryAccount* t_account = nullptr;

struct alignas(16) BlockHeader {
  size_t size;  // bytes including this header
  MemoryAccount* account;
};
static_assert(sizeof(BlockHeader) == 16);

class AllocScope {
 public:
  explicit AllocScope(MemoryAccount* account) : saved_(t_account) { t_account = account; }
  ~AllocScope() { t_account = saved_; }
  AllocScope(const AllocScope&) = delete;
  AllocScope& operator=(const AllocScope&) = delete;

 private:
  MemoryAccount* saved_;
};

bool Admit(MemoryAccount* account, size_t growth) {
  if (account == nullptr) return true;
  if (growth > account->cap || account->Total() > account->cap - growth) {
    account->refused = true;
    return false;
  }
  return true;
}

// Bytes a block of `total` bytes (header included) takes in the slab.
constexpr size_t RoundUp16(size_t n) { return ((n + 15) & ~size_t{15}) + kRedzone; }

// Carves `total` bytes (header included) from the account's slab, or returns
// null if it has no room.
BlockHeader* SlabCarve(MemoryAccount* account, size_t total) {
  if (account == nullptr) return nullptr;
  const size_t rounded = RoundUp16(total);
  if (account->slab == nullptr) {
    if (account->slab_live != 0 || rounded > MemoryAccount::kSlabBytes) return nullptr;
    account->slab = static_cast<char*>(std::malloc(MemoryAccount::kSlabBytes));
    if (account->slab == nullptr) return nullptr;
    account->slab_used = 0;
    Poison(account->slab, MemoryAccount::kSlabBytes);
  }
  if (rounded > MemoryAccount::kSlabBytes - account->slab_used) return nullptr;
  auto* header = reinterpret_cast<BlockHeader*>(account->slab + account->slab_used);
  Unpoison(header, total);
  account->slab_used += rounded;
  ++account->slab_live;
  return header;
}

void SlabFree(MemoryAccount* account, BlockHeader* header) {
  --account->slab_live;
  const size_t taken = RoundUp16(header->size);
  Poison(header, taken - kRedzone);
  char* end = reinterpret_cast<char*>(header) + taken;
  if (end == account->slab + account->slab_used) account->slab_used -= taken;
  if (account->slab_live == 0) account->slab_used = 0;
}

void* CountingMalloc(size_t size) {
  if (size > SIZE_MAX - sizeof(BlockHeader) - 32) return nullptr;
  const size_t total = size + sizeof(BlockHeader);
  MemoryAccount* account = t_account;
  if (!Admit(account, total)) return nullptr;
  BlockHeader* header = SlabCarve(account, total);
  if (header != nullptr) {
    account->slab_block_bytes += total;
  } else {
    header = static_cast<BlockHeader*>(std::malloc(total));
  }
  if (header == nullptr) return nullptr;
  header->size = total;
  header->account = account;
  if (account) account->expat_bytes += total;
  return header + 1;
}

void CountingFree(void* ptr) {
  if (ptr == nullptr) return;
  BlockHeader* header = static_cast<BlockHeader*>(ptr) - 1;
  MemoryAccount* account = header->account;
  if (account) account->expat_bytes -= header->size;
  if (account && account->InSlab(header)) {
    account->slab_block_bytes -= header->size;
    SlabFree(account, header);
  } else {
    std::free(header);
  }
}

void* CountingRealloc(void* ptr, size_t size) {
  if (ptr == nullptr) return CountingMalloc(size);
  if (size > SIZE_MAX - sizeof(BlockHeader) - 32) return nullptr;
  BlockHeader* header = static_cast<BlockHeader*>(ptr) - 1;
  MemoryAccount* account = header->account;
  const size_t old_total = header->size;
  const size_t total = size + sizeof(BlockHeader);
  if (total > old_total && !Admit(account, total - old_total)) return nullptr;
  if (account && account->InSlab(header)) {
    char* start = reinterpret_cast<char*>(header);
    const bool top = start + RoundUp16(old_total) == account->slab + account->slab_used;
    const size_t offset = static_cast<size_t>(start - account->slab);
    if (RoundUp16(total) <= RoundUp16(old_total) ||
        (top && RoundUp16(total) <= MemoryAccount::kSlabBytes - offset)) {  // in place
      if (top) account->slab_used = offset + RoundUp16(total);
      Poison(header, RoundUp16(old_total) - kRedzone);
      Unpoison(header, total);
      header->size = total;
      account->expat_bytes = account->expat_bytes - old_total + total;
      account->slab_block_bytes = account->slab_block_bytes - old_total + total;
      return header + 1;
    }
    auto* moved = static_cast<BlockHeader*>(std::malloc(total));
    if (moved == nullptr) return nullptr;
    std::memcpy(moved, header, std::min(old_total, total));
    moved->size = total;
    account->expat_bytes = account->expat_bytes - old_total + total;
    account->slab_block_bytes -= old_total;
    SlabFree(account, header);
    return moved + 1;
  }
  auto* moved = static_cast<BlockHeader*>(std::realloc(header, total));
  if (moved == nullptr) return nullptr;
  moved->size = total;
  if (account) account->expat_bytes = account->expat_bytes - old_total + total;
  return moved + 1;
}

const XML_Memory_Handling_Suite kMemorySuite = {CountingMalloc, CountingRealloc, CountingFree};

// Hash salt for expat's attribute-name tables. Seeding a per-thread generator
// once avoids a getrandom() call for every parser expat would otherwise make.
unsigned long NextHashSalt() {
  thread_local uint64_t state = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }();
  // splitmix64
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<unsigned long>(z | 1);  // 0 would make expat pick its own
}

// A name as expat reports it with namespace triplets.
struct QName {
  std::string_view uri;  // empty: no namespace
  std::string_view local;
  std::string_view prefix;  // empty: unprefixed

  size_t QualifiedLength() const { return prefix.empty() ? local.size() : prefix.size() + 1 + local.size(); }
};

QName SplitName(const XML_Char* name) {
  const char* first = std::strchr(name, kSeparator);
  if (first == nullptr) return QName{{}, name, {}};
  QName q;
  q.uri = std::string_view(name, first - name);
  const char* local = first + 1;
  const char* second = std::strchr(local, kSeparator);
  if (second == nullptr) {
    q.local = local;
  } else {
    q.local = std::string_view(local, second - local);
    q.prefix = second + 1;
  }
  return q;
}

// The attribute name stored in Element (see element.h).
std::string AttributeName(const QName& q) {
  if (q.uri.empty()) return std::string(q.local);
  std::string name;
  if (q.uri == kXmlNs) {
    name.reserve(4 + q.local.size());
    name.append("xml:").append(q.local);
  } else {
    name.reserve(q.uri.size() + q.local.size() + 2);
    name.append("{").append(q.uri).append("}").append(q.local);
  }
  return name;
}

bool AllWhitespace(std::string_view text) { return std::all_of(text.begin(), text.end(), IsXmlWhitespace); }

// Heap bytes a std::string holds beyond the object itself.
size_t HeapBytes(const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; }
size_t HeapBytes(std::string_view s) { return s.size() > 15 ? s.size() + 1 : 0; }

ParseError ErrorFromExpat(XML_Error code) {
  switch (code) {
    case XML_ERROR_NO_MEMORY:
      return ParseError::kPolicyViolation;
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
      return ParseError::kUnsupportedEncoding;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_PARAM_ENTITY_REF:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
    case XML_ERROR_NOT_STANDALONE:
    case XML_ERROR_MISPLACED_XML_PI:
    case XML_ERROR_FEATURE_REQUIRES_XML_DTD:
    case XML_ERROR_AMPLIFICATION_LIMIT_BREACH:
      return ParseError::kRestrictedXml;
    default:
      return ParseError::kNotWellFormed;
  }
}

}  // namespace

const char* StreamErrorCondition(ParseError error) {
  switch (error) {
    case ParseError::kNone:
      return "undefined-condition";
    case ParseError::kNotWellFormed:
      return "not-well-formed";
    case ParseError::kRestrictedXml:
      return "restricted-xml";
    case ParseError::kPolicyViolation:
      return "policy-violation";
    case ParseError::kInvalidNamespace:
      return "invalid-namespace";
    case ParseError::kBadFormat:
      return "bad-format";
    case ParseError::kUnsupportedEncoding:
      return "unsupported-encoding";
  }
  return "undefined-condition";
}

// Thread safety: none; see the header. The thread_local allocation account
// is set only for the duration of each call into expat.
//
// Invariants:
//   - `parser` is null before the first Feed(), after Compact(), and once the
//     stream has closed or failed; otherwise it has been given exactly `fed`
//     bytes (the replayed header included).
//   - Offsets (`fed`, `consumed`, `stanza_start`) are in the byte coordinates
//     of the current `parser`. Every token in content makes expat call a
//     handler, and every handler calls Advance(), so [consumed, fed) is
//     exactly what expat holds unparsed: one incomplete token (or a CR, or a
//     partial UTF-8 sequence).
//   - That pending region is copied in `tail` while shorter than
//     kDeferThreshold; beyond, `scanning` is set and `scanner` follows it.
//   - `deferred` holds input not yet given to expat: the stream's first
//     byte, or input that cannot complete a large pending token.
//   - `stack` holds the open elements of the stanza being built, outermost
//     first; stack[0] == &stanza. depth == stack.size() + 1 once the root is
//     open.
struct StreamParser::Impl {
  enum class Phase { kHeader, kOpen, kClosed, kFailed };

  explicit Impl(ParserLimits l) { ApplyLimits(l); }

  ~Impl() { FreeParser(); }

  // --- configuration -------------------------------------------------------

  void ApplyLimits(const ParserLimits& l) {
    limits = l;
    memory.cap = l.max_memory_bytes != 0 ? l.max_memory_bytes : 16 * l.max_stanza_bytes + 64 * 1024;
  }

  bool CreateParser() {
    AllocScope scope(&memory);
    parser = XML_ParserCreate_MM("UTF-8", &kMemorySuite, &kSeparator);
    if (parser == nullptr) {
      memory.ReleaseSlab();  // a creation that failed part-way freed its blocks
      return false;
    }
    Configure();
    return true;
  }

  void FreeParser() {
    if (parser == nullptr) {
      memory.ReleaseSlab();
      return;
    }
    {
      AllocScope scope(&memory);
      XML_ParserFree(parser);
    }
    parser = nullptr;
    in_cdata = false;
    memory.ReleaseSlab();
  }

  // Installs handlers and protections; needed after create and after
  // XML_ParserReset, which clears them.
  void Configure() {
    XML_SetUserData(parser, this);
    XML_SetReturnNSTriplet(parser, XML_TRUE);
    XML_SetHashSalt(parser, NextHashSalt());
    XML_SetParamEntityParsing(parser, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(parser, &Impl::StartElementThunk, &Impl::EndElementThunk);
    XML_SetCharacterDataHandler(parser, &Impl::CharacterDataThunk);
    // Only so that every token in content reports an event (see Advance()).
    XML_SetCdataSectionHandler(parser, &Impl::CdataStartThunk, &Impl::CdataEndThunk);
    XML_SetStartNamespaceDeclHandler(parser, &Impl::NamespaceDeclThunk);
    XML_SetXmlDeclHandler(parser, &Impl::XmlDeclThunk);
    // RFC 6120 §11.1: none of these may appear. The DOCTYPE handler fires as
    // soon as "<!DOCTYPE name" is seen, before any internal subset is parsed,
    // so no entity is ever declared, let alone expanded; the others are
    // defence in depth.
    XML_SetStartDoctypeDeclHandler(parser, &Impl::DoctypeThunk);
    XML_SetEntityDeclHandler(parser, &Impl::EntityDeclThunk);
    XML_SetUnparsedEntityDeclHandler(parser, &Impl::UnparsedEntityDeclThunk);
    XML_SetNotationDeclHandler(parser, &Impl::NotationDeclThunk);
    XML_SetElementDeclHandler(parser, &Impl::ElementDeclThunk);
    XML_SetAttlistDeclHandler(parser, &Impl::AttlistDeclThunk);
    XML_SetCommentHandler(parser, &Impl::CommentThunk);
    XML_SetProcessingInstructionHandler(parser, &Impl::ProcessingInstructionThunk);
#ifdef XML_DTD
    // Only the predefined entities can be expanded here (each one turns 4-6
    // input bytes into 1, an amplification of at most 1.25), so anything
    // above 2 is an attack that got past the handlers above.
    XML_SetBillionLaughsAttackProtectionMaximumAmplification(parser, 2.0f);
    XML_SetBillionLaughsAttackProtectionActivationThreshold(parser, 64 * 1024);
#endif
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
    // Reparse deferral can hold a complete stanza back until more input
    // arrives, which a request/response protocol cannot afford. Our own
    // deferral (see Feed) bounds the cost of trickled tags instead.
    XML_SetReparseDeferralEnabled(parser, XML_FALSE);
#endif
  }

  // --- feeding ---------------------------------------------------------------

  size_t Pending() const { return fed - consumed; }

  // Where the current budget starts and how large it is.
  void Budget(uint64_t& base, size_t& cap) const {
    if (phase == Phase::kHeader) {
      base = 0;
      cap = limits.max_header_bytes;
    } else if (depth >= 2) {
      base = stanza_start;
      cap = limits.max_stanza_bytes;
    } else {
      base = consumed;  // the next stanza's bytes, if any, start here
      cap = limits.max_stanza_bytes;
    }
  }

  // Bytes still allowed into the current budget, counting held-back input.
  size_t Allowance() const {
    uint64_t base;
    size_t cap;
    Budget(base, cap);
    const uint64_t used = fed + deferred.size() - base;
    return used >= cap ? 0 : cap - static_cast<size_t>(used);
  }

  void Feed(std::string_view data, std::vector<ParseEvent>& sink) {
    if (phase == Phase::kClosed || phase == Phase::kFailed || data.empty()) return;
    // A whitespace keepalive (RFC 6120 §4.6.1) to a compacted stream: nothing
    // for expat to see, so do not rebuild a parser just to drop it.
    if (parser == nullptr && phase == Phase::kOpen && AllWhitespace(data)) return;
    out = &sink;
    if (phase == Phase::kOpen) {
      // Also before a compacted parser is rebuilt: an idle session's <r/>
      // or <a/> then needs no expat at all.
      data = PeelSmShortcuts(data);
      if (data.empty() || (parser == nullptr && AllWhitespace(data))) {
        Finish();
        return;
      }
    }
    if (parser == nullptr && !Recreate()) {
      Finish();
      return;
    }
    if (fed == 0) {
      // The stream's first two bytes are checked together, before expat sees
      // either (see CheckEncodingSignature), so hold a lone first byte.
      if (deferred.empty() && data.size() == 1) {
        Hold(data);
      } else if (!deferred.empty()) {
        std::string held = TakeHeld();
        held.append(data);
        ParseAndTrack(held);
      } else {
        ParseAndTrack(data);
      }
      Finish();
      return;
    }
    if (scanning) {
      // A large token is pending in expat: hand input over only once it may
      // complete that token.
      if (!ScanOrHold(data)) return;
      if (!deferred.empty()) {
        std::string held = TakeHeld();
        held.append(data);
        ParseAndTrack(held);
        Finish();
        return;
      }
    }
    // A client's <r/> and <a/> ride in the writes that carry its stanzas,
    // at their end or between them (five messages, an <r/>, five more):
    // parse up to each exact form, and take it without expat if that left
    // expat at the top level with nothing pending. Otherwise it is part of
    // a stanza, and expat gets it with what follows. Between stanzas they
    // are looked for only once the stream has sent one (sm_seen): the search
    // costs about a third of an instruction per byte.
    // Not while the scanner follows a large token: it has seen all of `data`
    // already, and a split would restart it part way.
    bool first = true;
    while (phase == Phase::kOpen && !scanning) {
      const size_t start = sm_seen ? NextSmShortcut(data, 1) : first ? TrailingSmShortcut(data) : 0;
      first = false;
      if (start == 0) break;
      ParseAndTrack(data.substr(0, start));
      if (Dead()) {
        Finish();
        return;
      }
      data = data.substr(start);
      if (Pending() != 0 || scanning || in_cdata) {
        // A token is open across it (a comment, say, which expat refuses
        // in its time): not a form to take, and no more splitting, which
        // would make expat scan that token again from its start each time.
        // The rest goes to expat in one piece, past the scanner if it has
        // just started to follow the token.
        if (scanning && !ScanOrHold(data)) return;
        break;
      }
      data = PeelSmShortcuts(data);
      if (data.empty()) {
        Finish();
        return;
      }
    }
    ParseAndTrack(data);
    Finish();
  }

  // While a large token is pending (scanning): lets `data` through to expat
  // only if it may end that token; otherwise holds it (or fails, past the
  // allowance) and finishes the call. True: go on and parse `data`.
  bool ScanOrHold(std::string_view data) {
    if (scanner.Scan(data)) return true;
    if (data.size() > Allowance()) {
      Fail(ParseError::kPolicyViolation, TooLargeText());
    } else {
      Hold(data);
    }
    Finish();
    return false;
  }

  // True when the next input byte starts a top-level element: the stream is
  // open, no stanza is in progress and expat holds nothing unparsed (or
  // there is no parser: Compact() drops it only then).
  bool AtTopLevel() const {
    if (phase != Phase::kOpen) return false;
    // Limits so tight that expat would refuse these forms: let it.
    if (limits.max_attributes < 2 || limits.max_name_length < 5) return false;
    if (parser == nullptr) return true;
    return depth == 1 && Pending() == 0 && !scanning && !in_cdata && deferred.empty();
  }

  // Takes the exact <r/> and <a/> forms (MatchSmShortcut) off the front of
  // `data` while at the top level, emitting each as the stanza expat would
  // have produced; returns the rest. The bytes never reach expat, so its
  // byte coordinates (fed, consumed) stay its own.
  std::string_view PeelSmShortcuts(std::string_view data) {
    while (!data.empty() && AtTopLevel()) {
      bool is_ack = false;
      std::string_view h;
      const size_t n = MatchSmShortcut(data, is_ack, h);
      if (n == 0) break;
      ParseEvent& event = out->emplace_back();
      event.kind = ParseEvent::Kind::kStanza;
      event.element = Element(is_ack ? "a" : "r", std::string(kSmNs));
      if (is_ack) event.element.AppendAttr("h", std::string(h));
      ++sm_shortcuts;
      sm_seen = true;
      if (has_pending_limits) {
        has_pending_limits = false;
        ApplyLimits(pending_limits);
      }
      data.remove_prefix(n);
    }
    return data;
  }

  // Parses `data` and brings `tail` / `scanning` up to date.
  void ParseAndTrack(std::string_view data) {
    const uint64_t consumed_before = consumed;
    const bool was_scanning = scanning;
    Parse(data);
    if (Dead()) return;
    // No event: still the same token, which the scanner has already followed
    // through `data`.
    if (was_scanning && consumed == consumed_before) return;
    TrackPending(data);
  }

  // The bytes expat holds unconsumed are the last Pending() bytes of `tail`
  // followed by `data`. Small ones are copied into `tail` (so InStanza() can
  // tell whitespace, and so a token that grows large can be scanned from its
  // start); large ones are scanned and forgotten.
  void TrackPending(std::string_view data) {
    scanning = false;
    const size_t pending = Pending();
    if (pending == 0) {
      tail.clear();
      return;
    }
    if (pending <= data.size()) {
      tail.assign(data.substr(data.size() - pending));
    } else if (pending - data.size() <= tail.size()) {
      tail.erase(0, tail.size() - (pending - data.size()));
      tail.append(data);
    } else {
      // Cannot happen (the pending token never starts before the last one
      // did); stay safe with a scanner that treats any '>' as a possible end.
      tail.assign(">");
    }
    if (pending < kDeferThreshold) return;
    scanner = TokenScanner();
    scanner.Scan(tail);
    scanning = true;
    tail = std::string();
  }

  void Finish() {
    if (Dead()) Release();
    out = nullptr;
  }

  std::string TakeHeld() {
    std::string held = std::move(deferred);
    deferred = std::string();
    memory.other_bytes -= held_bytes;
    held_bytes = 0;
    return held;
  }

  void Hold(std::string_view data) {
    deferred.append(data);
    memory.other_bytes -= held_bytes;
    held_bytes = HeapBytes(deferred);
    memory.other_bytes += held_bytes;
  }

  std::string TooLargeText() const {
    return phase == Phase::kHeader
               ? "stream header exceeds " + std::to_string(limits.max_header_bytes) + " bytes"
               : "stanza exceeds " + std::to_string(limits.max_stanza_bytes) + " bytes";
  }

  // Hands `data` to expat in slices no larger than the current allowance.
  void Parse(std::string_view data) {
    while (!data.empty()) {
      const size_t allowance = Allowance();
      if (allowance == 0) {
        Fail(ParseError::kPolicyViolation, TooLargeText());
        break;
      }
      const size_t n = std::min({data.size(), allowance, static_cast<size_t>(INT_MAX)});
      const std::string_view slice = data.substr(0, n);
      if (fed < 2 && !CheckEncodingSignature(slice)) break;
      XML_Status status;
      {
        AllocScope scope(&memory);
        in_parse = true;
        status = XML_Parse(parser, slice.data(), static_cast<int>(n), XML_FALSE);
        in_parse = false;
      }
      fed += n;
      if (status != XML_STATUS_OK) {
        if (phase != Phase::kClosed && phase != Phase::kFailed) FailFromExpat();
        break;
      }
      data.remove_prefix(n);
    }
  }

  // RFC 6120 §11.6: only UTF-8. A UTF-16/32 byte order mark or a NUL in the
  // first two bytes (expat would switch to UTF-16 on seeing one, whatever
  // encoding it was told) is reported as such rather than as bad XML.
  // Feed() guarantees both bytes arrive in the same slice.
  bool CheckEncodingSignature(std::string_view slice) {
    for (size_t i = 0; i < slice.size() && fed + i < 2; ++i) {
      const auto byte = static_cast<unsigned char>(slice[i]);
      if (byte == 0x00 || (fed + i == 0 && (byte == 0xFE || byte == 0xFF))) {
        Fail(ParseError::kUnsupportedEncoding, "stream is not UTF-8");
        return false;
      }
    }
    return true;
  }

  // Creates the parser; after Compact() also replays the stream header.
  bool Recreate() {
    if (!CreateParser()) {
      Fail(ParseError::kPolicyViolation, "cannot allocate parser");
      return false;
    }
    fed = consumed = 0;
    if (phase != Phase::kOpen) return true;
    depth = 0;
    namespace_decls = 0;
    replaying = true;
    XML_Status status;
    {
      AllocScope scope(&memory);
      in_parse = true;
      status = XML_Parse(parser, replay.data(), static_cast<int>(replay.size()), XML_FALSE);
      in_parse = false;
    }
    replaying = false;
    fed = replay.size();
    if (status != XML_STATUS_OK || depth != 1) {
      Fail(ParseError::kPolicyViolation, "cannot replay stream header");
      return false;
    }
    consumed = fed;
    tail.clear();
    scanning = false;
    return true;
  }

  // Drops everything a dead parser holds.
  void Release() {
    FreeParser();
    stack.clear();
    stack.shrink_to_fit();
    stanza = Element();
    memory.other_bytes = 0;
    tree_bytes = held_bytes = 0;
    deferred = std::string();
    tail = std::string();
    scanning = false;
    root_decls = std::string();
  }

  // --- errors ----------------------------------------------------------------

  void Fail(ParseError error, std::string text) {
    if (phase == Phase::kFailed || phase == Phase::kClosed) return;
    phase = Phase::kFailed;
    if (out != nullptr) {
      ParseEvent& event = out->emplace_back();
      event.kind = ParseEvent::Kind::kError;
      event.error = error;
      event.error_text = std::move(text);
    }
    if (in_parse) XML_StopParser(parser, XML_FALSE);
  }

  void FailFromExpat() {
    const XML_Error code = XML_GetErrorCode(parser);
    std::string text = XML_ErrorString(code);
    if (code == XML_ERROR_NO_MEMORY && memory.refused) {
      text = "parser memory exceeds " + std::to_string(memory.cap) + " bytes";
    }
    text += " at line " + std::to_string(XML_GetCurrentLineNumber(parser)) + ", column " +
            std::to_string(XML_GetCurrentColumnNumber(parser));
    Fail(ErrorFromExpat(code), std::move(text));
  }

  bool Dead() const { return phase == Phase::kFailed || phase == Phase::kClosed; }

  // --- handlers ----------------------------------------------------------------

  // Marks everything up to the end of the current event as parsed.
  void Advance() {
    const XML_Index index = XML_GetCurrentByteIndex(parser);
    if (index < 0) return;
    const uint64_t end =
        static_cast<uint64_t>(index) + static_cast<uint64_t>(XML_GetCurrentByteCount(parser));
    if (end > consumed) consumed = end;
  }

  bool CheckName(const QName& q, const char* what) {
    if (q.QualifiedLength() <= limits.max_name_length) return true;
    Fail(ParseError::kPolicyViolation,
         std::string(what) + " name longer than " + std::to_string(limits.max_name_length) + " bytes");
    return false;
  }

  // Copies expat's attributes into `element`, checking names.
  bool CopyAttributes(Element& element, const XML_Char** atts, size_t count) {
    element.ReserveAttrs(count);
    for (const XML_Char** a = atts; *a != nullptr; a += 2) {
      const QName q = SplitName(a[0]);
      if (!CheckName(q, "attribute")) return false;
      std::string name = AttributeName(q);
      std::string value(a[1]);
      tree_bytes += sizeof(Attribute) + HeapBytes(name) + HeapBytes(value);
      element.AppendAttr(std::move(name), std::move(value));
    }
    return true;
  }

  void OnStartElement(const XML_Char* raw_name, const XML_Char** atts) {
    if (Dead()) return;
    Advance();
    const QName q = SplitName(raw_name);
    if (!CheckName(q, "element")) return;
    size_t count = 0;
    for (const XML_Char** a = atts; *a != nullptr; a += 2) ++count;
    const size_t declarations = namespace_decls;
    namespace_decls = 0;
    if (count + declarations > limits.max_attributes) {
      Fail(ParseError::kPolicyViolation,
           "more than " + std::to_string(limits.max_attributes) + " attributes on an element");
      return;
    }
    if (depth == 0) {
      OnRoot(q, atts, count);
      return;
    }
    if (depth >= limits.max_depth + 1) {
      Fail(ParseError::kPolicyViolation, "stanza nested deeper than " + std::to_string(limits.max_depth));
      return;
    }
    Element* element;
    if (depth == 1) {
      stanza_start = static_cast<uint64_t>(XML_GetCurrentByteIndex(parser));
      stanza.set_name(std::string(q.local));
      stanza.set_ns(std::string(q.uri));
      element = &stanza;
      tree_bytes = sizeof(Element);
    } else {
      element = &stack.back()->AddChild(std::string(q.local), std::string(q.uri));
      tree_bytes += sizeof(Element) + sizeof(Element::Node);
    }
    tree_bytes += HeapBytes(q.local) + HeapBytes(q.uri);
    ++depth;
    stack.push_back(element);
    if (count != 0 && !CopyAttributes(*element, atts, count)) return;
    CheckTreeMemory();
  }

  void OnRoot(const QName& q, const XML_Char** atts, size_t count) {
    if (q.local != "stream") {
      Fail(ParseError::kBadFormat, "stream root is <" + std::string(q.local) + ">, not <stream:stream>");
      return;
    }
    if (q.uri != kStreamsNs) {
      Fail(ParseError::kInvalidNamespace, "stream root in namespace '" + std::string(q.uri) + "'");
      return;
    }
    depth = 1;
    phase = Phase::kOpen;
    if (replaying) return;
    // What Compact() needs to put the root's namespace scope back.
    replay.clear();
    replay.append("<");
    if (!q.prefix.empty()) replay.append(q.prefix).append(":");
    replay.append(q.local).append(root_decls).append(">");
    root_decls = std::string();

    Element root(std::string(q.local), std::string(q.uri));
    if (!CopyAttributes(root, atts, count)) return;
    tree_bytes = 0;
    if (has_root_default_ns) root.AppendAttr("xmlns", std::move(root_default_ns));
    root_default_ns = std::string();
    has_root_default_ns = false;
    ParseEvent& event = out->emplace_back();
    event.kind = ParseEvent::Kind::kStreamOpen;
    event.element = std::move(root);
  }

  void OnEndElement() {
    if (Dead()) return;
    Advance();
    if (depth == 1) {
      depth = 0;
      phase = Phase::kClosed;
      out->emplace_back().kind = ParseEvent::Kind::kStreamClose;
      XML_StopParser(parser, XML_FALSE);
      return;
    }
    stack.pop_back();
    --depth;
    if (depth == 1) {
      ParseEvent& event = out->emplace_back();
      event.kind = ParseEvent::Kind::kStanza;
      event.element = std::move(stanza);
      stanza = Element();
      if (!sm_seen && event.element.name().size() == 1 && event.element.ns() == kSmNs) sm_seen = true;
      memory.other_bytes -= std::min(memory.other_bytes, tree_accounted);
      tree_bytes = tree_accounted = 0;
      if (has_pending_limits) {
        has_pending_limits = false;
        ApplyLimits(pending_limits);
      }
    }
  }

  void OnCharacterData(const XML_Char* text, int length) {
    if (Dead()) return;
    Advance();
    const std::string_view view(text, static_cast<size_t>(length));
    if (depth <= 1) {
      if (!AllWhitespace(view)) Fail(ParseError::kBadFormat, "text outside of a stanza");
      return;
    }
    stack.back()->AddText(view);
    tree_bytes += view.size();
    CheckTreeMemory();
  }

  // Stanza memory counts against the same cap as expat's.
  void CheckTreeMemory() {
    memory.other_bytes += tree_bytes - tree_accounted;
    tree_accounted = tree_bytes;
    if (memory.Total() > memory.cap) {
      Fail(ParseError::kPolicyViolation, "parser memory exceeds " + std::to_string(memory.cap) + " bytes");
    }
  }

  void OnNamespaceDecl(const XML_Char* prefix, const XML_Char* uri) {
    if (Dead()) return;
    ++namespace_decls;
    if (depth != 0 || replaying) return;
    root_decls.append(" xmlns");
    if (prefix != nullptr) root_decls.append(":").append(prefix);
    root_decls.append("='");
    AppendEscaped(root_decls, uri != nullptr ? uri : "");
    root_decls.append("'");
    if (prefix == nullptr) {
      root_default_ns = uri != nullptr ? uri : "";
      has_root_default_ns = true;
    }
  }

  void OnXmlDecl(const XML_Char* version, const XML_Char* encoding) {
    if (Dead()) return;
    Advance();
    if (encoding != nullptr && strcasecmp(encoding, "UTF-8") != 0) {
      Fail(ParseError::kUnsupportedEncoding, std::string("encoding '") + encoding + "' is not UTF-8");
    }
  }

  void Restricted(const char* what) { Fail(ParseError::kRestrictedXml, std::string(what) + " not allowed"); }

  static Impl* Self(void* data) { return static_cast<Impl*>(data); }
  static void XMLCALL StartElementThunk(void* data, const XML_Char* name, const XML_Char** atts) {
    Self(data)->OnStartElement(name, atts);
  }
  static void XMLCALL EndElementThunk(void* data, const XML_Char*) { Self(data)->OnEndElement(); }
  static void XMLCALL CharacterDataThunk(void* data, const XML_Char* text, int length) {
    Self(data)->OnCharacterData(text, length);
  }
  static void XMLCALL NamespaceDeclThunk(void* data, const XML_Char* prefix, const XML_Char* uri) {
    Self(data)->OnNamespaceDecl(prefix, uri);
  }
  static void XMLCALL XmlDeclThunk(void* data, const XML_Char* version, const XML_Char* encoding, int) {
    Self(data)->OnXmlDecl(version, encoding);
  }
  static void XMLCALL DoctypeThunk(void* data, const XML_Char*, const XML_Char*, const XML_Char*, int) {
    Self(data)->Restricted("DOCTYPE");
  }
  static void XMLCALL EntityDeclThunk(void* data, const XML_Char*, int, const XML_Char*, int, const XML_Char*,
                                      const XML_Char*, const XML_Char*, const XML_Char*) {
    Self(data)->Restricted("entity declaration");
  }
  static void XMLCALL UnparsedEntityDeclThunk(void* data, const XML_Char*, const XML_Char*, const XML_Char*,
                                              const XML_Char*, const XML_Char*) {
    Self(data)->Restricted("entity declaration");
  }
  static void XMLCALL NotationDeclThunk(void* data, const XML_Char*, const XML_Char*, const XML_Char*,
                                        const XML_Char*) {
    Self(data)->Restricted("notation declaration");
  }
  static void XMLCALL ElementDeclThunk(void* data, const XML_Char*, XML_Content* model) {
    Impl* self = Self(data);
    // The handler owns the content model.
    AllocScope scope(&self->memory);
    XML_FreeContentModel(self->parser, model);
    self->Restricted("element declaration");
  }
  static void XMLCALL AttlistDeclThunk(void* data, const XML_Char*, const XML_Char*, const XML_Char*,
                                       const XML_Char*, int) {
    Self(data)->Restricted("attribute list declaration");
  }
  static void XMLCALL CommentThunk(void* data, const XML_Char*) { Self(data)->Restricted("comment"); }
  // expat is inside a CDATA section between these two, with nothing left
  // unparsed on our side: Compact() must not drop that state.
  static void XMLCALL CdataStartThunk(void* data) {
    Self(data)->in_cdata = true;
    if (!Self(data)->Dead()) Self(data)->Advance();
  }
  static void XMLCALL CdataEndThunk(void* data) {
    Self(data)->in_cdata = false;
    if (!Self(data)->Dead()) Self(data)->Advance();
  }
  static void XMLCALL ProcessingInstructionThunk(void* data, const XML_Char*, const XML_Char*) {
    Self(data)->Restricted("processing instruction");
  }

  // --- state -------------------------------------------------------------------

  ParserLimits limits;
  ParserLimits pending_limits;
  bool has_pending_limits = false;
  MemoryAccount memory;
  XML_Parser parser = nullptr;
  std::vector<ParseEvent>* out = nullptr;  // set for the duration of Feed()
  Phase phase = Phase::kHeader;
  bool in_parse = false;
  bool replaying = false;
  bool in_cdata = false;       // expat is inside <![CDATA[ ... ]]>
  bool scanning = false;       // a token of kDeferThreshold bytes or more is pending
  TokenScanner scanner;        // follows that token while `scanning`
  size_t depth = 0;            // open elements, the root included
  size_t namespace_decls = 0;  // declarations seen since the last start tag
  uint64_t fed = 0;            // bytes handed to `parser`
  uint64_t consumed = 0;       // end of the last event expat reported
  uint64_t sm_shortcuts = 0;   // <r/> and <a/> taken without expat (PeelSmShortcuts)
  bool sm_seen = false;        // the stream sent an XEP-0198 <r/> or <a/>: look for them between stanzas too
  uint64_t stanza_start = 0;   // offset of the current stanza's '<'
  Element stanza;
  std::vector<Element*> stack;
  size_t tree_bytes = 0;      // estimated heap of `stanza`
  size_t tree_accounted = 0;  // part of tree_bytes already in memory.other_bytes
  size_t held_bytes = 0;      // part of memory.other_bytes that is `deferred`
  std::string deferred;       // input held back, see Feed()
  std::string tail;           // copy of the pending bytes while fewer than kDeferThreshold
  std::string replay;         // "<stream:stream xmlns:stream='...' xmlns='...'>"
  std::string root_decls;     // the root's declarations, while it is parsed
  std::string root_default_ns;
  bool has_root_default_ns = false;
};

StreamParser::StreamParser(ParserLimits limits) : impl_(std::make_unique<Impl>(limits)) {}

StreamParser::~StreamParser() = default;
StreamParser::StreamParser(StreamParser&&) noexcept = default;
StreamParser& StreamParser::operator=(StreamParser&&) noexcept = default;

void StreamParser::Feed(std::string_view data, std::vector<ParseEvent>& out) { impl_->Feed(data, out); }

void StreamParser::Reset() {
  Impl& s = *impl_;
  if (s.phase == Impl::Phase::kClosed || s.phase == Impl::Phase::kFailed) s.Release();
  if (s.parser != nullptr) {
    AllocScope scope(&s.memory);
    XML_ParserReset(s.parser, "UTF-8");
    s.Configure();
  }
  s.in_cdata = false;
  s.phase = Impl::Phase::kHeader;
  s.depth = 0;
  s.namespace_decls = 0;
  s.fed = s.consumed = s.stanza_start = 0;
  s.scanning = false;
  s.tail = std::string();
  s.stack.clear();
  s.stanza = Element();
  s.memory.other_bytes = 0;
  s.memory.refused = false;
  s.tree_bytes = s.tree_accounted = s.held_bytes = 0;
  s.deferred = std::string();
  s.replay.clear();
  s.root_decls = std::string();
  s.root_default_ns = std::string();
  s.has_root_default_ns = false;
  if (s.has_pending_limits) {
    s.has_pending_limits = false;
    s.ApplyLimits(s.pending_limits);
  }
}

void StreamParser::SetLimits(ParserLimits limits) {
  if (impl_->depth >= 2) {
    impl_->pending_limits = limits;
    impl_->has_pending_limits = true;
  } else {
    impl_->has_pending_limits = false;
    impl_->ApplyLimits(limits);
  }
}

uint64_t StreamParser::SmShortcuts() const { return impl_->sm_shortcuts; }

bool StreamParser::InStanza() const {
  const Impl& s = *impl_;
  if (s.phase != Impl::Phase::kOpen) return false;
  return s.depth >= 2 || s.scanning || s.in_cdata || !s.deferred.empty() || !AllWhitespace(s.tail);
}

bool StreamParser::Compact() {
  Impl& s = *impl_;
  if (s.parser == nullptr) return false;
  const bool idle_in_stream = s.phase == Impl::Phase::kOpen && !InStanza();
  const bool untouched = s.phase == Impl::Phase::kHeader && s.fed == 0;
  if (!idle_in_stream && !untouched) return false;
  s.FreeParser();
  s.fed = s.consumed = 0;
  s.tail = std::string();  // whitespace only, or InStanza() would be true
  s.stack.shrink_to_fit();
  s.stanza = Element();
  return true;
}

size_t StreamParser::MemoryUsage() const {
  const Impl& s = *impl_;
  return sizeof(Impl) + s.memory.Total() + (s.memory.slab != nullptr ? MemoryAccount::kSlabBytes : 0) -
         s.memory.slab_block_bytes + HeapBytes(s.replay) + HeapBytes(s.root_decls) + HeapBytes(s.tail) +
         s.stack.capacity() * sizeof(Element*);
}

}  // namespace nines::xml
