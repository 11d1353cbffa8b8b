// Options: everything one nines-bench run is told on its command line.
//
// `nines-bench SCENARIO [options]`; see ParseOptions() for the flags and
// bench/README.md for what each scenario measures.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace nines::bench {

enum class Scenario { kConnect, kIdle, kMessage, kPresence, kRegister };
enum class TlsMode { kNone, kStartTls, kDirect };
enum class Mechanism { kAuto, kPlain, kScramSha1, kScramSha256 };

const char* ScenarioName(Scenario s);
const char* TlsModeName(TlsMode t);
const char* MechanismName(Mechanism m);

struct Options {
  Scenario scenario = Scenario::kConnect;

  // Target.
  std::string host = "127.0.0.1";
  uint16_t port = 5222;
  std::string domain = "localhost";
  TlsMode tls = TlsMode::kNone;
  Mechanism mechanism = Mechanism::kAuto;

  // Accounts: <prefix><first> ... <prefix><first + users - 1>.
  std::string prefix = "user";
  uint64_t first = 1;
  uint64_t users = 100;
  std::string password = "bench";
  std::string resource = "bench";

  // Load shape.
  uint32_t concurrency = 200;  // logins in progress at once, over all threads and processes
  uint32_t threads = 1;        // event loops per process
  uint32_t procs = 0;          // processes; 0 = as many as the open-file limit requires
  uint32_t sources = 0;        // loopback source addresses; 0 = one per 10,000 sessions
  std::string source_base = "127.0.0.2";
  double login_timeout = 60;   // seconds from connect to bound and present

  // Idle.
  double hold = 15;  // seconds to hold the sessions before sampling the server's memory

  // Message and presence traffic.
  double duration = 10;   // seconds of sending
  double rate = 0;        // total stanzas/s over all senders; 0 = as fast as the window allows
  uint32_t window = 16;   // stanzas per sender sent but not yet received (0 = unlimited with --rate)
  uint32_t fanout = 1;    // message: peers each client sends to (1 = pairs)
  double grace = 5;       // seconds to wait for stragglers after sending stops
  uint32_t body_size = 0; // extra body bytes per message
  bool origin_id = false;  // message: an XEP-0359 <origin-id/> in every message, as modern clients send
  bool sm = false;        // XEP-0198: enable stream management and answer every <r/>
  uint32_t sm_every = 1;  // --sm: ask for an ack after every this many messages sent
  bool sm_resume = false; // --sm: ask for resumption too (<enable resume='true'/>)

  // Presence.
  uint32_t contacts = 10;       // roster size K: users form cliques of K+1
  double setup_timeout = 120;   // seconds for the subscription setup phase

  // Measurement and output.
  int server_pid = 0;  // sample this process's RSS (VmRSS) before and after
  bool json = false;
  int progress = -1;   // -1 = when stderr is a terminal
  bool verbose = false;

  // Derived: the size of a group of clients that talk to each other.
  uint32_t GroupSize() const;
};

// Parses argv. Returns -1 if the run should go ahead, otherwise the exit
// status to leave with (0 after --help, 2 after a usage error); messages go
// to `out` / `err`.
int ParseOptions(int argc, const char* const* argv, Options& options, std::ostream& out, std::ostream& err);

// Checks cross-option constraints and fills derived defaults (procs, sources)
// given the per-process open-file limit. Returns "" or an error message.
std::string FinishOptions(Options& options, uint64_t nofile_limit);

}  // namespace nines::bench
