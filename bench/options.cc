#include "bench/options.h"

#include <arpa/inet.h>

#include <CLI/CLI.hpp>
#include <map>
#include <ostream>

namespace nines::bench {

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kConnect: return "connect";
    case Scenario::kIdle: return "idle";
    case Scenario::kMessage: return "message";
    case Scenario::kPresence: return "presence";
    case Scenario::kRegister: return "register";
  }
  return "?";
}

const char* TlsModeName(TlsMode t) {
  switch (t) {
    case TlsMode::kNone: return "none";
    case TlsMode::kStartTls: return "starttls";
    case TlsMode::kDirect: return "direct";
  }
  return "?";
}

const char* MechanismName(Mechanism m) {
  switch (m) {
    case Mechanism::kAuto: return "auto";
    case Mechanism::kPlain: return "PLAIN";
    case Mechanism::kScramSha1: return "SCRAM-SHA-1";
    case Mechanism::kScramSha256: return "SCRAM-SHA-256";
  }
  return "?";
}

uint32_t Options::GroupSize() const {
  switch (scenario) {
    case Scenario::kMessage: return fanout + 1;
    case Scenario::kPresence: return contacts + 1;
    default: return 1;
  }
}

int ParseOptions(int argc, const char* const* argv, Options& o, std::ostream& out, std::ostream& err) {
  CLI::App app{"nines-bench: an XMPP load generator. Drives any XMPP server over loopback."};
  app.require_subcommand(1);
  app.fallthrough();

  app.add_option("--host", o.host, "Server address (IPv4)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->capture_default_str();
  app.add_option("--domain", o.domain, "XMPP domain of the accounts")->capture_default_str();
  const std::map<std::string, TlsMode> tls_map{
      {"none", TlsMode::kNone}, {"starttls", TlsMode::kStartTls}, {"direct", TlsMode::kDirect}};
  app.add_option("--tls", o.tls, "none, starttls or direct (XEP-0368)")
      ->transform(CLI::CheckedTransformer(tls_map, CLI::ignore_case))
      ->default_str("none");
  const std::map<std::string, Mechanism> mech_map{{"auto", Mechanism::kAuto},
                                                  {"plain", Mechanism::kPlain},
                                                  {"scram-sha-1", Mechanism::kScramSha1},
                                                  {"scram-sha-256", Mechanism::kScramSha256}};
  app.add_option("--mech", o.mechanism,
                 "SASL mechanism: auto (best offered of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN), plain, scram-sha-1, "
                 "scram-sha-256")
      ->transform(CLI::CheckedTransformer(mech_map, CLI::ignore_case))
      ->default_str("auto");
  app.add_option("--prefix", o.prefix, "Account localpart prefix")->capture_default_str();
  app.add_option("--first", o.first, "Number of the first account")->capture_default_str();
  app.add_option("-n,--users", o.users, "Sessions (accounts) in the run")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--password", o.password, "Password of every account")->capture_default_str();
  app.add_option("--resource", o.resource, "Resource to bind")->capture_default_str();
  app.add_option("-c,--concurrency", o.concurrency, "Logins in progress at once (all threads and processes)")
      ->check(CLI::Range(1u, 10'000'000u))
      ->capture_default_str();
  app.add_option("-t,--threads", o.threads, "Event-loop threads per process")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("-p,--procs", o.procs, "Processes (0: as many as the open-file limit needs)")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  app.add_option("--sources", o.sources, "Loopback source addresses to spread over (0: one per 10,000 sessions)")
      ->capture_default_str();
  app.add_option("--source-base", o.source_base, "First source address")->capture_default_str();
  app.add_option("--login-timeout", o.login_timeout, "Seconds a login may take")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--server-pid", o.server_pid, "Sample this process's RSS before and after");
  app.add_flag("--json", o.json, "Print the result as one JSON object instead of a table");
  // Two flags rather than CLI11's "!--no-progress": a negated flag counts
  // as -1 in an integer, which is our "auto".
  app.add_flag_callback("--progress", [&o] { o.progress = 1; }, "Live progress line on stderr (default: when a terminal)");
  app.add_flag_callback("--no-progress", [&o] { o.progress = 0; }, "No progress line");
  app.add_flag("-v,--verbose", o.verbose, "Log each failure reason as it happens (first few)");

  auto* connect = app.add_subcommand("connect", "Open N sessions (login, bind, presence); report logins/s");
  auto* idle = app.add_subcommand("idle", "Connect, hold, and report the server's memory per session");
  auto* message = app.add_subcommand("message", "Clients in pairs (or fan-out) exchange messages; throughput, latency");
  auto* presence = app.add_subcommand("presence", "Logins with rosters of K contacts; presence fan-out rate");
  auto* reg = app.add_subcommand("register", "Create the accounts with in-band registration (XEP-0077)");
  (void)connect;
  (void)reg;

  idle->add_option("--hold", o.hold, "Seconds to hold the sessions before the final memory sample")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  for (CLI::App* sub : {message, presence}) {
    sub->add_option("-d,--duration", o.duration, "Seconds of sending (presence: 0 skips the update phase)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    sub->add_option("--rate", o.rate, "Total stanzas/s over all senders (0: as fast as the window allows)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    sub->add_option("-w,--window", o.window, "Stanzas in flight per sender (0: unlimited, needs --rate)")
        ->capture_default_str();
    sub->add_option("--grace", o.grace, "Seconds to wait for stragglers after sending stops")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
  }
  message->add_option("--fanout", o.fanout, "Peers each client sends to, round robin (1: pairs)")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  message->add_option("--body-size", o.body_size, "Extra bytes of body per message")
      ->check(CLI::Range(0u, 1u << 20))
      ->capture_default_str();
  message->add_flag("--origin-id", o.origin_id,
                    "Put a unique XEP-0359 <origin-id/> in every message, as Conversations, Dino, Gajim "
                    "and Monal do (the server keeps it for de-duplicating retransmissions)");
  message->add_flag("--sm", o.sm,
                    "Enable XEP-0198 stream management: answer every <r/>, and ask for an ack after every "
                    "--sm-every messages sent");
  message->add_option("--sm-every", o.sm_every, "With --sm: messages per <r/> sent (1: every message)")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  message->add_flag("--sm-resume", o.sm_resume,
                    "With --sm: enable resumption too (a server may then keep each session's state in its "
                    "store)");
  presence->add_option("-k,--contacts", o.contacts, "Roster size K (users form cliques of K+1)")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  presence->add_option("--setup-timeout", o.setup_timeout, "Seconds for the subscription setup phase")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  if (connect->parsed()) o.scenario = Scenario::kConnect;
  if (idle->parsed()) o.scenario = Scenario::kIdle;
  if (message->parsed()) o.scenario = Scenario::kMessage;
  if (presence->parsed()) o.scenario = Scenario::kPresence;
  if (reg->parsed()) o.scenario = Scenario::kRegister;
  return -1;
}

std::string FinishOptions(Options& o, uint64_t nofile_limit) {
  in_addr addr{};
  if (inet_pton(AF_INET, o.host.c_str(), &addr) != 1) return "--host must be an IPv4 address";
  if (inet_pton(AF_INET, o.source_base.c_str(), &addr) != 1) return "--source-base must be an IPv4 address";
  const bool loopback = o.host.rfind("127.", 0) == 0;
  if (o.sources == 0) o.sources = loopback ? static_cast<uint32_t>((o.users + 9999) / 10000) : 0;
  if (o.sources > 0 && !loopback) return "--sources needs a loopback --host";
  if (o.window == 0 && o.rate == 0 && (o.scenario == Scenario::kMessage || o.scenario == Scenario::kPresence)) {
    return "--window 0 (unlimited) needs --rate";
  }
  const uint32_t group = o.GroupSize();
  if (o.users < group) return "--users must be at least the group size (" + std::to_string(group) + ")";
  if (o.users % group != 0) {
    return "--users must be a multiple of the group size " + std::to_string(group) +
           (o.scenario == Scenario::kMessage ? " (fanout + 1)" : " (contacts + 1)");
  }
  // Keep a reserve for the epoll and event descriptors, pipes and stdio.
  const uint64_t per_proc = nofile_limit > 128 ? nofile_limit - 64 : 64;
  const uint64_t needed = (o.users + per_proc - 1) / per_proc;
  if (o.procs == 0) {
    o.procs = static_cast<uint32_t>(needed);
  } else if (o.procs < needed) {
    return std::to_string(o.users) + " sessions need at least " + std::to_string(needed) +
           " processes under the open-file limit of " + std::to_string(nofile_limit);
  }
  const uint64_t groups = o.users / group;
  if (groups < static_cast<uint64_t>(o.procs) * o.threads) {
    // Fewer groups than loops: shrink threads first, then processes.
    while (o.threads > 1 && groups < static_cast<uint64_t>(o.procs) * o.threads) --o.threads;
    while (o.procs > 1 && groups < o.procs) --o.procs;
  }
  return "";
}

}  // namespace nines::bench
