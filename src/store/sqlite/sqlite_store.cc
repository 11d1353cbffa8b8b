#include "store/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "store/sqlite/sqlite_schema.h"

namespace nines::store {

Result<std::unique_ptr<Store>> OpenSqlite(const SqliteOptions& options) {
  auto store = sqlite::SqliteStore::Open(options);
  if (!store.ok()) return store.error();
  return std::unique_ptr<Store>(std::move(store).value());
}

int SqliteSchemaVersion() { return sqlite::CurrentVersion(); }

}  // namespace nines::store

namespace nines::store::sqlite {

// ---- Jobs ----

// One unit of work for a worker thread: some statements and the Reply that
// reports their outcome.
class SqliteStore::Job {
 public:
  virtual ~Job() = default;
  // Runs the statements on `conn` (the writer: inside the job's savepoint)
  // and keeps the result. Returns false if the result is an error.
  virtual bool Run(Connection& conn) = 0;
  // Replaces the kept result with `error`: the transaction the job ran in
  // did not commit, or the job never ran.
  virtual void Fail(const Error& error) = 0;
  // Posts the kept result to the caller's executor. Called exactly once
  // (this or FinishHere).
  virtual void Finish() = 0;
  // Runs the Reply with the kept result on the calling thread, which must be
  // one of executor()'s (CommitBatch posts whole groups of jobs at once).
  virtual void FinishHere() = 0;
  virtual const boost::asio::any_io_executor& executor() const = 0;
};

template <class T, class Fn>
class SqliteStore::JobImpl final : public SqliteStore::Job {
 public:
  JobImpl(Reply<T> reply, Fn fn) : reply_(std::move(reply)), fn_(std::move(fn)) {}

  bool Run(Connection& conn) override {
    result_.emplace(fn_(conn));
    return result_->ok();
  }
  void Fail(const Error& error) override { result_.emplace(error); }
  void Finish() override {
    if (!result_) result_.emplace(MakeError(Errc::kInternal, "store job finished without running"));
    reply_(std::move(*result_));
  }
  void FinishHere() override {
    if (!result_) result_.emplace(MakeError(Errc::kInternal, "store job finished without running"));
    reply_.Invoke(std::move(*result_));
  }
  const boost::asio::any_io_executor& executor() const override { return reply_.executor(); }

 private:
  Reply<T> reply_;
  Fn fn_;
  std::optional<Result<T>> result_;
};

// ---- Open / Close ----

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteOptions& options) {
  if (options.path.empty() || options.path == ":memory:" || options.path.starts_with("file:")) {
    return MakeError(Errc::kInvalidArgument,
                     "the SQLite store needs a plain file path, got '" + options.path + "'");
  }
  if (options.commit_batch < 1) {
    return MakeError(Errc::kInvalidArgument, "commit_batch must be at least 1");
  }
  if (options.commit_delay_us < 0 || options.commit_delay_us > 1'000'000) {
    return MakeError(Errc::kInvalidArgument, "commit_delay_us must be between 0 and 1000000");
  }
  if (options.archive_index_every < 1) {
    return MakeError(Errc::kInvalidArgument, "archive_index_every must be at least 1");
  }
  std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return MakeError(Errc::kUnavailable,
                       "cannot create directory " + parent.string() + ": " + ec.message());
    }
  }
  auto writer = Connection::Open(options.path, Connection::Mode::kReadWrite, kBusyTimeoutMs);
  if (!writer.ok()) return writer.error();
  auto found = Migrate(**writer);
  if (!found.ok()) return MakeError(found.error().code, options.path + ": " + found.error().message);
  // Opened after migration so the file is already in WAL mode, which a
  // read-only connection cannot switch on.
  auto reader = Connection::Open(options.path, Connection::Mode::kReadOnly, kBusyTimeoutMs);
  if (!reader.ok()) return reader.error();
  // The archive's tail: what the last process archived and did not index.
  auto archive = std::make_unique<ArchiveLog>(static_cast<size_t>(options.archive_index_every));
  if (auto loaded = archive->Load(**writer); !loaded.ok()) {
    return MakeError(loaded.error().code, options.path + ": " + loaded.error().message);
  }
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(options, std::move(writer).value(), std::move(reader).value(), std::move(archive)));
}

SqliteStore::SqliteStore(SqliteOptions options, std::unique_ptr<Connection> writer,
                         std::unique_ptr<Connection> reader, std::unique_ptr<ArchiveLog> archive)
    : options_(std::move(options)),
      writer_connection_(std::move(writer)),
      reader_connection_(std::move(reader)),
      archive_(std::move(archive)) {
  writer_ = std::thread([this] { WriterLoop(); });
  reader_ = std::thread([this] { ReaderLoop(); });
}

SqliteStore::~SqliteStore() { Close(); }

void SqliteStore::Close() {
  std::lock_guard close_lock(close_mu_);
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  writes_ready_.notify_all();
  reads_ready_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (reader_.joinable()) reader_.join();
  // Indexing the tail now makes the next open quick (nothing to read back).
  if (writer_connection_ && archive_ && archive_->ArchivedHere() && !archive_->TailEmpty())
    IndexArchive(true);
  // The reader goes first so the writer's close is the last one and
  // checkpoints the WAL back into the main file.
  reader_connection_.reset();
  writer_connection_.reset();
}

SqliteStore::Stats SqliteStore::stats() const {
  Stats stats;
  stats.transactions = transactions_.load(std::memory_order_relaxed);
  stats.batches_replayed = batches_replayed_.load(std::memory_order_relaxed);
  stats.writes_ok = writes_ok_.load(std::memory_order_relaxed);
  stats.writes_failed = writes_failed_.load(std::memory_order_relaxed);
  stats.reads = reads_run_.load(std::memory_order_relaxed);
  return stats;
}

// ---- Queues and threads ----

template <class T, class Fn>
void SqliteStore::Submit(JobQueue& queue, std::condition_variable& cv, Reply<T> reply, Fn fn) {
  {
    std::lock_guard lock(mu_);
    if (!closing_) {
      queue.push_back(std::make_unique<JobImpl<T, Fn>>(std::move(reply), std::move(fn)));
      // A writer waiting out the commit delay wakes only for a full batch
      // (or at the delay's end), not once per write.
      if (&queue != &writes_ || !delaying_ || queue.size() >= static_cast<size_t>(options_.commit_batch)) {
        cv.notify_one();
      }
      return;
    }
  }
  reply(MakeError(Errc::kUnavailable, "the store is closed"));
}

template <class T, class Fn>
void SqliteStore::Write(Reply<T> reply, Fn fn) {
  Submit(writes_, writes_ready_, std::move(reply), std::move(fn));
}

template <class T, class Fn>
void SqliteStore::Read(Reply<T> reply, Fn fn) {
  Submit(reads_, reads_ready_, std::move(reply), std::move(fn));
}

void SqliteStore::WriterLoop() {
  std::vector<std::unique_ptr<Job>> batch;
  const auto limit = static_cast<size_t>(options_.commit_batch);
  const auto delay = std::chrono::microseconds(options_.commit_delay_us);
  // The last group commit: when it ended, and how many writes it held.
  std::chrono::steady_clock::time_point last_end{};
  size_t last_size = 0;
  while (true) {
    {
      std::unique_lock lock(mu_);
      // An index run under way goes on between group commits, and on its
      // own when nothing is queued (IndexReady is writer-thread state).
      writes_ready_.wait(lock, [this] { return closing_ || !writes_.empty() || IndexReady(); });
      if (writes_.empty() && closing_) return;  // everything queued has been committed; Close indexes
      // Busy: several writes in the last commit or queued now, and the last
      // commit ended less than the delay ago. The writes wait out the rest of
      // it for others to share their fsync (store.sqlite_commit_delay_us).
      // An idle store, or one caller writing in turn, commits at once.
      if (delay.count() > 0 && !writes_.empty() && writes_.size() < limit && !closing_ &&
          (last_size > 1 || writes_.size() > 1) && std::chrono::steady_clock::now() < last_end + delay) {
        delaying_ = true;
        writes_ready_.wait_until(lock, last_end + delay, [&] { return closing_ || writes_.size() >= limit; });
        delaying_ = false;
      }
      while (!writes_.empty() && batch.size() < limit) {
        batch.push_back(std::move(writes_.front()));
        writes_.pop_front();
      }
    }
    if (!batch.empty()) {
      CommitBatch(batch);
      last_size = batch.size();
      last_end = std::chrono::steady_clock::now();
    }
    batch.clear();
    IndexArchive(false);
  }
}

namespace {

Result<void> RunStatement(Connection& conn, std::string_view sql) {
  auto stmt = conn.Prepare(sql);
  if (!stmt.ok()) return stmt.error();
  return stmt->Run();
}

}  // namespace

bool SqliteStore::IndexReady() const {
  return archive_->IndexDue() &&
         std::chrono::steady_clock::now() - index_failed_at_ >= std::chrono::seconds(1);
}

void SqliteStore::IndexArchive(bool force) {
  Connection& conn = *writer_connection_;
  // One slice per call, or (force, at close) slices until the tail is
  // indexed; a failure stops until a second has passed.
  auto slice = [&]() -> Result<void> {
    if (auto r = RunStatement(conn, "BEGIN IMMEDIATE"); !r.ok()) return r;
    if (auto r = archive_->BeginTransaction(conn); !r.ok()) return r;
    if (auto r = archive_->IndexSlice(conn); !r.ok()) return r;
    return RunStatement(conn, "COMMIT");
  };
  // At close, a run that leaves the tail no smaller ends it: what is left
  // is read back from the log at the next start, not indexed in a loop.
  size_t after_last_run = std::numeric_limits<size_t>::max();
  for (int slices = 0; force ? !archive_->TailEmpty() && slices < 100000 : slices < 1 && IndexReady();
       ++slices) {
    if (auto r = slice(); !r.ok()) {
      if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
      archive_->IndexSliceAborted();
      index_failed_at_ = std::chrono::steady_clock::now();
      spdlog::warn("store: indexing the archive's newest messages failed (tried again later): {}",
                   r.error().message);
      return;
    }
    archive_->IndexSliceCommitted();
    if (force && !archive_->RunActive()) {
      if (archive_->TailSize() >= after_last_run) {
        spdlog::warn(
            "store: indexing the archive at close left {} entries; they are read back at the next start",
            archive_->TailSize());
        return;
      }
      after_last_run = archive_->TailSize();
    }
  }
}

void SqliteStore::CommitBatch(std::vector<std::unique_ptr<Job>>& batch) {
  if (CommitWithoutSavepoints(batch)) return;
  batches_replayed_.fetch_add(1, std::memory_order_relaxed);
  CommitWithSavepoints(batch);
}

// A savepoint around each job costs two statements and, for every page the
// job touches that an earlier job of the batch had already changed, a copy
// of the page into the statement journal: about a tenth of the archived
// message rate (docs/benchmarks.md, "Archiving: where the writer's time
// goes"). Most jobs succeed, and most that fail do so before changing a row
// (a taken name, a missing account: SQLite undoes the failing statement
// itself), so the batch first runs without them. Only a job that fails
// after changing rows sends the batch back to the savepoint path; running a
// job again is safe, because a job's function changes nothing but the
// database (the archive's last id only moves forward).
bool SqliteStore::CommitWithoutSavepoints(std::vector<std::unique_ptr<Job>>& batch) {
  Connection& conn = *writer_connection_;
  auto begun = RunStatement(conn, "BEGIN IMMEDIATE");
  if (begun.ok()) begun = archive_->BeginTransaction(conn);
  if (!begun.ok()) {
    // Not tried again: BEGIN has already waited out the busy timeout.
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    spdlog::warn("store: cannot begin a write transaction for {} jobs: {}", batch.size(), begun.error().message);
    FailBatch(batch, begun.error(), {});
    return true;
  }
  int64_t own_failures = 0;
  std::vector<bool> ran_ok;
  ran_ok.reserve(batch.size());
  for (auto& job : batch) {
    const int64_t before = conn.TotalChanges();
    const ArchiveLog::Mark mark = archive_->mark();
    ran_ok.push_back(job->Run(conn));
    if (ran_ok.back()) continue;
    archive_->Rewind(mark);
    if (!conn.InAutocommit() && conn.TotalChanges() == before) {
      ++own_failures;  // nothing of it to undo
      continue;
    }
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    archive_->Aborted();
    return false;
  }
  auto committed = archive_->EndTransaction(conn);
  if (committed.ok()) committed = RunStatement(conn, "COMMIT");
  if (!committed.ok()) {
    // Not run again: a failed COMMIT may or may not have reached the disk.
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    archive_->Aborted();
    spdlog::warn("store: write transaction of {} jobs failed: {}", batch.size(), committed.error().message);
    FailBatch(batch, committed.error(), ran_ok);
    return true;
  }
  archive_->Committed();  // before the Replies, so a read they trigger sees it
  FinishBatch(batch, own_failures);
  return true;
}

void SqliteStore::FailBatch(std::vector<std::unique_ptr<Job>>& batch, const Error& error,
                            const std::vector<bool>& ran_ok) {
  for (size_t i = 0; i < batch.size(); ++i) {
    if (i >= ran_ok.size() || ran_ok[i]) batch[i]->Fail(error);
  }
  writes_failed_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
  PostByExecutor(batch);  // one post per caller executor for the whole batch (store.h)
}

void SqliteStore::FinishBatch(std::vector<std::unique_ptr<Job>>& batch, int64_t own_failures) {
  transactions_.fetch_add(1, std::memory_order_relaxed);
  writes_ok_.fetch_add(static_cast<int64_t>(batch.size()) - own_failures, std::memory_order_relaxed);
  writes_failed_.fetch_add(own_failures, std::memory_order_relaxed);
  PostByExecutor(batch);
}

void SqliteStore::CommitWithSavepoints(std::vector<std::unique_ptr<Job>>& batch) {
  Connection& conn = *writer_connection_;
  std::vector<bool> ran_ok;
  ran_ok.reserve(batch.size());
  auto begun = RunStatement(conn, "BEGIN IMMEDIATE");
  if (begun.ok()) begun = archive_->BeginTransaction(conn);
  if (!begun.ok()) {
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    spdlog::warn("store: cannot begin a write transaction for {} jobs: {}", batch.size(),
                 begun.error().message);
    FailBatch(batch, begun.error(), ran_ok);
    return;
  }

  int64_t own_failures = 0;
  std::optional<Error> abandoned;  // set if SQLite rolled the whole transaction back
  for (auto& job : batch) {
    if (auto r = RunStatement(conn, "SAVEPOINT job"); !r.ok()) {
      abandoned = r.error();
      break;
    }
    const ArchiveLog::Mark mark = archive_->mark();
    if (job->Run(conn)) {
      ran_ok.push_back(true);
      if (auto r = RunStatement(conn, "RELEASE job"); !r.ok()) {
        abandoned = r.error();
        break;
      }
      continue;
    }
    ran_ok.push_back(false);
    ++own_failures;
    archive_->Rewind(mark);
    if (conn.InAutocommit()) {
      // Some errors (IOERR, FULL, NOMEM, BUSY mid-statement) make SQLite roll
      // back the whole transaction, taking the earlier jobs' work with it.
      abandoned =
          MakeError(Errc::kUnavailable, "the write transaction was rolled back after a failed statement");
      break;
    }
    auto rolled_back = RunStatement(conn, "ROLLBACK TO job");
    auto released = rolled_back.ok() ? RunStatement(conn, "RELEASE job") : rolled_back;
    if (!released.ok()) {
      abandoned = released.error();
      break;
    }
  }

  if (!abandoned) {
    if (auto ended = archive_->EndTransaction(conn); !ended.ok()) abandoned = ended.error();
  }
  if (!abandoned) {
    if (auto committed = RunStatement(conn, "COMMIT"); !committed.ok()) abandoned = committed.error();
  }
  if (abandoned) {
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    archive_->Aborted();
    spdlog::warn("store: write transaction of {} jobs failed: {}", batch.size(), abandoned->message);
    FailBatch(batch, *abandoned, ran_ok);
    return;
  }
  archive_->Committed();
  FinishBatch(batch, own_failures);
}

void SqliteStore::ReaderLoop() {
  Connection& conn = *reader_connection_;
  while (true) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      reads_ready_.wait(lock, [this] { return closing_ || !reads_.empty(); });
      if (reads_.empty()) return;
      job = std::move(reads_.front());
      reads_.pop_front();
    }
    // A read transaction so multi-statement reads see one snapshot.
    if (auto begun = RunStatement(conn, "BEGIN"); !begun.ok()) {
      job->Fail(begun.error());
    } else {
      job->Run(conn);
      if (!conn.InAutocommit()) {
        if (auto ended = RunStatement(conn, "COMMIT"); !ended.ok()) job->Fail(ended.error());
      }
    }
    reads_run_.fetch_add(1, std::memory_order_relaxed);
    job->Finish();
  }
}

// ---- Statements ----

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Subscription SubscriptionFromName(std::string_view name) {
  if (name == "to") return Subscription::kTo;
  if (name == "from") return Subscription::kFrom;
  if (name == "both") return Subscription::kBoth;
  return Subscription::kNone;  // the CHECK constraint admits nothing else
}

// Rewrites a foreign-key failure, which in this schema always means the
// owning account is missing, into a message naming the account.
Error NoAccountIfForeignKey(Error error, const std::string& username) {
  if (error.code == Errc::kNotFound) return MakeError(Errc::kNotFound, "no account '" + username + "'");
  return error;
}

void BindKeys(Statement& stmt, int first, const ScramKeys& keys) {
  stmt.BindBlob(first, keys.salt);
  stmt.BindInt(first + 1, keys.iterations);
  stmt.BindBlob(first + 2, keys.stored_key);
  stmt.BindBlob(first + 3, keys.server_key);
}

ScramKeys ReadKeys(const Statement& stmt, int first) {
  ScramKeys keys;
  keys.salt = stmt.ColumnBlob(first);
  keys.iterations = stmt.ColumnInt(first + 1);
  keys.stored_key = stmt.ColumnBlob(first + 2);
  keys.server_key = stmt.ColumnBlob(first + 3);
  return keys;
}

Result<void> InsertAccount(Connection& conn, const Account& account) {
  auto stmt = conn.Prepare(
      "INSERT INTO accounts (username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
      " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_ms)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, account.username);
  BindKeys(*stmt, 2, account.sha1);
  BindKeys(*stmt, 6, account.sha256);
  stmt->BindInt(10, account.created_ms);
  auto done = stmt->Run();
  if (!done.ok() && done.error().code == Errc::kConflict) {
    return MakeError(Errc::kConflict, "account '" + account.username + "' already exists");
  }
  return done;
}

// Bumps and returns the roster version of `username`; kNotFound if there is
// no such account.
Result<int64_t> BumpRosterVersion(Connection& conn, const std::string& username) {
  auto stmt = conn.Prepare(
      "UPDATE accounts SET roster_version = roster_version + 1 WHERE username = ?1 RETURNING roster_version");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, username);
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  if (!*row) return MakeError(Errc::kNotFound, "no account '" + username + "'");
  int64_t version = stmt->ColumnInt(0);
  if (auto done = stmt->Run(); !done.ok()) return done.error();
  return version;
}

}  // namespace

void SqliteStore::CreateAccount(Account account, Reply<void> reply) {
  Write(std::move(reply),
        [account = std::move(account)](Connection& conn) { return InsertAccount(conn, account); });
}

void SqliteStore::CreateAccounts(std::vector<Account> accounts, Reply<void> reply) {
  Write(std::move(reply), [accounts = std::move(accounts)](Connection& conn) -> Result<void> {
    for (const Account& account : accounts) {
      if (auto r = InsertAccount(conn, account); !r.ok()) return r;
    }
    return {};
  });
}

void SqliteStore::GetAccount(std::string username, Reply<Account> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<Account> {
    auto stmt = conn.Prepare(
        "SELECT sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
        " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_ms"
        " FROM accounts WHERE username = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) return MakeError(Errc::kNotFound, "no account '" + username + "'");
    Account account;
    account.username = username;
    account.sha1 = ReadKeys(*stmt, 0);
    account.sha256 = ReadKeys(*stmt, 4);
    account.created_ms = stmt->ColumnInt(8);
    return account;
  });
}

void SqliteStore::SetCredentials(std::string username, ScramKeys sha1, ScramKeys sha256, Reply<void> reply) {
  Write(std::move(reply),
        [username = std::move(username), sha1 = std::move(sha1),
         sha256 = std::move(sha256)](Connection& conn) -> Result<void> {
          auto stmt = conn.Prepare(
              "UPDATE accounts SET sha1_salt = ?2, sha1_iterations = ?3, sha1_stored_key = ?4, "
              "sha1_server_key = ?5,"
              " sha256_salt = ?6, sha256_iterations = ?7, sha256_stored_key = ?8, sha256_server_key = ?9"
              " WHERE username = ?1");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          BindKeys(*stmt, 2, sha1);
          BindKeys(*stmt, 6, sha256);
          if (auto done = stmt->Run(); !done.ok()) return done;
          if (conn.Changes() == 0) return MakeError(Errc::kNotFound, "no account '" + username + "'");
          return {};
        });
}

void SqliteStore::DeleteAccount(std::string username, Reply<void> reply) {
  Write(std::move(reply), [this, username = std::move(username)](Connection& conn) -> Result<void> {
    // Roster items, their groups, offline messages and the vCard go with it
    // through ON DELETE CASCADE; the archive has no foreign keys
    // (archive_log.h), so ArchiveLog deletes the owner's entries.
    auto stmt = conn.Prepare("DELETE FROM accounts WHERE username = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    if (auto done = stmt->Run(); !done.ok()) return done;
    if (conn.Changes() == 0) return MakeError(Errc::kNotFound, "no account '" + username + "'");
    return archive_->DeleteOwner(conn, username);
  });
}

void SqliteStore::ListAccounts(Reply<std::vector<std::string>> reply) {
  Read(std::move(reply), [](Connection& conn) -> Result<std::vector<std::string>> {
    auto stmt = conn.Prepare("SELECT username FROM accounts ORDER BY username");
    if (!stmt.ok()) return stmt.error();
    std::vector<std::string> usernames;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      usernames.push_back(stmt->ColumnText(0));
    }
    return usernames;
  });
}

void SqliteStore::GetRoster(std::string username, Reply<Roster> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<Roster> {
    Roster roster;
    {
      auto stmt = conn.Prepare("SELECT roster_version FROM accounts WHERE username = ?1");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) return roster;  // no account: an empty roster at version 0
      roster.version = stmt->ColumnInt(0);
    }
    std::unordered_map<std::string, size_t> by_jid;
    {
      auto stmt = conn.Prepare(
          "SELECT jid, name, subscription, ask_out, pending_in, preapproved, pending_in_stanza"
          " FROM roster_items WHERE username = ?1 ORDER BY jid");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      while (true) {
        auto row = stmt->Step();
        if (!row.ok()) return row.error();
        if (!*row) break;
        RosterItem item;
        item.jid = stmt->ColumnText(0);
        item.name = stmt->ColumnText(1);
        item.subscription = SubscriptionFromName(stmt->ColumnText(2));
        item.ask_out = stmt->ColumnInt(3) != 0;
        item.pending_in = stmt->ColumnInt(4) != 0;
        item.preapproved = stmt->ColumnInt(5) != 0;
        item.pending_in_stanza = stmt->ColumnText(6);
        by_jid.emplace(item.jid, roster.items.size());
        roster.items.push_back(std::move(item));
      }
    }
    {
      auto stmt = conn.Prepare("SELECT jid, name FROM roster_groups WHERE username = ?1 ORDER BY jid, name");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      while (true) {
        auto row = stmt->Step();
        if (!row.ok()) return row.error();
        if (!*row) break;
        auto it = by_jid.find(stmt->ColumnText(0));
        if (it != by_jid.end()) roster.items[it->second].groups.push_back(stmt->ColumnText(1));
      }
    }
    return roster;
  });
}

void SqliteStore::PutRosterItem(std::string username, RosterItem item, Reply<int64_t> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), item = std::move(item)](Connection& conn) -> Result<int64_t> {
        if (item.subscription == Subscription::kRemove) {
          return MakeError(Errc::kInvalidArgument,
                           "subscription 'remove' is not a stored state; use RemoveRosterItem");
        }
        const char* subscription = SubscriptionName(item.subscription);
        auto version = BumpRosterVersion(conn, username);
        if (!version.ok()) return version;
        {
          auto stmt = conn.Prepare(
              "INSERT INTO roster_items (username, jid, name, subscription, ask_out, pending_in, preapproved,"
              " pending_in_stanza) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
              " ON CONFLICT (username, jid) DO UPDATE SET name = excluded.name, subscription = "
              "excluded.subscription,"
              " ask_out = excluded.ask_out, pending_in = excluded.pending_in, preapproved = "
              "excluded.preapproved,"
              " pending_in_stanza = excluded.pending_in_stanza");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, item.jid);
          stmt->BindText(3, item.name);
          stmt->BindText(4, subscription);
          stmt->BindInt(5, item.ask_out ? 1 : 0);
          stmt->BindInt(6, item.pending_in ? 1 : 0);
          stmt->BindInt(7, item.preapproved ? 1 : 0);
          stmt->BindText(8, item.pending_in_stanza);
          if (auto done = stmt->Run(); !done.ok()) return done.error();
        }
        {
          auto stmt = conn.Prepare("DELETE FROM roster_groups WHERE username = ?1 AND jid = ?2");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, item.jid);
          if (auto done = stmt->Run(); !done.ok()) return done.error();
        }
        // Groups are a set (RFC 6121 §2.1.2.2); duplicates collapse here.
        std::set<std::string_view> groups(item.groups.begin(), item.groups.end());
        for (std::string_view group : groups) {
          auto stmt = conn.Prepare("INSERT INTO roster_groups (username, jid, name) VALUES (?1, ?2, ?3)");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, item.jid);
          stmt->BindText(3, group);
          if (auto done = stmt->Run(); !done.ok()) return done.error();
        }
        return version;
      });
}

void SqliteStore::RemoveRosterItem(std::string username, std::string jid, Reply<int64_t> reply) {
  Write(std::move(reply),
        [username = std::move(username), jid = std::move(jid)](Connection& conn) -> Result<int64_t> {
          auto stmt = conn.Prepare("DELETE FROM roster_items WHERE username = ?1 AND jid = ?2");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, jid);
          if (auto done = stmt->Run(); !done.ok()) return done.error();
          if (conn.Changes() == 0)
            return MakeError(Errc::kNotFound, "no roster item '" + jid + "' for '" + username + "'");
          return BumpRosterVersion(conn, username);
        });
}

void SqliteStore::StoreOffline(std::string username, OfflineMessage message, Reply<int64_t> reply) {
  Write(std::move(reply),
        [username = std::move(username), message = std::move(message)](Connection& conn) -> Result<int64_t> {
          auto stmt = conn.Prepare(
              "INSERT INTO offline_messages (username, stamp_ms, stanza) VALUES (?1, ?2, ?3) RETURNING id");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindInt(2, message.stamp_ms);
          stmt->BindText(3, message.stanza);
          auto row = stmt->Step();
          if (!row.ok()) return NoAccountIfForeignKey(row.error(), username);
          if (!*row) return MakeError(Errc::kInternal, "INSERT ... RETURNING gave no row");
          int64_t id = stmt->ColumnInt(0);
          if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), username);
          return id;
        });
}

void SqliteStore::CountOffline(std::string username, Reply<int64_t> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<int64_t> {
    auto stmt = conn.Prepare("SELECT count(*) FROM offline_messages WHERE username = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    return *row ? stmt->ColumnInt(0) : 0;
  });
}

void SqliteStore::LoadOffline(std::string username, Reply<std::vector<OfflineMessage>> reply) {
  Read(std::move(reply),
       [username = std::move(username)](Connection& conn) -> Result<std::vector<OfflineMessage>> {
         auto stmt = conn.Prepare(
             "SELECT id, stamp_ms, stanza FROM offline_messages WHERE username = ?1 ORDER BY id");
         if (!stmt.ok()) return stmt.error();
         stmt->BindText(1, username);
         std::vector<OfflineMessage> messages;
         while (true) {
           auto row = stmt->Step();
           if (!row.ok()) return row.error();
           if (!*row) break;
           OfflineMessage message;
           message.id = stmt->ColumnInt(0);
           message.stamp_ms = stmt->ColumnInt(1);
           message.stanza = stmt->ColumnText(2);
           messages.push_back(std::move(message));
         }
         return messages;
       });
}

void SqliteStore::DeleteOffline(std::string username, int64_t up_to_id, Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username), up_to_id](Connection& conn) -> Result<void> {
    auto stmt = conn.Prepare("DELETE FROM offline_messages WHERE username = ?1 AND id <= ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindInt(2, up_to_id);
    return stmt->Run();
  });
}

void SqliteStore::GetVCard(std::string username, Reply<std::string> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<std::string> {
    auto stmt = conn.Prepare("SELECT xml FROM vcards WHERE username = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) return MakeError(Errc::kNotFound, "no vCard for '" + username + "'");
    return stmt->ColumnText(0);
  });
}

void SqliteStore::SetVCard(std::string username, std::string vcard_xml, Reply<void> reply) {
  Write(std::move(reply),
        [username = std::move(username), vcard_xml = std::move(vcard_xml)](Connection& conn) -> Result<void> {
          auto stmt = conn.Prepare(
              "INSERT INTO vcards (username, xml, updated_ms) VALUES (?1, ?2, ?3)"
              " ON CONFLICT (username) DO UPDATE SET xml = excluded.xml, updated_ms = excluded.updated_ms");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, vcard_xml);
          stmt->BindInt(3, NowMs());
          if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), username);
          return {};
        });
}

}  // namespace nines::store::sqlite

// ---- Archive ----

namespace nines::store::sqlite {

void SqliteStore::Archive(std::vector<ArchiveEntry> entries, Reply<ArchiveOutcome> reply) {
  Write(std::move(reply), [this, entries = std::move(entries)](Connection& conn) -> Result<ArchiveOutcome> {
    return archive_->Archive(conn, entries);
  });
}

void SqliteStore::ArchiveMany(ArchiveBatch batch, Reply<std::vector<Result<ArchiveOutcome>>> reply) {
  Write(std::move(reply),
        [this, batch = std::move(batch)](Connection& conn) -> Result<std::vector<Result<ArchiveOutcome>>> {
          std::vector<Result<ArchiveOutcome>> outcomes;
          outcomes.reserve(batch.size());
          std::vector<ArchiveBatch::Entry> entries;
          for (size_t i = 0; i < batch.size(); ++i) {
            entries.clear();
            for (size_t j = 0; j < batch.entries(i); ++j) entries.push_back(batch.entry(i, j));
            const int64_t before = conn.TotalChanges();
            const ArchiveLog::Mark mark = archive_->mark();
            auto outcome = archive_->Archive(conn, 0, 0, batch.stanza(i), entries);
            if (!outcome.ok()) {
              archive_->Rewind(mark);
              // A message that failed after changing rows cannot be undone
              // on its own: the job fails, and the batch runs again with a
              // savepoint per job (CommitBatch). Archive fails before it
              // writes (store.h), so this is for errors SQLite itself hits.
              if (conn.InAutocommit() || conn.TotalChanges() != before) return outcome.error();
            }
            outcomes.push_back(std::move(outcome));
          }
          return outcomes;
        });
}

void SqliteStore::QueryArchive(std::string username, ArchiveQuery query, Reply<ArchivePage> reply) {
  Read(std::move(reply),
       [this, username = std::move(username), query = std::move(query)](
           Connection& conn) -> Result<ArchivePage> { return archive_->Query(conn, username, query); });
}

void SqliteStore::PruneArchive(std::string username, int64_t before_id, int64_t keep, Reply<int64_t> reply) {
  Write(std::move(reply),
        [this, username = std::move(username), before_id, keep](Connection& conn) -> Result<int64_t> {
          return archive_->Prune(conn, username, before_id, keep);
        });
}

}  // namespace nines::store::sqlite

// ---- Device states ----

namespace nines::store::sqlite {

void SqliteStore::PutDeviceState(DeviceState state, Reply<void> reply) {
  Write(std::move(reply), [state = std::move(state)](Connection& conn) -> Result<void> {
    if (state.key.empty()) return MakeError(Errc::kInvalidArgument, "a device state needs a key");
    auto stmt = conn.Prepare(
        "INSERT INTO device_states (key, username, resource, inbound_h, cursor, presence, priority, carbons,"
        " roster_requested, resume_timeout_s, detached_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        " ON CONFLICT (key) DO UPDATE SET username = excluded.username, resource = excluded.resource,"
        " inbound_h = excluded.inbound_h, cursor = excluded.cursor, presence = excluded.presence,"
        " priority = excluded.priority, carbons = excluded.carbons, roster_requested = excluded.roster_requested,"
        " resume_timeout_s = excluded.resume_timeout_s, detached_ms = excluded.detached_ms");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, state.key);
    stmt->BindText(2, state.username);
    stmt->BindText(3, state.resource);
    stmt->BindInt(4, state.inbound_h);
    stmt->BindInt(5, state.cursor);
    stmt->BindText(6, state.presence);
    stmt->BindInt(7, state.priority);
    stmt->BindInt(8, state.carbons ? 1 : 0);
    stmt->BindInt(9, state.roster_requested ? 1 : 0);
    stmt->BindInt(10, state.resume_timeout_s);
    stmt->BindInt(11, state.detached_ms);
    if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), state.username);
    return {};
  });
}

void SqliteStore::GetDeviceState(std::string key, Reply<DeviceState> reply) {
  Read(std::move(reply), [key = std::move(key)](Connection& conn) -> Result<DeviceState> {
    auto stmt = conn.Prepare(
        "SELECT username, resource, inbound_h, cursor, presence, priority, carbons, roster_requested,"
        " resume_timeout_s, detached_ms FROM device_states WHERE key = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, key);
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) return MakeError(Errc::kNotFound, "no such device state");
    DeviceState state;
    state.key = key;
    state.username = stmt->ColumnText(0);
    state.resource = stmt->ColumnText(1);
    state.inbound_h = stmt->ColumnInt(2);
    state.cursor = stmt->ColumnInt(3);
    state.presence = stmt->ColumnText(4);
    state.priority = stmt->ColumnInt(5);
    state.carbons = stmt->ColumnInt(6) != 0;
    state.roster_requested = stmt->ColumnInt(7) != 0;
    state.resume_timeout_s = stmt->ColumnInt(8);
    state.detached_ms = stmt->ColumnInt(9);
    return state;
  });
}

void SqliteStore::DeleteDeviceState(std::string key, Reply<void> reply) {
  Write(std::move(reply), [key = std::move(key)](Connection& conn) -> Result<void> {
    auto stmt = conn.Prepare("DELETE FROM device_states WHERE key = ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, key);
    return stmt->Run();
  });
}

void SqliteStore::SweepDeviceStates(int64_t now_ms, Reply<int64_t> reply) {
  Write(std::move(reply), [now_ms](Connection& conn) -> Result<int64_t> {
    {
      auto stmt = conn.Prepare("UPDATE device_states SET detached_ms = ?1 WHERE detached_ms = 0");
      if (!stmt.ok()) return stmt.error();
      stmt->BindInt(1, now_ms);
      if (auto done = stmt->Run(); !done.ok()) return done.error();
    }
    auto stmt = conn.Prepare("DELETE FROM device_states WHERE detached_ms + resume_timeout_s * 1000 < ?1");
    if (!stmt.ok()) return stmt.error();
    stmt->BindInt(1, now_ms);
    if (auto done = stmt->Run(); !done.ok()) return done.error();
    return conn.Changes();
  });
}

}  // namespace nines::store::sqlite

// ---- Push registrations ----

namespace nines::store::sqlite {

void SqliteStore::PutPushRegistration(PushRegistration registration, Reply<void> reply) {
  Write(std::move(reply), [reg = std::move(registration)](Connection& conn) -> Result<void> {
    if (reg.jid.empty() || reg.node.empty()) {
      return MakeError(Errc::kInvalidArgument, "a push registration needs a jid and a node");
    }
    auto stmt = conn.Prepare(
        "INSERT INTO push_registrations (username, jid, node, options, resource, created_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (username, jid, node) DO UPDATE SET"
        " options = excluded.options, resource = excluded.resource, created_ms = excluded.created_ms");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, reg.username);
    stmt->BindText(2, reg.jid);
    stmt->BindText(3, reg.node);
    stmt->BindText(4, reg.options);
    stmt->BindText(5, reg.resource);
    stmt->BindInt(6, reg.created_ms);
    if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), reg.username);
    return {};
  });
}

void SqliteStore::DeletePushRegistrations(std::string username, std::string jid, std::string node,
                                          Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), jid = std::move(jid),
                           node = std::move(node)](Connection& conn) -> Result<int64_t> {
    auto stmt = conn.Prepare(node.empty()
                                 ? "DELETE FROM push_registrations WHERE username = ?1 AND jid = ?2"
                                 : "DELETE FROM push_registrations WHERE username = ?1 AND jid = ?2 AND node = ?3");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindText(2, jid);
    if (!node.empty()) stmt->BindText(3, node);
    if (auto done = stmt->Run(); !done.ok()) return done.error();
    return conn.Changes();
  });
}

void SqliteStore::ListPushRegistrations(std::string username, Reply<std::vector<PushRegistration>> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<std::vector<PushRegistration>> {
    auto stmt = conn.Prepare(
        "SELECT jid, node, options, resource, created_ms FROM push_registrations WHERE username = ?1"
        " ORDER BY created_ms, jid, node");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    std::vector<PushRegistration> out;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      PushRegistration reg;
      reg.username = username;
      reg.jid = stmt->ColumnText(0);
      reg.node = stmt->ColumnText(1);
      reg.options = stmt->ColumnText(2);
      reg.resource = stmt->ColumnText(3);
      reg.created_ms = stmt->ColumnInt(4);
      out.push_back(std::move(reg));
    }
    return out;
  });
}

}  // namespace nines::store::sqlite

// ---- Block lists ----

namespace nines::store::sqlite {

void SqliteStore::GetBlocklist(std::string username, Reply<std::vector<std::string>> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<std::vector<std::string>> {
    auto stmt = conn.Prepare("SELECT jid FROM blocklist WHERE username = ?1 ORDER BY jid");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    std::vector<std::string> out;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      out.push_back(stmt->ColumnText(0));
    }
    return out;
  });
}

void SqliteStore::Block(std::string username, std::vector<std::string> jids, Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username), jids = std::move(jids)](Connection& conn) -> Result<void> {
    for (const auto& jid : jids) {
      if (jid.empty()) return MakeError(Errc::kInvalidArgument, "an empty JID cannot be blocked");
    }
    for (const auto& jid : jids) {
      // Prepared once, cached by the connection; each scope resets it.
      auto stmt = conn.Prepare("INSERT INTO blocklist (username, jid) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      stmt->BindText(2, jid);
      if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), username);
    }
    return {};
  });
}

void SqliteStore::Unblock(std::string username, std::vector<std::string> jids, Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), jids = std::move(jids)](Connection& conn) -> Result<int64_t> {
    if (jids.empty()) {
      auto stmt = conn.Prepare("DELETE FROM blocklist WHERE username = ?1");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      if (auto done = stmt->Run(); !done.ok()) return done.error();
      return conn.Changes();
    }
    int64_t removed = 0;
    for (const auto& jid : jids) {
      auto stmt = conn.Prepare("DELETE FROM blocklist WHERE username = ?1 AND jid = ?2");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      stmt->BindText(2, jid);
      if (auto done = stmt->Run(); !done.ok()) return done.error();
      removed += conn.Changes();
    }
    return removed;
  });
}

}  // namespace nines::store::sqlite

// ---- Private XML storage ----

namespace nines::store::sqlite {

void SqliteStore::GetPrivate(std::string username, std::string key, Reply<std::string> reply) {
  Read(std::move(reply), [username = std::move(username), key = std::move(key)](Connection& conn) -> Result<std::string> {
    auto stmt = conn.Prepare("SELECT xml FROM private_storage WHERE username = ?1 AND key = ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindText(2, key);
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) return MakeError(Errc::kNotFound, "no private data under that key");
    return stmt->ColumnText(0);
  });
}

void SqliteStore::SetPrivate(std::string username, std::string key, std::string xml, int64_t max_items,
                             Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username), key = std::move(key), xml = std::move(xml),
                           max_items](Connection& conn) -> Result<void> {
    {
      auto exists = conn.Prepare(
          "SELECT (SELECT count(*) FROM private_storage WHERE username = ?1),"
          " EXISTS (SELECT 1 FROM private_storage WHERE username = ?1 AND key = ?2)");
      if (!exists.ok()) return exists.error();
      exists->BindText(1, username);
      exists->BindText(2, key);
      auto row = exists->Step();
      if (!row.ok()) return row.error();
      if (*row && exists->ColumnInt(1) == 0 && exists->ColumnInt(0) >= max_items) {
        return MakeError(Errc::kLimitExceeded, "the account holds as many private items as allowed");
      }
    }
    auto stmt = conn.Prepare(
        "INSERT INTO private_storage (username, key, xml) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (username, key) DO UPDATE SET xml = excluded.xml");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindText(2, key);
    stmt->BindText(3, xml);
    if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), username);
    return {};
  });
}

}  // namespace nines::store::sqlite

// ---- Archiving preferences ----

namespace nines::store::sqlite {

void SqliteStore::GetArchivePrefs(std::string username, Reply<ArchivePrefs> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<ArchivePrefs> {
    ArchivePrefs prefs;
    {
      auto stmt = conn.Prepare("SELECT default_mode FROM archive_prefs WHERE username = ?1");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (*row) prefs.default_mode = stmt->ColumnText(0);
    }
    auto stmt = conn.Prepare("SELECT jid, always FROM archive_pref_jids WHERE username = ?1 ORDER BY jid");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      (stmt->ColumnInt(1) != 0 ? prefs.always : prefs.never).push_back(stmt->ColumnText(0));
    }
    return prefs;
  });
}

void SqliteStore::SetArchivePrefs(std::string username, ArchivePrefs prefs, Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username), prefs = std::move(prefs)](Connection& conn) -> Result<void> {
    if (prefs.default_mode != "always" && prefs.default_mode != "never" && prefs.default_mode != "roster") {
      return MakeError(Errc::kInvalidArgument, "default_mode must be always, never or roster");
    }
    for (const auto& list : {prefs.always, prefs.never}) {
      for (const auto& jid : list) {
        if (jid.empty()) return MakeError(Errc::kInvalidArgument, "an empty JID");
      }
    }
    for (const auto& jid : prefs.always) {
      if (std::find(prefs.never.begin(), prefs.never.end(), jid) != prefs.never.end()) {
        return MakeError(Errc::kInvalidArgument, "a JID cannot be both always and never archived");
      }
    }
    {
      auto stmt = conn.Prepare(
          "INSERT INTO archive_prefs (username, default_mode) VALUES (?1, ?2)"
          " ON CONFLICT (username) DO UPDATE SET default_mode = excluded.default_mode");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      stmt->BindText(2, prefs.default_mode);
      if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), username);
    }
    {
      auto stmt = conn.Prepare("DELETE FROM archive_pref_jids WHERE username = ?1");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      if (auto done = stmt->Run(); !done.ok()) return done.error();
    }
    for (int always = 0; always <= 1; ++always) {
      for (const auto& jid : always ? prefs.always : prefs.never) {
        auto stmt = conn.Prepare(
            "INSERT INTO archive_pref_jids (username, jid, always) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
        if (!stmt.ok()) return stmt.error();
        stmt->BindText(1, username);
        stmt->BindText(2, jid);
        stmt->BindInt(3, always);
        if (auto done = stmt->Run(); !done.ok()) return done.error();
      }
    }
    return {};
  });
}

}  // namespace nines::store::sqlite

// ---- Personal eventing ----

namespace nines::store::sqlite {

// The newest item of each named node of each named owner, in one statement:
// both lists are bound as JSON arrays, and each node is found through its
// primary key and its newest item through pep_items_newest (regression
// test: SqlitePep.LastItemsUseTheIndexes).
const char kLastPepItemsSql[] =
    "SELECT n.username, n.node, n.access_model, n.max_items, n.persist_items, n.send_last, n.notify_retract,"
    " n.notify_delete, n.title, n.created_ms, i.item_id, i.xml, i.publisher, i.updated_ms"
    " FROM pep_nodes AS n JOIN pep_items AS i ON i.seq ="
    " (SELECT seq FROM pep_items WHERE username = n.username AND node = n.node ORDER BY seq DESC LIMIT 1)"
    " WHERE n.username IN (SELECT value FROM json_each(?1)) AND n.node IN (SELECT value FROM json_each(?2))"
    " AND NOT EXISTS (SELECT 1 FROM blocklist AS b WHERE b.username = n.username"
    " AND b.jid IN (SELECT value FROM json_each(?3)))"
    " ORDER BY n.username, n.node";

const char kLastPepItemSql[] =
    "SELECT n.username, n.node, n.access_model, n.max_items, n.persist_items, n.send_last, n.notify_retract,"
    " n.notify_delete, n.title, n.created_ms, i.item_id, i.xml, i.publisher, i.updated_ms"
    " FROM pep_nodes AS n JOIN pep_items AS i ON i.seq ="
    " (SELECT seq FROM pep_items WHERE username = n.username AND node = n.node ORDER BY seq DESC LIMIT 1)"
    " WHERE n.username = ?1 AND n.node = ?2";

namespace {

// `values` as a JSON array of strings, to bind for json_each(). Only '"',
// '\' and control characters need escaping; other bytes pass through.
std::string JsonStringArray(const std::vector<std::string>& values) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) json += ',';
    json += '"';
    for (char c : values[i]) {
      const auto byte = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        json += '\\';
        json += c;
      } else if (byte < 0x20) {
        json += "\\u00";
        json += kHex[byte >> 4];
        json += kHex[byte & 0xf];
      } else {
        json += c;
      }
    }
    json += '"';
  }
  json += ']';
  return json;
}

// The node columns, in this order, starting at `first`: username, node,
// access_model, max_items, persist_items, send_last, notify_retract,
// notify_delete, title, created_ms. Roster groups are read separately.
PepNode ReadPepNode(const Statement& stmt, int first) {
  PepNode node;
  node.username = stmt.ColumnText(first);
  node.node = stmt.ColumnText(first + 1);
  node.access_model = stmt.ColumnText(first + 2);
  node.max_items = stmt.ColumnInt(first + 3);
  node.persist_items = stmt.ColumnInt(first + 4) != 0;
  node.send_last = stmt.ColumnText(first + 5);
  node.notify_retract = stmt.ColumnInt(first + 6) != 0;
  node.notify_delete = stmt.ColumnInt(first + 7) != 0;
  node.title = stmt.ColumnText(first + 8);
  node.created_ms = stmt.ColumnInt(first + 9);
  return node;
}

// The item columns item_id, xml, publisher, updated_ms from `first`.
PepItem ReadPepItem(const Statement& stmt, int first) {
  PepItem item;
  item.id = stmt.ColumnText(first);
  item.xml = stmt.ColumnText(first + 1);
  item.publisher = stmt.ColumnText(first + 2);
  item.updated_ms = stmt.ColumnInt(first + 3);
  return item;
}

// kNotFound unless `username` has a node named `node`.
Result<void> RequirePepNode(Connection& conn, const std::string& username, const std::string& node) {
  auto stmt = conn.Prepare("SELECT 1 FROM pep_nodes WHERE username = ?1 AND node = ?2");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, username);
  stmt->BindText(2, node);
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  if (!*row) return MakeError(Errc::kNotFound, "no such PEP node of '" + username + "'");
  return {};
}

// What a write that may create a node must know first.
struct PepNodeState {
  bool account = false;   // the owner has an account
  int64_t nodes = 0;      // how many nodes the owner has
  bool exists = false;    // one of them is the node asked about
  int64_t max_items = 0;  // its stored max_items, if it exists
};

Result<PepNodeState> ReadPepNodeState(Connection& conn, const std::string& username,
                                      const std::string& node) {
  auto stmt = conn.Prepare(
      "SELECT EXISTS (SELECT 1 FROM accounts WHERE username = ?1),"
      " (SELECT count(*) FROM pep_nodes WHERE username = ?1),"
      " EXISTS (SELECT 1 FROM pep_nodes WHERE username = ?1 AND node = ?2),"
      " coalesce((SELECT max_items FROM pep_nodes WHERE username = ?1 AND node = ?2), 0)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, username);
  stmt->BindText(2, node);
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  if (!*row) return MakeError(Errc::kInternal, "SELECT of constants gave no row");
  PepNodeState state;
  state.account = stmt->ColumnInt(0) != 0;
  state.nodes = stmt->ColumnInt(1);
  state.exists = stmt->ColumnInt(2) != 0;
  state.max_items = stmt->ColumnInt(3);
  return state;
}

// Inserts `node`, or replaces its configuration and roster groups keeping
// its created_ms.
Result<void> WritePepNode(Connection& conn, const PepNode& node) {
  {
    auto stmt = conn.Prepare(
        "INSERT INTO pep_nodes (username, node, access_model, max_items, persist_items, send_last,"
        " notify_retract, notify_delete, title, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " ON CONFLICT (username, node) DO UPDATE SET access_model = excluded.access_model,"
        " max_items = excluded.max_items, persist_items = excluded.persist_items,"
        " send_last = excluded.send_last, notify_retract = excluded.notify_retract,"
        " notify_delete = excluded.notify_delete, title = excluded.title");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, node.username);
    stmt->BindText(2, node.node);
    stmt->BindText(3, node.access_model);
    stmt->BindInt(4, node.max_items);
    stmt->BindInt(5, node.persist_items ? 1 : 0);
    stmt->BindText(6, node.send_last);
    stmt->BindInt(7, node.notify_retract ? 1 : 0);
    stmt->BindInt(8, node.notify_delete ? 1 : 0);
    stmt->BindText(9, node.title);
    stmt->BindInt(10, NowMs());
    if (auto done = stmt->Run(); !done.ok()) return NoAccountIfForeignKey(done.error(), node.username);
  }
  {
    auto stmt = conn.Prepare("DELETE FROM pep_node_groups WHERE username = ?1 AND node = ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, node.username);
    stmt->BindText(2, node.node);
    if (auto done = stmt->Run(); !done.ok()) return done.error();
  }
  std::set<std::string_view> groups(node.roster_groups.begin(), node.roster_groups.end());
  for (std::string_view group : groups) {
    auto stmt = conn.Prepare("INSERT INTO pep_node_groups (username, node, name) VALUES (?1, ?2, ?3)");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, node.username);
    stmt->BindText(2, node.node);
    stmt->BindText(3, group);
    if (auto done = stmt->Run(); !done.ok()) return done.error();
  }
  return {};
}

// For PublishPepItem and SetPepItems: creates `node` if its owner has no
// node of that name (kLimitExceeded if the owner already has `max_nodes`),
// and returns the max_items the node has now.
Result<int64_t> EnsurePepNode(Connection& conn, const PepNode& node, int64_t max_nodes) {
  auto state = ReadPepNodeState(conn, node.username, node.node);
  if (!state.ok()) return state.error();
  if (!state->account) return MakeError(Errc::kNotFound, "no account '" + node.username + "'");
  if (state->exists) return state->max_items;
  if (state->nodes >= max_nodes) {
    return MakeError(Errc::kLimitExceeded, "the account has as many PEP nodes as allowed");
  }
  if (auto r = WritePepNode(conn, node); !r.ok()) return r.error();
  return node.max_items;
}

// Stores `item` as the node's newest, replacing an item with the same id:
// the old row goes and a new one gets the highest seq.
Result<void> PutPepItem(Connection& conn, const std::string& username, const std::string& node,
                        const PepItem& item, int64_t now_ms) {
  {
    auto stmt = conn.Prepare("DELETE FROM pep_items WHERE username = ?1 AND node = ?2 AND item_id = ?3");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindText(2, node);
    stmt->BindText(3, item.id);
    if (auto done = stmt->Run(); !done.ok()) return done.error();
  }
  auto stmt = conn.Prepare(
      "INSERT INTO pep_items (username, node, item_id, xml, publisher, updated_ms)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, username);
  stmt->BindText(2, node);
  stmt->BindText(3, item.id);
  stmt->BindText(4, item.xml);
  stmt->BindText(5, item.publisher);
  stmt->BindInt(6, now_ms);
  return stmt->Run();
}

// Deletes all but the newest `keep` items of the node.
Result<void> PrunePepItems(Connection& conn, const std::string& username, const std::string& node,
                           int64_t keep) {
  auto stmt = conn.Prepare(
      "DELETE FROM pep_items WHERE username = ?1 AND node = ?2 AND seq <="
      " (SELECT seq FROM pep_items WHERE username = ?1 AND node = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, username);
  stmt->BindText(2, node);
  stmt->BindInt(3, std::max<int64_t>(keep, 0));
  return stmt->Run();
}

}  // namespace

void SqliteStore::ListPepNodes(std::string username, Reply<std::vector<PepNode>> reply) {
  Read(std::move(reply), [username = std::move(username)](Connection& conn) -> Result<std::vector<PepNode>> {
    std::vector<PepNode> nodes;
    std::unordered_map<std::string, size_t> by_name;
    {
      auto stmt = conn.Prepare(
          "SELECT username, node, access_model, max_items, persist_items, send_last, notify_retract,"
          " notify_delete, title, created_ms FROM pep_nodes WHERE username = ?1 ORDER BY node");
      if (!stmt.ok()) return stmt.error();
      stmt->BindText(1, username);
      while (true) {
        auto row = stmt->Step();
        if (!row.ok()) return row.error();
        if (!*row) break;
        nodes.push_back(ReadPepNode(*stmt, 0));
        by_name.emplace(nodes.back().node, nodes.size() - 1);
      }
    }
    auto stmt =
        conn.Prepare("SELECT node, name FROM pep_node_groups WHERE username = ?1 ORDER BY node, name");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      auto it = by_name.find(stmt->ColumnText(0));
      if (it != by_name.end()) nodes[it->second].roster_groups.push_back(stmt->ColumnText(1));
    }
    return nodes;
  });
}

void SqliteStore::PutPepNode(PepNode node, int64_t max_nodes, Reply<void> reply) {
  Write(std::move(reply), [node = std::move(node), max_nodes](Connection& conn) -> Result<void> {
    if (auto r = CheckPepNode(node); !r.ok()) return r;
    auto state = ReadPepNodeState(conn, node.username, node.node);
    if (!state.ok()) return state.error();
    if (!state->account) return MakeError(Errc::kNotFound, "no account '" + node.username + "'");
    if (!state->exists && state->nodes >= max_nodes) {
      return MakeError(Errc::kLimitExceeded, "the account has as many PEP nodes as allowed");
    }
    if (auto r = WritePepNode(conn, node); !r.ok()) return r;
    return PrunePepItems(conn, node.username, node.node, node.max_items);
  });
}

void SqliteStore::DeletePepNode(std::string username, std::string node, Reply<void> reply) {
  Write(std::move(reply),
        [username = std::move(username), node = std::move(node)](Connection& conn) -> Result<void> {
          // Its items and roster groups go with it through ON DELETE CASCADE.
          auto stmt = conn.Prepare("DELETE FROM pep_nodes WHERE username = ?1 AND node = ?2");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, node);
          if (auto done = stmt->Run(); !done.ok()) return done;
          if (conn.Changes() == 0)
            return MakeError(Errc::kNotFound, "no such PEP node of '" + username + "'");
          return {};
        });
}

void SqliteStore::PublishPepItem(PepNode node, PepItem item, int64_t max_nodes, Reply<void> reply) {
  Write(std::move(reply),
        [node = std::move(node), item = std::move(item), max_nodes](Connection& conn) -> Result<void> {
          if (auto r = CheckPepNode(node); !r.ok()) return r;
          if (item.id.empty()) return MakeError(Errc::kInvalidArgument, "a PEP item needs an id");
          auto max_items = EnsurePepNode(conn, node, max_nodes);
          if (!max_items.ok()) return max_items.error();
          if (auto r = PutPepItem(conn, node.username, node.node, item, NowMs()); !r.ok()) return r;
          return PrunePepItems(conn, node.username, node.node, *max_items);
        });
}

void SqliteStore::SetPepItems(PepNode node, std::vector<PepItem> items, int64_t max_nodes,
                              Reply<void> reply) {
  Write(std::move(reply),
        [node = std::move(node), items = std::move(items), max_nodes](Connection& conn) -> Result<void> {
          if (auto r = CheckPepNode(node); !r.ok()) return r;
          for (const PepItem& item : items) {
            if (item.id.empty()) return MakeError(Errc::kInvalidArgument, "a PEP item needs an id");
          }
          auto max_items = EnsurePepNode(conn, node, max_nodes);
          if (!max_items.ok()) return max_items.error();
          {
            auto stmt = conn.Prepare("DELETE FROM pep_items WHERE username = ?1 AND node = ?2");
            if (!stmt.ok()) return stmt.error();
            stmt->BindText(1, node.username);
            stmt->BindText(2, node.node);
            if (auto done = stmt->Run(); !done.ok()) return done.error();
          }
          const int64_t now_ms = NowMs();
          for (const PepItem& item : items) {
            if (auto r = PutPepItem(conn, node.username, node.node, item, now_ms); !r.ok()) return r;
          }
          return PrunePepItems(conn, node.username, node.node, *max_items);
        });
}

void SqliteStore::GetPepItems(std::string username, std::string node, std::vector<std::string> ids,
                              int64_t max, Reply<std::vector<PepItem>> reply) {
  Read(std::move(reply),
       [username = std::move(username), node = std::move(node), ids = std::move(ids),
        max](Connection& conn) -> Result<std::vector<PepItem>> {
         if (auto r = RequirePepNode(conn, username, node); !r.ok()) return r.error();
         auto stmt = conn.Prepare(
             ids.empty() ? "SELECT item_id, xml, publisher, updated_ms FROM pep_items WHERE username = ?1 "
                           "AND node = ?2"
                           " ORDER BY seq DESC LIMIT ?3"
                         : "SELECT item_id, xml, publisher, updated_ms FROM pep_items WHERE username = ?1 "
                           "AND node = ?2"
                           " AND item_id IN (SELECT value FROM json_each(?3)) ORDER BY seq DESC");
         if (!stmt.ok()) return stmt.error();
         stmt->BindText(1, username);
         stmt->BindText(2, node);
         if (ids.empty()) {
           stmt->BindInt(3, max < 0 ? -1 : max);  // SQLite: a negative LIMIT is no limit
         } else {
           stmt->BindText(3, JsonStringArray(ids));
         }
         std::vector<PepItem> items;
         while (true) {
           auto row = stmt->Step();
           if (!row.ok()) return row.error();
           if (!*row) break;
           items.push_back(ReadPepItem(*stmt, 0));
         }
         return items;
       });
}

void SqliteStore::RetractPepItems(std::string username, std::string node, std::vector<std::string> ids,
                                  Reply<int64_t> reply) {
  Write(std::move(reply),
        [username = std::move(username), node = std::move(node),
         ids = std::move(ids)](Connection& conn) -> Result<int64_t> {
          if (auto r = RequirePepNode(conn, username, node); !r.ok()) return r.error();
          int64_t removed = 0;
          for (const auto& id : ids) {
            auto stmt =
                conn.Prepare("DELETE FROM pep_items WHERE username = ?1 AND node = ?2 AND item_id = ?3");
            if (!stmt.ok()) return stmt.error();
            stmt->BindText(1, username);
            stmt->BindText(2, node);
            stmt->BindText(3, id);
            if (auto done = stmt->Run(); !done.ok()) return done.error();
            removed += conn.Changes();
          }
          return removed;
        });
}

void SqliteStore::PurgePepNode(std::string username, std::string node, Reply<void> reply) {
  Write(std::move(reply),
        [username = std::move(username), node = std::move(node)](Connection& conn) -> Result<void> {
          if (auto r = RequirePepNode(conn, username, node); !r.ok()) return r;
          auto stmt = conn.Prepare("DELETE FROM pep_items WHERE username = ?1 AND node = ?2");
          if (!stmt.ok()) return stmt.error();
          stmt->BindText(1, username);
          stmt->BindText(2, node);
          return stmt->Run();
        });
}

void SqliteStore::LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                               std::vector<std::string> unless_blocking, Reply<std::vector<PepLastItem>> reply) {
  Read(std::move(reply),
       [owners = std::move(owners), nodes = std::move(nodes),
        unless_blocking = std::move(unless_blocking)](Connection& conn) -> Result<std::vector<PepLastItem>> {
         std::vector<PepLastItem> out;
         if (owners.empty() || nodes.empty()) return out;
         if (owners.size() == 1 && nodes.size() == 1 && unless_blocking.empty()) {
           // One owner's one node (an account's avatar, read at every login):
           // two index lookups, without the JSON arrays.
           PepLastItem last;
           {
             auto stmt = conn.Prepare(kLastPepItemSql);
             if (!stmt.ok()) return stmt.error();
             stmt->BindText(1, owners.front());
             stmt->BindText(2, nodes.front());
             auto row = stmt->Step();
             if (!row.ok()) return row.error();
             if (!*row) return out;
             last.node = ReadPepNode(*stmt, 0);
             last.item = ReadPepItem(*stmt, 10);
           }
           if (last.node.access_model == "roster") {
             auto groups = conn.Prepare("SELECT name FROM pep_node_groups WHERE username = ?1 AND node = ?2 ORDER BY name");
             if (!groups.ok()) return groups.error();
             groups->BindText(1, owners.front());
             groups->BindText(2, nodes.front());
             while (true) {
               auto g = groups->Step();
               if (!g.ok()) return g.error();
               if (!*g) break;
               last.node.roster_groups.push_back(groups->ColumnText(0));
             }
           }
           out.push_back(std::move(last));
           return out;
         }
         const std::string owners_json = JsonStringArray(owners);
         const std::string nodes_json = JsonStringArray(nodes);
         std::map<std::pair<std::string, std::string>, size_t> by_node;
         {
           auto stmt = conn.Prepare(kLastPepItemsSql);
           if (!stmt.ok()) return stmt.error();
           stmt->BindText(1, owners_json);
           stmt->BindText(2, nodes_json);
           stmt->BindText(3, JsonStringArray(unless_blocking));
           while (true) {
             auto row = stmt->Step();
             if (!row.ok()) return row.error();
             if (!*row) break;
             PepLastItem last;
             last.node = ReadPepNode(*stmt, 0);
             last.item = ReadPepItem(*stmt, 10);
             by_node.emplace(std::make_pair(last.node.username, last.node.node), out.size());
             out.push_back(std::move(last));
           }
         }
         if (out.empty()) return out;
         auto stmt = conn.Prepare(
             "SELECT username, node, name FROM pep_node_groups WHERE username IN (SELECT value FROM "
             "json_each(?1))"
             " AND node IN (SELECT value FROM json_each(?2)) ORDER BY username, node, name");
         if (!stmt.ok()) return stmt.error();
         stmt->BindText(1, owners_json);
         stmt->BindText(2, nodes_json);
         while (true) {
           auto row = stmt->Step();
           if (!row.ok()) return row.error();
           if (!*row) break;
           auto it = by_node.find({stmt->ColumnText(0), stmt->ColumnText(1)});
           if (it != by_node.end()) out[it->second].node.roster_groups.push_back(stmt->ColumnText(2));
         }
         return out;
       });
}

}  // namespace nines::store::sqlite
