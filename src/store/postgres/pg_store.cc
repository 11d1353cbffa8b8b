#include "store/postgres/pg_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "store/postgres/pg_schema.h"

namespace nines::store {

Result<std::unique_ptr<Store>> OpenPostgres(const PostgresOptions& options) {
  auto opened = postgres::PgStore::Open(options);
  if (!opened.ok()) return opened.error();
  return std::unique_ptr<Store>(std::move(opened).value());
}

int PostgresSchemaVersion() { return postgres::CurrentVersion(); }

}  // namespace nines::store

namespace nines::store::postgres {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- Pipeline ----

void Pipeline::Query(const char* sql, Params params, Handler on_rows) {
  Step step;
  step.sql = sql;
  step.params = std::move(params);
  step.done = [hooks = hooks_, on_rows = std::move(on_rows)](StepStatus status, const Rows* rows,
                                                              const Error* error) {
    switch (status) {
      case StepStatus::kOk:
        if (on_rows) on_rows(*rows);
        break;
      case StepStatus::kError:
        hooks.on_error(*error);
        break;
      case StepStatus::kAborted:
        hooks.on_aborted();
        break;
    }
  };
  steps_.push_back(std::move(step));
}

void Pipeline::Merged(const MergeSpec& spec, std::vector<std::vector<std::string>> rows, Handler on_rows) {
  Query(nullptr, Params(), std::move(on_rows));
  steps_.back().merge = &spec;
  steps_.back().merge_rows = std::move(rows);
}

// ---- Open / Close ----

namespace {

ConnectOptions ConnectFor(const PostgresOptions& options) {
  ConnectOptions connect;
  connect.conninfo = options.uri;
  return connect;
}

// A writer or reader connection. Readers run each read (one pipeline
// segment, an implicit transaction) as REPEATABLE READ, READ ONLY: its
// statements see one snapshot, and it cannot write by mistake.
Result<std::unique_ptr<Connection>> OpenFor(const PostgresOptions& options, bool reader) {
  auto conn = Connection::Open(ConnectFor(options));
  if (!conn.ok() || !reader) return conn;
  if (auto set = (*conn)->Exec("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      !set.ok()) {
    return set.error();
  }
  return conn;
}

size_t ReaderCount(const PostgresOptions& options) {
  return static_cast<size_t>(std::max<int64_t>(1, options.pool_size - 1));
}

}  // namespace

Result<std::unique_ptr<PgStore>> PgStore::Open(const PostgresOptions& options) {
  if (options.uri.empty()) {
    return MakeError(Errc::kInvalidArgument, "the PostgreSQL store needs a connection string (store.postgres.uri)");
  }
  if (options.commit_batch < 1) return MakeError(Errc::kInvalidArgument, "commit_batch must be at least 1");
  if (options.pool_size < 2) {
    return MakeError(Errc::kInvalidArgument, "pool_size must be at least 2 (a writer and a reader)");
  }
  {
    auto conn = Connection::Open(ConnectFor(options));
    if (!conn.ok()) return conn.error();
    auto migrated = Migrate(**conn);
    if (!migrated.ok()) return migrated.error();
  }
  std::unique_ptr<PgStore> store(new PgStore(options));
  if (auto started = store->Start(); !started.ok()) return started.error();
  return store;
}

PgStore::PgStore(PostgresOptions options) : options_(std::move(options)) {}

Result<void> PgStore::Start() {
  auto writer = OpenFor(options_, false);
  if (!writer.ok()) return writer.error();
  writer_connection_ = std::move(writer).value();
  for (size_t i = 0; i < ReaderCount(options_); ++i) {
    auto reader = OpenFor(options_, true);
    if (!reader.ok()) return reader.error();
    reader_connections_.push_back(std::move(reader).value());
  }
  writer_ = std::thread([this] { WriterLoop(); });
  for (size_t i = 0; i < reader_connections_.size(); ++i) {
    readers_.emplace_back([this, i] { ReaderLoop(i); });
  }
  return {};
}

PgStore::~PgStore() { Close(); }

void PgStore::Close() {
  std::lock_guard close_lock(close_mu_);
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  writes_ready_.notify_all();
  reads_ready_.notify_all();
  if (writer_.joinable()) writer_.join();
  for (std::thread& reader : readers_) {
    if (reader.joinable()) reader.join();
  }
  readers_.clear();
  writer_connection_.reset();
  reader_connections_.clear();
}

PgStore::Stats PgStore::stats() const {
  Stats stats;
  stats.transactions = transactions_.load(std::memory_order_relaxed);
  stats.writes_ok = writes_ok_.load(std::memory_order_relaxed);
  stats.writes_failed = writes_failed_.load(std::memory_order_relaxed);
  stats.reads = reads_run_.load(std::memory_order_relaxed);
  stats.reconnects = reconnects_.load(std::memory_order_relaxed);
  stats.retried = retried_.load(std::memory_order_relaxed);
  return stats;
}

// ---- Connections ----

Result<std::unique_ptr<Connection>> PgStore::Reconnect(const Error& why, bool reader) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.failover_timeout_ms);
  auto backoff = std::chrono::milliseconds(50);
  Error last = why;
  while (true) {
    auto conn = OpenFor(options_, reader);
    if (conn.ok()) {
      reconnects_.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("store: reconnected to PostgreSQL at {}", (*conn)->Describe());
      return conn;
    }
    last = conn.error();
    if (std::chrono::steady_clock::now() + backoff > deadline) break;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  return MakeError(Errc::kUnavailable, "PostgreSQL unreachable for " + std::to_string(options_.failover_timeout_ms) +
                                           " ms: " + last.message);
}

PgStore::RunResult PgStore::RunOn(std::unique_ptr<Connection>& conn, std::vector<Step>& steps, Error* error,
                                  bool reader) {
  if (!conn) {
    auto fresh = Reconnect(*error, reader);
    if (!fresh.ok()) {
      *error = fresh.error();
      return RunResult::kUnreachable;
    }
    conn = std::move(fresh).value();
  }
  auto ran = conn->Run(steps);
  if (ran.ok()) return RunResult::kRan;
  spdlog::warn("store: {}", ran.error().message);
  conn.reset();
  *error = ran.error();
  return RunResult::kBroke;
}

// ---- Writes ----

void PgStore::WriterLoop() {
  std::vector<std::unique_ptr<Job>> batch;
  const auto limit = static_cast<size_t>(options_.commit_batch);
  while (true) {
    {
      std::unique_lock lock(mu_);
      writes_ready_.wait(lock, [this] { return closing_ || !writes_.empty(); });
      if (writes_.empty()) return;  // closing, and everything queued has been committed
      while (!writes_.empty() && batch.size() < limit) {
        batch.push_back(std::move(writes_.front()));
        writes_.pop_front();
      }
    }
    RunWrites(batch);
    batch.clear();
  }
}

namespace {

Step SyncStep() {
  Step step;
  step.kind = Step::Kind::kSync;
  return step;
}


}  // namespace

void PgStore::RunWrites(std::vector<std::unique_ptr<Job>>& batch) {
  std::vector<Job*> todo;
  todo.reserve(batch.size());
  for (auto& job : batch) todo.push_back(job.get());
  // Together first: one segment, so one transaction and one commit for all.
  // After a statement failed in it, one segment (transaction) per job, so
  // that only the failing one fails.
  bool together = todo.size() > 1;
  Error last{Errc::kUnavailable, "PostgreSQL unreachable"};
  constexpr int kAttempts = 4;
  auto unknown = [&last] {
    return MakeError(Errc::kUnavailable,
                     "the PostgreSQL connection broke before the commit was confirmed; the write may or may "
                     "not have been applied: " +
                         last.message);
  };

  for (int attempt = 0; !todo.empty(); ++attempt) {
    if (attempt == kAttempts) {
      for (Job* job : todo) job->Fail(last);
      break;
    }
    // synced[i]: the server processed segment i's sync, so its transaction
    // either committed or (a statement failed) rolled back.
    std::vector<char> synced(together ? 1 : todo.size(), 0);
    std::vector<Step> steps;
    steps.reserve(todo.size() * 2 + 1);
    auto end_segment = [&](size_t segment) {
      Step sync = SyncStep();
      sync.done = [&synced, segment](StepStatus, const Rows*, const Error*) { synced[segment] = 1; };
      steps.push_back(std::move(sync));
    };
    if (together) {
      for (Job* job : todo) job->Queue(steps);
      end_segment(0);
    } else {
      for (size_t i = 0; i < todo.size(); ++i) {
        todo[i]->Queue(steps);
        end_segment(i);
      }
    }
    const RunResult result = RunOn(writer_connection_, steps, &last, /*reader=*/false);
    if (result == RunResult::kUnreachable) {
      // Nothing was sent: the database stayed unreachable for the whole
      // failover timeout. Fail them (not applied), and what queued up
      // meanwhile; later calls try again.
      for (Job* job : todo) job->Fail(last);
      FailQueued(writes_, last, /*writes=*/true);
      break;
    }
    const bool ran = result == RunResult::kRan;
    auto rolled_back = [](const Job* job) { return job->statement_failed(); };

    if (together) {
      bool any_failed = std::any_of(todo.begin(), todo.end(), rolled_back);
      if (synced[0] && !any_failed) {
        transactions_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      if (any_failed) {
        // Nothing of the batch was committed.
        together = false;
        continue;
      }
      // The connection broke with the commit sent and its outcome unknown:
      // send again only what may safely run twice.
      std::vector<Job*> again;
      for (Job* job : todo) {
        if (job->idempotent()) {
          again.push_back(job);
        } else {
          job->Fail(unknown());
        }
      }
      retried_.fetch_add(static_cast<int64_t>(again.size()), std::memory_order_relaxed);
      todo = std::move(again);
      together = todo.size() > 1;
      continue;
    }

    std::vector<Job*> again;
    for (size_t i = 0; i < todo.size(); ++i) {
      Job* job = todo[i];
      if (job->failed()) continue;  // its own error: rolled back, final
      if (synced[i] && !job->aborted()) {
        transactions_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (ran) {
        job->Fail(MakeError(Errc::kInternal, "a write was skipped without a failing statement"));
      } else if (job->idempotent() || job->aborted()) {
        again.push_back(job);  // aborted: skipped after the break, so not applied
      } else {
        job->Fail(unknown());
      }
    }
    retried_.fetch_add(static_cast<int64_t>(again.size()), std::memory_order_relaxed);
    todo = std::move(again);
  }
  FinishAll(batch);
}

void PgStore::FinishAll(std::vector<std::unique_ptr<Job>>& batch) {
  int64_t failed = 0;
  for (auto& job : batch) failed += job->failed() ? 1 : 0;
  writes_ok_.fetch_add(static_cast<int64_t>(batch.size()) - failed, std::memory_order_relaxed);
  writes_failed_.fetch_add(failed, std::memory_order_relaxed);
  PostByExecutor(batch);  // one post per caller executor (store.h)
}

void PgStore::FailQueued(JobQueue& queue, const Error& error, bool writes) {
  std::vector<std::unique_ptr<Job>> failed;
  {
    std::lock_guard lock(mu_);
    while (!queue.empty()) {
      failed.push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
  if (failed.empty()) return;
  spdlog::warn("store: PostgreSQL unreachable; failing {} queued {}", failed.size(), writes ? "writes" : "reads");
  for (auto& job : failed) {
    job->Fail(error);
    if (!writes) job->Finish();
  }
  if (writes) {
    FinishAll(failed);
  } else {
    reads_run_.fetch_add(static_cast<int64_t>(failed.size()), std::memory_order_relaxed);
  }
}

// ---- Reads ----

void PgStore::ReaderLoop(size_t index) {
  constexpr size_t kReadBatch = 64;
  std::vector<std::unique_ptr<Job>> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      reads_ready_.wait(lock, [this] { return closing_ || !reads_.empty(); });
      if (reads_.empty()) return;
      while (!reads_.empty() && batch.size() < kReadBatch) {
        batch.push_back(std::move(reads_.front()));
        reads_.pop_front();
      }
    }
    RunReads(index, batch);
    reads_run_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
    for (auto& job : batch) job->Finish();
    batch.clear();
  }
}

void PgStore::RunReads(size_t index, std::vector<std::unique_ptr<Job>>& batch) {
  Error last{Errc::kUnavailable, "PostgreSQL unreachable"};
  constexpr int kAttempts = 4;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::vector<Step> steps;
    steps.reserve(batch.size() * 2);
    std::vector<Step> own;
    for (auto& job : batch) {
      own.clear();
      job->Queue(own);
      if (own.empty()) continue;
      // One segment per read: one REPEATABLE READ transaction (the reader
      // connections' default), so its statements see one snapshot.
      for (Step& step : own) steps.push_back(std::move(step));
      steps.push_back(SyncStep());
    }
    if (steps.empty()) return;
    const RunResult result = RunOn(reader_connections_[index], steps, &last, /*reader=*/true);
    if (result == RunResult::kRan) return;
    if (result == RunResult::kUnreachable) {
      FailQueued(reads_, last, /*writes=*/false);
      break;
    }
    retried_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
  }
  for (auto& job : batch) job->Fail(last);
}

}  // namespace nines::store::postgres
