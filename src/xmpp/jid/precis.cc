#include "xmpp/jid/precis.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uscript.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace nines::xmpp::precis {
namespace {

// Code points are handled as UTF-32 between steps: the context and bidi rules
// need indexed access to neighbours, and ICU's normaliser is fed UTF-16.
using CodePoints = std::u32string;

// Enforcement is repeated until the output is a fixed point (RFC 8264 §7
// requires idempotence; a mapping can expose new work for an earlier step,
// e.g. case mapping producing a decomposed sequence). Real input settles
// after one or two passes; the bound stops a pathological case from looping.
constexpr int kMaxEnforcementPasses = 4;

Error Invalid(std::string_view profile, std::string_view reason) {
  std::string message(profile);
  message += ": ";
  message += reason;
  return MakeError(Errc::kInvalidArgument, std::move(message));
}

// Strict UTF-8 decoding: overlong forms, surrogates, code points above
// U+10FFFF and truncated sequences are all errors (ICU's U8_NEXT reports them
// as negative values).
bool DecodeUtf8(std::string_view input, CodePoints& out) {
  if (input.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) return false;
  const auto* bytes = reinterpret_cast<const uint8_t*>(input.data());
  const auto length = static_cast<int32_t>(input.size());
  out.clear();
  out.reserve(input.size());
  int32_t i = 0;
  while (i < length) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c < 0) return false;
    out.push_back(static_cast<char32_t>(c));
  }
  return true;
}

std::string EncodeUtf8(const CodePoints& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) {
    uint8_t buf[U8_MAX_LENGTH];
    int32_t n = 0;
    U8_APPEND_UNSAFE(buf, n, static_cast<UChar32>(cp));  // cp is a valid scalar value
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
  }
  return out;
}

const icu::Normalizer2* Nfc() {
  static const icu::Normalizer2* instance = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
    return U_SUCCESS(status) ? n : nullptr;
  }();
  return instance;
}

const icu::Normalizer2* Nfkc() {
  static const icu::Normalizer2* instance = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFKCInstance(status);
    return U_SUCCESS(status) ? n : nullptr;
  }();
  return instance;
}

const icu::Normalizer2* Nfkd() {
  static const icu::Normalizer2* instance = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFKDInstance(status);
    return U_SUCCESS(status) ? n : nullptr;
  }();
  return instance;
}

bool ToNfc(const CodePoints& in, CodePoints& out) {
  const icu::Normalizer2* nfc = Nfc();
  if (nfc == nullptr) return false;
  icu::UnicodeString text = icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(in.data()),
                                                          static_cast<int32_t>(in.size()));
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString normalised = nfc->normalize(text, status);
  if (U_FAILURE(status)) return false;
  out.clear();
  for (int32_t i = 0; i < normalised.length();) {
    UChar32 c = normalised.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return true;
}

// ---------------------------------------------------------------------------
// RFC 8264 §8/§9: the derived property of a code point.

enum class Derived {
  kPValid,      // allowed in both classes
  kFreePValid,  // ID_DIS / FREE_PVAL: allowed only in FreeformClass
  kContextJ,    // join controls: allowed if RFC 5892 Appendix A holds
  kContextO,    // allowed if RFC 5892 Appendix A holds
  kDisallowed,
  kUnassigned,
};

// Why a code point was rejected, for the error message. Deliberately names a
// category only, never the code point: OpaqueString prepares passwords.
const char* kReasonUnassigned = "unassigned code point";
const char* kReasonControl = "control character";
const char* kReasonIgnorable = "default-ignorable or noncharacter code point";
const char* kReasonOldHangulJamo = "conjoining Hangul jamo";
const char* kReasonException = "code point disallowed by RFC 5892 exceptions";
const char* kReasonOther = "disallowed code point (format, private use, surrogate or separator)";

bool LetterDigitCategory(int8_t gc) {
  switch (gc) {
    case U_LOWERCASE_LETTER:
    case U_UPPERCASE_LETTER:
    case U_OTHER_LETTER:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_MODIFIER_LETTER:
    case U_NON_SPACING_MARK:
    case U_COMBINING_SPACING_MARK:
      return true;
    default:
      return false;
  }
}

// The FreeformClass-only categories: OtherLetterDigits (R), Spaces (N),
// Symbols (O), Punctuation (P). Returns nullptr if gc is none of them, else a
// description used when IdentifierClass rejects the code point.
const char* FreeformOnlyCategory(int8_t gc) {
  switch (gc) {
    case U_TITLECASE_LETTER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
    case U_ENCLOSING_MARK:
      return "titlecase letter, letter-like or enclosing number/mark not allowed in an identifier";
    case U_SPACE_SEPARATOR:
      return "space not allowed in an identifier";
    case U_MATH_SYMBOL:
    case U_CURRENCY_SYMBOL:
    case U_MODIFIER_SYMBOL:
    case U_OTHER_SYMBOL:
      return "symbol not allowed in an identifier";
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      return "non-ASCII punctuation not allowed in an identifier";
    default:
      return nullptr;
  }
}

// HasCompat (RFC 8264 §9.17): toNFKC(cp) != cp.
bool HasCompat(UChar32 c) {
  const icu::Normalizer2* nfkc = Nfkc();
  if (nfkc == nullptr) return true;  // fail closed; surfaces as a rejection
  UErrorCode status = U_ZERO_ERROR;
  UBool normalised = nfkc->isNormalized(icu::UnicodeString(c), status);
  return U_FAILURE(status) || !normalised;
}

// Follows the derivation order of RFC 8264 §8 exactly; the order matters (e.g.
// ASCII7 wins over everything after it, HasCompat wins over LetterDigits).
// `reason` is set for kDisallowed, kUnassigned and kFreePValid.
Derived Derive(UChar32 c, const char*& reason) {
  // Exceptions (F), RFC 5892 §2.6.
  switch (c) {
    case 0x00DF:
    case 0x03C2:
    case 0x06FD:
    case 0x06FE:
    case 0x0F0B:
    case 0x3007:
      return Derived::kPValid;
    case 0x00B7:
    case 0x0375:
    case 0x05F3:
    case 0x05F4:
    case 0x30FB:
      return Derived::kContextO;
    case 0x0640:
    case 0x07FA:
    case 0x302E:
    case 0x302F:
    case 0x303B:
      reason = kReasonException;
      return Derived::kDisallowed;
    default:
      break;
  }
  if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9)) return Derived::kContextO;
  if (c >= 0x3031 && c <= 0x3035) {
    reason = kReasonException;
    return Derived::kDisallowed;
  }
  // BackwardCompatible (G) is empty.
  const int8_t gc = u_charType(c);
  const bool noncharacter = u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT);
  if (gc == U_UNASSIGNED && !noncharacter) {  // Unassigned (J)
    reason = kReasonUnassigned;
    return Derived::kUnassigned;
  }
  if (c >= 0x21 && c <= 0x7E) return Derived::kPValid;                        // ASCII7 (K)
  if (u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return Derived::kContextJ;  // JoinControl (H)
  switch (u_getIntPropertyValue(c, UCHAR_HANGUL_SYLLABLE_TYPE)) {             // OldHangulJamo (I)
    case U_HST_LEADING_JAMO:
    case U_HST_VOWEL_JAMO:
    case U_HST_TRAILING_JAMO:
      reason = kReasonOldHangulJamo;
      return Derived::kDisallowed;
    default:
      break;
  }
  if (noncharacter || u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT)) {  // (M)
    reason = kReasonIgnorable;
    return Derived::kDisallowed;
  }
  if (gc == U_CONTROL_CHAR) {  // Controls (L)
    reason = kReasonControl;
    return Derived::kDisallowed;
  }
  if (HasCompat(c)) {  // (Q)
    reason = "compatibility character not allowed in an identifier";
    return Derived::kFreePValid;
  }
  if (LetterDigitCategory(gc)) return Derived::kPValid;   // LetterDigits (A)
  if (const char* category = FreeformOnlyCategory(gc)) {  // (R), (N), (O), (P)
    reason = category;
    return Derived::kFreePValid;
  }
  reason = kReasonOther;
  return Derived::kDisallowed;
}

// ---------------------------------------------------------------------------
// RFC 5892 Appendix A: contextual rules.

constexpr uint8_t kViramaCombiningClass = 9;

int32_t JoiningType(char32_t c) { return u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_JOINING_TYPE); }

UScriptCode ScriptOf(char32_t c) {
  UErrorCode status = U_ZERO_ERROR;
  UScriptCode script = uscript_getScript(static_cast<UChar32>(c), &status);
  return U_SUCCESS(status) ? script : USCRIPT_INVALID_CODE;
}

bool ContextRuleHolds(const CodePoints& s, size_t i) {
  const char32_t c = s[i];
  const size_t n = s.size();
  const bool after_virama =
      i > 0 && u_getCombiningClass(static_cast<UChar32>(s[i - 1])) == kViramaCombiningClass;
  switch (c) {
    case 0x200C: {  // ZERO WIDTH NON-JOINER, A.1
      if (after_virama) return true;
      // (Joining_Type:{L,D})(Joining_Type:T)* ZWNJ (Joining_Type:T)*(Joining_Type:{R,D})
      size_t left = i;
      while (left > 0 && JoiningType(s[left - 1]) == U_JT_TRANSPARENT) --left;
      if (left == 0) return false;
      const int32_t before = JoiningType(s[left - 1]);
      if (before != U_JT_LEFT_JOINING && before != U_JT_DUAL_JOINING) return false;
      size_t right = i + 1;
      while (right < n && JoiningType(s[right]) == U_JT_TRANSPARENT) ++right;
      if (right == n) return false;
      const int32_t after = JoiningType(s[right]);
      return after == U_JT_RIGHT_JOINING || after == U_JT_DUAL_JOINING;
    }
    case 0x200D:  // ZERO WIDTH JOINER, A.2
      return after_virama;
    case 0x00B7:  // MIDDLE DOT, A.3: only between two 'l' (Catalan "l·l")
      return i > 0 && i + 1 < n && s[i - 1] == U'l' && s[i + 1] == U'l';
    case 0x0375:  // GREEK LOWER NUMERAL SIGN (KERAIA), A.4
      return i + 1 < n && ScriptOf(s[i + 1]) == USCRIPT_GREEK;
    case 0x05F3:  // HEBREW PUNCTUATION GERESH, A.5
    case 0x05F4:  // HEBREW PUNCTUATION GERSHAYIM, A.6
      return i > 0 && ScriptOf(s[i - 1]) == USCRIPT_HEBREW;
    case 0x30FB:  // KATAKANA MIDDLE DOT, A.7
      for (char32_t other : s) {
        if (other == 0x30FB) continue;
        const UScriptCode script = ScriptOf(other);
        if (script == USCRIPT_HIRAGANA || script == USCRIPT_KATAKANA || script == USCRIPT_HAN) return true;
      }
      return false;
    default:
      break;
  }
  if (c >= 0x0660 && c <= 0x0669) {  // ARABIC-INDIC DIGITS, A.8
    for (char32_t other : s) {
      if (other >= 0x06F0 && other <= 0x06F9) return false;
    }
    return true;
  }
  if (c >= 0x06F0 && c <= 0x06F9) {  // EXTENDED ARABIC-INDIC DIGITS, A.9
    for (char32_t other : s) {
      if (other >= 0x0660 && other <= 0x0669) return false;
    }
    return true;
  }
  return false;  // a CONTEXTO/CONTEXTJ code point without a rule is disallowed
}

enum class StringClass { kIdentifier, kFreeform };

// The behavioural rule (RFC 8264 §7 step 6): every code point must be valid
// in the class, contextual ones only where their rule holds.
Result<void> CheckClass(std::string_view profile, StringClass string_class, const CodePoints& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char* reason = kReasonOther;
    switch (Derive(static_cast<UChar32>(s[i]), reason)) {
      case Derived::kPValid:
        break;
      case Derived::kFreePValid:
        if (string_class == StringClass::kIdentifier) return Invalid(profile, reason);
        break;
      case Derived::kContextJ:
      case Derived::kContextO:
        if (!ContextRuleHolds(s, i))
          return Invalid(profile, "contextual code point used outside its context");
        break;
      case Derived::kDisallowed:
      case Derived::kUnassigned:
        return Invalid(profile, reason);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// RFC 5893 §2: the Bidi Rule, applied only to strings that contain a
// right-to-left code point (R, AL or AN), as RFC 8265 §3.3.2 step 5 says.

Result<void> CheckBidi(std::string_view profile, const CodePoints& s) {
  bool has_rtl = false;
  for (char32_t c : s) {
    const UCharDirection d = u_charDirection(static_cast<UChar32>(c));
    if (d == U_RIGHT_TO_LEFT || d == U_RIGHT_TO_LEFT_ARABIC || d == U_ARABIC_NUMBER) {
      has_rtl = true;
      break;
    }
  }
  if (!has_rtl || s.empty()) return {};

  const UCharDirection first = u_charDirection(static_cast<UChar32>(s.front()));
  bool rtl;
  if (first == U_RIGHT_TO_LEFT || first == U_RIGHT_TO_LEFT_ARABIC) {
    rtl = true;
  } else if (first == U_LEFT_TO_RIGHT) {
    rtl = false;
  } else {
    return Invalid(profile, "bidi rule 1: must start with a strong directional character");
  }

  bool has_en = false;
  bool has_an = false;
  UCharDirection last_non_nsm = first;
  for (char32_t c : s) {
    const UCharDirection d = u_charDirection(static_cast<UChar32>(c));
    switch (d) {
      case U_EUROPEAN_NUMBER:
        has_en = true;
        break;
      case U_ARABIC_NUMBER:
        has_an = true;
        break;
      default:
        break;
    }
    bool allowed;
    switch (d) {
      case U_EUROPEAN_NUMBER:
      case U_EUROPEAN_NUMBER_SEPARATOR:
      case U_COMMON_NUMBER_SEPARATOR:
      case U_EUROPEAN_NUMBER_TERMINATOR:
      case U_OTHER_NEUTRAL:
      case U_BOUNDARY_NEUTRAL:
      case U_DIR_NON_SPACING_MARK:
        allowed = true;
        break;
      case U_RIGHT_TO_LEFT:
      case U_RIGHT_TO_LEFT_ARABIC:
      case U_ARABIC_NUMBER:
        allowed = rtl;  // rule 2 allows them; rule 5 does not
        break;
      case U_LEFT_TO_RIGHT:
        allowed = !rtl;
        break;
      default:
        allowed = false;
        break;
    }
    if (!allowed)
      return Invalid(profile, rtl ? "bidi rule 2: character not allowed in an RTL string"
                                  : "bidi rule 5: character not allowed in an LTR string");
    if (d != U_DIR_NON_SPACING_MARK) last_non_nsm = d;
  }
  if (rtl) {
    if (last_non_nsm != U_RIGHT_TO_LEFT && last_non_nsm != U_RIGHT_TO_LEFT_ARABIC &&
        last_non_nsm != U_EUROPEAN_NUMBER && last_non_nsm != U_ARABIC_NUMBER) {
      return Invalid(profile, "bidi rule 3: RTL string must end with R, AL, EN or AN");
    }
    if (has_en && has_an) return Invalid(profile, "bidi rule 4: European and Arabic-Indic digits mixed");
  } else if (last_non_nsm != U_LEFT_TO_RIGHT && last_non_nsm != U_EUROPEAN_NUMBER) {
    return Invalid(profile, "bidi rule 6: LTR string must end with L or EN");
  }
  return {};
}

// ---------------------------------------------------------------------------
// Mapping rules.

// RFC 8265 §3.3.2 step 1 / RFC 8264 §9.11: fullwidth and halfwidth code
// points map to their decomposition mapping (<wide> / <narrow>).
void MapWidth(CodePoints& s) {
  const icu::Normalizer2* nfkd = Nfkd();
  if (nfkd == nullptr) return;  // the NFC step reports the missing ICU data
  CodePoints out;
  out.reserve(s.size());
  for (char32_t c : s) {
    const auto type = u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_DECOMPOSITION_TYPE);
    icu::UnicodeString mapped;
    if ((type == U_DT_WIDE || type == U_DT_NARROW) &&
        nfkd->getRawDecomposition(static_cast<UChar32>(c), mapped)) {
      for (int32_t i = 0; i < mapped.length();) {
        UChar32 m = mapped.char32At(i);
        out.push_back(static_cast<char32_t>(m));
        i += U16_LENGTH(m);
      }
    } else {
      out.push_back(c);
    }
  }
  s.swap(out);
}

// RFC 8265 §3.3.2 step 3: Unicode toLowerCase(), language-independent. The
// mapping is applied code point by code point, so the context-dependent
// Final_Sigma rule of SpecialCasing.txt does not fire: "ΟΔΟΣ" maps to "οδοσ"
// (not "οδος") and a given code point always lowercases the same way. The
// unconditional multi-code-point mapping (U+0130 -> "i\u0307") is kept.
bool MapLowerCase(CodePoints& s) {
  CodePoints out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(c >= U'A' && c <= U'Z' ? c + (U'a' - U'A') : c);
      continue;
    }
    UChar src[U16_MAX_LENGTH];
    int32_t src_len = 0;
    U16_APPEND_UNSAFE(src, src_len, static_cast<UChar32>(c));  // c is a valid scalar value
    UChar dest[16];
    UErrorCode status = U_ZERO_ERROR;
    const int32_t dest_len = u_strToLower(dest, 16, src, src_len, "", &status);
    if (U_FAILURE(status)) return false;
    for (int32_t i = 0; i < dest_len;) {
      UChar32 m;
      U16_NEXT(dest, i, dest_len, m);
      out.push_back(static_cast<char32_t>(m));
    }
  }
  s.swap(out);
  return true;
}

// RFC 8265 §4.2.2 step 2: non-ASCII spaces (Zs) map to U+0020.
void MapSpaces(CodePoints& s) {
  for (char32_t& c : s) {
    if (c >= 0x80 && u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR) c = U' ';
  }
}

// True when every byte is in [lowest, U+007E]. For such input the profiles
// reduce to plain byte work: ASCII has no right-to-left characters and
// nothing that width mapping or NFC changes, and RFC 8264 §9.11 makes ASCII7
// (U+0021-U+007E) PVALID in both string classes, with U+0020 a space that
// only FreeformClass allows. Nearly every address on the message path
// (`to` on each stanza) takes this path instead of the decode, the
// per-code-point ICU property lookups and the re-encode.
bool AllBetween(std::string_view input, unsigned char lowest) {
  for (char ch : input) {
    const auto byte = static_cast<unsigned char>(ch);
    if (byte < lowest || byte > 0x7e) return false;
  }
  return true;
}

}  // namespace

Result<std::string> UsernameCaseMapped(std::string_view input) {
  constexpr std::string_view kProfile = "UsernameCaseMapped";
  if (!input.empty() && AllBetween(input, 0x21)) {  // printable ASCII: lowercase it
    std::string out(input);
    for (char& ch : out) {
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    }
    return out;
  }
  CodePoints s;
  if (!DecodeUtf8(input, s)) return Invalid(kProfile, "invalid UTF-8");
  if (s.empty()) return Invalid(kProfile, "empty string");

  // Mapping steps 1-4 (width, no additional mapping, case, NFC), repeated to
  // a fixed point. (Printable ASCII took the fast path above.)
  bool stable = false;
  for (int pass = 0; pass < kMaxEnforcementPasses && !stable; ++pass) {
    CodePoints next = s;
    MapWidth(next);
    if (!MapLowerCase(next)) return MakeError(Errc::kInternal, "UsernameCaseMapped: case mapping failed");
    if (!ToNfc(next, next)) return MakeError(Errc::kInternal, "UsernameCaseMapped: NFC normalisation failed");
    stable = next == s;
    s.swap(next);
  }
  if (!stable) return Invalid(kProfile, "mapping does not reach a stable form");
  if (s.empty()) return Invalid(kProfile, "empty string");

  // Step 5: directionality; then the IdentifierClass behavioural rule.
  if (Result<void> bidi = CheckBidi(kProfile, s); !bidi) return bidi.error();
  if (Result<void> valid = CheckClass(kProfile, StringClass::kIdentifier, s); !valid) return valid.error();
  return EncodeUtf8(s);
}

Result<std::string> OpaqueString(std::string_view input) {
  constexpr std::string_view kProfile = "OpaqueString";
  if (!input.empty() && AllBetween(input, 0x20)) return std::string(input);  // printable ASCII and space
  CodePoints s;
  if (!DecodeUtf8(input, s)) return Invalid(kProfile, "invalid UTF-8");
  if (s.empty()) return Invalid(kProfile, "empty string");

  // Mapping: non-ASCII spaces to U+0020 (step 2), NFC (step 4). No width,
  // case or directionality rules for this profile. (Printable ASCII and
  // spaces took the fast path above.)
  bool stable = false;
  for (int pass = 0; pass < kMaxEnforcementPasses && !stable; ++pass) {
    CodePoints next = s;
    MapSpaces(next);
    if (!ToNfc(next, next)) return MakeError(Errc::kInternal, "OpaqueString: NFC normalisation failed");
    stable = next == s;
    s.swap(next);
  }
  if (!stable) return Invalid(kProfile, "mapping does not reach a stable form");
  if (s.empty()) return Invalid(kProfile, "empty string");

  if (Result<void> valid = CheckClass(kProfile, StringClass::kFreeform, s); !valid) return valid.error();
  return EncodeUtf8(s);
}

bool IsLetterDigit(int8_t general_category) { return LetterDigitCategory(general_category); }

}  // namespace nines::xmpp::precis
