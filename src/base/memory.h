// Giving freed memory back to the operating system.
//
// Release builds link jemalloc as the process allocator (NINES_HAVE_JEMALLOC;
// docs/architecture.md says why). jemalloc returns freed pages on its own
// decay timer, but only while the arena is in use, so after idle sessions
// drop their parsers a trim flushes this thread's cache and purges every
// arena. Builds without it (the sanitizer presets) use the system's malloc;
// with glibc's, this is what a trim is for:
//
// glibc's malloc returns only the top of the heap on free(); pages freed in
// the middle stay resident. After thousands of idle sessions drop their
// parsers and buffers (xmpp::C2sSession::CheckDeadlines), those pages are
// scattered through the heap, so RSS would stay at the busy-time peak.
// malloc_trim(0) releases every free page (madvise), not just the top.
//
// A trim of a fragmented heap of hundreds of MiB takes milliseconds to tens
// of milliseconds and holds each malloc arena's lock meanwhile, so it is
// rate-limited, and it backs off while trims give little back: after a login
// burst they return hundreds of MiB; in steady state, where freed parsers are
// reused by the next ones, they return almost nothing.
#pragma once

#include <cstddef>

namespace nines {

// When to trim. Pure (the caller passes the clock), so tests can drive it.
class TrimPolicy {
 public:
  struct Options {
    double min_interval_seconds = 5;    // between trims while they pay off
    double max_interval_seconds = 300;  // the back-off's ceiling
    size_t many = 256;                  // released objects worth a prompt trim
    size_t burst = 1024;                // so many wait only the shortest interval, even backed off
    double few_factor = 6;              // fewer than `many` wait this many intervals
    size_t productive_bytes = 1 << 20;  // a trim returning less backs off
  };
  TrimPolicy() : TrimPolicy(Options{}) {}
  explicit TrimPolicy(Options options) : options_(options), interval_(options.min_interval_seconds) {}

  // Adds `released` freed objects; true if a trim should run now (the
  // pending count is then taken). With nothing pending, never.
  bool Note(size_t released, double now_seconds);
  // What the trim gave back: little doubles the interval (up to the
  // ceiling), a productive trim resets it.
  void Trimmed(size_t bytes_returned);
  double interval_seconds() const { return interval_; }

 private:
  Options options_;
  double interval_;
  size_t pending_ = 0;
  bool trimmed_once_ = false;
  double last_ = 0;
};

// "jemalloc" or "system malloc": what serves malloc in this process, checked
// (an allocation jemalloc does not count means the link order lost it).
const char* ProcessAllocator();

// Notes that `released` objects were freed; call it on every loop tick, with
// 0 when nothing was, so stragglers are trimmed too. Trims the heap when the
// process-wide TrimPolicy says so. Thread-safe. Returns true if it trimmed.
bool NoteMemoryReleased(size_t released);

}  // namespace nines
