// Strict base64 (RFC 4648 §4) for SASL payloads (RFC 6120 §6.4.2).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nines::xmpp {

std::string Base64Encode(std::string_view data);
// Returns nullopt for anything but canonical padded base64 (no whitespace).
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace nines::xmpp
