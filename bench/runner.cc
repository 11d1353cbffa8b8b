#include "bench/runner.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/loop.h"

namespace nines::bench {
namespace {

constexpr size_t kProgressFields = 6;

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

struct WorkerPlan {
  uint64_t first_account = 0;
  uint64_t first_index = 0;
  uint64_t clients = 0;
  uint32_t concurrency = 1;
  double rate = 0;
  uint32_t run_id = 0;
};

SSL_CTX* MakeTlsContext() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return nullptr;
  // A benchmark talks to a server it started itself on loopback, usually
  // with a self-signed certificate: no verification.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return ctx;
}

// ---- worker process -----------------------------------------------------------------

[[noreturn]] void WorkerMain(const Options& opt, const WorkerPlan& wp, int cmd_fd, int rep_fd) {
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX* ctx = opt.tls == TlsMode::kNone ? nullptr : MakeTlsContext();
  if (opt.tls != TlsMode::kNone && ctx == nullptr) {
    std::fprintf(stderr, "nines-bench: cannot create a TLS context\n");
    _exit(1);
  }
  // Sampled before the loops allocate their clients, so the per-session
  // figure includes the Client array.
  const uint64_t rss_before = ReadRssKib(0);
  const uint32_t group = opt.GroupSize();
  const uint64_t groups = wp.clients / group;
  const uint32_t threads = static_cast<uint32_t>(std::min<uint64_t>(opt.threads, groups));
  std::vector<std::unique_ptr<Loop>> loops;
  for (uint32_t t = 0; t < threads; ++t) {
    const uint64_t g0 = groups * t / threads, g1 = groups * (t + 1) / threads;
    LoopPlan lp;
    lp.first_account = wp.first_account + g0 * group;
    lp.first_index = wp.first_index + g0 * group;
    lp.clients = static_cast<uint32_t>((g1 - g0) * group);
    lp.concurrency =
        std::max<uint32_t>(1, static_cast<uint32_t>(static_cast<double>(wp.concurrency) * lp.clients / wp.clients));
    lp.rate = wp.rate * static_cast<double>(lp.clients) / static_cast<double>(wp.clients);
    lp.run_id = wp.run_id;
    loops.push_back(std::make_unique<Loop>(opt, lp, ctx));
  }
  std::vector<std::thread> workers;
  for (auto& loop : loops) workers.emplace_back([l = loop.get()] { l->Run(); });

  uint64_t rss_after = 0;
  Phase current = Phase::kNone;
  bool done_sent = true;
  std::string pending;
  uint64_t last_progress = 0;
  auto send_progress = [&] {
    uint64_t v[kProgressFields] = {};
    for (auto& l : loops) {
      const Progress& p = l->progress();
      v[0] += p.online.load(std::memory_order_relaxed);
      v[1] += p.finished.load(std::memory_order_relaxed);
      v[2] += p.failed.load(std::memory_order_relaxed);
      v[3] += p.sent.load(std::memory_order_relaxed);
      v[4] += p.received.load(std::memory_order_relaxed);
      v[5] += p.presence_in.load(std::memory_order_relaxed);
    }
    std::string line = "p";
    for (uint64_t x : v) line += ' ' + std::to_string(x);
    line += '\n';
    if (!WriteAll(rep_fd, line)) _exit(1);
  };
  for (;;) {
    pollfd p{cmd_fd, POLLIN, 0};
    const int r = poll(&p, 1, 20);
    if (r > 0) {
      char buf[256];
      const ssize_t n = read(cmd_fd, buf, sizeof buf);
      if (n <= 0) _exit(1);  // the parent is gone
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        const std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (line.rfind("phase ", 0) == 0) {
          current = static_cast<Phase>(std::atoi(line.c_str() + 6));
          for (auto& l : loops) l->Command(current);
          done_sent = false;
        }
      }
    }
    const uint64_t now = NowNs();
    if (now - last_progress >= 200'000'000) {
      last_progress = now;
      send_progress();
    }
    if (done_sent) continue;
    bool all = true;
    for (auto& l : loops) all = all && l->done_phase() == current;
    if (!all) continue;
    send_progress();
    if (current == Phase::kConnect) rss_after = ReadRssKib(0);
    if (current == Phase::kReport) {
      Stats total;
      for (auto& l : loops) total.Merge(l->stats());
      total.bench_rss_before_kib = rss_before;
      total.bench_rss_after_kib = rss_after;
      const std::string payload = total.Serialize();
      if (!WriteAll(rep_fd, "r " + std::to_string(payload.size()) + "\n" + payload)) _exit(1);
    }
    if (current == Phase::kClose) {
      for (auto& t : workers) t.join();
      loops.clear();
      WriteAll(rep_fd, "d " + std::to_string(static_cast<int>(current)) + "\n");
      _exit(0);
    }
    if (!WriteAll(rep_fd, "d " + std::to_string(static_cast<int>(current)) + "\n")) _exit(1);
    done_sent = true;
  }
}

// ---- parent -------------------------------------------------------------------------

struct Worker {
  pid_t pid = -1;
  int cmd_fd = -1;
  int rep_fd = -1;
  std::string buf;
  uint64_t progress[kProgressFields] = {};
  int done = 0;
  bool has_result = false;
  bool dead = false;
};

class Coordinator {
 public:
  Coordinator(const Options& opt, RunResult& result) : opt_(opt), result_(result) {
    show_progress_ = opt.progress == 1 || (opt.progress == -1 && isatty(STDERR_FILENO));
  }

  ~Coordinator() {
    for (Worker& w : workers_) {
      if (w.cmd_fd >= 0) close(w.cmd_fd);
      if (w.rep_fd >= 0) close(w.rep_fd);
      if (w.pid > 0) {
        kill(w.pid, SIGKILL);
        waitpid(w.pid, nullptr, 0);
      }
    }
  }

  bool Start() {
    uint32_t run_id = 0;
    RAND_bytes(reinterpret_cast<unsigned char*>(&run_id), sizeof run_id);
    run_id &= 0x7fffffff;
    const uint32_t group = opt_.GroupSize();
    const uint64_t groups = opt_.users / group;
    for (uint32_t p = 0; p < opt_.procs; ++p) {
      const uint64_t g0 = groups * p / opt_.procs, g1 = groups * (p + 1) / opt_.procs;
      WorkerPlan wp;
      wp.first_account = opt_.first + g0 * group;
      wp.first_index = g0 * group;
      wp.clients = (g1 - g0) * group;
      wp.concurrency = std::max<uint32_t>(
          1, static_cast<uint32_t>(static_cast<double>(opt_.concurrency) * wp.clients / opt_.users));
      wp.rate = opt_.rate * static_cast<double>(wp.clients) / static_cast<double>(opt_.users);
      wp.run_id = run_id;
      int cmd[2], rep[2];
      if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
        std::perror("nines-bench: pipe");
        return false;
      }
      std::fflush(nullptr);
      const pid_t pid = fork();
      if (pid < 0) {
        std::perror("nines-bench: fork");
        return false;
      }
      if (pid == 0) {
        for (Worker& w : workers_) {
          close(w.cmd_fd);
          close(w.rep_fd);
        }
        close(cmd[1]);
        close(rep[0]);
        WorkerMain(opt_, wp, cmd[0], rep[1]);
      }
      close(cmd[0]);
      close(rep[1]);
      Worker w;
      w.pid = pid;
      w.cmd_fd = cmd[1];
      w.rep_fd = rep[0];
      workers_.push_back(std::move(w));
    }
    result_.procs = opt_.procs;
    result_.threads = opt_.threads;
    return true;
  }

  // Starts phase `p` in every worker.
  void Begin(Phase p) {
    phase_ = p;
    phase_start_ns_ = NowNs();
    const std::string line = "phase " + std::to_string(static_cast<int>(p)) + "\n";
    for (Worker& w : workers_) {
      if (!w.dead) WriteAll(w.cmd_fd, line);
    }
  }

  // Waits until every worker finished the current phase, or `seconds` have
  // passed (< 0: no deadline). Returns true if all finished; false on a
  // timeout or when a worker died (failed_ set).
  bool Wait(double seconds) {
    const uint64_t deadline = seconds < 0 ? UINT64_MAX : NowNs() + static_cast<uint64_t>(seconds * 1e9);
    for (;;) {
      bool all = true;
      for (Worker& w : workers_) all = all && (w.done == static_cast<int>(phase_));
      if (all) return true;
      if (failed_) return false;
      const uint64_t now = NowNs();
      if (now >= deadline) return false;
      Pump(std::min<uint64_t>(100, (deadline - now) / 1'000'000 + 1));
    }
  }

  // Lets `seconds` pass while showing progress.
  void Sleep(double seconds) {
    const uint64_t end = NowNs() + static_cast<uint64_t>(seconds * 1e9);
    while (!failed_) {
      const uint64_t now = NowNs();
      if (now >= end) break;
      Pump(std::min<uint64_t>(100, (end - now) / 1'000'000 + 1));
    }
  }

  bool failed() const { return failed_; }

  void Finish() {
    Begin(Phase::kClose);
    Wait(30);
    for (Worker& w : workers_) {
      if (w.pid > 0) {
        int status = 0;
        waitpid(w.pid, &status, 0);
        w.pid = -1;
      }
    }
    if (show_progress_) std::fputs("\r\033[K", stderr);
  }

 private:
  void Pump(uint64_t timeout_ms) {
    std::vector<pollfd> fds;
    for (Worker& w : workers_) fds.push_back(pollfd{w.dead ? -1 : w.rep_fd, POLLIN, 0});
    const int r = poll(fds.data(), fds.size(), static_cast<int>(timeout_ms));
    if (r > 0) {
      for (size_t k = 0; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Worker& w = workers_[k];
        char buf[65536];
        const ssize_t n = read(w.rep_fd, buf, sizeof buf);
        if (n <= 0) {
          if (phase_ != Phase::kClose) {
            std::fprintf(stderr, "\nnines-bench: worker %d exited during %s\n", static_cast<int>(w.pid),
                         PhaseName(phase_));
            failed_ = true;
          }
          w.dead = true;
          w.done = static_cast<int>(Phase::kClose);
          continue;
        }
        w.buf.append(buf, static_cast<size_t>(n));
        Parse(w);
      }
    }
    Render();
  }

  void Parse(Worker& w) {
    for (;;) {
      const size_t nl = w.buf.find('\n');
      if (nl == std::string::npos) return;
      const std::string_view line(w.buf.data(), nl);
      if (line.rfind("r ", 0) == 0) {
        const size_t len = std::strtoull(w.buf.c_str() + 2, nullptr, 10);
        if (w.buf.size() < nl + 1 + len) return;  // wait for the payload
        if (!result_.stats.MergeSerialized(std::string_view(w.buf).substr(nl + 1, len))) {
          std::fprintf(stderr, "nines-bench: malformed result from worker %d\n", static_cast<int>(w.pid));
          failed_ = true;
        }
        w.has_result = true;
        w.buf.erase(0, nl + 1 + len);
        continue;
      }
      if (line.rfind("p ", 0) == 0) {
        const char* p = w.buf.data() + 2;
        const char* end = w.buf.data() + nl;
        for (size_t i = 0; i < kProgressFields && p < end; ++i) {
          auto [q, ec] = std::from_chars(p, end, w.progress[i]);
          p = q + 1;
          if (ec != std::errc()) break;
        }
      } else if (line.rfind("d ", 0) == 0) {
        w.done = std::atoi(w.buf.c_str() + 2);
      }
      w.buf.erase(0, nl + 1);
    }
  }

  void Render() {
    if (!show_progress_) return;
    const uint64_t now = NowNs();
    if (now - last_render_ns_ < 250'000'000) return;
    uint64_t v[kProgressFields] = {};
    for (Worker& w : workers_) {
      for (size_t i = 0; i < kProgressFields; ++i) v[i] += w.progress[i];
    }
    const double dt = last_render_ns_ == 0 ? 0 : static_cast<double>(now - last_render_ns_) / 1e9;
    auto rate = [&](size_t i) { return dt > 0 && v[i] >= last_[i] ? static_cast<double>(v[i] - last_[i]) / dt : 0.0; };
    char line[256];
    std::snprintf(line, sizeof line,
                  "\r\033[K[%s %.0fs] online %llu  done %llu/%llu  failed %llu  logins/s %.0f  sent %llu  msgs/s %.0f"
                  "  presence/s %.0f",
                  PhaseName(phase_), static_cast<double>(now - phase_start_ns_) / 1e9,
                  static_cast<unsigned long long>(v[0]), static_cast<unsigned long long>(v[1]),
                  static_cast<unsigned long long>(opt_.users), static_cast<unsigned long long>(v[2]), rate(1),
                  static_cast<unsigned long long>(v[3]), rate(4), rate(5));
    std::fputs(line, stderr);
    std::fflush(stderr);
    last_render_ns_ = now;
    std::copy(v, v + kProgressFields, last_);
  }

  const Options& opt_;
  RunResult& result_;
  std::vector<Worker> workers_;
  Phase phase_ = Phase::kNone;
  uint64_t phase_start_ns_ = 0;
  bool failed_ = false;
  bool show_progress_ = false;
  uint64_t last_render_ns_ = 0;
  uint64_t last_[kProgressFields] = {};
};

void Note(const Options& opt, const char* text) {
  if (!opt.json || opt.verbose) std::fprintf(stderr, "nines-bench: %s\n", text);
}

}  // namespace

int RunScenario(const Options& opt, RunResult& result) {
  Coordinator co(opt, result);
  if (!co.Start()) return 1;
  const int pid = opt.server_pid;
  result.server_rss_before_kib = pid ? ReadRssKib(pid) : 0;
  result.server_anon_before_kib = pid ? ReadAnonRssKib(pid) : 0;

  co.Begin(Phase::kConnect);
  if (!co.Wait(-1)) return 1;
  result.server_rss_connected_kib = pid ? ReadRssKib(pid) : 0;
  result.server_anon_after_kib = pid ? ReadAnonRssKib(pid) : 0;

  if (opt.scenario == Scenario::kPresence) {
    // Round 1 made sure every account is online; now make the cliques.
    const uint64_t t0 = NowNs();
    co.Begin(Phase::kSetup);
    result.setup_complete = co.Wait(opt.setup_timeout);
    if (co.failed()) return 1;
    result.setup_seconds = static_cast<double>(NowNs() - t0) / 1e9;
    if (!result.setup_complete) Note(opt, "subscription setup did not complete in time; measuring anyway");
    co.Begin(Phase::kDisconnect);
    if (!co.Wait(-1)) return 1;
    co.Sleep(1.0);  // let the server finish the logouts
    // Round 2, measured: every login loads a roster of K and fans presence out.
    co.Begin(Phase::kConnect);
    if (!co.Wait(-1)) return 1;
    const uint64_t t1 = NowNs();
    co.Begin(Phase::kSettle);
    result.settle_complete = co.Wait(opt.setup_timeout);
    if (co.failed()) return 1;
    result.settle_seconds = static_cast<double>(NowNs() - t1) / 1e9;
    if (!result.settle_complete) Note(opt, "not every contact's presence arrived in time");
  }

  if (opt.scenario == Scenario::kIdle) {
    co.Begin(Phase::kRun);
    co.Sleep(opt.hold);
    if (co.failed()) return 1;
    result.server_rss_after_kib = pid ? ReadRssKib(pid) : 0;
    result.server_anon_after_kib = pid ? ReadAnonRssKib(pid) : 0;
  }

  const bool traffic = opt.scenario == Scenario::kMessage || (opt.scenario == Scenario::kPresence && opt.duration > 0);
  if (traffic) {
    const double cpu_before = pid ? ReadCpuSeconds(pid) : -1;
    co.Begin(Phase::kRun);
    co.Sleep(opt.duration);
    if (co.failed()) return 1;
    co.Begin(Phase::kDrain);
    result.drained = co.Wait(opt.grace);
    if (co.failed()) return 1;
    const double cpu_after = pid ? ReadCpuSeconds(pid) : -1;
    if (cpu_before >= 0 && cpu_after >= cpu_before) result.server_cpu_run_s = cpu_after - cpu_before;
  }

  co.Begin(Phase::kReport);
  if (!co.Wait(60)) return 1;
  co.Finish();
  return 0;
}

}  // namespace nines::bench
