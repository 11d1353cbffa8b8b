// Strict base64 (RFC 4648 §4) for SASL payloads (RFC 6120 §6.4.2).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nines::xmpp {

std::string Base64Encode(std::string_view data);
// Returns nullopt for anything but canonical padded base64 (no whitespace).
std::optional<std::string> Base64Decode(std::string_view text);

// Lower-case hex, two digits per byte (tokens, digests, ids).
std::string HexEncode(std::string_view data);
// Hex of either case back to bytes; nullopt for an odd length or a non-hex digit.
std::optional<std::string> HexDecode(std::string_view text);

}  // namespace nines::xmpp
