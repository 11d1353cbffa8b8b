#include "bench/report.h"

#include <unistd.h>

#include <fstream>

namespace nines::bench {
namespace {

double Seconds(uint64_t from_ns, uint64_t to_ns) {
  return (from_ns != 0 && to_ns > from_ns) ? static_cast<double>(to_ns - from_ns) / 1e9 : 0.0;
}

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

uint64_t MemTotalKib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") return kib;
    in.ignore(256, '\n');
  }
  return 0;
}

void AddLatency(std::vector<Metric>& m, const std::string& prefix, const std::string& label, const Histogram& h) {
  m.push_back({prefix + "_p50_ms", label + " p50 (ms)", Ms(h.Percentile(50)), 3});
  m.push_back({prefix + "_p90_ms", label + " p90 (ms)", Ms(h.Percentile(90)), 3});
  m.push_back({prefix + "_p99_ms", label + " p99 (ms)", Ms(h.Percentile(99)), 3});
  m.push_back({prefix + "_p999_ms", label + " p99.9 (ms)", Ms(h.Percentile(99.9)), 3});
  m.push_back({prefix + "_max_ms", label + " max (ms)", Ms(h.max()), 3});
}

}  // namespace

std::string JsonEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<Metric> Metrics(const Options& o, const RunResult& r) {
  const Stats& s = r.stats;
  std::vector<Metric> m;
  const double connect_s = Seconds(s.first_start_ns, s.last_online_ns);
  const bool reg = o.scenario == Scenario::kRegister;
  m.push_back({"sessions", reg ? "accounts" : "sessions", static_cast<double>(o.users), 0});
  m.push_back({"online", reg ? "registered (new + existing)" : "online", static_cast<double>(s.online), 0});
  m.push_back({"failed", "failed", static_cast<double>(s.failed), 0});
  if (reg) {
    m.push_back({"registered_new", "registered new", static_cast<double>(s.registered), 0});
    m.push_back({"registered_existing", "already existed", static_cast<double>(s.already_registered), 0});
  }
  m.push_back({"connect_s", reg ? "time to register all (s)" : "time to all online (s)", connect_s, 3});
  m.push_back({"logins_per_s", reg ? "registrations/s" : "logins/s",
               connect_s > 0 ? static_cast<double>(s.online) / connect_s : 0, 0});
  m.push_back({"login_p50_ms", reg ? "registration p50 (ms)" : "login p50 (ms)", Ms(s.login_ns.Percentile(50)), 3});
  m.push_back({"login_p99_ms", reg ? "registration p99 (ms)" : "login p99 (ms)", Ms(s.login_ns.Percentile(99)), 3});
  if (s.disconnects) m.push_back({"disconnects", "sessions lost after login", static_cast<double>(s.disconnects), 0});

  const double sessions = static_cast<double>(s.online);
  if (s.bench_rss_after_kib > s.bench_rss_before_kib && sessions > 0 && !reg) {
    m.push_back({"bench_kib_per_session", "bench KiB/session",
                 static_cast<double>(s.bench_rss_after_kib - s.bench_rss_before_kib) / sessions, 2});
  }
  if (o.server_pid) {
    m.push_back({"server_rss_before_kib", "server RSS before (KiB)", static_cast<double>(r.server_rss_before_kib), 0});
    m.push_back(
        {"server_rss_connected_kib", "server RSS connected (KiB)", static_cast<double>(r.server_rss_connected_kib), 0});
    if (o.scenario == Scenario::kIdle) {
      m.push_back({"server_rss_after_kib", "server RSS after hold (KiB)", static_cast<double>(r.server_rss_after_kib), 0});
    }
    const uint64_t after = o.scenario == Scenario::kIdle ? r.server_rss_after_kib : r.server_rss_connected_kib;
    if (sessions > 0) {
      m.push_back({"server_kib_per_session", "server KiB/session",
                   (static_cast<double>(after) - static_cast<double>(r.server_rss_before_kib)) / sessions, 2});
      if (r.server_anon_before_kib != 0 || r.server_anon_after_kib != 0) {
        m.push_back({"server_anon_kib_per_session", "server anon KiB/session",
                     (static_cast<double>(r.server_anon_after_kib) - static_cast<double>(r.server_anon_before_kib)) /
                         sessions,
                     2});
      }
    }
  }

  if (o.scenario == Scenario::kPresence) {
    const double storm_s = Seconds(s.first_start_ns, s.presence_last_ns);
    m.push_back({"setup_s", "subscription setup (s)", r.setup_seconds, 3});
    m.push_back({"presence_in", "presence stanzas received", static_cast<double>(s.presence_in), 0});
    m.push_back({"presence_distinct", "distinct (user, contact) seen", static_cast<double>(s.presence_distinct), 0});
    m.push_back({"presence_expected", "distinct expected", static_cast<double>(s.presence_expected), 0});
    m.push_back({"presence_storm_s", "first login to last presence (s)", storm_s, 3});
    // The rate counts each (user, contact) once: a server that delivers a
    // contact's presence twice in a login race does no more useful work.
    m.push_back({"presence_per_s", "presence fan-out/s (distinct)",
                 storm_s > 0 ? static_cast<double>(s.presence_distinct) / storm_s : 0, 0});
  }
  const bool traffic = o.scenario == Scenario::kMessage || (o.scenario == Scenario::kPresence && o.duration > 0);
  if (traffic) {
    const std::string what = o.scenario == Scenario::kMessage ? "msgs" : "presence updates";
    const double run_s = Seconds(s.run_start_ns, s.run_end_ns);
    m.push_back({"run_s", "sending time (s)", run_s, 3});
    m.push_back({"sent", "stanzas sent", static_cast<double>(s.sent), 0});
    m.push_back({"sent_per_s", "sent/s", run_s > 0 ? static_cast<double>(s.sent) / run_s : 0, 0});
    m.push_back({"delivered", "deliveries", static_cast<double>(s.received), 0});
    // All distinct deliveries over the time from the first send to the last
    // delivery: after sending stops the server still works at full rate on
    // its backlog, so this is its throughput even when its queueing latency
    // is longer than the run (counting only deliveries made while sending
    // would then see a fraction of them).
    const double deliver_s = Seconds(s.run_start_ns, s.last_receive_ns);
    m.push_back({"delivered_per_s", "delivered " + what + "/s",
                 deliver_s > 0 ? static_cast<double>(s.received) / deliver_s : 0, 0});
    m.push_back({"delivery_s", "first send to last delivery (s)", deliver_s, 3});
    AddLatency(m, "latency", "latency", s.latency_ns);
    m.push_back({"lost", "lost", static_cast<double>(s.expected > s.received ? s.expected - s.received : 0), 0});
    m.push_back({"duplicated", "duplicated", static_cast<double>(s.duplicates), 0});
    m.push_back({"reordered", "reordered", static_cast<double>(s.reordered), 0});
    m.push_back({"stanza_errors", "error replies", static_cast<double>(s.stanza_errors), 0});
    if (s.sm_acks) m.push_back({"sm_acks", "stream management acks", static_cast<double>(s.sm_acks), 0});
    // The server's CPU over the same span as delivered_per_s (logins
    // excluded), per delivery: its cost per message whether or not it was
    // saturated.
    if (r.server_cpu_run_s >= 0 && s.received > 0) {
      m.push_back({"server_cpu_run_s", "server CPU while sending (s)", r.server_cpu_run_s, 2});
      m.push_back({"server_cpu_us_per_delivered", "server CPU per delivery (us)",
                   r.server_cpu_run_s * 1e6 / static_cast<double>(s.received), 2});
    }
  }
  if (s.unexpected) m.push_back({"unexpected", "unattributed stanzas", static_cast<double>(s.unexpected), 0});
  return m;
}

void PrintTable(std::FILE* out, const Options& o, const RunResult& r) {
  std::fprintf(out, "nines-bench %s: %s:%u domain %s, tls %s, sasl %s, %u proc(s) x %u thread(s)\n",
               ScenarioName(o.scenario), o.host.c_str(), o.port, o.domain.c_str(), TlsModeName(o.tls),
               MechanismName(o.mechanism), r.procs, r.threads);
  if (o.scenario == Scenario::kMessage) {
    std::fprintf(out, "  %s, window %u, rate %s, body +%u bytes, %.0f s + %.0f s grace\n",
                 o.fanout == 1 ? "pairs" : ("fan-out " + std::to_string(o.fanout)).c_str(), o.window,
                 o.rate > 0 ? std::to_string(static_cast<uint64_t>(o.rate)).c_str() : "max", o.body_size, o.duration,
                 o.grace);
  }
  if (o.scenario == Scenario::kPresence) std::fprintf(out, "  %u contacts per roster\n", o.contacts);
  for (const Metric& m : Metrics(o, r)) {
    std::fprintf(out, "  %-34s %14.*f\n", m.label.c_str(), m.precision, m.value);
  }
  if (!r.drained) std::fprintf(out, "  (some stanzas were still in flight after the grace period)\n");
  if (!r.setup_complete) std::fprintf(out, "  (subscription setup did not complete)\n");
  if (!r.settle_complete) std::fprintf(out, "  (not every contact's presence arrived)\n");
  if (!r.stats.failures.empty()) {
    std::fprintf(out, "  failures:\n");
    for (const auto& [reason, n] : r.stats.failures) {
      std::fprintf(out, "    %8llu  %s\n", static_cast<unsigned long long>(n), reason.c_str());
    }
  }
}

void PrintJson(std::FILE* out, const Options& o, const RunResult& r) {
  std::string j = "{";
  auto str = [&](const char* k, const std::string& v) { j += "\"" + std::string(k) + "\":\"" + JsonEscape(v) + "\","; };
  auto num = [&](const std::string& k, double v, int precision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", precision, v);
    j += "\"" + k + "\":" + buf + ",";
  };
  str("scenario", ScenarioName(o.scenario));
  str("server", o.host + ":" + std::to_string(o.port));
  str("domain", o.domain);
  str("tls", TlsModeName(o.tls));
  str("mechanism", MechanismName(o.mechanism));
  num("procs", r.procs, 0);
  num("threads", r.threads, 0);
  num("cores", static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN)), 0);
  num("mem_total_kib", static_cast<double>(MemTotalKib()), 0);
  if (o.scenario == Scenario::kMessage) {
    num("fanout", o.fanout, 0);
    num("window", o.window, 0);
    num("rate", o.rate, 0);
    num("duration_s", o.duration, 3);
  }
  if (o.scenario == Scenario::kPresence) num("contacts", o.contacts, 0);
  for (const Metric& m : Metrics(o, r)) num(m.key, m.value, m.precision);
  j += "\"drained\":" + std::string(r.drained ? "true" : "false") + ",";
  j += "\"setup_complete\":" + std::string(r.setup_complete ? "true" : "false") + ",";
  j += "\"settle_complete\":" + std::string(r.settle_complete ? "true" : "false") + ",";
  j += "\"failures\":{";
  bool first = true;
  for (const auto& [reason, n] : r.stats.failures) {
    if (!first) j += ",";
    first = false;
    j += "\"" + JsonEscape(reason) + "\":" + std::to_string(n);
  }
  j += "}}\n";
  std::fputs(j.c_str(), out);
}

}  // namespace nines::bench
