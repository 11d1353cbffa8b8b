// Loop: one event-loop thread of nines-bench, driving a contiguous range of
// client sessions over raw epoll.
//
// Every client of a loop belongs to a "group" of Options::GroupSize()
// consecutive accounts that only talk among themselves (a message pair, a
// fan-out ring, a presence clique). A group never spans two loops, so a
// receiver can credit its sender's window and loss counters directly: the
// per-message path takes no lock and shares no cache line with another
// thread.
//
// Memory per session (x86-64, libstdc++), measured by the idle scenario's
// "bench KiB/session" line: a Client is 128 bytes; while a session is
// idle it holds no buffers (reads go into the loop's 64 KiB scratch buffer,
// output is written straight from a scratch buffer and only an unsent tail is
// kept). Login state (SCRAM) exists only during login, traffic counters only
// in the message and presence scenarios (a few dozen bytes per peer). TLS
// adds OpenSSL's per-connection state (SSL_MODE_RELEASE_BUFFERS frees the
// record buffers of idle connections). Kernel socket memory is not counted.
//
// Threading: Run() is the thread body. Command(), done_phase() and the
// progress counters are the only members another thread may touch; stats()
// may be read after done_phase() reports kReport.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "bench/options.h"
#include "bench/stats.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace nines::bench {

// The phases of a run, in the order a scenario may use them. The coordinator
// announces each phase; a loop reports it done when its part is finished.
enum class Phase : int {
  kNone = 0,
  kConnect,     // log in every client (register: create the accounts), concurrency-limited
  kSetup,       // presence: make every group a clique of mutual subscriptions
  kDisconnect,  // close every session
  kSettle,      // presence: wait until every client has seen every contact online
  kRun,         // send traffic (idle: just hold); never "done" by itself
  kDrain,       // stop sending, wait for in-flight stanzas
  kReport,      // snapshot stats
  kClose,       // close everything; Run() returns
};
const char* PhaseName(Phase p);

struct LoopPlan {
  uint64_t first_account = 0;  // account number of the loop's client 0
  uint64_t first_index = 0;    // run-wide index of client 0 (picks the source address)
  uint32_t clients = 0;        // a multiple of the group size
  uint32_t concurrency = 1;    // logins in progress at once in this loop
  double rate = 0;             // this loop's share of --rate (stanzas/s)
  uint32_t run_id = 0;         // tags traffic so stale stanzas from older runs are recognised
};

struct Progress {
  std::atomic<uint64_t> online{0};     // sessions online now
  std::atomic<uint64_t> finished{0};   // logins done (ok or failed) this connect phase
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> presence_in{0};
};

class Loop {
 public:
  // `tls` must be non-null when options.tls is not kNone; it is shared by
  // loops (SSL_new is thread-safe on a configured context).
  Loop(const Options& options, const LoopPlan& plan, SSL_CTX* tls);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Thread body: runs until kClose.
  void Run();

  // Any thread: starts phase `p` (wakes the loop).
  void Command(Phase p);
  // Any thread: the last phase this loop has finished.
  Phase done_phase() const { return static_cast<Phase>(done_.load(std::memory_order_acquire)); }
  const Progress& progress() const { return progress_; }
  // The snapshot taken when kReport started; read it once done_phase() is
  // kReport or later (the loop no longer writes it then).
  const Stats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<int> done_{0};
  Progress progress_;
};

}  // namespace nines::bench
