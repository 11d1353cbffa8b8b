// SqliteStore: the embedded Store, one SQLite file in WAL mode.
//
// Threads
//  * One writer thread owns the read-write connection. It group-commits: it
//    takes every queued write (at most SqliteOptions::commit_batch), runs them
//    in one BEGIN IMMEDIATE ... COMMIT, and only then posts their Replies.
//    With synchronous=FULL the COMMIT fsyncs the WAL, so one fsync
//    acknowledges the whole batch (G1). A job that fails fails alone; the
//    rest of the batch commits. The batch first runs without savepoints; a
//    job that fails before changing a row needs none (SQLite undoes the
//    failing statement). If a job fails after changing rows, the transaction
//    is rolled back and the batch runs again with each job inside its own
//    SAVEPOINT, so only that job's work is undone (CommitBatch). If SQLite
//    itself abandons the transaction (I/O error, disk full) or COMMIT fails,
//    every job in the batch fails with the mapped error (kUnavailable) and
//    nothing from it is applied.
//  * One reader thread owns a read-only connection and runs reads one at a
//    time, each in its own read transaction (a consistent snapshot). WAL lets
//    it read while the writer writes.
//  * Both queues are FIFO and there is one writer, so writes apply in the
//    order they were issued (across all threads, not only per thread). A
//    write's Reply is posted after its COMMIT returns, so any read issued
//    after that Reply has run starts a later snapshot and sees the write.
//
// Other processes (the `nines user add` CLI) may write the same file while
// the server runs: every connection waits up to kBusyTimeoutMs for a lock
// before failing the batch with kUnavailable.
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite/archive_log.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/store.h"

namespace nines::store::sqlite {

// How long a connection waits for another connection's (or process's) lock.
inline constexpr int kBusyTimeoutMs = 5000;

// The statement that reads an owner's posting rows newest first, where
// retransmissions are looked for (for the query-plan test).
extern const char kNewestRowsSql[];
// The statement behind LastPepItems (for the query-plan test).
extern const char kLastPepItemsSql[];
// Its one-owner, one-node form (the avatar hash read at each login).
extern const char kLastPepItemSql[];

class SqliteStore final : public Store {
 public:
  // Counters since open, for metrics and tests. Read with relaxed ordering:
  // each is exact, but they are not a consistent snapshot of one another.
  struct Stats {
    int64_t transactions = 0;   // write transactions committed
    int64_t writes_ok = 0;      // write jobs committed and acknowledged
    int64_t writes_failed = 0;  // write jobs that replied with an error
    int64_t reads = 0;          // read jobs run (ok or not)
    // Batches run a second time with a savepoint per job, because a job
    // failed after changing rows (CommitBatch).
    int64_t batches_replayed = 0;
  };

  // See OpenSqlite in store.h.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& options);

  ~SqliteStore() override;  // Close()s

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
  // One job for the whole batch (its messages commit together).
  void ArchiveMany(ArchiveBatch batch, Reply<std::vector<Result<ArchiveOutcome>>> reply) override;
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

 private:
  class Job;
  template <class T, class Fn>
  class JobImpl;
  using JobQueue = std::deque<std::unique_ptr<Job>>;

  SqliteStore(SqliteOptions options, std::unique_ptr<Connection> writer, std::unique_ptr<Connection> reader,
              std::unique_ptr<ArchiveLog> archive);

  // Queue `fn` (Result<T>(Connection&)) for the writer or the reader thread.
  // After Close() has begun, the Reply gets kUnavailable at once.
  template <class T, class Fn>
  void Submit(JobQueue& queue, std::condition_variable& cv, Reply<T> reply, Fn fn);
  template <class T, class Fn>
  void Write(Reply<T> reply, Fn fn);
  template <class T, class Fn>
  void Read(Reply<T> reply, Fn fn);

  void WriterLoop();
  void ReaderLoop();
  // Runs one group-committed transaction and posts every job's Reply:
  // first without savepoints (CommitWithoutSavepoints); if a job fails after
  // changing rows, again from the start with a savepoint around each job
  // (CommitWithSavepoints), so that only the failing job's work is undone.
  void CommitBatch(std::vector<std::unique_ptr<Job>>& batch);
  // False if it rolled the transaction back (nothing is posted then).
  bool CommitWithoutSavepoints(std::vector<std::unique_ptr<Job>>& batch);
  void CommitWithSavepoints(std::vector<std::unique_ptr<Job>>& batch);
  // Fails every job that did not fail on its own (ran_ok[i] false keeps the
  // job's own error; jobs past the end of ran_ok never ran), counts the whole
  // batch as failed writes and posts every Reply.
  void FailBatch(std::vector<std::unique_ptr<Job>>& batch, const Error& error,
                 const std::vector<bool>& ran_ok);
  // Counts a committed batch (own_failures of its jobs failed alone) and
  // posts every Reply.
  void FinishBatch(std::vector<std::unique_ptr<Job>>& batch, int64_t own_failures);
  // One slice of an archive index run in a transaction of its own, if one
  // is due (ArchiveLog::IndexDue); with `force` (at close), slices until the
  // tail is indexed.
  void IndexArchive(bool force);
  // An index slice is due and no failed one is being waited out.
  bool IndexReady() const;

  const SqliteOptions options_;
  // Each connection is touched only by its thread once the threads start,
  // and by Close() after they have been joined.
  std::unique_ptr<Connection> writer_connection_;
  std::unique_ptr<Connection> reader_connection_;

  std::mutex mu_;
  std::condition_variable writes_ready_;
  std::condition_variable reads_ready_;
  JobQueue writes_;       // guarded by mu_
  JobQueue reads_;        // guarded by mu_
  bool closing_ = false;  // guarded by mu_; once set, queues only drain
  bool delaying_ = false;  // guarded by mu_: the writer waits out the commit delay (WriterLoop)

  std::mutex close_mu_;  // serialises Close(); held while joining
  std::thread writer_;
  std::thread reader_;

  // The archive's format and its in-memory tail (archive_log.h): its writer
  // side runs on the writer thread, Query on the reader.
  std::unique_ptr<ArchiveLog> archive_;
  // When an index run last failed (writer thread): the next waits a second.
  std::chrono::steady_clock::time_point index_failed_at_{};
  std::atomic<int64_t> transactions_{0};
  std::atomic<int64_t> writes_ok_{0};
  std::atomic<int64_t> writes_failed_{0};
  std::atomic<int64_t> batches_replayed_{0};
  std::atomic<int64_t> reads_run_{0};
};

}  // namespace nines::store::sqlite
