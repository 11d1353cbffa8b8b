// Giving freed memory back to the operating system.
//
// glibc's malloc returns only the top of the heap on free(); pages freed in
// the middle stay resident. After thousands of idle sessions drop their
// parsers and buffers (xmpp::C2sSession::CheckDeadlines), those pages are
// scattered through the heap, so RSS would stay at the busy-time peak.
// malloc_trim(0) releases every free page (madvise), not just the top.
#pragma once

#include <cstddef>

namespace nines {

// Notes that `released` objects were freed (call it periodically, with 0 when
// nothing was, so a few stragglers are trimmed too), and trims the heap when enough
// have been since the last trim and that trim is at least
// `min_interval_seconds` old (six times that when only a few were freed).
// A trim takes milliseconds to tens of milliseconds with a fragmented heap of
// hundreds of MiB, and holds each malloc arena's lock meanwhile; the interval
// bounds that cost. Thread-safe; cheap when it does nothing. Returns true if
// it trimmed.
bool NoteMemoryReleased(size_t released, double min_interval_seconds = 5.0);

}  // namespace nines
