// Logging: spdlog behind a few helpers.
//
// Lines about a connection carry its "[C<id>]" prefix and, once bound, its
// JID. Credentials and message bodies are never logged. Peer-caused noise goes
// through RateLimitedWarn so a hostile peer cannot flood the log.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace nines {

// Sends logs to stderr (stdout is reserved for machine-readable output such
// as the `ready` line). Call once at process start.
void InitLogging();

// Sets the global level from a config string ("info", "warn", ...).
void SetLogLevel(const std::string& level);

// True if a peer-caused warning may be logged now: at most `per_second` such
// lines a second process-wide; the rest are counted and summarised.
bool AllowPeerWarning();

}  // namespace nines
