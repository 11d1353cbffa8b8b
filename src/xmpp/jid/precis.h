// PRECIS profiles (RFC 8264, RFC 8265) implemented with ICU.
//
// Each function applies the profile's preparation and enforcement rules and
// returns the canonical form, or kInvalidArgument naming the reason (a
// disallowed code point, empty result, bidi rule failure, ...).
//
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace nines::xmpp::precis {

// RFC 8265 §3.3 UsernameCaseMapped (IdentifierClass, width-mapped, case-folded, NFC).
Result<std::string> UsernameCaseMapped(std::string_view input);
// RFC 8265 §4.2 OpaqueString (FreeformClass, non-ASCII spaces to U+0020, NFC).
// Used for resourceparts and for passwords.
Result<std::string> OpaqueString(std::string_view input);

}  // namespace nines::xmpp::precis
