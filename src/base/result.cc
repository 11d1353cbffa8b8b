#include "base/result.h"

namespace nines {

const char* ErrcName(Errc code) {
  switch (code) {
    case Errc::kNotFound: return "not-found";
    case Errc::kConflict: return "conflict";
    case Errc::kInvalidArgument: return "invalid-argument";
    case Errc::kNotAuthorized: return "not-authorized";
    case Errc::kLimitExceeded: return "limit-exceeded";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kInternal: return "internal";
  }
  return "unknown";
}

}  // namespace nines
