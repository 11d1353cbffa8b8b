// PgStore: the Store on PostgreSQL (the cluster's backend; store.h has the
// contract, docs/architecture.md "The PostgreSQL store" the design).
//
// Threads and connections
//  * One writer thread owns one connection. It group-commits: it takes every
//    queued write (at most PostgresOptions::commit_batch) and sends them all
//    in one pipeline segment: every job's statements, then a Sync. The
//    statements of a segment are one implicit transaction, which the Sync
//    commits; nothing waits between statements. The Replies are posted only
//    once the Sync has been answered, so with synchronous_commit=on (the
//    default) a write is acknowledged only once it is flushed on the primary
//    and, where one is configured, on a synchronous standby (G1).
//  * If a statement of the batch fails, PostgreSQL rolls the transaction
//    back and skips the rest of the segment. The writer then sends the batch
//    again as one segment (transaction) per job, still one pipeline, so a
//    failing write fails alone and the others commit.
//  * Reader threads (pool_size - 1 of them, at least one) each own a
//    connection and pipeline up to 64 queued reads at a time, each in its own
//    segment. Reader connections default to REPEATABLE READ, READ ONLY, so a
//    read of several statements sees one snapshot.
//  * Writes are applied in the order issued (one writer, FIFO). A write's
//    Reply is posted after its COMMIT returned, so a read issued after it
//    sees it.
//
// Failover. The connection string may name several hosts; libpq picks the
// one that accepts writes (target_session_attrs=read-write unless the string
// says otherwise). When a connection breaks, its thread reconnects (backing
// off, up to PostgresOptions::failover_timeout_ms) and then:
//  * reads are sent again;
//  * writes whose transaction was never committed are sent again;
//  * writes whose COMMIT was sent but whose outcome is unknown are sent
//    again only if they are idempotent (setting a value, deleting); the
//    others fail with kUnavailable, and the caller does not acknowledge.
//
// Writing a store call: see pg_store_accounts.cc. A call is one Write or
// Read whose function queues statements on a Pipeline and fills `out` from
// their rows. Statements are single-phase: a job cannot wait for one
// statement's rows before queueing the next. Logic that must branch on
// data lives in SQL (CTEs, or PL/pgSQL functions created by the schema),
// and an outcome that must change nothing RAISEs (so the job's transaction
// rolls back) with the SQLSTATE that maps to its Errc (MapError).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/postgres/pg_connection.h"
#include "store/store.h"

namespace nines::store::postgres {

// Schema fragments, in the order they are created (pg_schema.cc).
extern const char kSchemaAccounts[];
extern const char kSchemaRoster[];   // roster, offline, vCards, block lists, private storage, prefs
extern const char kSchemaArchive[];  // archive, device states, push registrations
extern const char kSchemaPep[];

// Statements queued by one job. Each Query's handler runs with its rows if
// it succeeded; a failure is recorded against the job (the first wins) and
// becomes its Result unless the handler-set `out` is already an error.
class Pipeline {
 public:
  using Handler = std::function<void(const Rows& rows)>;
  void Query(const char* sql, Params params, Handler on_rows = {});
  // Input rows for a statement that consecutive jobs share (MergeSpec);
  // `on_rows` sees this job's result rows only.
  void Merged(const MergeSpec& spec, std::vector<std::vector<std::string>> rows, Handler on_rows);

  // Used by the store's threads.
  struct Hooks {
    std::function<void(const Error&)> on_error;
    std::function<void()> on_aborted;
  };
  Pipeline(std::vector<Step>& steps, Hooks hooks) : steps_(steps), hooks_(std::move(hooks)) {}

 private:
  std::vector<Step>& steps_;
  Hooks hooks_;
};

class PgStore final : public Store {
 public:
  struct Stats {
    int64_t transactions = 0;   // write transactions committed
    int64_t writes_ok = 0;      // write jobs committed and acknowledged
    int64_t writes_failed = 0;  // write jobs that replied with an error
    int64_t reads = 0;          // read jobs run
    int64_t reconnects = 0;     // connections replaced after breaking
    int64_t retried = 0;        // jobs sent again after a broken connection
  };

  static Result<std::unique_ptr<PgStore>> Open(const PostgresOptions& options);
  ~PgStore() override;

  void CreateAccount(Account account, Reply<void> reply) override;
  void CreateAccounts(std::vector<Account> accounts, Reply<void> reply) override;
  void GetAccount(std::string username, Reply<Account> reply) override;
  void SetCredentials(std::string username, ScramKeys sha1, ScramKeys sha256, Reply<void> reply) override;
  void DeleteAccount(std::string username, Reply<void> reply) override;
  void ListAccounts(Reply<std::vector<std::string>> reply) override;
  void GetRoster(std::string username, Reply<Roster> reply) override;
  void PutRosterItem(std::string username, RosterItem item, Reply<int64_t> reply) override;
  void RemoveRosterItem(std::string username, std::string jid, Reply<int64_t> reply) override;
  void StoreOffline(std::string username, OfflineMessage message, Reply<int64_t> reply) override;
  void CountOffline(std::string username, Reply<int64_t> reply) override;
  void LoadOffline(std::string username, Reply<std::vector<OfflineMessage>> reply) override;
  void DeleteOffline(std::string username, int64_t up_to_id, Reply<void> reply) override;
  void GetVCard(std::string username, Reply<std::string> reply) override;
  void SetVCard(std::string username, std::string vcard_xml, Reply<void> reply) override;
  void Archive(std::vector<ArchiveEntry> entries, Reply<ArchiveOutcome> reply) override;
  void QueryArchive(std::string username, ArchiveQuery query, Reply<ArchivePage> reply) override;
  void PruneArchive(std::string username, int64_t before_id, int64_t keep, Reply<int64_t> reply) override;
  void PutDeviceState(DeviceState state, Reply<void> reply) override;
  void GetDeviceState(std::string key, Reply<DeviceState> reply) override;
  void DeleteDeviceState(std::string key, Reply<void> reply) override;
  void SweepDeviceStates(int64_t now_ms, Reply<int64_t> reply) override;
  void PutPushRegistration(PushRegistration registration, Reply<void> reply) override;
  void DeletePushRegistrations(std::string username, std::string jid, std::string node,
                               Reply<int64_t> reply) override;
  void ListPushRegistrations(std::string username, Reply<std::vector<PushRegistration>> reply) override;
  void GetBlocklist(std::string username, Reply<std::vector<std::string>> reply) override;
  void Block(std::string username, std::vector<std::string> jids, Reply<void> reply) override;
  void Unblock(std::string username, std::vector<std::string> jids, Reply<int64_t> reply) override;
  void GetArchivePrefs(std::string username, Reply<ArchivePrefs> reply) override;
  void SetArchivePrefs(std::string username, ArchivePrefs prefs, Reply<void> reply) override;
  void GetPrivate(std::string username, std::string key, Reply<std::string> reply) override;
  void SetPrivate(std::string username, std::string key, std::string xml, int64_t max_items,
                  Reply<void> reply) override;
  void ListPepNodes(std::string username, Reply<std::vector<PepNode>> reply) override;
  void PutPepNode(PepNode node, int64_t max_nodes, Reply<void> reply) override;
  void DeletePepNode(std::string username, std::string node, Reply<void> reply) override;
  void PublishPepItem(PepNode node, PepItem item, int64_t max_nodes, Reply<void> reply) override;
  void SetPepItems(PepNode node, std::vector<PepItem> items, int64_t max_nodes, Reply<void> reply) override;
  void GetPepItems(std::string username, std::string node, std::vector<std::string> ids, int64_t max,
                   Reply<std::vector<PepItem>> reply) override;
  void RetractPepItems(std::string username, std::string node, std::vector<std::string> ids,
                       Reply<int64_t> reply) override;
  void PurgePepNode(std::string username, std::string node, Reply<void> reply) override;
  void LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                    std::vector<std::string> unless_blocking,
                    Reply<std::vector<PepLastItem>> reply) override;
  void Close() override;

  Stats stats() const;

  class Job;

 private:
  template <class T, class Fn>
  class JobImpl;
  using JobQueue = std::deque<std::unique_ptr<Job>>;

  explicit PgStore(PostgresOptions options);
  Result<void> Start();  // connects every thread's connection, then starts the threads

  // Queues a job. `fn` is void(Pipeline&, std::optional<Result<T>>& out):
  // it queues the job's statements, and their handlers set `out`. It may be
  // called more than once (after a failed batch or a reconnect), each time
  // with `out` reset. If no handler sets `out`, a Result<void> job succeeds;
  // any other job fails with kInternal.
  // `idempotent`: running it twice is the same as once (see Failover above).
  template <class T, class Fn>
  void Write(Reply<T> reply, Fn fn, bool idempotent = false);
  template <class T, class Fn>
  void Read(Reply<T> reply, Fn fn);

  void WriterLoop();
  void ReaderLoop(size_t index);
  // One group-committed batch, with the per-job fallback; posts the Replies.
  void RunWrites(std::vector<std::unique_ptr<Job>>& batch);
  void RunReads(size_t index, std::vector<std::unique_ptr<Job>>& batch);
  // Runs `steps` on `conn`, first connecting if it is null (a previous run
  // broke it). kBroke: the connection broke during the run (`conn` is now
  // null, `error` says why, some steps may not have completed);
  // kUnreachable: no connection could be made within the failover timeout,
  // nothing was sent.
  enum class RunResult { kRan, kBroke, kUnreachable };
  RunResult RunOn(std::unique_ptr<Connection>& conn, std::vector<Step>& steps, Error* error, bool reader);
  // Connects, retrying until failover_timeout_ms has passed.
  Result<std::unique_ptr<Connection>> Reconnect(const Error& why, bool reader);
  void FinishAll(std::vector<std::unique_ptr<Job>>& batch);
  // The database stayed unreachable for a whole failover timeout: fails
  // everything queued now (instead of each batch waiting a timeout of its own).
  void FailQueued(JobQueue& queue, const Error& error, bool writes);

  PostgresOptions options_;
  std::unique_ptr<Connection> writer_connection_;
  std::vector<std::unique_ptr<Connection>> reader_connections_;

  std::mutex mu_;
  std::condition_variable writes_ready_;
  std::condition_variable reads_ready_;
  JobQueue writes_;
  JobQueue reads_;
  bool closing_ = false;
  std::mutex close_mu_;
  std::thread writer_;
  std::vector<std::thread> readers_;

  std::atomic<int64_t> transactions_{0};
  std::atomic<int64_t> writes_ok_{0};
  std::atomic<int64_t> writes_failed_{0};
  std::atomic<int64_t> reads_run_{0};
  std::atomic<int64_t> reconnects_{0};
  std::atomic<int64_t> retried_{0};
};

// One queued call: its statements and its Reply.
class PgStore::Job {
 public:
  virtual ~Job() = default;
  // Resets the outcome and queues the statements onto `steps`.
  virtual void Queue(std::vector<Step>& steps) = 0;
  // Replaces the outcome with `error` (the transaction did not commit).
  virtual void Fail(const Error& error) = 0;
  // The outcome is an error (a failed statement, or one its handlers or
  // validation chose).
  virtual bool failed() const = 0;
  // A statement of this job failed or was skipped: its transaction rolled back.
  virtual bool statement_failed() const = 0;
  virtual bool aborted() const = 0;
  // Its last Queue() added no statement (its outcome was decided without
  // the database: validation, or nothing to do). Nothing can change it.
  virtual bool sent_nothing() const = 0;
  virtual bool idempotent() const = 0;
  virtual void Finish() = 0;
  virtual void FinishHere() = 0;
  virtual const boost::asio::any_io_executor& executor() const = 0;
};

template <class T, class Fn>
class PgStore::JobImpl final : public PgStore::Job {
 public:
  JobImpl(Reply<T> reply, Fn fn, bool idempotent)
      : reply_(std::move(reply)), fn_(std::move(fn)), idempotent_(idempotent) {}

  void Queue(std::vector<Step>& steps) override {
    out_.reset();
    error_.reset();
    aborted_ = false;
    Pipeline pipeline(steps, Pipeline::Hooks{[this](const Error& e) {
                                               if (!error_) error_ = e;
                                             },
                                             [this] { aborted_ = true; }});
    const size_t before = steps.size();
    fn_(pipeline, out_);
    sent_nothing_ = steps.size() == before;
  }
  void Fail(const Error& error) override {
    if (sent_nothing_) return;  // decided without the database
    error_ = error;
    out_.reset();
  }
  bool sent_nothing() const override { return sent_nothing_; }
  bool failed() const override { return error_.has_value() || (out_ && !out_->ok()); }
  bool statement_failed() const override { return error_.has_value() || aborted_; }
  bool aborted() const override { return aborted_; }
  bool idempotent() const override { return idempotent_; }
  void Finish() override { reply_(TakeResult()); }
  void FinishHere() override { reply_.Invoke(TakeResult()); }
  const boost::asio::any_io_executor& executor() const override { return reply_.executor(); }

 private:
  Result<T> TakeResult() {
    if (out_ && !out_->ok()) return std::move(*out_);
    if (error_) return *error_;
    if (aborted_) return MakeError(Errc::kUnavailable, "the statement was not run");
    if (out_) return std::move(*out_);
    if constexpr (std::is_void_v<T>) {
      return Result<void>();
    } else {
      return MakeError(Errc::kInternal, "store job finished without a result");
    }
  }

  Reply<T> reply_;
  Fn fn_;
  bool idempotent_;
  std::optional<Result<T>> out_;
  std::optional<Error> error_;
  bool aborted_ = false;
  bool sent_nothing_ = false;
};

template <class T, class Fn>
void PgStore::Write(Reply<T> reply, Fn fn, bool idempotent) {
  {
    std::lock_guard lock(mu_);
    if (!closing_) {
      writes_.push_back(std::make_unique<JobImpl<T, Fn>>(std::move(reply), std::move(fn), idempotent));
      writes_ready_.notify_one();
      return;
    }
  }
  reply(MakeError(Errc::kUnavailable, "the store is closed"));
}

template <class T, class Fn>
void PgStore::Read(Reply<T> reply, Fn fn) {
  {
    std::lock_guard lock(mu_);
    if (!closing_) {
      reads_.push_back(std::make_unique<JobImpl<T, Fn>>(std::move(reply), std::move(fn), true));
      reads_ready_.notify_one();
      return;
    }
  }
  reply(MakeError(Errc::kUnavailable, "the store is closed"));
}

// Unix milliseconds now (for created_ms and the like).
int64_t NowMs();

// Rows → values shared by several files.
ScramKeys ReadKeys(const Rows& rows, int row, int first);

}  // namespace nines::store::postgres
