// Stats: what one event loop measured, mergeable over loops and processes.
//
// Timestamps are CLOCK_MONOTONIC nanoseconds, which is one clock for every
// process on the machine, so spans can be computed across processes.
//
// Thread safety: a plain value; each loop fills its own and hands it over
// once the loop has stopped touching it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "bench/histogram.h"

namespace nines::bench {

uint64_t NowNs();

struct Stats {
  // Logins (the last connect phase; a presence run's setup round is not counted).
  uint64_t attempted = 0;
  uint64_t online = 0;          // logged in, bound, initial presence sent
  uint64_t failed = 0;
  uint64_t first_start_ns = 0;  // first connect() of the phase (0 = none)
  uint64_t last_online_ns = 0;  // last login completed
  Histogram login_ns;           // connect() to presence sent
  std::map<std::string, uint64_t> failures;  // reason -> count
  uint64_t registered = 0;      // register: accounts created
  uint64_t already_registered = 0;

  // Traffic (message, presence updates).
  uint64_t run_start_ns = 0;
  uint64_t run_end_ns = 0;      // sending stopped
  uint64_t sent = 0;
  uint64_t expected = 0;        // deliveries the sends should cause
  uint64_t received = 0;        // distinct deliveries, any time
  uint64_t received_in_run = 0; // distinct deliveries before sending stopped
  uint64_t duplicates = 0;
  uint64_t reordered = 0;       // arrived after a later stanza of the same stream
  uint64_t stanza_errors = 0;   // type='error' replies to our traffic
  uint64_t sm_acks = 0;         // --sm: XEP-0198 <a/> answers from the server
  uint64_t unexpected = 0;      // stanzas we could not attribute
  uint64_t disconnects = 0;     // sessions lost after login
  uint64_t last_receive_ns = 0;
  Histogram latency_ns;

  // Presence login storm.
  uint64_t presence_in = 0;     // available presences from contacts (not self)
  uint64_t presence_distinct = 0;  // (user, contact) pairs seen online; duplicates excluded
  uint64_t presence_expected = 0;
  uint64_t presence_last_ns = 0;

  // Memory of the bench process (per process; summed when merged).
  uint64_t bench_rss_before_kib = 0;
  uint64_t bench_rss_after_kib = 0;

  void Merge(const Stats& other);
  // One "key value" line per field; histograms and failures in their own
  // lines. Parse() adds a serialised Stats into this one (Merge semantics);
  // false on malformed input.
  std::string Serialize() const;
  bool MergeSerialized(std::string_view text);
};

// VmRSS of a process in KiB from /proc/<pid>/status (pid 0: this process);
// 0 if it cannot be read.
uint64_t ReadRssKib(int pid);
// RssAnon: the resident anonymous memory (heap, stacks), without the pages
// of code and data files a process has touched. Per-session memory is
// anonymous; file pages first touched by the first logins are a one-off.
uint64_t ReadAnonRssKib(int pid);
// CPU seconds (user + system) a process has used, from /proc/<pid>/stat
// (pid 0: this process); negative if it cannot be read.
double ReadCpuSeconds(int pid);
// utime + stime, in clock ticks, from /proc/<pid>/stat text; negative if
// malformed. The command name may hold spaces and parentheses, so fields
// are counted from its last ')'.
int64_t StatCpuTicks(std::string_view stat);
// The value in KiB of `field` (e.g. "VmRSS:") in /proc/<pid>/status text.
uint64_t StatusFieldKib(std::string_view status, std::string_view field);

}  // namespace nines::bench
