#include "xmpp/jid/jid.h"

#include <arpa/inet.h>
#include <unicode/uchar.h>
#include <unicode/uidna.h>
#include <unicode/utf8.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "xmpp/jid/precis.h"

namespace nines::xmpp {
namespace {

// RFC 7622 §3.2-§3.4: each part is at most 1023 octets after normalisation.
constexpr size_t kMaxPartBytes = 1023;

// Input guard, applied before any Unicode work: no mapping used here shrinks
// text by more than a factor of three (fullwidth ASCII, KELVIN SIGN, conjoining
// jamo), so a raw part longer than this cannot normalise to 1023 bytes.
constexpr size_t kMaxRawPartBytes = 4 * kMaxPartBytes;

Error Malformed(std::string message) {
  return MakeError(Errc::kInvalidArgument, "jid: " + std::move(message));
}

bool IsValidUtf8(std::string_view text) {
  if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) return false;
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c < 0) return false;
  }
  return true;
}

// The UTS #46 processor is immutable once built and documented thread-safe,
// so one instance serves every thread. Options: STD3 rules (letters, digits,
// hyphen only, as a DNS host name), IDNA2008 (nontransitional: ß and ς are
// kept), and the bidi/context checks of RFC 5893 and RFC 5892.
const UIDNA* Uts46() {
  static const UIDNA* instance = [] {
    UErrorCode status = U_ZERO_ERROR;
    UIDNA* idna = uidna_openUTS46(UIDNA_USE_STD3_RULES | UIDNA_CHECK_BIDI | UIDNA_CHECK_CONTEXTJ |
                                      UIDNA_CHECK_CONTEXTO | UIDNA_NONTRANSITIONAL_TO_ASCII |
                                      UIDNA_NONTRANSITIONAL_TO_UNICODE,
                                  &status);
    return U_SUCCESS(status) ? idna : nullptr;
  }();
  return instance;
}

// RFC 7622 §3.2: "[" IPv6address "]". The address is rewritten in its
// RFC 5952 canonical text form so that equal addresses compare equal.
Result<std::string> NormalizeIpLiteral(std::string_view domain) {
  if (domain.size() < 3 || domain.back() != ']') return Malformed("domainpart: unterminated IP literal");
  const std::string address(domain.substr(1, domain.size() - 2));
  in6_addr parsed{};
  if (inet_pton(AF_INET6, address.c_str(), &parsed) != 1) {
    return Malformed("domainpart: IP literal is not an IPv6 address");
  }
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, &parsed, text, sizeof text) == nullptr) {
    return MakeError(Errc::kInternal, "jid: domainpart: cannot format IPv6 address");
  }
  return "[" + std::string(text) + "]";
}

// RFC 7622 §3.2: a final label separator is stripped before anything else.
// IDNA2008 label separators: FULL STOP and its ideographic, fullwidth and
// halfwidth forms.
std::string_view StripTrailingDot(std::string_view domain) {
  for (std::string_view dot : {std::string_view("."), std::string_view("\u3002"), std::string_view("\uff0e"),
                               std::string_view("\uff61")}) {
    if (domain.size() >= dot.size() && domain.substr(domain.size() - dot.size()) == dot) {
      return domain.substr(0, domain.size() - dot.size());
    }
  }
  return domain;
}

// UTS #46 "valid" is wider than IDNA2008 PVALID: it also accepts the code
// points its mapping table marks NV8 (symbols, punctuation, ...), which RFC
// 5892 disallows. RFC 7622 §3.2 asks for IDNA2008, so each non-ASCII code
// point of the mapped U-labels is checked against the RFC 5892 derivation as
// it applies after UTS #46 mapping (which already removed Unstable and
// unassigned code points, and whose CONTEXTJ/CONTEXTO checks we enable).
bool IsIdna2008Valid(UChar32 c) {
  switch (c) {
    case 0x00DF:
    case 0x03C2:
    case 0x06FD:
    case 0x06FE:
    case 0x0F0B:
    case 0x3007:  // exceptions PVALID
    case 0x00B7:
    case 0x0375:
    case 0x05F3:
    case 0x05F4:
    case 0x30FB:  // exceptions CONTEXTO
    case 0x200C:
    case 0x200D:  // JoinControl
      return true;
    case 0x0640:
    case 0x07FA:
    case 0x302E:
    case 0x302F:
    case 0x303B:  // exceptions DISALLOWED
      return false;
    default:
      break;
  }
  if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9)) return true;  // CONTEXTO digits
  if (c >= 0x3031 && c <= 0x3035) return false;
  switch (u_getIntPropertyValue(c, UCHAR_HANGUL_SYLLABLE_TYPE)) {  // OldHangulJamo
    case U_HST_LEADING_JAMO:
    case U_HST_VOWEL_JAMO:
    case U_HST_TRAILING_JAMO:
      return false;
    default:
      break;
  }
  if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT) ||
      u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT)) {
    return false;
  }
  switch (u_getIntPropertyValue(c, UCHAR_BLOCK)) {  // IgnorableBlocks
    case UBLOCK_COMBINING_MARKS_FOR_SYMBOLS:
    case UBLOCK_MUSICAL_SYMBOLS:
    case UBLOCK_ANCIENT_GREEK_MUSICAL_NOTATION:
      return false;
    default:
      break;
  }
  return precis::IsLetterDigit(u_charType(c));  // LetterDigits
}

bool AllIdna2008Valid(std::string_view utf8) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(utf8.data());
  const auto length = static_cast<int32_t>(utf8.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c < 0) return false;
    if (c >= 0x80 && !IsIdna2008Valid(c)) return false;
  }
  return true;
}

Result<std::string> CheckLength(std::string_view part_name, std::string value) {
  if (value.size() > kMaxPartBytes) return Malformed(std::string(part_name) + " longer than 1023 bytes");
  return value;
}

// RFC 7622 §3.2: IP literal, or IDNA2008 through UTS #46 (STD3 rules).
Result<std::string> NormalizeDomainUncached(std::string_view domain) {
  if (domain.empty()) return Malformed("empty domainpart");
  if (domain.size() > kMaxRawPartBytes) return Malformed("domainpart longer than 1023 bytes");
  if (!IsValidUtf8(domain)) return Malformed("domainpart: invalid UTF-8");
  if (domain.front() == '[') return NormalizeIpLiteral(domain);

  domain = StripTrailingDot(domain);
  if (domain.empty()) return Malformed("empty domainpart");

  const UIDNA* idna = Uts46();
  if (idna == nullptr) return MakeError(Errc::kInternal, "jid: ICU UTS #46 data unavailable");
  // Mapping can grow the text (e.g. punycode decoding); ask ICU for the size
  // first when the guess is too small.
  std::string out(domain.size() * 2 + 16, '\0');
  UIDNAInfo info = UIDNA_INFO_INITIALIZER;
  UErrorCode status = U_ZERO_ERROR;
  int32_t length = uidna_nameToUnicodeUTF8(idna, domain.data(), static_cast<int32_t>(domain.size()),
                                           out.data(), static_cast<int32_t>(out.size()), &info, &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    out.assign(static_cast<size_t>(length), '\0');
    info = UIDNA_INFO_INITIALIZER;
    status = U_ZERO_ERROR;
    length = uidna_nameToUnicodeUTF8(idna, domain.data(), static_cast<int32_t>(domain.size()), out.data(),
                                     static_cast<int32_t>(out.size()), &info, &status);
  }
  if (U_FAILURE(status)) return MakeError(Errc::kInternal, "jid: domainpart: UTS #46 processing failed");
  out.resize(static_cast<size_t>(length));
  if (info.errors != 0) return Malformed("domainpart is not a valid IDNA2008 / STD3 host name");
  // UTS #46 accepts one trailing root label; one dot was already stripped, so
  // a second one means "example.com.." and is an empty label.
  if (out.empty() || out.back() == '.') return Malformed("domainpart has an empty label");
  if (!AllIdna2008Valid(out)) return Malformed("domainpart contains a code point not valid in IDNA2008");
  return CheckLength("domainpart", std::move(out));
}

}  // namespace

Result<std::string> Jid::NormalizeLocal(std::string_view local) {
  if (local.empty()) return Malformed("empty localpart");
  if (local.size() > kMaxRawPartBytes) return Malformed("localpart longer than 1023 bytes");
  Result<std::string> prepared = precis::UsernameCaseMapped(local);
  if (!prepared) {
    if (prepared.error().code != Errc::kInvalidArgument) return prepared.error();
    return Malformed("localpart: " + prepared.error().message);
  }
  // RFC 7622 §3.3.1: characters allowed by the profile but not in a
  // localpart. Checked after mapping, since width mapping can produce them
  // (FULLWIDTH COMMERCIAL AT becomes '@').
  for (char ch : *prepared) {
    switch (ch) {
      case '"':
      case '&':
      case '\'':
      case '/':
      case ':':
      case '<':
      case '>':
      case '@':
        return Malformed("localpart contains a character prohibited by RFC 7622 3.3.1");
      default:
        break;
    }
  }
  return CheckLength("localpart", std::move(*prepared));
}

Result<std::string> Jid::NormalizeResource(std::string_view resource) {
  if (resource.empty()) return Malformed("empty resourcepart");
  if (resource.size() > kMaxRawPartBytes) return Malformed("resourcepart longer than 1023 bytes");
  Result<std::string> prepared = precis::OpaqueString(resource);
  if (!prepared) {
    if (prepared.error().code != Errc::kInvalidArgument) return prepared.error();
    return Malformed("resourcepart: " + prepared.error().message);
  }
  return CheckLength("resourcepart", std::move(*prepared));
}

Result<std::string> Jid::NormalizeDomain(std::string_view domain) {
  // Domains repeat (a server's own few and its peers', on every stanza), and
  // UTS #46 processing is most of what parsing a JID costs. Each thread keeps
  // the last successes; a repeat is a hash lookup. Bounded: the table is
  // emptied when full, so endless distinct domains only cost the full path.
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  constexpr size_t kCachedDomains = 256;
  constexpr size_t kMaxCachedDomainBytes = 255;
  thread_local std::unordered_map<std::string, std::string, TransparentHash, std::equal_to<>> cache;
  if (auto it = cache.find(domain); it != cache.end()) return it->second;
  Result<std::string> normalised = NormalizeDomainUncached(domain);
  // Only inputs of DNS length are kept: a few kilobytes of characters that
  // UTS #46 drops (soft hyphens, variation selectors) can normalise to a
  // short name, and 256 of them would hold a megabyte per thread.
  if (normalised && domain.size() <= kMaxCachedDomainBytes) {
    if (cache.size() >= kCachedDomains) cache.clear();
    cache.emplace(std::string(domain), *normalised);
  }
  return normalised;
}

Result<Jid> Jid::FromParts(std::string_view local, std::string_view domain, std::string_view resource) {
  Jid jid;
  if (!local.empty()) {
    Result<std::string> normalised = NormalizeLocal(local);
    if (!normalised) return normalised.error();
    jid.local_ = std::move(*normalised);
  }
  Result<std::string> normalised_domain = NormalizeDomain(domain);
  if (!normalised_domain) return normalised_domain.error();
  jid.domain_ = std::move(*normalised_domain);
  if (!resource.empty()) {
    Result<std::string> normalised = NormalizeResource(resource);
    if (!normalised) return normalised.error();
    jid.resource_ = std::move(*normalised);
  }
  return jid;
}

Result<Jid> Jid::Parse(std::string_view text) {
  if (text.empty()) return Malformed("empty address");
  // RFC 7622 §3.1: the resourcepart is everything after the first '/'; the
  // localpart is everything before the first '@' of what remains. Both
  // separators are ASCII, so splitting bytes is safe before UTF-8 checks.
  std::string_view rest = text;
  std::string_view resource;
  bool has_resource = false;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    resource = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    has_resource = true;
  }
  std::string_view local;
  bool has_local = false;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    local = rest.substr(0, at);
    rest = rest.substr(at + 1);
    has_local = true;
  }
  if (has_local && local.empty()) return Malformed("empty localpart before '@'");
  if (has_resource && resource.empty()) return Malformed("empty resourcepart after '/'");
  if (rest.empty()) return Malformed("empty domainpart");
  return FromParts(local, rest, resource);
}

Jid Jid::Bare() const {
  Jid bare;
  bare.local_ = local_;
  bare.domain_ = domain_;
  return bare;
}

Jid Jid::WithResource(std::string resource_normalised) const {
  Jid full = Bare();
  full.resource_ = std::move(resource_normalised);
  return full;
}

std::string Jid::BareString() const {
  std::string out;
  out.reserve(local_.size() + 1 + domain_.size());
  if (!local_.empty()) {
    out += local_;
    out += '@';
  }
  out += domain_;
  return out;
}

std::string Jid::Full() const {
  std::string out = BareString();
  if (!resource_.empty()) {
    out += '/';
    out += resource_;
  }
  return out;
}

}  // namespace nines::xmpp
