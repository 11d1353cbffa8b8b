// Runner: splits a run over processes and threads, drives the phases of a
// scenario, and aggregates what the loops measured.
//
// The parent process holds no connections. It forks Options::procs workers
// (each with its own open-file budget), each running Options::threads Loops.
// Parent and worker talk over two pipes with a line protocol:
//   parent -> worker   "phase N"                start phase N (loop.h Phase)
//   worker -> parent   "p a b c d e f"          progress counters, every 200 ms
//                      "d N"                    every loop finished phase N
//                      "r LEN\n<LEN bytes>"     serialised Stats (after kReport)
// The parent waits for every worker's "d N" before starting the next phase,
// which is what makes e.g. the message phase begin only once every client of
// every process is online.
#pragma once

#include "bench/options.h"
#include "bench/stats.h"

namespace nines::bench {

// What the parent measured besides the merged Stats.
struct RunResult {
  Stats stats;
  uint64_t server_rss_before_kib = 0;   // 0 without --server-pid
  uint64_t server_rss_connected_kib = 0;
  uint64_t server_rss_after_kib = 0;    // idle: after --hold
  uint64_t server_anon_before_kib = 0;  // RssAnon, same moments
  uint64_t server_anon_after_kib = 0;   // idle: after --hold; others: connected
  double setup_seconds = 0;             // presence: subscription setup
  bool setup_complete = true;
  double settle_seconds = 0;            // presence: storm start until every contact was seen
  bool settle_complete = true;
  bool drained = true;                  // every in-flight stanza arrived within --grace
  double server_cpu_run_s = -1;         // traffic with --server-pid: from the first send to the drain's end
  uint32_t procs = 0;
  uint32_t threads = 0;
};

// Runs the scenario in `options` (already checked by FinishOptions) and fills
// `result`. Returns 0, or 1 if the run could not be carried out (a worker
// died); the reason is printed to stderr.
int RunScenario(const Options& options, RunResult& result);

}  // namespace nines::bench
