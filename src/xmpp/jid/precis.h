// PRECIS profiles (RFC 8264, RFC 8265) implemented with ICU.
//
// Each function applies the profile's enforcement rules (RFC 8264 §7: width,
// additional and case mapping, NFC, directionality, then the string class's
// code point rules from the §8 derivation with the RFC 5892 Appendix A
// context rules) and returns the canonical form as UTF-8. Mapping is repeated
// until it reaches a fixed point, so the output is always accepted unchanged.
//
// Errors: kInvalidArgument naming the reason (invalid UTF-8, a disallowed
// category of code point, empty result, bidi rule failure, ...). Messages
// name a category only, never the input or a code point from it, because
// passwords pass through OpaqueString. kInternal only if ICU's data is
// missing.
//
// Case mapping is Unicode toLowerCase() applied per code point: the
// context-dependent Final_Sigma rule is not used, so "ΟΔΟΣ" becomes "οδοσ"
// and the mapping of a character never depends on its neighbours.
//
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace nines::xmpp::precis {

// RFC 5892 §2.1 LetterDigits: true for the general categories Ll, Lu, Lo,
// Nd, Lm, Mn, Mc (an ICU UCharCategory value, as u_charType returns).
// Shared by PRECIS and the IDNA2008 domain check in jid.cc.
bool IsLetterDigit(int8_t general_category);

// RFC 8265 §3.3 UsernameCaseMapped (IdentifierClass, width-mapped, lower-cased, NFC,
// bidi rule). Used for localparts.
Result<std::string> UsernameCaseMapped(std::string_view input);
// RFC 8265 §4.2 OpaqueString (FreeformClass, non-ASCII spaces to U+0020, NFC).
// Used for resourceparts and for passwords.
Result<std::string> OpaqueString(std::string_view input);

}  // namespace nines::xmpp::precis
