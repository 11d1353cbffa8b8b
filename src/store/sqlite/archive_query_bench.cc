// Google Benchmark: MAM queries on a large SQLite archive (issue 4's target:
// the last 50 messages of a 1,000,000-message archive in at most 5 ms at p99).
//
//   build/release/nines_archive_bench [--messages=N] [--postgres=URI] [benchmark flags]
//
// With --postgres=URI it runs on PostgreSQL instead, in the (empty) database
// the libpq connection string names (issue 5 has the same target).
// Otherwise it builds a fresh SQLite database in a temporary directory: N messages (default
// 1,000,000) into one owner's archive, from 100 different peers (so each
// message is two rows, as between two local accounts), with the stores's
// own Archive calls. Then each query is timed end to end through the store
// interface (submit, reader thread, Reply on the caller's io_context), and
// p50/p99/max are reported as counters next to Google Benchmark's mean.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "store/store.h"

namespace {

using nines::MakeError;
using nines::Result;
using namespace nines::store;

int64_t g_messages = 1'000'000;
std::string g_postgres;  // a libpq URI: run on PostgreSQL
constexpr int kPeers = 100;

struct World {
  std::filesystem::path dir;
  boost::asio::io_context io;
  std::unique_ptr<Store> store;
  std::vector<int64_t> ids;  // as the store assigned them, oldest first
};

template <class T, class Call>
Result<T> Await(boost::asio::io_context& io, Call&& call) {
  io.restart();
  auto guard = boost::asio::make_work_guard(io);
  std::optional<Result<T>> out;
  call(Reply<T>(io.get_executor(), [&](Result<T> r) {
    out.emplace(std::move(r));
    guard.reset();
  }));
  io.run();
  return std::move(*out);
}

std::string Peer(int i) { return "peer" + std::to_string(i); }

World& TheWorld() {
  static World* world = [] {
    auto* w = new World;
    w->dir = std::filesystem::temp_directory_path() / ("nines-archive-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(w->dir);
    Result<std::unique_ptr<Store>> opened = MakeError(nines::Errc::kInternal, "not opened");
    if (g_postgres.empty()) {
      SqliteOptions options;
      options.path = (w->dir / "nines.db").string();
      options.commit_batch = 10000;
      opened = OpenSqlite(options);
    } else {
      PostgresOptions options;
      options.uri = g_postgres;
      options.commit_batch = 10000;
      opened = OpenPostgres(options);
    }
    if (!opened.ok()) {
      std::fprintf(stderr, "open: %s\n", opened.error().message.c_str());
      std::exit(1);
    }
    w->store = std::move(opened).value();
    std::vector<Account> accounts;
    Account a;
    a.username = "owner";
    accounts.push_back(a);
    for (int i = 0; i < kPeers; ++i) {
      a.username = Peer(i);
      accounts.push_back(a);
    }
    (void)Await<void>(w->io, [&](Reply<void> r) { w->store->CreateAccounts(accounts, std::move(r)); });
    auto start = std::chrono::steady_clock::now();
    const int64_t chunk = 20000;
    for (int64_t done = 0; done < g_messages;) {
      int64_t n = std::min(chunk, g_messages - done);
      int64_t pending = n;
      w->io.restart();
      auto guard = boost::asio::make_work_guard(w->io);
      for (int64_t k = 0; k < n; ++k) {
        int64_t seq = done + k;
        int peer = static_cast<int>(seq % kPeers);
        std::string stanza = "<message from='" + Peer(peer) +
                             "@localhost/phone' to='owner@localhost' type='chat' id='" + std::to_string(seq) +
                             "'><body>message number " + std::to_string(seq) +
                             ", about as long as a short chat line</body><origin-id xmlns='urn:xmpp:sid:0' "
                             "id='o" +
                             std::to_string(seq) + "'/></message>";
        std::vector<ArchiveEntry> entries;
        // Id 0: the store assigns ids, as the server has it archive, so the
        // log's chunks hold whole group commits as they do in production.
        entries.push_back(
            {Peer(peer), {0, 0, "owner@localhost", "", true, "o" + std::to_string(seq), stanza}});
        entries.push_back({"owner", {0, 0, Peer(peer) + "@localhost", "phone", false, "", stanza}});
        w->store->Archive(std::move(entries),
                          Reply<ArchiveOutcome>(w->io.get_executor(), [&](Result<ArchiveOutcome> r) {
                            if (!r.ok()) {
                              std::fprintf(stderr, "archive: %s\n", r.error().message.c_str());
                              std::exit(1);
                            }
                            w->ids.push_back(r->id);
                            if (--pending == 0) guard.reset();
                          }));
      }
      w->io.run();
      done += n;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "filled %lld messages (%lld rows) in %.1f s: %.0f messages/s through Archive()\n",
                 static_cast<long long>(g_messages), static_cast<long long>(2 * g_messages), s,
                 g_messages / s);
    return w;
  }();
  return *world;
}

void Report(benchmark::State& state, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.back();
}

template <class MakeQuery>
void RunQueries(benchmark::State& state, MakeQuery make) {
  World& w = TheWorld();
  std::vector<double> us;
  int64_t i = 0;
  for (auto _ : state) {
    ArchiveQuery q = make(i++);
    auto t0 = std::chrono::steady_clock::now();
    auto page = Await<ArchivePage>(
        w.io, [&](Reply<ArchivePage> r) { w.store->QueryArchive("owner", q, std::move(r)); });
    auto t1 = std::chrono::steady_clock::now();
    if (!page.ok() || page->messages.size() != 50) {
      state.SkipWithError("query failed or short page");
      return;
    }
    double elapsed = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(elapsed);
    us.push_back(elapsed * 1e6);
  }
  Report(state, us);
}

// The last 50 messages (a client opening its history: RSM <before/>).
void BM_Last50(benchmark::State& state) {
  RunQueries(state, [](int64_t) {
    ArchiveQuery q;
    q.max = 50;
    q.from_end = true;
    return q;
  });
}

// The last 50 messages with one peer (one conversation).
void BM_Last50WithPeer(benchmark::State& state) {
  RunQueries(state, [](int64_t i) {
    ArchiveQuery q;
    q.max = 50;
    q.from_end = true;
    q.with = Peer(static_cast<int>(i % kPeers)) + "@localhost";
    return q;
  });
}

// 50 messages after a point spread over the whole archive (catching up).
void BM_Next50AfterId(benchmark::State& state) {
  World& w = TheWorld();
  RunQueries(state, [&w](int64_t i) {
    ArchiveQuery q;
    q.max = 50;
    q.after_id = w.ids[static_cast<size_t>((i * 7919) % (g_messages - 100))];
    return q;
  });
}

BENCHMARK(BM_Last50)->UseManualTime()->Iterations(2000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Last50WithPeer)->UseManualTime()->Iterations(2000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Next50AfterId)->UseManualTime()->Iterations(2000)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--messages=", 0) == 0) {
      g_messages = std::stoll(arg.substr(11));
    } else if (arg.rfind("--postgres=", 0) == 0) {
      g_postgres = arg.substr(11);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  World& w = TheWorld();
  w.store->Close();
  std::filesystem::remove_all(w.dir);
  return 0;
}
