// The Store conformance suite on PostgreSQL, plus what is PostgreSQL's own:
// migrations under the advisory lock, a statement that fails alone inside a
// group commit, and connection strings.
//
// It needs a server: NINES_TEST_PG is a libpq URI of a database that may
// create databases (scripts/test.sh starts a throwaway cluster with
// scripts/pg-scratch.sh and sets it). Each test gets a database of its own,
// dropped afterwards. Without NINES_TEST_PG the tests skip, unless
// NINES_REQUIRE_PG=1 (set by scripts/test.sh), which makes that a failure.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <cstdlib>
#include <string>
#include <thread>

#include "store/postgres/pg_store.h"
#include "store/postgres/pg_test_database.h"
#include "store/store_conformance.h"

namespace nines::store::postgres {

// A fresh database per factory; dropped when the factory goes.
struct PgFactory {
  PostgresOptions Options() const {
    PostgresOptions options;
    options.uri = database.uri();
    options.failover_timeout_ms = 2000;
    return options;
  }
  Result<std::unique_ptr<Store>> Open() { return OpenPostgres(Options()); }
  static std::optional<std::string> SkipReason() { return testing::SkipReason(); }

  testing::TestDatabase database;
};

}  // namespace nines::store::postgres

namespace nines::store::conformance {
INSTANTIATE_TYPED_TEST_SUITE_P(Postgres, StoreConformance, ::testing::Types<postgres::PgFactory>);
}  // namespace nines::store::conformance

namespace nines::store::postgres {
namespace {

using conformance::Await;
using conformance::Batch;
using conformance::MakeAccount;

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = PgFactory::SkipReason()) GTEST_SKIP() << *reason;
    factory_ = std::make_unique<PgFactory>();
  }
  void TearDown() override {
    if (store_) store_->Close();
    store_.reset();
    factory_.reset();
  }
  void Open() {
    auto opened = PgStore::Open(factory_->Options());
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    store_ = std::move(opened).value();
  }
  // Runs `sql` on this test's database (blocking, test only).
  std::string Query(const std::string& sql) { return factory_->database.Sql(sql); }
  // Runs `sql` on the maintenance database.
  static void RunSqlAdmin(const std::string& sql) { testing::RunSql(testing::TestUri(), sql); }

  boost::asio::io_context io_;
  std::unique_ptr<PgFactory> factory_;
  std::unique_ptr<PgStore> store_;
};

// A write whose statement fails inside a shared transaction aborts it for
// everyone; the writer then commits each job alone, so only the failing one
// fails, and the connection stays usable afterwards.
TEST_F(PgStoreTest, AFailedStatementInAGroupCommitFailsOnlyItsJob) {
  Open();
  ASSERT_TRUE(Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("taken"), std::move(r)); })
                  .ok());
  for (int round = 0; round < 3; ++round) {
    Batch batch(io_);
    std::map<std::string, std::string> outcome;
    auto record = [&](std::string what) {
      return [&outcome, what](Result<void> r) { outcome[what] = r.ok() ? "ok" : ErrcName(r.error().code); };
    };
    std::string n = std::to_string(round);
    store_->CreateAccount(MakeAccount("a" + n), batch.Add<void>(record("a")));
    // Raises unique_violation inside the shared transaction.
    store_->CreateAccounts({MakeAccount("b" + n), MakeAccount("taken")}, batch.Add<void>(record("b+taken")));
    store_->CreateAccount(MakeAccount("c" + n), batch.Add<void>(record("c")));
    store_->CreateAccount(MakeAccount("taken"), batch.Add<void>(record("taken")));
    batch.Wait();
    EXPECT_EQ(outcome, (std::map<std::string, std::string>{{"a", "ok"},
                                                           {"b+taken", ErrcName(Errc::kConflict)},
                                                           {"c", "ok"},
                                                           {"taken", ErrcName(Errc::kConflict)}}));
  }
  auto names = Await<std::vector<std::string>>(
      io_, [&](Reply<std::vector<std::string>> r) { store_->ListAccounts(std::move(r)); });
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a0", "a1", "a2", "c0", "c1", "c2", "taken"}));
  EXPECT_GE(store_->stats().transactions, 4);
}

// Nodes starting at once: each takes the advisory lock in turn; the first
// migrates, the others find the schema current. Nothing is applied twice.
TEST_F(PgStoreTest, NodesStartingAtOnceMigrateOnce) {
  constexpr int kNodes = 6;
  std::vector<std::thread> nodes;
  std::atomic<int> opened{0};
  std::vector<std::string> errors(kNodes);
  for (int i = 0; i < kNodes; ++i) {
    nodes.emplace_back([&, i] {
      auto store = PgStore::Open(factory_->Options());
      if (store.ok()) {
        ++opened;
        (*store)->Close();
      } else {
        errors[i] = store.error().message;
      }
    });
  }
  for (auto& node : nodes) node.join();
  EXPECT_EQ(opened.load(), kNodes) << errors[0] << errors[1];
  EXPECT_EQ(Query("SELECT count(*) FROM nines_schema"), std::to_string(PostgresSchemaVersion()));
  EXPECT_EQ(Query("SELECT max(version) FROM nines_schema"), std::to_string(PostgresSchemaVersion()));
}

TEST_F(PgStoreTest, RefusesADatabaseNewerThanThisBuild) {
  Open();
  store_->Close();
  store_.reset();
  Query("INSERT INTO nines_schema (version, description, applied_at) VALUES (9999, 'from the future', now())");
  auto opened = PgStore::Open(factory_->Options());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::kInvalidArgument);
  EXPECT_NE(opened.error().message.find("newer"), std::string::npos) << opened.error().message;
}

TEST_F(PgStoreTest, RefusesBadOptions) {
  PostgresOptions options = factory_->Options();
  options.uri = "";
  EXPECT_EQ(PgStore::Open(options).error().code, Errc::kInvalidArgument);
  options = factory_->Options();
  options.uri = "postgresql://[bad";
  EXPECT_EQ(PgStore::Open(options).error().code, Errc::kInvalidArgument);
  options = factory_->Options();
  options.pool_size = 1;
  EXPECT_EQ(PgStore::Open(options).error().code, Errc::kInvalidArgument);
}

// The server ends every connection (as a failover or a restart does): the
// store reconnects, reads are sent again, and writes keep working.
TEST_F(PgStoreTest, ReconnectsAfterTheServerDropsItsConnections) {
  Open();
  ASSERT_TRUE(Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("alice"), std::move(r)); })
                  .ok());
  Query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()");
  auto account = Await<Account>(io_, [&](Reply<Account> r) { store_->GetAccount("alice", std::move(r)); });
  ASSERT_TRUE(account.ok()) << account.error().message;
  // SetCredentials is idempotent: if it met the broken connection it was sent again.
  auto set = Await<void>(io_, [&](Reply<void> r) {
    store_->SetCredentials("alice", MakeAccount("x").sha1, MakeAccount("x").sha256, std::move(r));
  });
  ASSERT_TRUE(set.ok()) << set.error().message;
  auto created =
      Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("bob"), std::move(r)); });
  // A non-idempotent write that met the broken connection may fail with
  // kUnavailable (its outcome unknown), but never with anything else; the
  // one after it succeeds.
  if (!created.ok()) {
    EXPECT_EQ(created.error().code, Errc::kUnavailable);
  }
  auto again = Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("carol"), std::move(r)); });
  EXPECT_TRUE(again.ok()) << again.error().message;
  EXPECT_GE(store_->stats().reconnects, 1);
}

// The server ends an idle connection (a switchover, pg_terminate_backend,
// idle_session_timeout): its FATAL arrives as the answer to the next
// statement, which the server therefore never ran. Even a lone write that
// must not run twice is then sent again on a new connection, not failed.
TEST_F(PgStoreTest, AWriteMeetingATerminatedSessionIsSentAgain) {
  Open();
  ASSERT_TRUE(Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("alice"), std::move(r)); })
                  .ok());
  Query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()");
  auto created = Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("bob"), std::move(r)); });
  EXPECT_TRUE(created.ok()) << created.error().message;
  EXPECT_GE(store_->stats().retried, 1);
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE username = 'bob'"), "1") << "once, not twice";
}

// The database refuses connections for longer than the failover timeout
// (2 s here): calls fail with kUnavailable after about that long (not once
// per retry), a write that was never sent is not applied, and the store
// works again as soon as the database does.
TEST_F(PgStoreTest, CallsFailAfterTheFailoverTimeoutWhileTheDatabaseIsUnreachableThenRecover) {
  Open();
  ASSERT_TRUE(Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("alice"), std::move(r)); })
                  .ok());
  const std::string db = factory_->database.name();
  RunSqlAdmin("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false");
  RunSqlAdmin("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" + db + "'");
  auto start = std::chrono::steady_clock::now();
  auto read = Await<Account>(io_, [&](Reply<Account> r) { store_->GetAccount("alice", std::move(r)); });
  auto write = Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("bob"), std::move(r)); });
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code, Errc::kUnavailable);
  ASSERT_FALSE(write.ok());
  EXPECT_EQ(write.error().code, Errc::kUnavailable);
  EXPECT_LT(seconds, 2 * 2.0 + 3.0) << "one failover timeout per call, not one per retry";
  RunSqlAdmin("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true");
  auto again = Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(MakeAccount("carol"), std::move(r)); });
  EXPECT_TRUE(again.ok()) << again.error().message;
  auto names = Await<std::vector<std::string>>(
      io_, [&](Reply<std::vector<std::string>> r) { store_->ListAccounts(std::move(r)); });
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"alice", "carol"})) << "bob, never sent, was not applied";
}

}  // namespace
}  // namespace nines::store::postgres
