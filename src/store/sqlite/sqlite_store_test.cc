// The conformance suite run against SQLite, plus what only SQLite has:
// schema migration, refusal of files it must not touch, durability of an
// acknowledged write across a kill -9, and group commit.
#include "store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <limits>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite/archive_log.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/sqlite/sqlite_schema.h"
#include "store/store_conformance.h"

namespace nines::store::sqlite {
namespace {

using conformance::Await;
using conformance::Batch;
using conformance::MakeAccount;
using conformance::MakeItem;
using conformance::MakeMessage;

// A fresh directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / "nines-store-XXXXXX").string();
    char* made = mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct SqliteFactory {
  TempDir dir;
  // A nested path, so every test also proves missing parents are created.
  std::string path = (dir.path() / "var" / "lib" / "nines.db").string();

  Result<std::unique_ptr<Store>> Open() { return OpenSqlite(SqliteOptions{path}); }
};

// The same with an archive index run after every second entry, so that
// every archive test sees entries split between posting rows and the
// in-memory tail (archive_log.h), and rows filled up and merged.
struct SqliteSmallTailFactory {
  TempDir dir;
  std::string path = (dir.path() / "nines.db").string();

  Result<std::unique_ptr<Store>> Open() {
    SqliteOptions options{path};
    options.archive_index_every = 2;
    return OpenSqlite(options);
  }
};

}  // namespace
}  // namespace nines::store::sqlite

namespace nines::store::conformance {
INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, StoreConformance, ::testing::Types<sqlite::SqliteFactory>);
INSTANTIATE_TYPED_TEST_SUITE_P(SqliteSmallTail, StoreConformance,
                               ::testing::Types<sqlite::SqliteSmallTailFactory>);
}  // namespace nines::store::conformance

namespace nines::store::sqlite {
namespace {

// A plain sqlite3 connection for the tests to look at (or lock) the file
// behind the store's back, the way another process would.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path;
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void Exec(const std::string& sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "") << " in: " << sql;
    sqlite3_free(error);
  }
  // The first column of the first row as text ("" if no row).
  std::string Query(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sqlite3_errmsg(db_) << " in: " << sql;
      return out;
    }
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::unique_ptr<Store> MustOpen(const SqliteOptions& options) {
  auto opened = OpenSqlite(options);
  EXPECT_TRUE(opened.ok()) << opened.error().message;
  return opened.ok() ? std::move(opened).value() : nullptr;
}

SqliteStore& AsSqlite(Store& store) { return dynamic_cast<SqliteStore&>(store); }

// ---- Schema ----

// ---- Archive ----

// The plan SQLite picks for `sql` on a fresh database, one detail per line.
std::string QueryPlan(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string plan;
  if (sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(db);
  } else {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
      plan += "\n";
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close_v2(db);
  return plan;
}

// Retransmissions are looked for in the sender's newest posting rows: the
// statement must walk the owner's rows from the newest down its key, not
// scan or sort the table.
TEST(SqliteArchive, NewestRowsUseTheKey) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  {
    auto store = MustOpen({path});
    ASSERT_TRUE(store);
    store->Close();
  }
  std::string plan = QueryPlan(path, kNewestRowsSql);
  EXPECT_NE(plan.find("SEARCH archive_index USING INDEX archive_index_by_owner (username=?)"),
            std::string::npos)
      << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

// Creates the accounts the archive tests write between.
bool CreateAliceAndBob(boost::asio::io_context& io, Store& store) {
  for (const char* user : {"alice", "bob"}) {
    if (!Await<void>(io, [&](Reply<void> r) { store.CreateAccount(MakeAccount(user), std::move(r)); }).ok()) {
      return false;
    }
  }
  return true;
}

// The text of a message is kept once, in its log chunk, and the chunk is
// freed when no owner keeps any of its messages: pruning one owner keeps it,
// deleting the other owner's account frees it.
TEST(SqliteArchive, MessageTextIsFreedWithItsLastOwner) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(CreateAliceAndBob(io, *store));
  for (int i = 0; i < 3; ++i) {
    std::vector<ArchiveEntry> entries = {{"alice", {0, 0, "bob@example.org", "", true, "", "<message/>"}},
                                         {"bob", {0, 0, "alice@example.org", "r", false, "", "<message/>"}}};
    ASSERT_TRUE(Await<ArchiveOutcome>(io, [&](Reply<ArchiveOutcome> r) {
                  store->Archive(std::move(entries), std::move(r));
                }).ok());
  }
  // One Archive per group commit here, so one chunk per message.
  auto texts = [&] { return RawDb(path).Query("SELECT count(*) FROM archive_log"); };
  EXPECT_EQ(texts(), "3");
  ASSERT_TRUE(Await<int64_t>(io, [&](Reply<int64_t> r) {
                store->PruneArchive("alice", std::numeric_limits<int64_t>::max(), -1, std::move(r));
              }).ok());
  EXPECT_EQ(texts(), "3") << "bob still keeps them";
  ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) { store->DeleteAccount("bob", std::move(r)); }).ok());
  EXPECT_EQ(texts(), "0") << "no owner is left";
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_log_data"), "0");
  store->Close();
}

std::vector<int64_t> ArchiveIds(boost::asio::io_context& io, Store& store, const std::string& user) {
  ArchiveQuery query;
  query.max = 1000;
  auto page =
      Await<ArchivePage>(io, [&](Reply<ArchivePage> r) { store.QueryArchive(user, query, std::move(r)); });
  EXPECT_TRUE(page.ok()) << page.error().message;
  std::vector<int64_t> ids;
  if (page.ok()) {
    for (const ArchivedMessage& m : page->messages) ids.push_back(m.id);
  }
  return ids;
}

int64_t ArchiveOne(boost::asio::io_context& io, Store& store, const std::string& origin_id = "") {
  std::vector<ArchiveEntry> entries = {
      {"alice", {0, 0, "bob@example.org", "", true, origin_id, "<message/>"}},
      {"bob", {0, 0, "alice@example.org", "r", false, "", "<message/>"}}};
  auto done = Await<ArchiveOutcome>(
      io, [&](Reply<ArchiveOutcome> r) { store.Archive(std::move(entries), std::move(r)); });
  EXPECT_TRUE(done.ok()) << done.error().message;
  return done.ok() ? done->id : 0;
}

// XEP-0359 retransmissions once the first copy is in posting rows: found
// through the sender's filter, filled from its rows at first use (after a
// restart) and kept up to date by index runs while it exists; not looked
// for beyond the sender's newest kOriginWindow entries.
TEST(SqliteArchive, RetransmissionsAreFoundInTheNewestRows) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  SqliteOptions options{path};
  options.archive_index_every = 2;  // a run after every message
  auto store = MustOpen(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(CreateAliceAndBob(io, *store));
  auto resend = [&](const std::string& origin_id) {
    std::vector<ArchiveEntry> entries = {
        {"alice", {0, 0, "bob@example.org", "", true, origin_id, "<message/>"}}};
    auto done = Await<ArchiveOutcome>(
        io, [&](Reply<ArchiveOutcome> r) { store->Archive(std::move(entries), std::move(r)); });
    EXPECT_TRUE(done.ok()) << done.error().message;
    return done.ok() && done->duplicate ? done->existing_id : 0;
  };
  const int64_t first = ArchiveOne(io, *store, "o-first");
  store->Close();  // indexes everything: "o-first" is only in a row now
  store = MustOpen(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_index WHERE username = 'alice'"), "1");
  EXPECT_EQ(resend("o-first"), first) << "found from the rows after a restart";
  // Alice's filter exists now. A message indexed after that is found too.
  const int64_t second = ArchiveOne(io, *store, "o-second");
  ArchiveOne(io, *store);  // the run after "o-second" has certainly finished by the time this is written
  EXPECT_EQ(resend("o-second"), second) << "index runs add to an existing filter";
  EXPECT_EQ(resend("o-new"), 0);
  // Pushed out of alice's newest kOriginWindow entries, "o-first" is not
  // looked for any more: it is archived again as a new message.
  for (int round = 0; round < 5; ++round) {
    Batch batch(io);
    for (size_t i = 0; i < ArchiveLog::kOriginWindow / 4; ++i) {
      std::vector<ArchiveEntry> entries = {{"alice", {0, 0, "bob@example.org", "", true, "", "<message/>"}}};
      store->Archive(std::move(entries), batch.Add<ArchiveOutcome>([](Result<ArchiveOutcome> r) {
        ASSERT_TRUE(r.ok()) << r.error().message;
      }));
    }
    batch.Wait();
  }
  store->Close();
  store = MustOpen(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(resend("o-second"), 0) << "outside the window";
  store->Close();
}

// Entries not yet written as posting rows live in memory and in their log
// chunk: a process killed before indexing them (its files copied while it
// runs, as a crash leaves them) reads them back at open, with what was
// pruned from them still gone and their origin-ids still known.
TEST(SqliteArchive, TheUnindexedTailSurvivesACrash) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  const std::string copy = (dir.path() / "crashed.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(CreateAliceAndBob(io, *store));
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(ArchiveOne(io, *store, "o" + std::to_string(i)));
  auto pruned =
      Await<int64_t>(io, [&](Reply<int64_t> r) { store->PruneArchive("alice", ids[2], -1, std::move(r)); });
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 2);
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_index"), "0") << "still in the tail";
  std::filesystem::copy_file(path, copy);
  std::filesystem::copy_file(path + "-wal", copy + "-wal");
  store->Close();

  auto crashed = MustOpen({copy});
  ASSERT_TRUE(crashed);
  EXPECT_EQ(ArchiveIds(io, *crashed, "alice"), std::vector<int64_t>(ids.begin() + 2, ids.end()));
  EXPECT_EQ(ArchiveIds(io, *crashed, "bob"), ids);
  std::vector<ArchiveEntry> again = {{"alice", {0, 0, "bob@example.org", "", true, "o4", "<message/>"}},
                                     {"bob", {0, 0, "alice@example.org", "r", false, "", "<message/>"}}};
  auto retransmitted = Await<ArchiveOutcome>(
      io, [&](Reply<ArchiveOutcome> r) { crashed->Archive(std::move(again), std::move(r)); });
  ASSERT_TRUE(retransmitted.ok());
  EXPECT_TRUE(retransmitted->duplicate);
  EXPECT_EQ(retransmitted->existing_id, ids[4]);
  const int64_t later = ArchiveOne(io, *crashed);
  EXPECT_GT(later, ids[4]);
  crashed->Close();  // indexes the tail

  {
    RawDb raw(copy);
    EXPECT_EQ(raw.Query("SELECT count(*) FROM archive_log WHERE first_id >"
                        " (SELECT value FROM archive_state WHERE key = 'indexed_through')"),
              "0");
    EXPECT_EQ(raw.Query("SELECT count(*) FROM archive_erased"), "0");
  }
  auto reopened = MustOpen({copy});
  ASSERT_TRUE(reopened);
  std::vector<int64_t> alice(ids.begin() + 2, ids.end());
  alice.push_back(later);
  EXPECT_EQ(ArchiveIds(io, *reopened, "alice"), alice);
  std::vector<int64_t> bob = ids;
  bob.push_back(later);
  EXPECT_EQ(ArchiveIds(io, *reopened, "bob"), bob);
  reopened->Close();
}

// A group commit that archives more than a chunk holds writes several
// chunks; every message reads back whole, from the tail and from the rows,
// and pruning across the chunks frees them.
TEST(SqliteArchive, ABatchLargerThanAChunkSpansChunks) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(CreateAliceAndBob(io, *store));
  constexpr int kMessages = 40;  // 40 x 4 KiB: at least four chunks
  auto stanza = [](int i) {
    return "<message><body>" + std::string(4000, static_cast<char>('a' + i % 26)) + "</body></message>";
  };
  std::vector<int64_t> ids(kMessages);
  Batch batch(io);
  for (int i = 0; i < kMessages; ++i) {
    std::vector<ArchiveEntry> entries = {{"alice", {0, 0, "bob@example.org", "", true, "", stanza(i)}},
                                         {"bob", {0, 0, "alice@example.org", "r", false, "", stanza(i)}}};
    store->Archive(std::move(entries), batch.Add<ArchiveOutcome>([&ids, i](Result<ArchiveOutcome> r) {
      ASSERT_TRUE(r.ok()) << r.error().message;
      ids[i] = r->id;
    }));
  }
  batch.Wait();
  EXPECT_LT(std::stoi(RawDb(path).Query("SELECT count(*) FROM archive_log")), kMessages)
      << "messages share chunks";
  EXPECT_GE(std::stoi(RawDb(path).Query("SELECT count(*) FROM archive_log")), 4);
  auto check = [&](Store& s, const std::string& user, int from) {
    ArchiveQuery query;
    query.max = 100;
    auto page =
        Await<ArchivePage>(io, [&](Reply<ArchivePage> r) { s.QueryArchive(user, query, std::move(r)); });
    ASSERT_TRUE(page.ok()) << page.error().message;
    ASSERT_EQ(static_cast<int>(page->messages.size()), kMessages - from);
    for (int i = from; i < kMessages; ++i) {
      EXPECT_EQ(page->messages[i - from].id, ids[i]);
      EXPECT_EQ(page->messages[i - from].stanza, stanza(i)) << i;
    }
  };
  check(*store, "alice", 0);
  store->Close();  // indexes: now from the rows
  store = MustOpen({path});
  ASSERT_TRUE(store);
  check(*store, "bob", 0);
  for (const char* user : {"alice", "bob"}) {
    ASSERT_TRUE(Await<int64_t>(io, [&](Reply<int64_t> r) {
                  store->PruneArchive(user, ids[30], -1, std::move(r));
                }).ok());
  }
  check(*store, "alice", 30);
  EXPECT_LT(std::stoi(RawDb(path).Query("SELECT count(*) FROM archive_log")), 4) << "pruned chunks are freed";
  store->Close();
}

// A database with alice and bob, opened as a bare connection, for tests
// that drive ArchiveLog themselves (null on failure).
std::unique_ptr<Connection> ConnectionWithAliceAndBob(const std::string& path) {
  {
    boost::asio::io_context io;
    auto store = MustOpen({path});
    if (!store || !CreateAliceAndBob(io, *store)) return nullptr;
    store->Close();
  }
  auto conn = Connection::Open(path, Connection::Mode::kReadWrite, 1000);
  EXPECT_TRUE(conn.ok()) << conn.error().message;
  return conn.ok() ? std::move(*conn) : nullptr;
}

// One transaction on a bare connection, as the store's writer runs it
// around ArchiveLog's jobs.
Result<void> CommitArchiveJob(Connection& conn, ArchiveLog& log, const std::function<Result<void>()>& job) {
  if (auto r = conn.Exec("BEGIN IMMEDIATE"); !r.ok()) return r;
  if (auto r = log.BeginTransaction(conn); !r.ok()) return r;
  if (auto r = job(); !r.ok()) return r;
  if (auto r = log.EndTransaction(conn); !r.ok()) return r;
  if (auto r = conn.Exec("COMMIT"); !r.ok()) return r;
  log.Committed();
  return {};
}

// A reload in the middle of a transaction (LoadInSnapshot: another process
// changed the archive, or EraseBelow in a process that does not archive)
// must not forget the ids the open chunk has handed out: the index run would
// stop short of that chunk, and the one at close would never end (a server
// hung on SIGTERM in test_features.RegistrationTest).
TEST(SqliteArchive, AReloadInsideATransactionKeepsItsIds) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  auto conn = ConnectionWithAliceAndBob(path);
  ASSERT_TRUE(conn);
  ArchiveLog log(1 << 20);
  ASSERT_TRUE(log.Load(*conn).ok());
  const std::vector<ArchiveEntry> entries = {
      {"alice", {0, 0, "bob@example.org", "", true, "", "<message><body>hi</body></message>"}},
      {"bob", {0, 0, "alice@example.org", "r", false, "", ""}}};
  ASSERT_TRUE(CommitArchiveJob(*conn, log, [&]() -> Result<void> {
                if (auto r = log.Archive(*conn, entries); !r.ok()) return r.error();
                if (auto r = log.Load(*conn); !r.ok()) return r;  // the chunk is not written yet
                // A later job of the same transaction that needs the last id (an
                // erasure, as when an account is deleted just after it sent a message).
                if (auto r = log.Prune(*conn, "alice", 1, -1); !r.ok()) return r.error();
                return {};
              }).ok());
  ASSERT_EQ(log.TailSize(), 2u);
  // One whole index run, slice by slice, as the store's writer runs it.
  do {
    ASSERT_TRUE(conn->Exec("BEGIN IMMEDIATE").ok());
    ASSERT_TRUE(log.BeginTransaction(*conn).ok());
    ASSERT_TRUE(log.IndexSlice(*conn).ok());
    ASSERT_TRUE(conn->Exec("COMMIT").ok());
    log.IndexSliceCommitted();
  } while (log.RunActive());
  EXPECT_TRUE(log.TailEmpty()) << "the run stopped short of the open chunk's ids";
}

// The tail's postings point into their chunks' bytes in memory
// (ArchiveLog::ChunkBuffer). A group commit of one message must not keep a
// whole chunk's buffer per message until the next index run (a quiet
// server commits one message at a time), and entries pruned from the tail
// must let their chunks' bytes go without waiting for one.
TEST(SqliteArchive, ChunkBuffersHoldAboutWhatTheTailPointsInto) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  auto conn = ConnectionWithAliceAndBob(path);
  ASSERT_TRUE(conn);
  ArchiveLog log(1 << 20);  // no index run here
  ASSERT_TRUE(log.Load(*conn).ok());
  auto commit = [&](const std::function<Result<void>()>& job) { return CommitArchiveJob(*conn, log, job); };
  const std::string stanza = "<message><body>" + std::string(200, 'x') + "</body></message>";
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; ++i) {
    auto done = commit([&]() -> Result<void> {
      std::vector<ArchiveEntry> entries = {
          {"alice", {0, 0, "bob@example.org", "", true, "origin-" + std::to_string(i), stanza}},
          {"bob", {0, 0, "alice@example.org", "a-resource", false, "", ""}}};
      auto r = log.Archive(*conn, entries);
      if (!r.ok()) return r.error();
      return {};
    });
    ASSERT_TRUE(done.ok()) << done.error().message;
  }
  // About 300 bytes of chunk per message, not a 40 KiB buffer each.
  EXPECT_LT(log.BufferBytes(), ArchiveLog::kChunkBytes * 2 + kMessages * 1024) << log.BufferBytes();
  // Still readable: every message of both owners, with its strings.
  ArchiveQuery all;
  all.max = 1000;
  auto tail = log.Query(*conn, "bob", all);
  ASSERT_TRUE(tail.ok()) << tail.error().message;
  ASSERT_EQ(tail->messages.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(tail->messages.back().peer_resource, "a-resource");
  EXPECT_EQ(tail->messages.back().stanza, stanza);
  // Pruned from the tail for both owners: no posting points into a chunk.
  for (const char* owner : {"alice", "bob"}) {
    auto pruned = commit([&]() -> Result<void> {
      auto r = log.Prune(*conn, owner, std::numeric_limits<int64_t>::max(), -1);
      if (!r.ok()) return r.error();
      return {};
    });
    ASSERT_TRUE(pruned.ok()) << pruned.error().message;
  }
  EXPECT_LE(log.BufferBytes(), 2 * ArchiveLog::kChunkBytes) << "only the buffer the next chunk fills";
}

// A job of many Archive calls (Store::ArchiveMany) whose later call fails
// after an earlier one wrote the batch's chunk cannot be rewound on its own:
// the chunk's bytes are gone from memory (and ROLLBACK TO would undo the
// write), so the transaction must fail instead of committing postings that
// point into a chunk it never wrote.
TEST(SqliteArchive, ARewindPastAChunkWriteFailsTheTransaction) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  auto conn = ConnectionWithAliceAndBob(path);
  ASSERT_TRUE(conn);
  ArchiveLog log(1 << 20);
  ASSERT_TRUE(log.Load(*conn).ok());
  auto message = [](int i) {
    const std::string stanza =
        "<message><body>" + std::string(4000, static_cast<char>('a' + i)) + "</body></message>";
    return std::vector<ArchiveEntry>{{"alice", {0, 0, "bob@example.org", "", true, "", stanza}},
                                     {"bob", {0, 0, "alice@example.org", "r", false, "", ""}}};
  };
  auto transaction = [&](bool rewind_past_a_chunk) -> Result<void> {
    if (auto r = conn->Exec("BEGIN IMMEDIATE"); !r.ok()) return r;
    if (auto r = log.BeginTransaction(*conn); !r.ok()) return r;
    ArchiveLog::Mark mark;
    for (int i = 0; i < 10; ++i) {  // 10 x 4 KB: the ninth call writes the first 32 KB chunk
      if (i == 1) mark = log.mark();
      if (auto r = log.Archive(*conn, message(i)); !r.ok()) return r.error();
    }
    if (rewind_past_a_chunk) log.Rewind(mark);
    if (auto r = log.EndTransaction(*conn); !r.ok()) return r;
    return conn->Exec("COMMIT");
  };
  auto failed = transaction(true);
  EXPECT_FALSE(failed.ok()) << "a rewind past a chunk write must not commit";
  if (!conn->InAutocommit()) {
    ASSERT_TRUE(conn->Exec("ROLLBACK").ok());
  }
  log.Aborted();
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_log"), "0");
  // The next transaction is not affected.
  auto done = transaction(false);
  ASSERT_TRUE(done.ok()) << done.error().message;
  log.Committed();
  EXPECT_EQ(RawDb(path).Query("SELECT sum(live) FROM archive_log"), "20");
}

// The tail's postings point into their chunks' bytes, which the log keeps
// in memory only while a posting may (ArchiveLog::DropUnusedBuffers). Many
// index runs, a prune, and a reopen that reads an unindexed tail back: every
// message still reads back with its own peer, resource and origin-id (long
// enough to live outside a string's inline buffer), whether it came from the
// tail or from the rows, through Archive and through ArchiveMany.
TEST(SqliteArchive, EntriesKeepTheirStringsAcrossIndexRunsAndReloads) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  const std::string copy = (dir.path() / "crashed.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  SqliteOptions options{path};
  options.archive_index_every = 40;
  constexpr int kOwners = 6;
  auto name = [](int i) { return "owner-with-a-long-name-" + std::to_string(i); };
  std::vector<Account> accounts;
  for (int i = 0; i < kOwners; ++i) accounts.push_back(MakeAccount(name(i)));
  struct Want {
    std::string peer, resource, origin_id, stanza;
    bool outgoing;
  };
  std::map<std::string, std::map<int64_t, Want>> want;
  auto check = [&](Store& store) {
    for (const auto& [owner, messages] : want) {
      ArchiveQuery query;
      query.max = 10000;
      auto page = Await<ArchivePage>(
          io, [&](Reply<ArchivePage> r) { store.QueryArchive(owner, query, std::move(r)); });
      ASSERT_TRUE(page.ok()) << page.error().message;
      ASSERT_EQ(page->messages.size(), messages.size()) << owner;
      for (const ArchivedMessage& m : page->messages) {
        auto w = messages.find(m.id);
        ASSERT_NE(w, messages.end()) << owner << " " << m.id;
        EXPECT_EQ(m.peer, w->second.peer) << owner << " " << m.id;
        EXPECT_EQ(m.peer_resource, w->second.resource) << owner << " " << m.id;
        EXPECT_EQ(m.origin_id, w->second.origin_id) << owner << " " << m.id;
        EXPECT_EQ(m.outgoing, w->second.outgoing) << owner << " " << m.id;
        EXPECT_EQ(m.stanza, w->second.stanza) << owner << " " << m.id;
      }
    }
  };
  int n = 0;
  // One round: every owner sends one message to the next, through Archive
  // on even rounds and ArchiveMany on odd ones.
  auto round = [&](Store& store, int r) {
    std::vector<std::tuple<std::string, std::string, std::string, std::string, std::string>> sent;
    for (int i = 0; i < kOwners; ++i, ++n) {
      sent.emplace_back(
          name(i), name((i + 1) % kOwners), "a-resource-long-enough-" + std::to_string(n),
          "an-origin-id-long-enough-" + std::to_string(n),
          "<message id='" + std::to_string(n) + "'><body>" + std::string(n % 300, 'x') + "</body></message>");
    }
    auto record = [&](size_t k, int64_t id) {
      const auto& [from, to, resource, origin, stanza] = sent[k];
      want[from][id] = Want{to + "@example.org", "", origin, stanza, true};
      want[to][id] = Want{from + "@example.org", resource, "", stanza, false};
    };
    if (r % 2 == 0) {
      for (size_t k = 0; k < sent.size(); ++k) {
        const auto& [from, to, resource, origin, stanza] = sent[k];
        std::vector<ArchiveEntry> entries = {
            {from, {0, 0, to + "@example.org", "", true, origin, stanza}},
            {to, {0, 0, from + "@example.org", resource, false, "", stanza}}};
        auto done = Await<ArchiveOutcome>(
            io, [&](Reply<ArchiveOutcome> reply) { store.Archive(std::move(entries), std::move(reply)); });
        ASSERT_TRUE(done.ok()) << done.error().message;
        record(k, done->id);
      }
      return;
    }
    ArchiveBatch batch;
    std::vector<std::string> peers;
    for (const auto& [from, to, resource, origin, stanza] : sent) {
      peers.push_back(to + "@example.org");
      peers.push_back(from + "@example.org");
    }
    for (size_t k = 0; k < sent.size(); ++k) {
      const auto& [from, to, resource, origin, stanza] = sent[k];
      const ArchiveBatch::Entry entries[] = {{from, peers[2 * k], "", true, origin},
                                             {to, peers[2 * k + 1], resource, false, ""}};
      batch.Add(stanza, entries);
    }
    auto done =
        Await<std::vector<Result<ArchiveOutcome>>>(io, [&](Reply<std::vector<Result<ArchiveOutcome>>> reply) {
          store.ArchiveMany(std::move(batch), std::move(reply));
        });
    ASSERT_TRUE(done.ok()) << done.error().message;
    ASSERT_EQ(done->size(), sent.size());
    for (size_t k = 0; k < sent.size(); ++k) {
      ASSERT_TRUE((*done)[k].ok()) << (*done)[k].error().message;
      record(k, (*done)[k]->id);
    }
  };
  {
    auto store = MustOpen(options);
    ASSERT_TRUE(store);
    ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) { store->CreateAccounts(accounts, std::move(r)); }).ok());
    for (int r = 0; r < 40; ++r) {  // 480 entries: a dozen index runs, each dropping its chunks' bytes
      round(*store, r);
      if (r % 7 == 0) check(*store);
    }
    check(*store);
    // A prune takes entries out of the rows and the tail alike.
    const std::string pruned = name(2);
    auto erased =
        Await<int64_t>(io, [&](Reply<int64_t> r) { store->PruneArchive(pruned, 0, 5, std::move(r)); });
    ASSERT_TRUE(erased.ok()) << erased.error().message;
    while (want[pruned].size() > 5) want[pruned].erase(want[pruned].begin());
    for (int r = 40; r < 45; ++r) round(*store, r);
    check(*store);
    // The files as a crash leaves them: the newest entries only in their
    // chunks, read back into the tail at the next open.
    std::filesystem::copy_file(path, copy);
    std::filesystem::copy_file(path + "-wal", copy + "-wal");
    store->Close();
  }
  options.path = copy;
  {
    auto store = MustOpen(options);
    ASSERT_TRUE(store);
    check(*store);
    for (int r = 45; r < 60; ++r) round(*store, r);
    check(*store);
    store->Close();
  }
  check(*MustOpen(options));
}

// Index runs over more owners than one slice takes (ArchiveLog::
// kSliceOwners), interleaved with archiving; then a run that a crash cut
// short (rows written, chunks still unindexed): every owner's archive reads
// back exactly once, and pruning it all frees every chunk (the live counts
// did not count an entry twice).
TEST(SqliteArchive, SlicedIndexRunsAndAnUnfinishedRunLoseAndRepeatNothing) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  SqliteOptions options{path};
  options.archive_index_every = 500;
  auto store = MustOpen(options);
  ASSERT_TRUE(store);
  constexpr int kOwners = 300;  // more than two slices
  auto name = [](int i) { return "u" + std::to_string(i); };
  std::vector<Account> accounts;
  for (int i = 0; i < kOwners; ++i) accounts.push_back(MakeAccount(name(i)));
  ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) { store->CreateAccounts(accounts, std::move(r)); }).ok());
  std::map<std::string, std::vector<int64_t>> want;
  for (int round = 0; round < 10; ++round) {
    Batch batch(io);
    for (int i = 0; i < kOwners; ++i) {
      const std::string from = name(i), to = name((i + 1 + (i * 7 + round) % (kOwners - 1)) % kOwners);
      std::vector<ArchiveEntry> entries = {{from, {0, 0, to + "@example.org", "", true, "", "<message/>"}},
                                           {to, {0, 0, from + "@example.org", "", false, "", "<message/>"}}};
      store->Archive(std::move(entries), batch.Add<ArchiveOutcome>([&, from, to](Result<ArchiveOutcome> r) {
        ASSERT_TRUE(r.ok()) << r.error().message;
        want[from].push_back(r->id);
        want[to].push_back(r->id);
      }));
    }
    batch.Wait();
  }
  auto check = [&](Store& s) {
    for (auto& [owner, ids] : want) {
      std::sort(ids.begin(), ids.end());
      ASSERT_EQ(ArchiveIds(io, s, owner), ids) << owner;
    }
  };
  check(*store);
  EXPECT_NE(RawDb(path).Query("SELECT count(*) FROM archive_index"), "0") << "runs have written rows";
  store->Close();
  check(*MustOpen({path}));
  // As a crash between slices leaves it: the rows are written, the chunks
  // are not marked.
  RawDb(path).Exec("UPDATE archive_state SET value = 0 WHERE key = 'indexed_through'");
  store = MustOpen(options);
  ASSERT_TRUE(store);
  check(*store);
  for (int i = 0; i < kOwners; ++i) {
    auto pruned = Await<int64_t>(io, [&](Reply<int64_t> r) {
      store->PruneArchive(name(i), std::numeric_limits<int64_t>::max(), -1, std::move(r));
    });
    ASSERT_TRUE(pruned.ok());
    EXPECT_EQ(*pruned, static_cast<int64_t>(want[name(i)].size())) << name(i);
  }
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_log"), "0");
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_log_data"), "0");
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_index"), "0");
  store->Close();
}

// `nines store migrate` reads the archive through ExportV9Tables. After an
// index run that did not finish, entries are both in rows and in chunks
// above the mark: each must be exported once, with its message once.
TEST(SqliteArchive, ExportAfterAnUnfinishedRunListsEachEntryOnce) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  {
    auto store = MustOpen({path});
    ASSERT_TRUE(store);
    ASSERT_TRUE(CreateAliceAndBob(io, *store));
    for (int i = 0; i < 10; ++i) ArchiveOne(io, *store, "o" + std::to_string(i));
    store->Close();  // indexes all ten
  }
  // As a crash between the last slice's rows and the mark leaves it.
  RawDb(path).Exec("UPDATE archive_state SET value = 0 WHERE key = 'indexed_through'");
  auto conn = Connection::Open(path, Connection::Mode::kReadOnly, kBusyTimeoutMs);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  ASSERT_TRUE((*conn)->Exec("BEGIN").ok());
  auto exported = ArchiveLog::ExportV9Tables(**conn);
  ASSERT_TRUE(exported.ok()) << exported.error().message;
  auto count = [&](const char* sql) {
    auto stmt = (*conn)->Prepare(sql);
    EXPECT_TRUE(stmt.ok());
    if (!stmt.ok()) return int64_t{-1};
    auto row = stmt->Step();
    EXPECT_TRUE(row.ok() && *row);
    const int64_t n = stmt->ColumnInt(0);
    stmt->Reset();
    return n;
  };
  EXPECT_EQ(count("SELECT count(*) FROM temp.archive"), 20);
  EXPECT_EQ(count("SELECT count(*) FROM (SELECT DISTINCT username, id FROM temp.archive)"), 20);
  EXPECT_EQ(count("SELECT count(*) FROM temp.archive_messages"), 10);
  EXPECT_EQ(count("SELECT count(*) FROM temp.archive_messages WHERE owners = 2"), 10);
  EXPECT_EQ(count("SELECT count(*) FROM temp.archive WHERE outgoing = 1 AND origin_id LIKE 'o%'"), 10);
  ASSERT_TRUE((*conn)->Exec("ROLLBACK").ok());
}

// Another process (the CLI) deleting an account while the server holds the
// owner's newest entries in its tail: the server reads the tail again
// before its next write, so the entries are gone and are never indexed.
TEST(SqliteArchive, AnAccountDeletedByAnotherProcessLeavesTheTail) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto server = MustOpen({path});
  ASSERT_TRUE(server);
  ASSERT_TRUE(CreateAliceAndBob(io, *server));
  const int64_t first = ArchiveOne(io, *server);
  {
    auto cli = MustOpen({path});
    ASSERT_TRUE(cli);
    ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) { cli->DeleteAccount("alice", std::move(r)); }).ok());
    cli->Close();
  }
  ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) {
                server->CreateAccount(MakeAccount("alice"), std::move(r));
              }).ok());
  EXPECT_EQ(ArchiveIds(io, *server, "alice"), std::vector<int64_t>{}) << "a new account starts empty";
  const int64_t second = ArchiveOne(io, *server);
  server->Close();
  auto reopened = MustOpen({path});
  ASSERT_TRUE(reopened);
  EXPECT_EQ(ArchiveIds(io, *reopened, "alice"), std::vector<int64_t>{second});
  EXPECT_EQ(ArchiveIds(io, *reopened, "bob"), (std::vector<int64_t>{first, second}));
  reopened->Close();
}

// What is erased from rows whose chunks are still above the indexed mark
// (an index run that did not finish) stays erased when the chunks are read
// back, and the chunks' live counts stay right.
TEST(SqliteArchive, EntriesErasedFromAnUnfinishedRunStayErased) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(CreateAliceAndBob(io, *store));
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(ArchiveOne(io, *store));
  store->Close();  // indexes everything and moves the mark
  RawDb(path).Exec("UPDATE archive_state SET value = 0 WHERE key = 'indexed_through'");
  store = MustOpen({path});
  ASSERT_TRUE(store);
  auto pruned = Await<int64_t>(io, [&](Reply<int64_t> r) {
    store->PruneArchive("alice", std::numeric_limits<int64_t>::max(), -1, std::move(r));
  });
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 3);
  store->Close();
  store = MustOpen({path});
  ASSERT_TRUE(store);
  EXPECT_EQ(ArchiveIds(io, *store, "alice"), std::vector<int64_t>{});
  EXPECT_EQ(ArchiveIds(io, *store, "bob"), ids);
  pruned = Await<int64_t>(io, [&](Reply<int64_t> r) {
    store->PruneArchive("bob", std::numeric_limits<int64_t>::max(), -1, std::move(r));
  });
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 3);
  EXPECT_EQ(RawDb(path).Query("SELECT count(*) FROM archive_log"), "0") << "every chunk freed once";
  store->Close();
}

// The CLI deleting an account that has nothing archived: the server, which
// knew the account, no longer archives for it.
TEST(SqliteArchive, AnAccountDeletedElsewhereIsNoLongerArchivedFor) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto server = MustOpen({path});
  ASSERT_TRUE(server);
  ASSERT_TRUE(CreateAliceAndBob(io, *server));
  ArchiveOne(io, *server);
  ASSERT_TRUE(Await<int64_t>(io, [&](Reply<int64_t> r) {
                server->PruneArchive("alice", std::numeric_limits<int64_t>::max(), -1, std::move(r));
              }).ok());
  {
    auto cli = MustOpen({path});
    ASSERT_TRUE(cli);
    ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) { cli->DeleteAccount("alice", std::move(r)); }).ok());
    cli->Close();
  }
  std::vector<ArchiveEntry> entries = {{"alice", {0, 0, "bob@example.org", "", true, "", "<message/>"}},
                                       {"bob", {0, 0, "alice@example.org", "r", false, "", "<message/>"}}};
  auto archived = Await<ArchiveOutcome>(
      io, [&](Reply<ArchiveOutcome> r) { server->Archive(std::move(entries), std::move(r)); });
  ASSERT_FALSE(archived.ok());
  EXPECT_EQ(archived.error().code, Errc::kNotFound);
  server->Close();
}

// `owner`'s archive with one peer (a MAM `with` filter).
Result<ArchivePage> ArchiveWith(boost::asio::io_context& io, Store& store, const std::string& owner,
                                const std::string& peer) {
  ArchiveQuery with;
  with.with = peer;
  return Await<ArchivePage>(io, [&](Reply<ArchivePage> r) { store.QueryArchive(owner, with, std::move(r)); });
}

// An old file as build `version` left it: its migrations' tables, its
// user_version, and accounts alice and bob (dummy keys).
void WriteSchemaWithAliceAndBob(RawDb& raw, int version) {
  for (const Migration& m : Migrations()) {
    if (m.version > version) break;
    raw.Exec(m.sql);
  }
  raw.Exec("PRAGMA user_version = " + std::to_string(version));
  raw.Exec(
      "INSERT INTO accounts VALUES"
      " ('alice', x'00', 4096, x'01', x'02', x'03', 4096, x'04', x'05', 1, 0),"
      " ('bob', x'00', 4096, x'01', x'02', x'03', 4096, x'04', x'05', 1, 0);");
}

// A version-9 file keeps its archive: each message once, both owners'
// entries, origin-ids, and the old tables are gone.
TEST(SqliteSchema, ConvertsAVersion9Archive) {
  TempDir dir;
  const std::string path = (dir.path() / "v9.db").string();
  {
    RawDb raw(path);
    WriteSchemaWithAliceAndBob(raw, 9);
    raw.Exec(
        "INSERT INTO archive_messages VALUES (100, 1, 2, '<message><body>a</body></message>'),"
        " (200, 2, 1, '<message><body>b</body></message>'), (300, 3, 2, '<message><body>c</body></message>');"
        "INSERT INTO archive VALUES ('alice', 100, 'bob@example.org', '', 1, 'o1'),"
        " ('bob', 100, 'alice@example.org', 'phone', 0, ''),"
        " ('bob', 200, 'carol@example.net', '', 1, ''),"
        " ('alice', 300, 'bob@example.org', '', 0, ''), ('bob', 300, 'alice@example.org', '', 1, 'o3');");
  }
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  EXPECT_EQ(ArchiveIds(io, *store, "alice"), (std::vector<int64_t>{100, 300}));
  EXPECT_EQ(ArchiveIds(io, *store, "bob"), (std::vector<int64_t>{100, 200, 300}));
  auto page = ArchiveWith(io, *store, "bob", "carol@example.net");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 1u);
  EXPECT_EQ(page->messages[0].id, 200);
  EXPECT_EQ(page->messages[0].stamp_ms, 2);
  EXPECT_TRUE(page->messages[0].outgoing);
  EXPECT_EQ(page->messages[0].stanza, "<message><body>b</body></message>");
  std::vector<ArchiveEntry> again = {{"bob", {0, 0, "alice@example.org", "", true, "o3", "<message/>"}}};
  auto retransmitted = Await<ArchiveOutcome>(
      io, [&](Reply<ArchiveOutcome> r) { store->Archive(std::move(again), std::move(r)); });
  ASSERT_TRUE(retransmitted.ok());
  EXPECT_TRUE(retransmitted->duplicate);
  EXPECT_EQ(retransmitted->existing_id, 300);
  EXPECT_GT(ArchiveOne(io, *store), 300);
  store->Close();
  RawDb raw(path);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(CurrentVersion()));
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sqlite_schema WHERE name IN ('archive', 'archive_messages')"),
            "0");
}

// Schema 10 wrote posting rows in format 1 (every field in every entry);
// schema 11 writes format 2 but must still read them. The version-10 file
// is written by hand: one chunk holding one message (id 100) that alice
// sent bob, indexed in a format-1 row.
TEST(SqliteSchema, ReadsVersion10PostingRows) {
  TempDir dir;
  const std::string path = (dir.path() / "v10.db").string();
  {
    RawDb raw(path);
    WriteSchemaWithAliceAndBob(raw, 10);
    // The chunk's record: id 100, stamp 1 (zigzag 2), one owner (alice,
    // peer bob@example.org, no resource, outgoing, origin-id o1), then the
    // stanza (33 bytes, at offset 31).
    const std::string stanza_hex = "3c6d6573736167653e3c626f64793e613c2f626f64793e3c2f6d6573736167653e";
    raw.Exec(
        "INSERT INTO archive_log VALUES (100, 100, 1);"
        "INSERT INTO archive_log_data VALUES (100, x'640201' || x'05616c696365' ||"
        " x'0f626f62406578616d706c652e6f7267' || x'00' || x'01' || x'02' || x'6f31' || x'21' || x'" +
        stanza_hex +
        "');"
        // id 100, stamp zigzag 2, chunk delta 0, offset 31, length 33,
        // outgoing, peer, resource "", origin-id o1.
        "INSERT INTO archive_index VALUES ('alice', 100, 100, 1, x'6402001f2101' ||"
        " x'0f626f62406578616d706c652e6f7267' || x'00' || x'026f31');"
        "INSERT INTO archive_origins VALUES ('alice', 'o1', 100);"  // dropped by migration 11
        "UPDATE archive_state SET value = 100 WHERE key = 'indexed_through';");
  }
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  {
    auto store = MustOpen({path});
    ASSERT_TRUE(store);
    auto page = Await<ArchivePage>(
        io, [&](Reply<ArchivePage> r) { store->QueryArchive("alice", ArchiveQuery{}, std::move(r)); });
    ASSERT_TRUE(page.ok()) << page.error().message;
    ASSERT_EQ(page->messages.size(), 1u);
    const ArchivedMessage& m = page->messages[0];
    EXPECT_EQ(m.id, 100);
    EXPECT_EQ(m.stamp_ms, 1);
    EXPECT_EQ(m.peer, "bob@example.org");
    EXPECT_TRUE(m.outgoing);
    EXPECT_EQ(m.origin_id, "o1");
    EXPECT_EQ(m.stanza, "<message><body>a</body></message>");
    // A message given an id below the row's is merged with it: the format-1
    // row is read and written again as format 2.
    std::vector<ArchiveEntry> older = {
        {"alice", {50, 7, "carol@example.net", "desk", false, "", "<message><body>z</body></message>"}}};
    auto added = Await<ArchiveOutcome>(
        io, [&](Reply<ArchiveOutcome> r) { store->Archive(std::move(older), std::move(r)); });
    ASSERT_TRUE(added.ok()) << added.error().message;
    EXPECT_EQ(ArchiveIds(io, *store, "alice"), (std::vector<int64_t>{50, 100}));
    store->Close();
  }
  RawDb raw(path);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(CurrentVersion()));
  EXPECT_EQ(raw.Query("SELECT hex(substr(entries, 1, 1)) FROM archive_index WHERE username = 'alice'"), "00");
  // Since version 12 the rows are a rowid table with the key as an index.
  EXPECT_EQ(
      raw.Query(
          "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'archive_index_by_owner'"),
      "1");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM pragma_index_list('archive_index') WHERE origin = 'pk'"), "0");
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  auto page = ArchiveWith(io, *store, "alice", "carol@example.net");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 1u);
  EXPECT_EQ(page->messages[0].id, 50);
  EXPECT_EQ(page->messages[0].stamp_ms, 7);
  EXPECT_EQ(page->messages[0].peer_resource, "desk");
  EXPECT_EQ(page->messages[0].stanza, "<message><body>z</body></message>");
  EXPECT_EQ(ArchiveIds(io, *store, "alice"), (std::vector<int64_t>{50, 100}));
  store->Close();
}

// LastPepItems runs at every login with the user and all their contacts as
// owners: each (owner, node) must be a primary-key lookup and its newest
// item one step down pep_items_newest, never a scan of either table.
TEST(SqlitePep, LastItemsUseTheIndexes) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  {
    auto store = MustOpen({path});
    ASSERT_TRUE(store);
    store->Close();
  }
  for (const char* sql : {kLastPepItemsSql, kLastPepItemSql}) {
    std::string plan = QueryPlan(path, sql);
    EXPECT_NE(plan.find("SEARCH n USING PRIMARY KEY (username=? AND node=?)"), std::string::npos) << plan;
    EXPECT_NE(plan.find("pep_items_newest"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN n"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN pep_items"), std::string::npos) << plan;
  }
}

TEST(SqliteSchema, FreshFileIsAtTheCurrentVersionInWalMode) {
  EXPECT_EQ(SqliteSchemaVersion(), 12);
  ASSERT_EQ(static_cast<int>(Migrations().size()), SqliteSchemaVersion());
  for (size_t i = 0; i < Migrations().size(); ++i)
    EXPECT_EQ(Migrations()[i].version, static_cast<int>(i) + 1);

  TempDir dir;
  const std::string path = (dir.path() / "new" / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  RawDb raw(path);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(CurrentVersion()));
  EXPECT_EQ(raw.Query("PRAGMA application_id"), std::to_string(kApplicationId));
  EXPECT_EQ(raw.Query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(
      raw.Query("SELECT count(*) FROM sqlite_schema WHERE name IN ('vcards', 'roster_groups', 'archive_log',"
                " 'archive_log_data', 'archive_index', 'archive_erased', 'archive_state',"
                " 'device_states', 'push_registrations', 'blocklist', 'private_storage', 'archive_prefs',"
                " 'archive_pref_jids', 'pep_nodes', 'pep_node_groups', 'pep_items')"),
      "16");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sqlite_schema WHERE name = 'archive_origins'"), "0");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sqlite_schema WHERE name IN ('archive', 'archive_messages')"),
            "0");
}

// The v1 schema exactly as the v1 build wrote it, with data, kept here (not
// taken from the migration list) so the test notices if migration 1 is edited.
constexpr const char* kV1Fixture = R"sql(
PRAGMA application_id = 1852403301;
CREATE TABLE accounts (
  username TEXT PRIMARY KEY NOT NULL,
  sha1_salt BLOB NOT NULL, sha1_iterations INTEGER NOT NULL, sha1_stored_key BLOB NOT NULL,
  sha1_server_key BLOB NOT NULL,
  sha256_salt BLOB NOT NULL, sha256_iterations INTEGER NOT NULL, sha256_stored_key BLOB NOT NULL,
  sha256_server_key BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  roster_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE roster_items (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
  ask_out INTEGER NOT NULL DEFAULT 0,
  pending_in INTEGER NOT NULL DEFAULT 0,
  preapproved INTEGER NOT NULL DEFAULT 0,
  groups_json TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (username, jid)
);
CREATE TABLE offline_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  stamp_ms INTEGER NOT NULL,
  stanza TEXT NOT NULL
);
CREATE INDEX offline_messages_by_user ON offline_messages(username, id);

INSERT INTO accounts VALUES
  ('alice', x'00a1ff', 4096, x'0102', x'0304', x'00b2ff', 8192, x'0506', x'0708', 1600000000000, 7),
  ('bob',   x'11',     4096, x'12',   x'13',   x'14',     8192, x'15',   x'16',   1600000000001, 1);
INSERT INTO roster_items VALUES
  ('alice', 'bob@example.org',   'Bob',   'both', 0, 0, 0, '["Work","Friends","Work"]'),
  ('alice', 'carol@example.org', 'Carol', 'to',   1, 1, 1, '[]'),
  ('alice', 'dave@example.org',  '',      'none', 0, 0, 0, '{not json'),
  ('alice', 'erin@example.org',  '',      'from', 0, 0, 0, '["Solo", 42, null]'),
  ('bob',   'alice@example.org', 'Al',    'both', 0, 0, 0, '["Family"]');
INSERT INTO offline_messages (id, username, stamp_ms, stanza) VALUES
  (5, 'alice', 1600000000100, '<message><body>one</body></message>'),
  (9, 'alice', 1600000000200, '<message><body>two</body></message>'),
  (12, 'bob',  1600000000300, '<message><body>three</body></message>');
PRAGMA user_version = 1;
)sql";

TEST(SqliteSchema, MigratesAVersion1FileWithItsData) {
  TempDir dir;
  const std::string path = (dir.path() / "v1.db").string();
  {
    RawDb raw(path);
    raw.Exec(kV1Fixture);
    ASSERT_EQ(raw.Query("PRAGMA user_version"), "1");
  }
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  {
    RawDb raw(path);
    EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(CurrentVersion()));
    EXPECT_EQ(raw.Query("SELECT count(*) FROM pragma_table_info('roster_items') WHERE name = 'groups_json'"),
              "0");
  }

  auto alice = Await<Account>(io, [&](Reply<Account> r) { store->GetAccount("alice", std::move(r)); });
  ASSERT_TRUE(alice.ok()) << alice.error().message;
  EXPECT_EQ(alice->sha1.salt, std::string("\x00\xa1\xff", 3));
  EXPECT_EQ(alice->sha1.iterations, 4096);
  EXPECT_EQ(alice->sha256.stored_key, "\x05\x06");
  EXPECT_EQ(alice->created_ms, 1600000000000);

  auto roster = Await<Roster>(io, [&](Reply<Roster> r) { store->GetRoster("alice", std::move(r)); });
  ASSERT_TRUE(roster.ok()) << roster.error().message;
  EXPECT_EQ(roster->version, 7);
  ASSERT_EQ(roster->items.size(), 4u);
  EXPECT_EQ(roster->items[0].jid, "bob@example.org");
  EXPECT_EQ(roster->items[0].name, "Bob");
  EXPECT_EQ(roster->items[0].subscription, Subscription::kBoth);
  EXPECT_EQ(roster->items[0].groups, (std::vector<std::string>{"Friends", "Work"}));
  EXPECT_EQ(roster->items[0].pending_in_stanza, "");
  EXPECT_EQ(roster->items[1].subscription, Subscription::kTo);
  EXPECT_TRUE(roster->items[1].ask_out && roster->items[1].pending_in && roster->items[1].preapproved);
  EXPECT_TRUE(roster->items[1].groups.empty());
  EXPECT_TRUE(roster->items[2].groups.empty()) << "malformed JSON migrates as no groups";
  EXPECT_EQ(roster->items[3].groups, std::vector<std::string>{"Solo"}) << "non-string entries are dropped";

  auto offline = Await<std::vector<OfflineMessage>>(
      io, [&](Reply<std::vector<OfflineMessage>> r) { store->LoadOffline("alice", std::move(r)); });
  ASSERT_TRUE(offline.ok());
  ASSERT_EQ(offline->size(), 2u);
  EXPECT_EQ((*offline)[0].id, 5);
  EXPECT_EQ((*offline)[0].stanza, "<message><body>one</body></message>");
  EXPECT_EQ((*offline)[1].id, 9);
  EXPECT_EQ((*offline)[1].stamp_ms, 1600000000200);

  // The new schema works on migrated data: vCards, new ids, cascades.
  EXPECT_TRUE(
      Await<void>(io, [&](Reply<void> r) { store->SetVCard("alice", "<vCard/>", std::move(r)); }).ok());
  auto id = Await<int64_t>(
      io, [&](Reply<int64_t> r) { store->StoreOffline("alice", MakeMessage("new"), std::move(r)); });
  ASSERT_TRUE(id.ok());
  EXPECT_GT(*id, 12);
  auto version = Await<int64_t>(
      io, [&](Reply<int64_t> r) { store->PutRosterItem("bob", MakeItem("x@example.org"), std::move(r)); });
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 2);
  EXPECT_TRUE(Await<void>(io, [&](Reply<void> r) { store->DeleteAccount("alice", std::move(r)); }).ok());
  store->Close();
  RawDb raw(path);
  EXPECT_EQ(raw.Query("SELECT count(*) FROM roster_groups WHERE username = 'alice'"), "0");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM roster_groups WHERE username = 'bob'"), "1");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM vcards"), "0");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM offline_messages"), "1");
}

TEST(SqliteSchema, RefusesANewerSchemaAndLeavesTheFileAlone) {
  TempDir dir;
  const std::string path = (dir.path() / "future.db").string();
  const std::string future = std::to_string(CurrentVersion() + 1);
  {
    RawDb raw(path);
    raw.Exec("PRAGMA application_id = 1852403301; CREATE TABLE from_the_future (x); PRAGMA user_version = " +
             future + ";");
  }
  auto opened = OpenSqlite({path});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::kInvalidArgument);
  EXPECT_NE(opened.error().message.find("newer"), std::string::npos) << opened.error().message;
  EXPECT_NE(opened.error().message.find(future), std::string::npos) << opened.error().message;
  RawDb raw(path);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), future);
  EXPECT_EQ(raw.Query("PRAGMA journal_mode"), "delete") << "a refused file must not be switched to WAL";
}

// All pending migrations run in one transaction: when a later one fails,
// the earlier ones of the same upgrade are rolled back too, and the file
// keeps its version (no build ever sees it between two versions).
TEST(SqliteSchema, AFailedUpgradeLeavesTheFileAtItsVersion) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  const Migration first[] = {
      {1, "first", "PRAGMA application_id = 1852403301; CREATE TABLE one (x);"},
  };
  const Migration all[] = {
      first[0],
      {2, "second", "CREATE TABLE two (x); INSERT INTO one VALUES (1);"},
      {3, "third, which fails", "INSERT INTO no_such_table VALUES (1);"},
  };
  {
    auto conn = Connection::Open(path, Connection::Mode::kReadWrite, 1000);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto done = Migrate(**conn, first);
    ASSERT_TRUE(done.ok()) << done.error().message;
    EXPECT_EQ(*done, 0);
  }
  {
    auto conn = Connection::Open(path, Connection::Mode::kReadWrite, 1000);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto failed = Migrate(**conn, all);
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.error().message.find("version 3 (third, which fails)"), std::string::npos)
        << failed.error().message;
    EXPECT_TRUE((*conn)->InAutocommit()) << "the failed upgrade must not leave a transaction open";
  }
  RawDb raw(path);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), "1");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sqlite_schema WHERE name = 'two'"), "0")
      << "migration 2 ran in the failed upgrade's transaction";
  EXPECT_EQ(raw.Query("SELECT count(*) FROM one"), "0");
}

TEST(SqliteSchema, RefusesFilesThatAreNotOurs) {
  TempDir dir;
  const std::string other = (dir.path() / "other.db").string();
  {
    RawDb raw(other);
    raw.Exec("PRAGMA application_id = 42; CREATE TABLE t (x);");
  }
  auto opened = OpenSqlite({other});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::kInvalidArgument) << opened.error().message;

  const std::string garbage = (dir.path() / "garbage.db").string();
  std::ofstream(garbage) << std::string(4096, 'G');
  opened = OpenSqlite({garbage});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::kInvalidArgument) << opened.error().message;

  for (const char* bad : {"", ":memory:", "file:x.db?mode=memory"}) {
    opened = OpenSqlite({bad});
    ASSERT_FALSE(opened.ok()) << bad;
    EXPECT_EQ(opened.error().code, Errc::kInvalidArgument);
  }
  opened = OpenSqlite({(dir.path() / "a.db").string(), 0});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::kInvalidArgument);
}

TEST(SqliteConnection, WriteConnectionsFsyncEveryCommitAndEnforceForeignKeys) {
  TempDir dir;
  const std::string path = (dir.path() / "c.db").string();
  auto conn = Connection::Open(path, Connection::Mode::kReadWrite, kBusyTimeoutMs);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto pragma = [&](std::string_view sql) -> int64_t {
    auto stmt = (*conn)->Prepare(sql);
    EXPECT_TRUE(stmt.ok());
    auto row = stmt->Step();
    EXPECT_TRUE(row.ok() && *row);
    return stmt->ColumnInt(0);
  };
  EXPECT_EQ(pragma("PRAGMA synchronous"), 2) << "FULL: the WAL is fsync'd at every commit";
  EXPECT_EQ(pragma("PRAGMA foreign_keys"), 1);
  EXPECT_EQ(pragma("PRAGMA busy_timeout"), kBusyTimeoutMs);
}

// SQLite's memory statistics are off in a process whose first SQLite use is
// a Connection (the server's case). Checked in a fresh process (a
// "threadsafe" death test re-runs this binary for the one test), because
// other tests here open SQLite directly first, after which SQLite refuses
// the setting. With the statistics on, sqlite3_memory_used() counts every
// allocation; off, it stays 0.
TEST(SqliteConnection, MemoryStatisticsAreOffInTheServer) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  const std::string path = (dir.path() / "m.db").string();
  EXPECT_EXIT(
      {
        auto conn = Connection::Open(path, Connection::Mode::kReadWrite, kBusyTimeoutMs);
        const bool used = conn.ok() && (*conn)->Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1);").ok();
        std::exit(used && ConfigureSqliteProcess() && sqlite3_memory_used() == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(SqliteErrors, ResultCodesMapOnce) {
  EXPECT_EQ(ErrcFromSqlite(SQLITE_CONSTRAINT_PRIMARYKEY), Errc::kConflict);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_CONSTRAINT_UNIQUE), Errc::kConflict);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_CONSTRAINT_FOREIGNKEY), Errc::kNotFound);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_BUSY), Errc::kUnavailable);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_BUSY_SNAPSHOT), Errc::kUnavailable);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_LOCKED), Errc::kUnavailable);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_IOERR_FSYNC), Errc::kUnavailable);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_FULL), Errc::kUnavailable);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_TOOBIG), Errc::kLimitExceeded);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_NOTADB), Errc::kInvalidArgument);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_CORRUPT), Errc::kInternal);
  EXPECT_EQ(ErrcFromSqlite(SQLITE_ERROR), Errc::kInternal);
}

// ---- Durability ----

// Every Reply, the moment it runs, finds its write committed: a separate
// connection (as another process would use) already sees the row. Replies
// run on a loop thread of their own while the writer keeps committing, so a
// Reply posted before its COMMIT would be caught here.
TEST(SqliteDurability, EveryAcknowledgedWriteIsAlreadyCommitted) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      Await<void>(io, [&](Reply<void> r) { store->CreateAccount(MakeAccount("alice"), std::move(r)); }).ok());

  RawDb raw(path);  // used only on the loop thread below
  io.restart();     // Await ran it out of work
  auto guard = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  constexpr int kWrites = 2000;
  std::atomic<int> acknowledged{0};
  std::atomic<int> not_yet_visible{0};
  for (int i = 0; i < kWrites; ++i) {
    store->StoreOffline(
        "alice", MakeMessage(std::to_string(i)), Reply<int64_t>(io.get_executor(), [&](Result<int64_t> r) {
          if (!r.ok() ||
              raw.Query("SELECT count(*) FROM offline_messages WHERE id = " + std::to_string(*r)) != "1") {
            ++not_yet_visible;
          }
          ++acknowledged;
        }));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acknowledged < kWrites && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  guard.reset();
  loop.join();
  EXPECT_EQ(acknowledged, kWrites);
  EXPECT_EQ(not_yet_visible, 0);
}

// G1 across a crash: a child process writes and reports each acknowledged id
// through a pipe; the parent kills it with SIGKILL mid-stream, reopens the
// file, and finds every acknowledged message. (A power cut is stronger than
// a process kill; synchronous=FULL is what covers that, and is set by
// Connection::Open.)
TEST(SqliteDurability, AcknowledgedWritesSurviveKill9) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  {
    boost::asio::io_context io;  // outlives the store, see conformance::Await
    auto store = MustOpen({path});
    ASSERT_TRUE(store);
    ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) {
                  store->CreateAccount(MakeAccount("alice"), std::move(r));
                }).ok());
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  constexpr int kWrites = 20000;
  constexpr int kKillAfter = 2000;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto opened = OpenSqlite({path, 64});
    if (!opened.ok()) _exit(2);
    auto store = std::move(opened).value();
    boost::asio::io_context io;
    auto guard = boost::asio::make_work_guard(io);
    for (int i = 0; i < kWrites; ++i) {
      store->StoreOffline("alice", MakeMessage(std::to_string(i)),
                          Reply<int64_t>(io.get_executor(), [fd = fds[1]](Result<int64_t> r) {
                            if (!r.ok()) _exit(3);
                            int64_t id = *r;
                            if (write(fd, &id, sizeof id) != sizeof id) _exit(4);
                          }));
    }
    io.run();  // until killed
    _exit(5);
  }
  close(fds[1]);
  std::set<int64_t> acknowledged;
  int64_t id = 0;
  while (acknowledged.size() < kKillAfter && read(fds[0], &id, sizeof id) == sizeof id)
    acknowledged.insert(id);
  kill(child, SIGKILL);
  // Acknowledgements already in the pipe were sent before the kill; they count too.
  while (read(fds[0], &id, sizeof id) == sizeof id) acknowledged.insert(id);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited on its own with status " << WEXITSTATUS(status);
  ASSERT_GE(acknowledged.size(), static_cast<size_t>(kKillAfter));

  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  auto loaded = Await<std::vector<OfflineMessage>>(
      io, [&](Reply<std::vector<OfflineMessage>> r) { store->LoadOffline("alice", std::move(r)); });
  ASSERT_TRUE(loaded.ok());
  std::set<int64_t> present;
  for (const auto& message : *loaded) present.insert(message.id);
  size_t missing = 0;
  for (int64_t acked : acknowledged) missing += present.count(acked) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u) << "acknowledged " << acknowledged.size() << ", found " << present.size();
  // Writes apply in order, so what survived is a prefix of what was issued.
  for (size_t i = 0; i < loaded->size(); ++i) {
    EXPECT_EQ((*loaded)[i].stanza, MakeMessage(std::to_string(i)).stanza);
    if ((*loaded)[i].stanza != MakeMessage(std::to_string(i)).stanza) break;
  }
}

// ---- Group commit ----

// Holds the database write lock from another connection (as `nines user add`
// in another process would) while writes queue up, then releases it. The
// writer is stuck in BEGIN IMMEDIATE on its first batch meanwhile, so
// everything queued behind it must go out in as few transactions as
// commit_batch allows.
struct LockedWrites {
  static constexpr auto kHold = std::chrono::milliseconds(200);
};

// Each queued call's outcome, "ok" or its error's Errc name, in the order
// the calls were made.
class Outcomes {
 public:
  explicit Outcomes(boost::asio::io_context& io) : batch_(io) {}
  template <class T>
  Reply<T> Add() {
    const size_t index = names_.size();
    names_.emplace_back();
    return batch_.Add<T>([this, index](Result<T> r) { names_[index] = r.ok() ? "ok" : ErrcName(r.error().code); });
  }
  const std::vector<std::string>& Wait() {
    batch_.Wait();
    return names_;
  }

 private:
  Batch batch_;
  std::vector<std::string> names_;
};

// Runs `queue` while another connection holds the write lock, and releases
// the lock LockedWrites::kHold later.
void QueueWhileLocked(const std::string& path, const std::function<void()>& queue) {
  RawDb other(path);
  other.Exec("BEGIN IMMEDIATE");
  queue();
  std::this_thread::sleep_for(LockedWrites::kHold);
  other.Exec("COMMIT");
}

TEST(SqliteGroupCommit, QueuedWritesShareOneTransaction) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      Await<void>(io, [&](Reply<void> r) { store->CreateAccount(MakeAccount("alice"), std::move(r)); }).ok());
  const auto before = AsSqlite(*store).stats();

  constexpr int kWrites = 200;
  Batch batch(io);
  int ok = 0;
  QueueWhileLocked(path, [&] {
    for (int i = 0; i < kWrites; ++i) {
      store->StoreOffline("alice", MakeMessage(std::to_string(i)), batch.Add<int64_t>([&](Result<int64_t> r) {
        if (r.ok()) ++ok;
      }));
    }
  });
  batch.Wait();
  EXPECT_EQ(ok, kWrites);
  const auto after = AsSqlite(*store).stats();
  EXPECT_EQ(after.writes_ok - before.writes_ok, kWrites);
  // The first batch may have held only the first write; the rest queued.
  EXPECT_LE(after.transactions - before.transactions, 2) << "writes were not group-committed";
}

TEST(SqliteGroupCommit, BatchesAreCappedByCommitBatch) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path, 4});
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      Await<void>(io, [&](Reply<void> r) { store->CreateAccount(MakeAccount("alice"), std::move(r)); }).ok());
  const auto before = AsSqlite(*store).stats();
  constexpr int kWrites = 40;
  Batch batch(io);
  int ok = 0;
  QueueWhileLocked(path, [&] {
    for (int i = 0; i < kWrites; ++i) {
      store->StoreOffline("alice", MakeMessage(std::to_string(i)), batch.Add<int64_t>([&](Result<int64_t> r) {
        if (r.ok()) ++ok;
      }));
    }
  });
  batch.Wait();
  EXPECT_EQ(ok, kWrites);
  const auto transactions = AsSqlite(*store).stats().transactions - before.transactions;
  EXPECT_GE(transactions, kWrites / 4);
  EXPECT_LE(transactions, kWrites / 4 + 1);
}

// store.sqlite_commit_delay_us: a busy writer lets writes wait for company.
SqliteOptions WithCommitDelay(const std::string& path, std::chrono::microseconds delay, int64_t batch = 256) {
  SqliteOptions options{path, batch};
  options.commit_delay_us = delay.count();
  return options;
}

// A store with alice's account, opened afresh with `delay` (so it starts
// idle: no commit has ended yet).
std::unique_ptr<Store> WithAliceAndDelay(boost::asio::io_context& io, const std::string& path,
                                         std::chrono::microseconds delay, int64_t batch = 256) {
  {
    auto store = MustOpen({path});
    if (!store) return nullptr;
    auto created =
        Await<void>(io, [&](Reply<void> r) { store->CreateAccount(MakeAccount("alice"), std::move(r)); });
    EXPECT_TRUE(created.ok());
  }
  return MustOpen(WithCommitDelay(path, delay, batch));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(SqliteGroupCommit, AnIdleStoreAndOneCallerInTurnCommitAtOnce) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = WithAliceAndDelay(io, path, std::chrono::seconds(1));
  ASSERT_TRUE(store);
  // One write after another, each waiting for its answer: never a second
  // write to wait for, so none waits out the delay (it would take 1 s).
  for (int i = 0; i < 6; ++i) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(Await<int64_t>(io, [&](Reply<int64_t> r) {
                  store->StoreOffline("alice", MakeMessage(std::to_string(i)), std::move(r));
                }).ok());
    EXPECT_LT(SecondsSince(start), 0.9) << "write " << i << " waited for company";
  }
}

TEST(SqliteGroupCommit, BusyWritesWaitToShareAnFsync) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = WithAliceAndDelay(io, path, std::chrono::seconds(1));
  ASSERT_TRUE(store);
  const auto before = AsSqlite(*store).stats();
  Outcomes outcomes(io);
  // The writer takes the first write (or several) and waits for the lock;
  // the rest queue behind. When the lock goes, that batch commits, and
  // what is left, or what comes next, waits out the delay: the busy case.
  QueueWhileLocked(path, [&] {
    for (int i = 0; i < 10; ++i)
      store->StoreOffline("alice", MakeMessage(std::to_string(i)), outcomes.Add<int64_t>());
  });
  const auto released = std::chrono::steady_clock::now();
  // Without the delay, what was queued would be committed by now, and these
  // five would need a transaction of their own; with it, they share one.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 10; i < 15; ++i)
    store->StoreOffline("alice", MakeMessage(std::to_string(i)), outcomes.Add<int64_t>());
  EXPECT_EQ(outcomes.Wait(), std::vector<std::string>(15, "ok"));
  EXPECT_GE(SecondsSince(released), 0.8) << "the busy writes did not wait";
  const auto after = AsSqlite(*store).stats();
  EXPECT_EQ(after.writes_ok - before.writes_ok, 15);
  EXPECT_EQ(after.transactions - before.transactions, 2) << "the late writes did not share the fsync";
}

TEST(SqliteGroupCommit, AFullBatchDoesNotWaitOutTheDelay) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = WithAliceAndDelay(io, path, std::chrono::seconds(1), 4);
  ASSERT_TRUE(store);
  // The writer takes one to four of the eight and waits for the lock. After
  // it, at least four are queued: a full batch, which goes at once, however
  // busy the store. Only what is left after that may wait.
  Batch batch(io);
  std::vector<double> answered;
  std::chrono::steady_clock::time_point released;
  QueueWhileLocked(path, [&] {
    for (int i = 0; i < 8; ++i) {
      store->StoreOffline("alice", MakeMessage(std::to_string(i)), batch.Add<int64_t>([&](Result<int64_t> r) {
        EXPECT_TRUE(r.ok());
        answered.push_back(SecondsSince(released));
      }));
    }
  });
  released = std::chrono::steady_clock::now();
  batch.Wait();
  ASSERT_EQ(answered.size(), 8u);
  const auto quick = std::count_if(answered.begin(), answered.end(), [](double s) { return s < 0.7; });
  EXPECT_GE(quick, 5) << "a full batch waited out the delay";
}

TEST(SqliteGroupCommit, TheCommitDelayIsBounded) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  EXPECT_FALSE(OpenSqlite(WithCommitDelay(path, std::chrono::microseconds(-1))).ok());
  EXPECT_FALSE(OpenSqlite(WithCommitDelay(path, std::chrono::microseconds(1'000'001))).ok());
}

TEST(SqliteGroupCommit, AFailingJobFailsAloneInsideItsBatch) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  const auto before = AsSqlite(*store).stats();
  Outcomes outcomes(io);
  QueueWhileLocked(path, [&] {
    store->CreateAccount(MakeAccount("alice"), outcomes.Add<void>());
    store->CreateAccount(MakeAccount("alice"), outcomes.Add<void>());
    store->CreateAccounts({MakeAccount("bob"), MakeAccount("alice")}, outcomes.Add<void>());
    store->StoreOffline("alice", MakeMessage("x"), outcomes.Add<int64_t>());
    store->CreateAccount(MakeAccount("carol"), outcomes.Add<void>());
  });
  EXPECT_EQ(outcomes.Wait(), (std::vector<std::string>{"ok", "conflict", "conflict", "ok", "ok"}));
  const auto after = AsSqlite(*store).stats();
  EXPECT_LE(after.transactions - before.transactions, 2);
  EXPECT_EQ(after.writes_ok - before.writes_ok, 3);
  EXPECT_EQ(after.writes_failed - before.writes_failed, 2);
  auto names = Await<std::vector<std::string>>(
      io, [&](Reply<std::vector<std::string>> r) { store->ListAccounts(std::move(r)); });
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"alice", "carol"})) << "bob must roll back with his batch-mate";
  // Creating bob and then failing on alice changed a row: the batch had to
  // run again with a savepoint per job to undo only that job.
  EXPECT_EQ(after.batches_replayed - before.batches_replayed, 1);
}

// A job that fails before changing a row (SQLite undoes the failing
// statement) leaves nothing to roll back, so its batch commits in one pass,
// without savepoints, and the failure still reaches only its own caller.
TEST(SqliteGroupCommit, AJobThatFailsWithoutChangesNeedsNoSecondPass) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  const auto before = AsSqlite(*store).stats();
  Outcomes outcomes(io);
  QueueWhileLocked(path, [&] {
    store->CreateAccount(MakeAccount("alice"), outcomes.Add<void>());
    store->CreateAccount(MakeAccount("alice"), outcomes.Add<void>());
    store->StoreOffline("nobody", MakeMessage("x"), outcomes.Add<int64_t>());
    store->StoreOffline("alice", MakeMessage("y"), outcomes.Add<int64_t>());
  });
  EXPECT_EQ(outcomes.Wait(), (std::vector<std::string>{"ok", "conflict", "not-found", "ok"}));
  const auto after = AsSqlite(*store).stats();
  EXPECT_EQ(after.batches_replayed - before.batches_replayed, 0);
  EXPECT_EQ(after.writes_ok - before.writes_ok, 2);
  EXPECT_EQ(after.writes_failed - before.writes_failed, 2);
  auto offline = Await<std::vector<OfflineMessage>>(
      io, [&](Reply<std::vector<OfflineMessage>> r) { store->LoadOffline("alice", std::move(r)); });
  ASSERT_TRUE(offline.ok());
  ASSERT_EQ(offline->size(), 1u);
  EXPECT_EQ(offline->front().stanza, MakeMessage("y").stanza);
}

// Another process holds the write lock past the busy timeout: the batch
// fails once, with the error, and is not begun a second time (which would
// double the wait); the next write goes through once the lock is free.
TEST(SqliteGroupCommit, ABatchThatCannotBeginFailsOnce) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto store = MustOpen({path});
  ASSERT_TRUE(store);
  ASSERT_TRUE(
      Await<void>(io, [&](Reply<void> r) { store->CreateAccount(MakeAccount("alice"), std::move(r)); }).ok());
  const auto before = AsSqlite(*store).stats();
  {
    RawDb other(path);
    other.Exec("BEGIN IMMEDIATE");
    auto stored = Await<int64_t>(
        io, [&](Reply<int64_t> r) { store->StoreOffline("alice", MakeMessage("x"), std::move(r)); });
    ASSERT_FALSE(stored.ok());
    other.Exec("COMMIT");
  }
  const auto after = AsSqlite(*store).stats();
  EXPECT_EQ(after.writes_failed - before.writes_failed, 1);
  EXPECT_EQ(after.batches_replayed - before.batches_replayed, 0);
  EXPECT_TRUE(Await<int64_t>(io, [&](Reply<int64_t> r) {
                store->StoreOffline("alice", MakeMessage("y"), std::move(r));
              }).ok());
}

// ---- Sharing the file ----

TEST(SqliteSharing, AnotherWriterCanAddAccountsWhileTheStoreIsOpen) {
  TempDir dir;
  const std::string path = (dir.path() / "nines.db").string();
  boost::asio::io_context io;  // outlives the store, see conformance::Await
  auto server = MustOpen({path});
  ASSERT_TRUE(server);
  ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) {
                server->CreateAccount(MakeAccount("alice"), std::move(r));
              }).ok());
  {
    // What `nines user add` does: its own store on the same file.
    auto cli = MustOpen({path});
    ASSERT_TRUE(cli);
    ASSERT_TRUE(
        Await<void>(io, [&](Reply<void> r) { cli->CreateAccount(MakeAccount("bob"), std::move(r)); }).ok());
    EXPECT_EQ(Await<void>(io, [&](Reply<void> r) { cli->CreateAccount(MakeAccount("alice"), std::move(r)); })
                  .error()
                  .code,
              Errc::kConflict);
  }
  auto bob = Await<Account>(io, [&](Reply<Account> r) { server->GetAccount("bob", std::move(r)); });
  ASSERT_TRUE(bob.ok()) << bob.error().message;
  ASSERT_TRUE(Await<void>(io, [&](Reply<void> r) {
                server->CreateAccount(MakeAccount("carol"), std::move(r));
              }).ok());
}

}  // namespace
}  // namespace nines::store::sqlite
