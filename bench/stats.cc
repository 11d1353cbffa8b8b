#include "bench/stats.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace nines::bench {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

enum class How { kSum, kMinNonZero, kMax };
struct Field {
  const char* name;
  uint64_t Stats::*member;
  How how;
};

constexpr Field kFields[] = {
    {"attempted", &Stats::attempted, How::kSum},
    {"online", &Stats::online, How::kSum},
    {"failed", &Stats::failed, How::kSum},
    {"first_start_ns", &Stats::first_start_ns, How::kMinNonZero},
    {"last_online_ns", &Stats::last_online_ns, How::kMax},
    {"registered", &Stats::registered, How::kSum},
    {"already_registered", &Stats::already_registered, How::kSum},
    {"run_start_ns", &Stats::run_start_ns, How::kMinNonZero},
    {"run_end_ns", &Stats::run_end_ns, How::kMax},
    {"sent", &Stats::sent, How::kSum},
    {"expected", &Stats::expected, How::kSum},
    {"received", &Stats::received, How::kSum},
    {"received_in_run", &Stats::received_in_run, How::kSum},
    {"duplicates", &Stats::duplicates, How::kSum},
    {"reordered", &Stats::reordered, How::kSum},
    {"stanza_errors", &Stats::stanza_errors, How::kSum},
    {"sm_acks", &Stats::sm_acks, How::kSum},
    {"unexpected", &Stats::unexpected, How::kSum},
    {"disconnects", &Stats::disconnects, How::kSum},
    {"last_receive_ns", &Stats::last_receive_ns, How::kMax},
    {"presence_in", &Stats::presence_in, How::kSum},
    {"presence_distinct", &Stats::presence_distinct, How::kSum},
    {"presence_expected", &Stats::presence_expected, How::kSum},
    {"presence_last_ns", &Stats::presence_last_ns, How::kMax},
    {"bench_rss_before_kib", &Stats::bench_rss_before_kib, How::kSum},
    {"bench_rss_after_kib", &Stats::bench_rss_after_kib, How::kSum},
};

void MergeField(uint64_t& into, uint64_t value, How how) {
  switch (how) {
    case How::kSum: into += value; break;
    case How::kMinNonZero:
      if (value != 0 && (into == 0 || value < into)) into = value;
      break;
    case How::kMax:
      if (value > into) into = value;
      break;
  }
}

}  // namespace

void Stats::Merge(const Stats& o) {
  for (const Field& f : kFields) MergeField(this->*f.member, o.*f.member, f.how);
  login_ns.Merge(o.login_ns);
  latency_ns.Merge(o.latency_ns);
  for (const auto& [reason, n] : o.failures) failures[reason] += n;
}

std::string Stats::Serialize() const {
  std::string out;
  for (const Field& f : kFields) {
    out += f.name;
    out += ' ';
    out += std::to_string(this->*f.member);
    out += '\n';
  }
  out += "h.login " + login_ns.Serialize() + '\n';
  out += "h.latency " + latency_ns.Serialize() + '\n';
  for (const auto& [reason, n] : failures) {
    // Reasons are ours (no newlines); the count goes first so spaces in the
    // reason need no quoting.
    out += "failure " + std::to_string(n) + ' ' + reason + '\n';
  }
  return out;
}

bool Stats::MergeSerialized(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return false;
    const std::string_view key = line.substr(0, space);
    const std::string_view rest = line.substr(space + 1);
    if (key == "h.login") {
      if (!login_ns.MergeSerialized(rest)) return false;
      continue;
    }
    if (key == "h.latency") {
      if (!latency_ns.MergeSerialized(rest)) return false;
      continue;
    }
    if (key == "failure") {
      const size_t sp = rest.find(' ');
      uint64_t n = 0;
      if (sp == std::string_view::npos) return false;
      auto [p, ec] = std::from_chars(rest.data(), rest.data() + sp, n);
      if (ec != std::errc() || p != rest.data() + sp) return false;
      failures[std::string(rest.substr(sp + 1))] += n;
      continue;
    }
    uint64_t value = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (ec != std::errc() || p != rest.data() + rest.size()) return false;
    bool known = false;
    for (const Field& f : kFields) {
      if (key == f.name) {
        MergeField(this->*f.member, value, f.how);
        known = true;
        break;
      }
    }
    if (!known) return false;
  }
  return true;
}

uint64_t StatusFieldKib(std::string_view status, std::string_view field) {
  size_t at = 0;
  while (at < status.size()) {
    size_t end = status.find('\n', at);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(at, end - at);
    if (line.substr(0, field.size()) == field) {
      size_t i = field.size();
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      uint64_t kib = 0;
      std::from_chars(line.data() + i, line.data() + line.size(), kib);
      return kib;
    }
    at = end + 1;
  }
  return 0;
}

namespace {

// /proc/<pid>/<name> (pid 0: this process); empty if it cannot be read.
std::string ReadProcFile(int pid, const char* name) {
  std::ifstream in((pid == 0 ? std::string("/proc/self/") : "/proc/" + std::to_string(pid) + "/") + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

uint64_t ReadStatusKib(int pid, std::string_view field) {
  return StatusFieldKib(ReadProcFile(pid, "status"), field);
}

}  // namespace

int64_t StatCpuTicks(std::string_view stat) {
  const size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos) return -1;
  // After the name: state (field 3) ... utime (14), stime (15).
  std::string_view rest = stat.substr(paren + 1);
  int64_t utime = -1, stime = -1;
  for (int field = 3; field <= 15; ++field) {
    const size_t start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) return -1;
    rest.remove_prefix(start);
    const size_t end = std::min(rest.find(' '), rest.size());
    if (field == 14 || field == 15) {
      int64_t v = 0;
      const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + end, v);
      if (ec != std::errc() || ptr != rest.data() + end) return -1;
      (field == 14 ? utime : stime) = v;
    }
    rest.remove_prefix(end);
  }
  return utime + stime;
}

double ReadCpuSeconds(int pid) {
  const int64_t ticks = StatCpuTicks(ReadProcFile(pid, "stat"));
  return ticks < 0 ? -1 : static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

uint64_t ReadRssKib(int pid) { return ReadStatusKib(pid, "VmRSS:"); }

uint64_t ReadAnonRssKib(int pid) { return ReadStatusKib(pid, "RssAnon:"); }

}  // namespace nines::bench
