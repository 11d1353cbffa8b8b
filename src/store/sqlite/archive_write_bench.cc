// The archive's write path on its own: how many messages per second the
// SQLite store archives, and the process CPU per message, under the load the
// 1,000-client pairs benchmark puts on it (issue 4's archiving target).
//
//   build/release/nines_archive_write_bench [--messages=N] [--accounts=N]
//       [--in-flight=N] [--commit-batch=N] [--burst=K] [--body=BYTES]
//
// Accounts are in pairs (user0 and user1, user2 and user3, ...); messages go
// round robin over the pairs, `burst` in a row from one pair (default 16,
// near the server, whose group commits hold runs from one connection; 1
// gives every message of a group commit other owners, the most scattered
// case, which overstates the cost about 3x), each
// archived for its sender and its recipient
// the way the hub does it (one Archive call of two entries, id 0 so the store
// assigns it). `in-flight` messages are kept submitted; the writer
// group-commits whatever is queued, up to `commit-batch`. The figure is the
// steady part of the run: the first tenth is a warm-up and not counted.
// Runs in a fresh temporary directory, removed afterwards.

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "store/store.h"

namespace {

using namespace nines::store;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string User(int64_t i) { return "user" + std::to_string(i); }

}  // namespace

int main(int argc, char** argv) {
  int64_t messages = 300'000, accounts = 1000, in_flight = 4000, commit_batch = 256, body = 0, burst = 16;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    auto take = [&](const char* name, int64_t& out) {
      size_t n = std::strlen(name);
      if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
      out = std::atoll(arg + n + 1);
      return true;
    };
    if (!take("--messages", messages) && !take("--accounts", accounts) && !take("--in-flight", in_flight) &&
        !take("--commit-batch", commit_batch) && !take("--body", body) && !take("--burst", burst)) {
      std::fprintf(stderr, "unknown argument %s\n", arg);
      return 2;
    }
  }
  const auto dir = std::filesystem::temp_directory_path() / ("nines-archive-write-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  SqliteOptions options;
  options.path = (dir / "nines.db").string();
  options.commit_batch = commit_batch;
  auto opened = OpenSqlite(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.error().message.c_str());
    return 1;
  }
  std::unique_ptr<Store> store = std::move(opened).value();
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);  // replies arrive from the store's threads

  {
    std::vector<Account> list;
    for (int64_t i = 0; i < accounts; ++i) {
      Account a;
      a.username = User(i);
      list.push_back(a);
    }
    bool done = false;
    store->CreateAccounts(list, Reply<void>(io.get_executor(), [&](nines::Result<void> r) {
                            if (!r.ok()) {
                              std::fprintf(stderr, "accounts: %s\n", r.error().message.c_str());
                              std::exit(1);
                            }
                            done = true;
                          }));
    while (!done) io.run_one();
  }

  const int64_t pairs = accounts / 2;
  const int64_t warmup = messages / 10;
  int64_t submitted = 0, completed = 0;
  double t_start = 0, cpu_start = 0;
  auto now = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  std::vector<int64_t> seq(static_cast<size_t>(accounts), 0);

  std::function<void()> submit = [&] {
    const int64_t n = submitted++;
    const int64_t run = n / burst;
    const int64_t pair = run % pairs;
    const int64_t from = 2 * pair + ((run / pairs) & 1), to = from ^ 1;
    const int64_t s = seq[static_cast<size_t>(from)]++;
    std::string stanza = "<message type='chat' to='" + User(to) + "@localhost' id='" + std::to_string(s) +
                         "' xmlns='jabber:client' from='" + User(from) + "@localhost/bench'><body>1 " +
                         std::to_string(from) + ' ' + std::to_string(s) + " 1765000000000000000" +
                         std::string(static_cast<size_t>(body), 'x') + "</body></message>";
    std::vector<ArchiveEntry> entries(2);
    entries[0].username = User(from);
    entries[0].message = {0, 0, User(to) + "@localhost", "bench", true, "", stanza};
    entries[1].username = User(to);
    entries[1].message = {0, 0, User(from) + "@localhost", "bench", false, "", std::move(stanza)};
    store->Archive(std::move(entries), Reply<ArchiveOutcome>(io.get_executor(), [&](nines::Result<ArchiveOutcome> r) {
                     if (!r.ok()) {
                       std::fprintf(stderr, "archive: %s\n", r.error().message.c_str());
                       std::exit(1);
                     }
                     if (++completed == warmup) {
                       t_start = now();
                       cpu_start = CpuSeconds();
                     }
                     if (submitted < messages) submit();
                   }));
  };
  for (int64_t i = 0; i < in_flight && submitted < messages; ++i) submit();
  while (completed < messages) io.run_one();
  const double seconds = now() - t_start, cpu = CpuSeconds() - cpu_start;
  const double counted = static_cast<double>(messages - warmup);
  std::printf(
      "archived %lld messages (%lld accounts, bursts of %lld, %lld in flight, commit batch %lld): %.0f msgs/s, "
      "%.2f us CPU/msg\n",
      static_cast<long long>(messages - warmup), static_cast<long long>(accounts), static_cast<long long>(burst),
      static_cast<long long>(in_flight), static_cast<long long>(commit_batch), counted / seconds, cpu / counted * 1e6);
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
