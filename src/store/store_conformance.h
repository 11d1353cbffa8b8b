// The Store conformance suite: one typed GoogleTest suite that every backend
// runs (CONVENTIONS.md §9). It tests the contract in store.h and nothing
// backend-specific.
//
// A backend plugs in with a factory type:
//
//   struct MyFactory {
//     // Sets up an empty backing store (a temp directory, a fresh database or
//     // schema) that lives as long as the factory. One factory per test.
//     MyFactory();
//     // Opens a Store on that backing store. Called again after Close() to
//     // test that data survives a reopen.
//     Result<std::unique_ptr<Store>> Open();
//     // Optional: a reason to skip (e.g. no PostgreSQL server reachable).
//     static std::optional<std::string> SkipReason();
//   };
//
// and, in exactly one test source of its binary:
//
//   INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, StoreConformance, ::testing::Types<MyFactory>);
//
// Replies are collected by running a boost::asio::io_context on the test
// thread, so every check also proves that Replies run on the caller's
// executor and run exactly once. Usernames are ASCII so that ordering
// expectations hold for any byte-wise collation.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "store/store.h"

namespace nines::store::conformance {

inline constexpr std::chrono::seconds kReplyTimeout{60};

// Issues one call with a Reply bound to `io`, runs `io` on this thread until
// the Reply has run, and returns its result. Records a test failure if the
// Reply never runs, runs on another thread, or runs twice.
//
// `io` must outlive the store's threads (be destroyed after Close()): the
// store may still be returning from post() when the Reply has already run.
template <class T, class Call>
Result<T> Await(boost::asio::io_context& io, Call&& call) {
  io.restart();
  auto guard = boost::asio::make_work_guard(io);
  std::optional<Result<T>> out;
  int runs = 0;
  bool on_caller_thread = true;
  const auto caller = std::this_thread::get_id();
  call(Reply<T>(io.get_executor(), [&](Result<T> result) {
    ++runs;
    on_caller_thread = on_caller_thread && std::this_thread::get_id() == caller;
    out.emplace(std::move(result));
    guard.reset();
  }));
  io.run_for(kReplyTimeout);
  io.restart();
  io.poll();  // a second invocation, if any, would have been posted by now
  EXPECT_EQ(runs, 1) << "a Reply must run exactly once";
  EXPECT_TRUE(on_caller_thread) << "a Reply must run on its executor's thread";
  if (!out) return MakeError(Errc::kInternal, "no reply within the timeout");
  return std::move(*out);
}

// Collects the Replies of many calls issued without waiting, on `io`, which
// Wait() runs on the calling thread. The same lifetime rule as Await applies.
class Batch {
 public:
  explicit Batch(boost::asio::io_context& io) : io_(io) {}

  template <class T>
  Reply<T> Add(std::function<void(Result<T>)> check) {
    ++expected_;
    return Reply<T>(io_.get_executor(), [this, check = std::move(check)](Result<T> result) {
      check(std::move(result));
      ++done_;
    });
  }
  // Runs the io_context on this thread until every Reply has run.
  void Wait() {
    const auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
    io_.restart();
    while (done_ < expected_ && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
    ASSERT_EQ(done_, expected_) << "replies missing after the timeout";
  }

 private:
  boost::asio::io_context& io_;
  int expected_ = 0;
  int done_ = 0;
};

inline std::string Bytes(const std::string& seed, size_t size) {
  std::string out;
  for (size_t i = 0; i < size; ++i)
    out.push_back(static_cast<char>((seed.size() * 31 + i * 7 + seed[i % seed.size()]) & 0xff));
  return out;
}

// An account whose keys are derived from its name; salts and keys contain
// NUL and high bytes so they prove binary round-tripping.
inline Account MakeAccount(const std::string& username, int64_t created_ms = 1700000000123) {
  Account account;
  account.username = username;
  account.sha1 =
      ScramKeys{Bytes(username + "s1", 16), 4096, Bytes(username + "k1", 20), Bytes(username + "v1", 20)};
  account.sha256 =
      ScramKeys{Bytes(username + "s2", 16), 8192, Bytes(username + "k2", 32), Bytes(username + "v2", 32)};
  account.created_ms = created_ms;
  return account;
}

inline RosterItem MakeItem(const std::string& jid, Subscription subscription = Subscription::kBoth,
                           std::vector<std::string> groups = {}) {
  RosterItem item;
  item.jid = jid;
  item.name = "Name of " + jid;
  item.subscription = subscription;
  item.groups = std::move(groups);
  return item;
}

inline OfflineMessage MakeMessage(const std::string& body, int64_t stamp_ms = 1700000000000) {
  OfflineMessage message;
  message.stamp_ms = stamp_ms;
  message.stanza =
      "<message from='a@example.org/r' to='b@example.org' type='chat'><body>" + body + "</body></message>";
  return message;
}

template <class Factory>
class StoreConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (requires { Factory::SkipReason(); }) {
      if (auto reason = Factory::SkipReason()) GTEST_SKIP() << *reason;
    }
    factory_ = std::make_unique<Factory>();
    Open();
  }

  void TearDown() override {
    if (store_) store_->Close();
    store_.reset();
    factory_.reset();
  }

  void Open() {
    auto opened = factory_->Open();
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    store_ = std::move(opened).value();
  }

  // Closes the store and opens a new one on the same backing store.
  void Reopen() {
    store_->Close();
    store_.reset();
    Open();
  }

  Store& store() { return *store_; }

  // A further io_context, for a test that runs replies on several threads.
  // Destroyed with the fixture, after TearDown has closed the store.
  boost::asio::io_context& NewIoContext() { return more_io_.emplace_back(); }

  // Synchronous wrappers, one per Store method.
  Result<void> CreateAccount(Account account) {
    return Await<void>(io_, [&](Reply<void> r) { store_->CreateAccount(std::move(account), std::move(r)); });
  }
  Result<void> CreateAccounts(std::vector<Account> accounts) {
    return Await<void>(io_,
                       [&](Reply<void> r) { store_->CreateAccounts(std::move(accounts), std::move(r)); });
  }
  Result<Account> GetAccount(const std::string& username) {
    return Await<Account>(io_, [&](Reply<Account> r) { store_->GetAccount(username, std::move(r)); });
  }
  Result<void> SetCredentials(const std::string& username, ScramKeys sha1, ScramKeys sha256) {
    return Await<void>(io_, [&](Reply<void> r) {
      store_->SetCredentials(username, std::move(sha1), std::move(sha256), std::move(r));
    });
  }
  Result<void> DeleteAccount(const std::string& username) {
    return Await<void>(io_, [&](Reply<void> r) { store_->DeleteAccount(username, std::move(r)); });
  }
  Result<std::vector<std::string>> ListAccounts() {
    return Await<std::vector<std::string>>(
        io_, [&](Reply<std::vector<std::string>> r) { store_->ListAccounts(std::move(r)); });
  }
  Result<Roster> GetRoster(const std::string& username) {
    return Await<Roster>(io_, [&](Reply<Roster> r) { store_->GetRoster(username, std::move(r)); });
  }
  Result<int64_t> PutRosterItem(const std::string& username, RosterItem item) {
    return Await<int64_t>(
        io_, [&](Reply<int64_t> r) { store_->PutRosterItem(username, std::move(item), std::move(r)); });
  }
  Result<int64_t> RemoveRosterItem(const std::string& username, const std::string& jid) {
    return Await<int64_t>(io_,
                          [&](Reply<int64_t> r) { store_->RemoveRosterItem(username, jid, std::move(r)); });
  }
  Result<int64_t> StoreOffline(const std::string& username, OfflineMessage message) {
    return Await<int64_t>(
        io_, [&](Reply<int64_t> r) { store_->StoreOffline(username, std::move(message), std::move(r)); });
  }
  Result<int64_t> CountOffline(const std::string& username) {
    return Await<int64_t>(io_, [&](Reply<int64_t> r) { store_->CountOffline(username, std::move(r)); });
  }
  Result<std::vector<OfflineMessage>> LoadOffline(const std::string& username) {
    return Await<std::vector<OfflineMessage>>(
        io_, [&](Reply<std::vector<OfflineMessage>> r) { store_->LoadOffline(username, std::move(r)); });
  }
  Result<void> DeleteOffline(const std::string& username, int64_t up_to_id) {
    return Await<void>(io_, [&](Reply<void> r) { store_->DeleteOffline(username, up_to_id, std::move(r)); });
  }
  Result<std::string> GetVCard(const std::string& username) {
    return Await<std::string>(io_, [&](Reply<std::string> r) { store_->GetVCard(username, std::move(r)); });
  }
  Result<void> SetVCard(const std::string& username, std::string xml) {
    return Await<void>(io_, [&](Reply<void> r) { store_->SetVCard(username, std::move(xml), std::move(r)); });
  }

  Result<ArchiveOutcome> Archive(std::vector<ArchiveEntry> entries) {
    return Await<ArchiveOutcome>(
        io_, [&](Reply<ArchiveOutcome> r) { store_->Archive(std::move(entries), std::move(r)); });
  }
  Result<std::vector<Result<ArchiveOutcome>>> ArchiveMany(ArchiveBatch batch) {
    return Await<std::vector<Result<ArchiveOutcome>>>(io_, [&](Reply<std::vector<Result<ArchiveOutcome>>> r) {
      store_->ArchiveMany(std::move(batch), std::move(r));
    });
  }
  Result<ArchivePage> QueryArchive(const std::string& username, ArchiveQuery query) {
    return Await<ArchivePage>(
        io_, [&](Reply<ArchivePage> r) { store_->QueryArchive(username, std::move(query), std::move(r)); });
  }
  Result<int64_t> PruneArchive(const std::string& username, int64_t before_ms, int64_t keep) {
    return Await<int64_t>(
        io_, [&](Reply<int64_t> r) { store_->PruneArchive(username, before_ms, keep, std::move(r)); });
  }
  Result<void> PutDeviceState(DeviceState state) {
    return Await<void>(io_, [&](Reply<void> r) { store_->PutDeviceState(std::move(state), std::move(r)); });
  }
  Result<DeviceState> GetDeviceState(const std::string& key) {
    return Await<DeviceState>(io_, [&](Reply<DeviceState> r) { store_->GetDeviceState(key, std::move(r)); });
  }
  Result<void> DeleteDeviceState(const std::string& key) {
    return Await<void>(io_, [&](Reply<void> r) { store_->DeleteDeviceState(key, std::move(r)); });
  }
  Result<int64_t> SweepDeviceStates(int64_t now_ms) {
    return Await<int64_t>(io_, [&](Reply<int64_t> r) { store_->SweepDeviceStates(now_ms, std::move(r)); });
  }
  Result<void> PutPushRegistration(PushRegistration registration) {
    return Await<void>(io_, [&](Reply<void> r) { store_->PutPushRegistration(std::move(registration), std::move(r)); });
  }
  Result<int64_t> DeletePushRegistrations(const std::string& user, const std::string& jid, const std::string& node) {
    return Await<int64_t>(io_, [&](Reply<int64_t> r) { store_->DeletePushRegistrations(user, jid, node, std::move(r)); });
  }
  Result<std::vector<PushRegistration>> ListPushRegistrations(const std::string& user) {
    return Await<std::vector<PushRegistration>>(
        io_, [&](Reply<std::vector<PushRegistration>> r) { store_->ListPushRegistrations(user, std::move(r)); });
  }
  Result<std::vector<std::string>> GetBlocklist(const std::string& user) {
    return Await<std::vector<std::string>>(
        io_, [&](Reply<std::vector<std::string>> r) { store_->GetBlocklist(user, std::move(r)); });
  }
  Result<void> Block(const std::string& user, std::vector<std::string> jids) {
    return Await<void>(io_, [&](Reply<void> r) { store_->Block(user, std::move(jids), std::move(r)); });
  }
  Result<int64_t> Unblock(const std::string& user, std::vector<std::string> jids) {
    return Await<int64_t>(io_, [&](Reply<int64_t> r) { store_->Unblock(user, std::move(jids), std::move(r)); });
  }
  Result<ArchivePrefs> GetArchivePrefs(const std::string& user) {
    return Await<ArchivePrefs>(io_, [&](Reply<ArchivePrefs> r) { store_->GetArchivePrefs(user, std::move(r)); });
  }
  Result<void> SetArchivePrefs(const std::string& user, ArchivePrefs prefs) {
    return Await<void>(io_, [&](Reply<void> r) { store_->SetArchivePrefs(user, std::move(prefs), std::move(r)); });
  }
  Result<std::string> GetPrivate(const std::string& user, const std::string& key) {
    return Await<std::string>(io_, [&](Reply<std::string> r) { store_->GetPrivate(user, key, std::move(r)); });
  }
  Result<void> SetPrivate(const std::string& user, const std::string& key, const std::string& xml,
                          int64_t max_items = 100) {
    return Await<void>(io_, [&](Reply<void> r) { store_->SetPrivate(user, key, xml, max_items, std::move(r)); });
  }
  Result<std::vector<PepNode>> ListPepNodes(const std::string& user) {
    return Await<std::vector<PepNode>>(
        io_, [&](Reply<std::vector<PepNode>> r) { store_->ListPepNodes(user, std::move(r)); });
  }
  Result<void> PutPepNode(PepNode node, int64_t max_nodes = 100) {
    return Await<void>(io_,
                       [&](Reply<void> r) { store_->PutPepNode(std::move(node), max_nodes, std::move(r)); });
  }
  Result<void> DeletePepNode(const std::string& user, const std::string& node) {
    return Await<void>(io_, [&](Reply<void> r) { store_->DeletePepNode(user, node, std::move(r)); });
  }
  Result<void> PublishPepItem(PepNode node, PepItem item, int64_t max_nodes = 100) {
    return Await<void>(io_, [&](Reply<void> r) {
      store_->PublishPepItem(std::move(node), std::move(item), max_nodes, std::move(r));
    });
  }
  Result<void> SetPepItems(PepNode node, std::vector<PepItem> items, int64_t max_nodes = 100) {
    return Await<void>(io_, [&](Reply<void> r) {
      store_->SetPepItems(std::move(node), std::move(items), max_nodes, std::move(r));
    });
  }
  Result<std::vector<PepItem>> GetPepItems(const std::string& user, const std::string& node,
                                           std::vector<std::string> ids = {}, int64_t max = -1) {
    return Await<std::vector<PepItem>>(io_, [&](Reply<std::vector<PepItem>> r) {
      store_->GetPepItems(user, node, std::move(ids), max, std::move(r));
    });
  }
  Result<int64_t> RetractPepItems(const std::string& user, const std::string& node,
                                  std::vector<std::string> ids) {
    return Await<int64_t>(
        io_, [&](Reply<int64_t> r) { store_->RetractPepItems(user, node, std::move(ids), std::move(r)); });
  }
  Result<void> PurgePepNode(const std::string& user, const std::string& node) {
    return Await<void>(io_, [&](Reply<void> r) { store_->PurgePepNode(user, node, std::move(r)); });
  }
  Result<std::vector<PepLastItem>> LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                                                std::vector<std::string> unless_blocking = {}) {
    return Await<std::vector<PepLastItem>>(io_, [&](Reply<std::vector<PepLastItem>> r) {
      store_->LastPepItems(std::move(owners), std::move(nodes), std::move(unless_blocking), std::move(r));
    });
  }
  // The ids of `items` in the order given (GetPepItems: newest first).
  static std::vector<std::string> PepIds(const Result<std::vector<PepItem>>& items) {
    std::vector<std::string> ids;
    if (!items.ok()) return {"<error: " + items.error().message + ">"};
    for (const auto& item : *items) ids.push_back(item.id);
    return ids;
  }
  // Archives message `id` from `from` to `to` in both owners' archives.
  Result<ArchiveOutcome> ArchivePair(const std::string& from, const std::string& to, int64_t id,
                                     int64_t stamp_ms, std::string origin_id = {}) {
    std::string stanza = "<message from='" + from + "@example.org/r' to='" + to +
                         "@example.org' type='chat'><body>" + std::to_string(id) + "</body></message>";
    ArchiveEntry out{from, {id, stamp_ms, to + "@example.org", "", true, std::move(origin_id), stanza}};
    ArchiveEntry in{to, {id, stamp_ms, from + "@example.org", "r", false, "", stanza}};
    return Archive({std::move(out), std::move(in)});
  }
  static std::vector<int64_t> Ids(const ArchivePage& page) {
    std::vector<int64_t> ids;
    for (const auto& m : page.messages) ids.push_back(m.id);
    return ids;
  }

  // Declared before the store so they are destroyed after it.
  boost::asio::io_context io_;
  std::deque<boost::asio::io_context> more_io_;
  std::unique_ptr<Factory> factory_;
  std::unique_ptr<Store> store_;
};

TYPED_TEST_SUITE_P(StoreConformance);

#define NINES_ASSERT_OK(expr)                                         \
  do {                                                                \
    auto nines_result_ = (expr);                                      \
    ASSERT_TRUE(nines_result_.ok()) << nines_result_.error().message; \
  } while (0)

#define NINES_ASSERT_ERRC(expr, errc)                                             \
  do {                                                                            \
    auto nines_result_ = (expr);                                                  \
    ASSERT_FALSE(nines_result_.ok()) << #expr " succeeded; expected an error";    \
    ASSERT_EQ(nines_result_.error().code, errc) << nines_result_.error().message; \
  } while (0)

inline void ExpectSameKeys(const ScramKeys& a, const ScramKeys& b) {
  EXPECT_EQ(a.salt, b.salt);
  EXPECT_EQ(a.iterations, b.iterations);
  EXPECT_EQ(a.stored_key, b.stored_key);
  EXPECT_EQ(a.server_key, b.server_key);
}

inline void ExpectSameAccount(const Account& a, const Account& b) {
  EXPECT_EQ(a.username, b.username);
  ExpectSameKeys(a.sha1, b.sha1);
  ExpectSameKeys(a.sha256, b.sha256);
  EXPECT_EQ(a.created_ms, b.created_ms);
}

// ---- Accounts ----

TYPED_TEST_P(StoreConformance, AccountRoundTrips) {
  Account alice = MakeAccount("alice");
  ASSERT_EQ(alice.sha1.salt.size(), 16u);
  NINES_ASSERT_OK(this->CreateAccount(alice));
  auto got = this->GetAccount("alice");
  ASSERT_TRUE(got.ok()) << got.error().message;
  ExpectSameAccount(*got, alice);
}

TYPED_TEST_P(StoreConformance, CreateAccountTwiceIsConflictAndKeepsOriginal) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice", 1)));
  Account impostor = MakeAccount("alice", 2);
  impostor.sha256.salt = "different";
  NINES_ASSERT_ERRC(this->CreateAccount(impostor), Errc::kConflict);
  auto got = this->GetAccount("alice");
  ASSERT_TRUE(got.ok());
  ExpectSameAccount(*got, MakeAccount("alice", 1));
}

TYPED_TEST_P(StoreConformance, MissingAccountIsNotFound) {
  NINES_ASSERT_ERRC(this->GetAccount("nobody"), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->SetCredentials("nobody", ScramKeys{}, ScramKeys{}), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->DeleteAccount("nobody"), Errc::kNotFound);
}

TYPED_TEST_P(StoreConformance, UsernamesCompareByteForByte) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_ERRC(this->GetAccount("Alice"), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->GetAccount("alice "), Errc::kNotFound);
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("Alice")));
}

TYPED_TEST_P(StoreConformance, SetCredentialsReplacesBothKeySets) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  Account fresh = MakeAccount("alice-new-password");
  NINES_ASSERT_OK(this->SetCredentials("alice", fresh.sha1, fresh.sha256));
  auto got = this->GetAccount("alice");
  ASSERT_TRUE(got.ok());
  ExpectSameKeys(got->sha1, fresh.sha1);
  ExpectSameKeys(got->sha256, fresh.sha256);
  EXPECT_EQ(got->created_ms, MakeAccount("alice").created_ms);
}

TYPED_TEST_P(StoreConformance, ListAccountsIsSorted) {
  auto empty = this->ListAccounts();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  for (const char* name : {"mallory", "bob", "alice", "carol"})
    NINES_ASSERT_OK(this->CreateAccount(MakeAccount(name)));
  auto names = this->ListAccounts();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"alice", "bob", "carol", "mallory"}));
}

TYPED_TEST_P(StoreConformance, CreateAccountsInBulk) {
  std::vector<Account> accounts;
  std::vector<std::string> expected;
  for (int i = 0; i < 500; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "user%04d", i);
    accounts.push_back(MakeAccount(name));
    expected.push_back(name);
  }
  NINES_ASSERT_OK(this->CreateAccounts(accounts));
  auto names = this->ListAccounts();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, expected);
  auto got = this->GetAccount("user0321");
  ASSERT_TRUE(got.ok());
  ExpectSameAccount(*got, accounts[321]);
  NINES_ASSERT_OK(this->CreateAccounts({}));
}

TYPED_TEST_P(StoreConformance, CreateAccountsConflictFailsTheWholeBatch) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  NINES_ASSERT_ERRC(this->CreateAccounts({MakeAccount("alice"), MakeAccount("bob"), MakeAccount("carol")}),
                    Errc::kConflict);
  NINES_ASSERT_ERRC(this->CreateAccounts({MakeAccount("dave"), MakeAccount("dave")}), Errc::kConflict);
  auto names = this->ListAccounts();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"bob"});
}

TYPED_TEST_P(StoreConformance, DeleteAccountThenRecreate) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  NINES_ASSERT_OK(this->DeleteAccount("alice"));
  NINES_ASSERT_ERRC(this->GetAccount("alice"), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->DeleteAccount("alice"), Errc::kNotFound);
  NINES_ASSERT_OK(this->GetAccount("bob"));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->GetAccount("alice"));
}

// ---- Roster ----

TYPED_TEST_P(StoreConformance, RosterOfUnknownOrNewUserIsEmpty) {
  auto unknown = this->GetRoster("nobody");
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->version, 0);
  EXPECT_TRUE(unknown->items.empty());
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  auto fresh = this->GetRoster("alice");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->version, 0);
  EXPECT_TRUE(fresh->items.empty());
}

TYPED_TEST_P(StoreConformance, RosterItemRoundTripsAndVersionBumps) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  RosterItem bob = MakeItem("bob@example.org", Subscription::kTo, {"Work", "Friends", "Work"});
  bob.ask_out = true;
  bob.pending_in = true;
  bob.preapproved = true;
  bob.pending_in_stanza = "<presence from='bob@example.org' type='subscribe'/>";
  auto v1 = this->PutRosterItem("alice", bob);
  ASSERT_TRUE(v1.ok()) << v1.error().message;
  EXPECT_GT(*v1, 0);
  auto v2 = this->PutRosterItem("alice", MakeItem("carol@example.org", Subscription::kNone));
  ASSERT_TRUE(v2.ok());
  EXPECT_GT(*v2, *v1);

  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, *v2);
  ASSERT_EQ(roster->items.size(), 2u);
  const RosterItem& got = roster->items[0];
  EXPECT_EQ(got.jid, "bob@example.org");
  EXPECT_EQ(got.name, bob.name);
  EXPECT_EQ(got.subscription, Subscription::kTo);
  EXPECT_TRUE(got.ask_out);
  EXPECT_TRUE(got.pending_in);
  EXPECT_TRUE(got.preapproved);
  EXPECT_EQ(got.groups, (std::vector<std::string>{"Friends", "Work"}));  // a set, sorted
  EXPECT_EQ(got.pending_in_stanza, bob.pending_in_stanza);
  EXPECT_EQ(roster->items[1].jid, "carol@example.org");
  EXPECT_EQ(roster->items[1].subscription, Subscription::kNone);
  EXPECT_FALSE(roster->items[1].ask_out);
  EXPECT_TRUE(roster->items[1].groups.empty());
}

TYPED_TEST_P(StoreConformance, PutRosterItemReplaces) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  RosterItem bob = MakeItem("bob@example.org", Subscription::kNone, {"Old"});
  bob.ask_out = true;
  bob.pending_in_stanza = "<presence type='subscribe'/>";
  NINES_ASSERT_OK(this->PutRosterItem("alice", bob));
  RosterItem updated = MakeItem("bob@example.org", Subscription::kBoth, {"New", "Newer"});
  updated.name = "Robert";
  auto version = this->PutRosterItem("alice", updated);
  ASSERT_TRUE(version.ok());
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, *version);
  ASSERT_EQ(roster->items.size(), 1u);
  EXPECT_EQ(roster->items[0].name, "Robert");
  EXPECT_EQ(roster->items[0].subscription, Subscription::kBoth);
  EXPECT_FALSE(roster->items[0].ask_out);
  EXPECT_EQ(roster->items[0].pending_in_stanza, "");
  EXPECT_EQ(roster->items[0].groups, (std::vector<std::string>{"New", "Newer"}));
}

TYPED_TEST_P(StoreConformance, RemoveRosterItemBumpsVersion) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->PutRosterItem("alice", MakeItem("bob@example.org", Subscription::kBoth, {"G"})));
  auto put = this->PutRosterItem("alice", MakeItem("carol@example.org"));
  ASSERT_TRUE(put.ok());
  auto removed = this->RemoveRosterItem("alice", "bob@example.org");
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_GT(*removed, *put);
  NINES_ASSERT_ERRC(this->RemoveRosterItem("alice", "bob@example.org"), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->RemoveRosterItem("nobody", "bob@example.org"), Errc::kNotFound);
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, *removed) << "a failed remove must not bump the version";
  ASSERT_EQ(roster->items.size(), 1u);
  EXPECT_EQ(roster->items[0].jid, "carol@example.org");
  // Re-adding the removed contact starts with no stale groups.
  NINES_ASSERT_OK(this->PutRosterItem("alice", MakeItem("bob@example.org")));
  roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  ASSERT_EQ(roster->items.size(), 2u);
  EXPECT_TRUE(roster->items[0].groups.empty());
}

TYPED_TEST_P(StoreConformance, RosterWritesNeedAnAccountAndAValidState) {
  NINES_ASSERT_ERRC(this->PutRosterItem("nobody", MakeItem("bob@example.org")), Errc::kNotFound);
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  auto version = this->PutRosterItem("alice", MakeItem("bob@example.org"));
  ASSERT_TRUE(version.ok());
  NINES_ASSERT_ERRC(this->PutRosterItem("alice", MakeItem("carol@example.org", Subscription::kRemove)),
                    Errc::kInvalidArgument);
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, *version);
  EXPECT_EQ(roster->items.size(), 1u);
}

TYPED_TEST_P(StoreConformance, RostersArePerUser) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  NINES_ASSERT_OK(this->PutRosterItem("alice", MakeItem("carol@example.org", Subscription::kBoth, {"A"})));
  NINES_ASSERT_OK(this->PutRosterItem("bob", MakeItem("carol@example.org", Subscription::kFrom, {"B"})));
  auto alice = this->GetRoster("alice");
  auto bob = this->GetRoster("bob");
  ASSERT_TRUE(alice.ok() && bob.ok());
  ASSERT_EQ(alice->items.size(), 1u);
  ASSERT_EQ(bob->items.size(), 1u);
  EXPECT_EQ(alice->items[0].subscription, Subscription::kBoth);
  EXPECT_EQ(alice->items[0].groups, std::vector<std::string>{"A"});
  EXPECT_EQ(bob->items[0].subscription, Subscription::kFrom);
  EXPECT_EQ(bob->items[0].groups, std::vector<std::string>{"B"});
  NINES_ASSERT_OK(this->RemoveRosterItem("alice", "carol@example.org"));
  bob = this->GetRoster("bob");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->items.size(), 1u);
}

// ---- Offline messages ----

TYPED_TEST_P(StoreConformance, OfflineMessagesKeepOrderAndContent) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  std::vector<OfflineMessage> sent;
  sent.push_back(MakeMessage("first", 1000));
  sent.push_back(MakeMessage("zweite \xc3\xbc \xe2\x9c\x93", 500));  // UTF-8; stamps need not be monotonic
  sent.push_back(MakeMessage(std::string(70000, 'x'), 2000));
  std::vector<int64_t> ids;
  for (const auto& message : sent) {
    auto id = this->StoreOffline("bob", message);
    ASSERT_TRUE(id.ok()) << id.error().message;
    if (!ids.empty()) {
      EXPECT_GT(*id, ids.back());
    }
    ids.push_back(*id);
  }
  auto count = this->CountOffline("bob");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 3);
  auto loaded = this->LoadOffline("bob");
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*loaded)[i].id, ids[i]);
    EXPECT_EQ((*loaded)[i].stamp_ms, sent[i].stamp_ms);
    EXPECT_EQ((*loaded)[i].stanza, sent[i].stanza);
  }
}

TYPED_TEST_P(StoreConformance, DeleteOfflineUpToIdAndIdsAreNotReused) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("carol")));
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto id = this->StoreOffline("bob", MakeMessage("m" + std::to_string(i)));
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  auto carol_id = this->StoreOffline("carol", MakeMessage("for carol"));
  ASSERT_TRUE(carol_id.ok());
  NINES_ASSERT_OK(this->DeleteOffline("bob", ids[1]));
  auto loaded = this->LoadOffline("bob");
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[0].id, ids[2]);
  EXPECT_EQ((*loaded)[1].id, ids[3]);
  // Another user's messages are untouched even with a larger bound.
  NINES_ASSERT_OK(this->DeleteOffline("bob", *carol_id + 1000));
  auto count = this->CountOffline("bob");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
  count = this->CountOffline("carol");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
  auto next = this->StoreOffline("bob", MakeMessage("after delete"));
  ASSERT_TRUE(next.ok());
  EXPECT_GT(*next, *carol_id);
  EXPECT_GT(*next, ids.back());
}

TYPED_TEST_P(StoreConformance, OfflineOfUnknownUser) {
  auto count = this->CountOffline("nobody");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
  auto loaded = this->LoadOffline("nobody");
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->empty());
  NINES_ASSERT_ERRC(this->StoreOffline("nobody", MakeMessage("lost")), Errc::kNotFound);
  NINES_ASSERT_OK(this->DeleteOffline("nobody", 100));
}

// ---- vCards ----

TYPED_TEST_P(StoreConformance, VCardSetGetReplace) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_ERRC(this->GetVCard("alice"), Errc::kNotFound);
  const std::string first = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
  const std::string second =
      "<vCard xmlns='vcard-temp'><FN>Alice \xc3\x84</FN><NICKNAME>al</NICKNAME></vCard>";
  NINES_ASSERT_OK(this->SetVCard("alice", first));
  auto got = this->GetVCard("alice");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, first);
  NINES_ASSERT_OK(this->SetVCard("alice", second));
  got = this->GetVCard("alice");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, second);
  NINES_ASSERT_ERRC(this->SetVCard("nobody", first), Errc::kNotFound);
  NINES_ASSERT_ERRC(this->GetVCard("nobody"), Errc::kNotFound);
}

// ---- Cascades ----

TYPED_TEST_P(StoreConformance, DeleteAccountCascades) {
  for (const char* name : {"alice", "bob"}) {
    NINES_ASSERT_OK(this->CreateAccount(MakeAccount(name)));
    NINES_ASSERT_OK(
        this->PutRosterItem(name, MakeItem("carol@example.org", Subscription::kBoth, {"G1", "G2"})));
    NINES_ASSERT_OK(this->StoreOffline(name, MakeMessage("hello")));
    NINES_ASSERT_OK(this->SetVCard(name, "<vCard xmlns='vcard-temp'/>"));
  }
  NINES_ASSERT_OK(this->DeleteAccount("alice"));
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_TRUE(roster->items.empty());
  auto count = this->CountOffline("alice");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0);
  NINES_ASSERT_ERRC(this->GetVCard("alice"), Errc::kNotFound);

  // A new account of the same name inherits nothing.
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_TRUE(roster->items.empty());
  NINES_ASSERT_ERRC(this->GetVCard("alice"), Errc::kNotFound);
  NINES_ASSERT_OK(this->PutRosterItem("alice", MakeItem("carol@example.org")));
  roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  ASSERT_EQ(roster->items.size(), 1u);
  EXPECT_TRUE(roster->items[0].groups.empty());

  // The other account is untouched.
  roster = this->GetRoster("bob");
  ASSERT_TRUE(roster.ok());
  ASSERT_EQ(roster->items.size(), 1u);
  EXPECT_EQ(roster->items[0].groups, (std::vector<std::string>{"G1", "G2"}));
  count = this->CountOffline("bob");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
  NINES_ASSERT_OK(this->GetVCard("bob"));
}

// ---- Threads, ordering, durability ----

TYPED_TEST_P(StoreConformance, RepliesRunOnTheCallersExecutor) {
  boost::asio::io_context& io = this->NewIoContext();
  auto guard = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  const auto loop_id = loop.get_id();
  std::atomic<int> done{0};
  std::atomic<bool> all_on_loop{true};
  auto check = [&] {
    if (std::this_thread::get_id() != loop_id) all_on_loop = false;
    ++done;
  };
  this->store().CreateAccount(MakeAccount("alice"),
                              Reply<void>(io.get_executor(), [&](Result<void>) { check(); }));
  this->store().GetAccount("alice", Reply<Account>(io.get_executor(), [&](Result<Account>) { check(); }));
  this->store().GetAccount("nobody", Reply<Account>(io.get_executor(), [&](Result<Account>) { check(); }));
  this->store().DeleteAccount("nobody", Reply<void>(io.get_executor(), [&](Result<void>) { check(); }));
  const auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (done < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  guard.reset();
  loop.join();
  EXPECT_EQ(done, 4);
  EXPECT_TRUE(all_on_loop);
}

TYPED_TEST_P(StoreConformance, WritesFromOneThreadApplyInOrder) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  constexpr int kWrites = 300;
  Batch batch(this->io_);
  // Indexed by issue order. Each id and version is produced by its own
  // write, so applying in issue order means both sequences increase.
  std::vector<int64_t> ids(kWrites, -1);
  std::vector<int64_t> versions(kWrites, -1);
  int failures = 0;
  for (int i = 0; i < kWrites; ++i) {
    const std::string n = std::to_string(i);
    this->store().StoreOffline("alice", MakeMessage(n), batch.Add<int64_t>([&, i](Result<int64_t> r) {
      if (r.ok()) {
        ids[i] = *r;
      } else {
        ++failures;
      }
    }));
    this->store().SetVCard("alice", "<vCard>" + n + "</vCard>", batch.Add<void>([&](Result<void> r) {
      if (!r.ok()) ++failures;
    }));
    this->store().PutRosterItem("alice", MakeItem("c" + n + "@example.org"),
                                batch.Add<int64_t>([&, i](Result<int64_t> r) {
                                  if (r.ok()) {
                                    versions[i] = *r;
                                  } else {
                                    ++failures;
                                  }
                                }));
  }
  batch.Wait();
  ASSERT_EQ(failures, 0);
  for (int i = 1; i < kWrites; ++i) {
    EXPECT_GT(ids[i], ids[i - 1]) << "offline write " << i;
    EXPECT_GT(versions[i], versions[i - 1]) << "roster write " << i;
  }

  auto loaded = this->LoadOffline("alice");
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ((*loaded)[i].stanza, MakeMessage(std::to_string(i)).stanza);
  auto vcard = this->GetVCard("alice");
  ASSERT_TRUE(vcard.ok());
  EXPECT_EQ(*vcard, "<vCard>" + std::to_string(kWrites - 1) + "</vCard>");
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, versions.back());
  EXPECT_EQ(roster->items.size(), static_cast<size_t>(kWrites));
}

TYPED_TEST_P(StoreConformance, ReadAfterWriteReplySeesTheWrite) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  // Chain: each write's Reply issues a read, whose Reply issues the next write.
  boost::asio::io_context& io = this->NewIoContext();
  auto guard = boost::asio::make_work_guard(io);
  constexpr int kRounds = 50;
  int round = 0;
  int mismatches = 0;
  std::function<void()> next = [&] {
    if (round == kRounds) {
      guard.reset();
      return;
    }
    const int mine = round++;
    this->store().StoreOffline("alice", MakeMessage(std::to_string(mine)),
                               Reply<int64_t>(io.get_executor(), [&, mine](Result<int64_t> stored) {
                                 if (!stored.ok()) ++mismatches;
                                 this->store().CountOffline(
                                     "alice",
                                     Reply<int64_t>(io.get_executor(), [&, mine](Result<int64_t> count) {
                                       if (!count.ok() || *count != mine + 1) ++mismatches;
                                       next();
                                     }));
                               }));
  };
  next();
  io.run_for(kReplyTimeout);
  EXPECT_EQ(round, kRounds);
  EXPECT_EQ(mismatches, 0);
}

TYPED_TEST_P(StoreConformance, ConcurrentWritersAreAllDurableAndVisible) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  std::vector<Account> accounts;
  for (int t = 0; t < kThreads; ++t) accounts.push_back(MakeAccount("user" + std::to_string(t)));
  NINES_ASSERT_OK(this->CreateAccounts(accounts));

  std::vector<std::vector<int64_t>> ids(kThreads, std::vector<int64_t>(kPerThread, -1));  // by issue order
  std::vector<int> failures(kThreads, 0);
  std::vector<boost::asio::io_context*> contexts;
  for (int t = 0; t < kThreads; ++t) contexts.push_back(&this->NewIoContext());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string user = "user" + std::to_string(t);
      Batch batch(*contexts[t]);
      for (int i = 0; i < kPerThread; ++i) {
        this->store().StoreOffline(user, MakeMessage(std::to_string(i)),
                                   batch.Add<int64_t>([&, t, i](Result<int64_t> r) {
                                     if (r.ok()) {
                                       ids[t][i] = *r;
                                     } else {
                                       ++failures[t];
                                     }
                                   }));
        this->store().PutRosterItem(user, MakeItem("c" + std::to_string(i) + "@example.org"),
                                    batch.Add<int64_t>([&, t](Result<int64_t> r) {
                                      if (!r.ok()) ++failures[t];
                                    }));
      }
      batch.Wait();
    });
  }
  for (auto& thread : threads) thread.join();

  // Reopen, so what we check is what reached the backing store.
  this->Reopen();
  for (int t = 0; t < kThreads; ++t) {
    const std::string user = "user" + std::to_string(t);
    EXPECT_EQ(failures[t], 0);
    EXPECT_TRUE(std::is_sorted(ids[t].begin(), ids[t].end()))
        << "thread " << t << " writes applied out of order";
    auto loaded = this->LoadOffline(user);
    ASSERT_TRUE(loaded.ok());
    ASSERT_EQ(loaded->size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_EQ((*loaded)[i].id, ids[t][i]);
      EXPECT_EQ((*loaded)[i].stanza, MakeMessage(std::to_string(i)).stanza);
    }
    auto roster = this->GetRoster(user);
    ASSERT_TRUE(roster.ok());
    EXPECT_EQ(roster->items.size(), static_cast<size_t>(kPerThread));
    EXPECT_GE(roster->version, kPerThread);
  }
}

TYPED_TEST_P(StoreConformance, AFailingWriteFailsAlone) {
  // Issued back to back so a group-committing backend is likely to put them
  // in one transaction; the outcome must not depend on that.
  Batch batch(this->io_);
  std::map<std::string, std::string> outcome;  // what -> "ok" or the Errc name
  auto record = [&](std::string what) {
    return
        [&outcome, what](auto result) { outcome[what] = result.ok() ? "ok" : ErrcName(result.error().code); };
  };
  this->store().CreateAccount(MakeAccount("alice"), batch.Add<void>(record("alice")));
  this->store().CreateAccount(MakeAccount("alice"), batch.Add<void>(record("alice again")));
  this->store().StoreOffline("nobody", MakeMessage("x"), batch.Add<int64_t>(record("offline to nobody")));
  this->store().PutRosterItem("alice", MakeItem("x@example.org", Subscription::kRemove),
                              batch.Add<int64_t>(record("bad roster item")));
  this->store().CreateAccount(MakeAccount("bob"), batch.Add<void>(record("bob")));
  this->store().StoreOffline("alice", MakeMessage("y"), batch.Add<int64_t>(record("offline to alice")));
  batch.Wait();
  EXPECT_EQ(outcome,
            (std::map<std::string, std::string>{{"alice", "ok"},
                                                {"alice again", ErrcName(Errc::kConflict)},
                                                {"offline to nobody", ErrcName(Errc::kNotFound)},
                                                {"bad roster item", ErrcName(Errc::kInvalidArgument)},
                                                {"bob", "ok"},
                                                {"offline to alice", "ok"}}));
  auto names = this->ListAccounts();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"alice", "bob"}));
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, 0) << "a failed write changes nothing";
  auto count = this->CountOffline("alice");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
}

TYPED_TEST_P(StoreConformance, CloseDrainsQueuedWritesAndLaterCallsAreUnavailable) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  constexpr int kWrites = 500;
  Batch batch(this->io_);
  int ok = 0;
  for (int i = 0; i < kWrites; ++i) {
    this->store().StoreOffline("alice", MakeMessage(std::to_string(i)),
                               batch.Add<int64_t>([&](Result<int64_t> r) {
                                 if (r.ok()) ++ok;
                               }));
  }
  this->store().Close();
  this->store().Close();  // idempotent
  batch.Wait();
  EXPECT_EQ(ok, kWrites) << "Close() must commit and acknowledge everything queued before it";

  NINES_ASSERT_ERRC(this->GetAccount("alice"), Errc::kUnavailable);
  NINES_ASSERT_ERRC(this->CreateAccount(MakeAccount("bob")), Errc::kUnavailable);

  this->Reopen();
  auto count = this->CountOffline("alice");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, kWrites);
}

TYPED_TEST_P(StoreConformance, DataSurvivesReopen) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  auto version = this->PutRosterItem("alice", MakeItem("bob@example.org", Subscription::kFrom, {"G"}));
  ASSERT_TRUE(version.ok());
  auto id = this->StoreOffline("alice", MakeMessage("kept"));
  ASSERT_TRUE(id.ok());
  NINES_ASSERT_OK(this->SetVCard("alice", "<vCard/>"));
  this->Reopen();
  auto account = this->GetAccount("alice");
  ASSERT_TRUE(account.ok());
  ExpectSameAccount(*account, MakeAccount("alice"));
  auto roster = this->GetRoster("alice");
  ASSERT_TRUE(roster.ok());
  EXPECT_EQ(roster->version, *version);
  ASSERT_EQ(roster->items.size(), 1u);
  EXPECT_EQ(roster->items[0].groups, std::vector<std::string>{"G"});
  auto loaded = this->LoadOffline("alice");
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].id, *id);
  auto vcard = this->GetVCard("alice");
  ASSERT_TRUE(vcard.ok());
  EXPECT_EQ(*vcard, "<vCard/>");
  // Ids keep increasing across a reopen.
  auto next = this->StoreOffline("alice", MakeMessage("next"));
  ASSERT_TRUE(next.ok());
  EXPECT_GT(*next, *id);
}

// ---- Archive ----

TYPED_TEST_P(StoreConformance, ArchiveKeepsBothOwnersCopiesInOrder) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  for (int64_t id = 1; id <= 5; ++id) NINES_ASSERT_OK(this->ArchivePair("alice", "bob", id * 10, 1000 + id));
  for (const char* owner : {"alice", "bob"}) {
    auto page = this->QueryArchive(owner, {});
    ASSERT_TRUE(page.ok()) << page.error().message;
    EXPECT_EQ(this->Ids(*page), (std::vector<int64_t>{10, 20, 30, 40, 50})) << owner;
    EXPECT_TRUE(page->complete);
  }
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  const ArchivedMessage& first = bob->messages.front();
  EXPECT_FALSE(first.outgoing);
  EXPECT_EQ(first.peer, "alice@example.org");
  EXPECT_EQ(first.peer_resource, "r");
  EXPECT_EQ(first.stamp_ms, 1001);
  EXPECT_EQ(first.stanza,
            "<message from='alice@example.org/r' to='bob@example.org' type='chat'><body>10</body></message>");
  auto alice = this->QueryArchive("alice", {});
  ASSERT_TRUE(alice.ok());
  EXPECT_TRUE(alice->messages.front().outgoing);
  EXPECT_EQ(alice->messages.front().peer, "bob@example.org");
  // An unknown user's archive is empty.
  auto nobody = this->QueryArchive("carol", {});
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->messages.empty());
  EXPECT_TRUE(nobody->complete);
}

TYPED_TEST_P(StoreConformance, ArchivePagesForwardAndBack) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  for (int64_t id = 1; id <= 7; ++id) NINES_ASSERT_OK(this->ArchivePair("alice", "bob", id, 1000 + id));
  ArchiveQuery q;
  q.max = 3;
  auto p1 = this->QueryArchive("bob", q);
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(this->Ids(*p1), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(p1->complete);
  q.after_id = 3;
  auto p2 = this->QueryArchive("bob", q);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(this->Ids(*p2), (std::vector<int64_t>{4, 5, 6}));
  EXPECT_FALSE(p2->complete);
  q.after_id = 6;
  auto p3 = this->QueryArchive("bob", q);
  ASSERT_TRUE(p3.ok());
  EXPECT_EQ(this->Ids(*p3), (std::vector<int64_t>{7}));
  EXPECT_TRUE(p3->complete);
  // From the end: the newest page first, still oldest first within it.
  ArchiveQuery back;
  back.max = 3;
  back.from_end = true;
  auto b1 = this->QueryArchive("bob", back);
  ASSERT_TRUE(b1.ok());
  EXPECT_EQ(this->Ids(*b1), (std::vector<int64_t>{5, 6, 7}));
  EXPECT_FALSE(b1->complete);
  back.before_id = 5;
  auto b2 = this->QueryArchive("bob", back);
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(this->Ids(*b2), (std::vector<int64_t>{2, 3, 4}));
  back.before_id = 2;
  auto b3 = this->QueryArchive("bob", back);
  ASSERT_TRUE(b3.ok());
  EXPECT_EQ(this->Ids(*b3), (std::vector<int64_t>{1}));
  EXPECT_TRUE(b3->complete);
  // max 0 returns nothing but still tells whether anything matches.
  ArchiveQuery none;
  none.max = 0;
  auto empty = this->QueryArchive("bob", none);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->messages.empty());
  EXPECT_FALSE(empty->complete);
}

TYPED_TEST_P(StoreConformance, ArchiveFiltersCombine) {
  for (const char* user : {"alice", "bob", "carol"}) NINES_ASSERT_OK(this->CreateAccount(MakeAccount(user)));
  NINES_ASSERT_OK(this->ArchivePair("alice", "bob", 1, 100));
  NINES_ASSERT_OK(this->ArchivePair("carol", "bob", 2, 200));
  NINES_ASSERT_OK(this->ArchivePair("bob", "alice", 3, 300));
  NINES_ASSERT_OK(this->ArchivePair("alice", "bob", 4, 400));
  NINES_ASSERT_OK(this->ArchivePair("carol", "bob", 5, 500));
  ArchiveQuery with;
  with.with = "alice@example.org";
  auto w = this->QueryArchive("bob", with);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(this->Ids(*w), (std::vector<int64_t>{1, 3, 4}));
  with.with_resource = "r";  // only what alice sent from resource r (bob's own sends have none)
  auto wr = this->QueryArchive("bob", with);
  ASSERT_TRUE(wr.ok());
  EXPECT_EQ(this->Ids(*wr), (std::vector<int64_t>{1, 4}));
  ArchiveQuery window;
  window.after_id = 1;
  window.before_id = 5;
  window.with = "carol@example.org";
  auto wc = this->QueryArchive("bob", window);
  ASSERT_TRUE(wc.ok());
  EXPECT_EQ(this->Ids(*wc), (std::vector<int64_t>{2}));
  ArchiveQuery ids;
  ids.ids = {5, 1, 99};
  auto i = this->QueryArchive("bob", ids);
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(this->Ids(*i), (std::vector<int64_t>{1, 5}));
  ArchiveQuery range;
  range.after_id = 1;
  range.before_id = 5;
  auto r = this->QueryArchive("bob", range);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(this->Ids(*r), (std::vector<int64_t>{2, 3, 4}));
  // Each owner sees only their own archive.
  auto carol = this->QueryArchive("carol", {});
  ASSERT_TRUE(carol.ok());
  EXPECT_EQ(this->Ids(*carol), (std::vector<int64_t>{2, 5}));
}

// The server passes the stanza with the first entry only (store.h).
TYPED_TEST_P(StoreConformance, ArchiveEntriesAfterTheFirstShareItsStanza) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  const std::string stanza = "<message type='chat'><body>shared</body></message>";
  auto done = this->Archive({{"alice", {0, 0, "bob@example.org", "", true, "o-1", stanza}},
                             {"bob", {0, 0, "alice@example.org", "r", false, "", ""}}});
  ASSERT_TRUE(done.ok()) << done.error().message;
  for (const char* owner : {"alice", "bob"}) {
    auto page = this->QueryArchive(owner, {});
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->messages.size(), 1u) << owner;
    EXPECT_EQ(page->messages[0].id, done->id) << owner;
    EXPECT_EQ(page->messages[0].stanza, stanza) << owner;
  }
  // A later entry's stanza, if given, must still be the first's.
  auto mixed = this->Archive({{"alice", {0, 0, "bob@example.org", "", true, "", stanza}},
                              {"bob", {0, 0, "alice@example.org", "r", false, "", "<message/>"}}});
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(mixed.error().code, Errc::kInvalidArgument);
}

// Many calls at once: one outcome per call, in order; a failing call (an
// owner with no account) leaves the others written; a retransmission within
// the same batch is recognised; ids follow the calls' order.
TYPED_TEST_P(StoreConformance, ArchiveManyGivesEachCallItsOutcome) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  ArchiveBatch batch;
  auto message = [&](const char* from, const char* to, const std::string& body, const char* origin) {
    const std::string stanza = "<message type='chat'><body>" + body + "</body></message>";
    const std::string to_bare = std::string(to) + "@example.org";
    const std::string from_bare = std::string(from) + "@example.org";
    const ArchiveBatch::Entry entries[] = {{from, to_bare, "r", true, origin},
                                           {to, from_bare, "r", false, {}}};
    batch.Add(stanza, entries);
  };
  message("alice", "bob", "one", "o-1");
  message("alice", "nobody", "lost", "");  // no such account
  message("bob", "alice", "two", "");
  message("alice", "bob", "one again", "o-1");  // a retransmission of the first
  ASSERT_EQ(batch.size(), 4u);
  EXPECT_EQ(batch.stanza(2), "<message type='chat'><body>two</body></message>")
      << "the batch keeps its own copy";
  EXPECT_EQ(batch.entry(3, 0).origin_id, "o-1");
  EXPECT_EQ(batch.entry(3, 1).peer, "alice@example.org");
  auto outcomes = this->ArchiveMany(std::move(batch));
  ASSERT_TRUE(outcomes.ok()) << outcomes.error().message;
  ASSERT_EQ(outcomes->size(), 4u);
  ASSERT_TRUE((*outcomes)[0].ok()) << (*outcomes)[0].error().message;
  EXPECT_FALSE((*outcomes)[0]->duplicate);
  ASSERT_FALSE((*outcomes)[1].ok());
  EXPECT_EQ((*outcomes)[1].error().code, Errc::kNotFound);
  ASSERT_TRUE((*outcomes)[2].ok()) << (*outcomes)[2].error().message;
  EXPECT_GT((*outcomes)[2]->id, (*outcomes)[0]->id);
  ASSERT_TRUE((*outcomes)[3].ok()) << (*outcomes)[3].error().message;
  EXPECT_TRUE((*outcomes)[3]->duplicate);
  EXPECT_EQ((*outcomes)[3]->existing_id, (*outcomes)[0]->id);
  for (const char* owner : {"alice", "bob"}) {
    auto page = this->QueryArchive(owner, {});
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(this->Ids(*page), (std::vector<int64_t>{(*outcomes)[0]->id, (*outcomes)[2]->id})) << owner;
  }
  auto none = this->ArchiveMany(ArchiveBatch());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TYPED_TEST_P(StoreConformance, ArchiveRecognisesRetransmissionsByOriginId) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  auto first = this->ArchivePair("alice", "bob", 10, 100, "origin-1");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->duplicate);
  auto again = this->ArchivePair("alice", "bob", 11, 101, "origin-1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->existing_id, 10);
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(this->Ids(*bob), std::vector<int64_t>{10}) << "a retransmission writes nothing";
  // The same origin-id from another sender is another message.
  auto other = this->ArchivePair("bob", "alice", 12, 102, "origin-1");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->duplicate);
  auto alice = this->QueryArchive("alice", {});
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->messages.back().origin_id, "");  // incoming copies carry none
  EXPECT_EQ(alice->messages.front().origin_id, "origin-1");
}

TYPED_TEST_P(StoreConformance, ArchiveBatchIsAllOrNothing) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  // The second owner does not exist: the first copy is not kept either.
  NINES_ASSERT_ERRC(this->ArchivePair("alice", "ghost", 1, 100), Errc::kNotFound);
  auto alice = this->QueryArchive("alice", {});
  ASSERT_TRUE(alice.ok());
  EXPECT_TRUE(alice->messages.empty());
  NINES_ASSERT_OK(this->ArchivePair("alice", "bob", 2, 100));
  NINES_ASSERT_ERRC(this->ArchivePair("alice", "bob", 2, 101), Errc::kConflict);
  NINES_ASSERT_ERRC(this->ArchivePair("alice", "bob", -1, 101), Errc::kInvalidArgument);
  NINES_ASSERT_ERRC(this->Archive({}), Errc::kInvalidArgument);
  ArchiveEntry one{"alice", {3, 100, "bob@example.org", "", true, "", "<message/>"}};
  ArchiveEntry other{"bob", {4, 100, "alice@example.org", "", false, "", "<message/>"}};
  NINES_ASSERT_ERRC(this->Archive({one, other}), Errc::kInvalidArgument);  // two ids are two messages
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(this->Ids(*bob), std::vector<int64_t>{2});
}

TYPED_TEST_P(StoreConformance, PruneArchiveByAgeAndCount) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  for (int64_t id = 1; id <= 6; ++id) NINES_ASSERT_OK(this->ArchivePair("alice", "bob", id, id * 100));
  auto aged = this->PruneArchive("bob", 3, -1);  // ids 1 and 2 go
  ASSERT_TRUE(aged.ok());
  EXPECT_EQ(*aged, 2);
  auto counted = this->PruneArchive("bob", 0, 2);  // keep the newest two
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 2);
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(this->Ids(*bob), (std::vector<int64_t>{5, 6}));
  auto alice = this->QueryArchive("alice", {});
  ASSERT_TRUE(alice.ok());
  ASSERT_EQ(alice->messages.size(), 6u) << "pruning one owner leaves the other's copies";
  EXPECT_NE(alice->messages.front().stanza.find("<body>1</body>"), std::string::npos);
  auto all = this->PruneArchive("alice", std::numeric_limits<int64_t>::max(), -1);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, 6);
  auto deleted = this->DeleteAccount("bob");
  NINES_ASSERT_OK(deleted);
  auto gone = this->QueryArchive("bob", {});
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->messages.empty()) << "deleting an account deletes its archive";
}

TYPED_TEST_P(StoreConformance, AssignedArchiveIdsFollowCommitOrderAndTheClock) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  const int64_t before_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto outcome = this->ArchivePair("alice", "bob", 0, 0);
    ASSERT_TRUE(outcome.ok()) << outcome.error().message;
    ids.push_back(outcome->id);
  }
  EXPECT_GE(ids[0], before_us) << "assigned ids are microseconds since the epoch";
  EXPECT_LT(ids[0], ids[1]);
  EXPECT_LT(ids[1], ids[2]);
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(this->Ids(*bob), ids);
  EXPECT_EQ(bob->messages[0].stamp_ms, ids[0] / 1000);
  // A message stored under an id ahead of the clock (a clock that went back
  // since): later ids still come after it, also after a reopen.
  const int64_t ahead = ids[2] + 3'600'000'000;  // an hour ahead
  NINES_ASSERT_OK(this->ArchivePair("alice", "bob", ahead, ahead / 1000));
  this->Reopen();
  auto next = this->ArchivePair("alice", "bob", 0, 0);
  ASSERT_TRUE(next.ok());
  EXPECT_GT(next->id, ahead);
}

TYPED_TEST_P(StoreConformance, ArchiveSurvivesReopen) {
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("alice")));
  NINES_ASSERT_OK(this->CreateAccount(MakeAccount("bob")));
  NINES_ASSERT_OK(this->ArchivePair("alice", "bob", 7, 100, "o"));
  this->Reopen();
  auto bob = this->QueryArchive("bob", {});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(this->Ids(*bob), std::vector<int64_t>{7});
  auto again = this->ArchivePair("alice", "bob", 8, 101, "o");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate) << "retransmissions are recognised after a restart";
}


inline DeviceState MakeDevice(const std::string& key, const std::string& username) {
  DeviceState d;
  d.key = key;
  d.username = username;
  d.resource = "phone";
  d.inbound_h = 4294967301;  // past 2^32: the store keeps the full count
  d.cursor = 1700000000123456;
  d.presence = "<presence from='" + username + "@example.org/phone'><show>away</show></presence>";
  d.priority = -3;
  d.carbons = true;
  d.roster_requested = true;
  d.resume_timeout_s = 300;
  return d;
}

TYPED_TEST_P(StoreConformance, DeviceStateRoundTripsAndIsReplaced) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->PutDeviceState(MakeDevice("k1", "alice")).ok());
  auto got = this->GetDeviceState("k1");
  ASSERT_TRUE(got.ok()) << got.error().message;
  DeviceState want = MakeDevice("k1", "alice");
  EXPECT_EQ(got->username, want.username);
  EXPECT_EQ(got->resource, want.resource);
  EXPECT_EQ(got->inbound_h, want.inbound_h);
  EXPECT_EQ(got->cursor, want.cursor);
  EXPECT_EQ(got->presence, want.presence);
  EXPECT_EQ(got->priority, want.priority);
  EXPECT_TRUE(got->carbons);
  EXPECT_TRUE(got->roster_requested);
  EXPECT_EQ(got->resume_timeout_s, 300);
  EXPECT_EQ(got->detached_ms, 0);

  DeviceState later = want;
  later.inbound_h = 7;
  later.cursor = 42;
  later.presence.clear();
  later.carbons = false;
  later.detached_ms = 1700000000999;
  ASSERT_TRUE(this->PutDeviceState(later).ok());
  got = this->GetDeviceState("k1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->inbound_h, 7);
  EXPECT_EQ(got->cursor, 42);
  EXPECT_EQ(got->presence, "");
  EXPECT_FALSE(got->carbons);
  EXPECT_EQ(got->detached_ms, 1700000000999);

  ASSERT_TRUE(this->DeleteDeviceState("k1").ok());
  EXPECT_EQ(this->GetDeviceState("k1").error().code, Errc::kNotFound);
  EXPECT_TRUE(this->DeleteDeviceState("k1").ok()) << "deleting what is gone is not an error";
}

TYPED_TEST_P(StoreConformance, DeviceStatesNeedAnAccountAndGoWithIt) {
  EXPECT_EQ(this->PutDeviceState(MakeDevice("k1", "nobody")).error().code, Errc::kNotFound);
  EXPECT_EQ(this->PutDeviceState(MakeDevice("", "nobody")).error().code, Errc::kInvalidArgument);
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  ASSERT_TRUE(this->PutDeviceState(MakeDevice("ka", "alice")).ok());
  ASSERT_TRUE(this->PutDeviceState(MakeDevice("kb", "bob")).ok());
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  EXPECT_EQ(this->GetDeviceState("ka").error().code, Errc::kNotFound);
  EXPECT_TRUE(this->GetDeviceState("kb").ok());
}

TYPED_TEST_P(StoreConformance, SweepDetachesAttachedRowsAndDropsExpiredOnes) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const int64_t now = 1800000000000;
  DeviceState attached = MakeDevice("attached", "alice");  // its process died
  DeviceState fresh = MakeDevice("fresh", "alice");
  fresh.detached_ms = now - 299'000;  // 1 s of its 300 left
  DeviceState stale = MakeDevice("stale", "alice");
  stale.detached_ms = now - 301'000;
  for (const auto& d : {attached, fresh, stale}) ASSERT_TRUE(this->PutDeviceState(d).ok());
  this->Reopen();
  auto swept = this->SweepDeviceStates(now);
  ASSERT_TRUE(swept.ok()) << swept.error().message;
  EXPECT_EQ(*swept, 1);
  auto got = this->GetDeviceState("attached");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->detached_ms, now) << "a session that was attached is resumable from the sweep on";
  EXPECT_EQ(got->inbound_h, attached.inbound_h);
  EXPECT_EQ(this->GetDeviceState("fresh")->detached_ms, fresh.detached_ms);
  EXPECT_EQ(this->GetDeviceState("stale").error().code, Errc::kNotFound);
  EXPECT_EQ(*this->SweepDeviceStates(now + 301'000), 2);
}

inline PushRegistration MakePush(const std::string& username, const std::string& jid, const std::string& node,
                                 int64_t created_ms) {
  PushRegistration p;
  p.username = username;
  p.jid = jid;
  p.node = node;
  p.options = "<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s3</value></field></x>";
  p.resource = "phone";
  p.created_ms = created_ms;
  return p;
}

TYPED_TEST_P(StoreConformance, PushRegistrationsRoundTripAndAreReplaced) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  ASSERT_TRUE(this->PutPushRegistration(MakePush("alice", "push.example.org", "n2", 20)).ok());
  ASSERT_TRUE(this->PutPushRegistration(MakePush("alice", "push.example.org", "n1", 10)).ok());
  ASSERT_TRUE(this->PutPushRegistration(MakePush("bob", "push.example.org", "n1", 5)).ok());
  auto got = this->ListPushRegistrations("alice");
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].node, "n1") << "oldest first";
  EXPECT_EQ((*got)[0].username, "alice");
  EXPECT_EQ((*got)[0].jid, "push.example.org");
  EXPECT_EQ((*got)[0].options, MakePush("", "", "", 0).options);
  EXPECT_EQ((*got)[0].resource, "phone");
  EXPECT_EQ((*got)[0].created_ms, 10);
  EXPECT_EQ((*got)[1].node, "n2");

  PushRegistration again = MakePush("alice", "push.example.org", "n1", 30);
  again.options = "";
  again.resource = "tablet";
  ASSERT_TRUE(this->PutPushRegistration(again).ok());
  this->Reopen();
  got = this->ListPushRegistrations("alice");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u) << "the same (jid, node) replaces, it does not add";
  EXPECT_EQ((*got)[0].node, "n2");
  EXPECT_EQ((*got)[1].node, "n1");
  EXPECT_EQ((*got)[1].options, "");
  EXPECT_EQ((*got)[1].resource, "tablet");
  EXPECT_EQ(this->ListPushRegistrations("bob")->size(), 1u) << "other owners are untouched";
  EXPECT_TRUE(this->ListPushRegistrations("nobody")->empty());
}

TYPED_TEST_P(StoreConformance, PushRegistrationsDeleteByNodeOrService) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  for (const char* node : {"n1", "n2", "n3"}) {
    ASSERT_TRUE(this->PutPushRegistration(MakePush("alice", "push.example.org", node, 1)).ok());
  }
  ASSERT_TRUE(this->PutPushRegistration(MakePush("alice", "other.example.org", "n1", 2)).ok());
  ASSERT_TRUE(this->PutPushRegistration(MakePush("bob", "push.example.org", "n2", 3)).ok());
  EXPECT_EQ(*this->DeletePushRegistrations("alice", "push.example.org", "n2"), 1);
  EXPECT_EQ(*this->DeletePushRegistrations("alice", "push.example.org", "n2"), 0) << "gone already";
  EXPECT_EQ(*this->DeletePushRegistrations("alice", "push.example.org", ""), 2) << "every node of the service";
  auto left = this->ListPushRegistrations("alice");
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].jid, "other.example.org");
  EXPECT_EQ(this->ListPushRegistrations("bob")->size(), 1u);
}

TYPED_TEST_P(StoreConformance, PushRegistrationsNeedAnAccountAndGoWithIt) {
  EXPECT_EQ(this->PutPushRegistration(MakePush("nobody", "push.example.org", "n", 1)).error().code,
            Errc::kNotFound);
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_EQ(this->PutPushRegistration(MakePush("alice", "", "n", 1)).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(this->PutPushRegistration(MakePush("alice", "push.example.org", "", 1)).error().code,
            Errc::kInvalidArgument);
  ASSERT_TRUE(this->PutPushRegistration(MakePush("alice", "push.example.org", "n", 1)).ok());
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_TRUE(this->ListPushRegistrations("alice")->empty()) << "a new account with the old name starts clean";
}

TYPED_TEST_P(StoreConformance, BlocklistAddsRemovesAndSorts) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  EXPECT_TRUE(this->GetBlocklist("alice")->empty());
  ASSERT_TRUE(this->Block("alice", {"spam.example", "romeo@montague.net", "iago@shakespeare.lit/r"}).ok());
  ASSERT_TRUE(this->Block("alice", {"romeo@montague.net"}).ok()) << "blocking twice is not an error";
  ASSERT_TRUE(this->Block("bob", {"x@y.z"}).ok());
  auto got = this->GetBlocklist("alice");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, (std::vector<std::string>{"iago@shakespeare.lit/r", "romeo@montague.net", "spam.example"}));
  auto removed = this->Unblock("alice", {"romeo@montague.net", "not@there.net"});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1);
  EXPECT_EQ(this->GetBlocklist("alice")->size(), 2u);
  removed = this->Unblock("alice", {});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2) << "no JIDs: everything";
  EXPECT_TRUE(this->GetBlocklist("alice")->empty());
  EXPECT_EQ(*this->GetBlocklist("bob"), std::vector<std::string>{"x@y.z"}) << "other owners are untouched";
}

TYPED_TEST_P(StoreConformance, BlocklistNeedsAnAccountAndGoesWithIt) {
  EXPECT_EQ(this->Block("nobody", {"x@y.z"}).error().code, Errc::kNotFound);
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_EQ(this->Block("alice", {"a@b.c", ""}).error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(this->GetBlocklist("alice")->empty()) << "a failed batch adds nothing";
  ASSERT_TRUE(this->Block("alice", {"a@b.c"}).ok());
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_TRUE(this->GetBlocklist("alice")->empty()) << "a new account with the old name starts clean";
}

TYPED_TEST_P(StoreConformance, PrivateStorageRoundTripsReplacesAndIsBounded) {
  EXPECT_EQ(this->SetPrivate("nobody", "k", "<x/>").error().code, Errc::kNotFound);
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  EXPECT_EQ(this->GetPrivate("alice", "k1").error().code, Errc::kNotFound);
  ASSERT_TRUE(this->SetPrivate("alice", "k1", "<a xmlns='x'>1</a>", 2).ok());
  ASSERT_TRUE(this->SetPrivate("alice", "k2", "<b xmlns='y'/>", 2).ok());
  EXPECT_EQ(this->SetPrivate("alice", "k3", "<c/>", 2).error().code, Errc::kLimitExceeded);
  ASSERT_TRUE(this->SetPrivate("alice", "k1", "<a xmlns='x'>2</a>", 2).ok()) << "replacing is not growing";
  EXPECT_EQ(*this->GetPrivate("alice", "k1"), "<a xmlns='x'>2</a>");
  EXPECT_EQ(this->GetPrivate("alice", "k3").error().code, Errc::kNotFound);
  EXPECT_EQ(this->GetPrivate("bob", "k1").error().code, Errc::kNotFound) << "per account";
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_EQ(this->GetPrivate("alice", "k1").error().code, Errc::kNotFound) << "gone with the account";
}

TYPED_TEST_P(StoreConformance, ArchivePrefsDefaultRoundTripAndCheck) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  auto prefs = this->GetArchivePrefs("alice");
  ASSERT_TRUE(prefs.ok()) << prefs.error().message;
  EXPECT_EQ(prefs->default_mode, "always") << "never set: the defaults";
  EXPECT_TRUE(prefs->always.empty());
  EXPECT_TRUE(prefs->never.empty());
  ArchivePrefs set;
  set.default_mode = "roster";
  set.always = {"romeo@montague.lit"};
  set.never = {"a@b.c", "montague@montague.lit"};
  ASSERT_TRUE(this->SetArchivePrefs("alice", set).ok());
  prefs = this->GetArchivePrefs("alice");
  EXPECT_EQ(prefs->default_mode, "roster");
  EXPECT_EQ(prefs->always, set.always);
  EXPECT_EQ(prefs->never, set.never);
  set.default_mode = "never";
  set.always.clear();
  set.never = {"x@y.z"};
  ASSERT_TRUE(this->SetArchivePrefs("alice", set).ok()) << "replaced whole";
  prefs = this->GetArchivePrefs("alice");
  EXPECT_EQ(prefs->default_mode, "never");
  EXPECT_TRUE(prefs->always.empty());
  EXPECT_EQ(prefs->never, std::vector<std::string>{"x@y.z"});

  ArchivePrefs bad;
  bad.default_mode = "sometimes";
  EXPECT_EQ(this->SetArchivePrefs("alice", bad).error().code, Errc::kInvalidArgument);
  bad.default_mode = "always";
  bad.always = {"a@b.c"};
  bad.never = {"a@b.c"};
  EXPECT_EQ(this->SetArchivePrefs("alice", bad).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(this->GetArchivePrefs("alice")->default_mode, "never") << "a refused set changes nothing";
  EXPECT_EQ(this->SetArchivePrefs("nobody", set).error().code, Errc::kNotFound);
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_EQ(this->GetArchivePrefs("alice")->default_mode, "always") << "gone with the account";
}

// ---- Personal eventing (XEP-0163) ----

inline int64_t NowMsForTest() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A node with every setting away from its default, so a round trip proves
// each column.
inline PepNode MakePepNode(const std::string& username, const std::string& node, int64_t max_items = 10) {
  PepNode n;
  n.username = username;
  n.node = node;
  n.access_model = "roster";
  n.roster_groups = {"Family", "Friends"};
  n.max_items = max_items;
  n.persist_items = false;
  n.send_last = "on_sub";
  n.notify_retract = false;
  n.notify_delete = false;
  n.title = "Title of " + node;
  n.created_ms = 42;  // the store sets its own
  return n;
}

inline PepItem MakePepItem(const std::string& id, const std::string& version = "1") {
  PepItem item;
  item.id = id;
  item.xml = "<mood xmlns='http://jabber.org/protocol/mood'><text>" + id + " v" + version + "</text></mood>";
  item.publisher = "alice@example.org";
  item.updated_ms = 42;  // the store sets its own
  return item;
}

inline void ExpectSamePepConfig(const PepNode& got, const PepNode& want) {
  EXPECT_EQ(got.username, want.username);
  EXPECT_EQ(got.node, want.node);
  EXPECT_EQ(got.access_model, want.access_model);
  EXPECT_EQ(got.roster_groups, want.roster_groups);
  EXPECT_EQ(got.max_items, want.max_items);
  EXPECT_EQ(got.persist_items, want.persist_items);
  EXPECT_EQ(got.send_last, want.send_last);
  EXPECT_EQ(got.notify_retract, want.notify_retract);
  EXPECT_EQ(got.notify_delete, want.notify_delete);
  EXPECT_EQ(got.title, want.title);
}

TYPED_TEST_P(StoreConformance, PepNodesAreCreatedReplacedAndListed) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  EXPECT_TRUE(this->ListPepNodes("alice")->empty());
  const int64_t before = NowMsForTest();
  PepNode mood = MakePepNode("alice", "http://jabber.org/protocol/mood");
  ASSERT_TRUE(this->PutPepNode(mood).ok());
  PepNode plain;  // every setting at its default
  plain.username = "alice";
  plain.node = "a-node";
  ASSERT_TRUE(this->PutPepNode(plain).ok());
  ASSERT_TRUE(this->PutPepNode(MakePepNode("bob", "x")).ok());
  const int64_t after = NowMsForTest();

  auto nodes = this->ListPepNodes("alice");
  ASSERT_TRUE(nodes.ok()) << nodes.error().message;
  ASSERT_EQ(nodes->size(), 2u);
  ExpectSamePepConfig((*nodes)[0], plain);  // sorted by name
  ExpectSamePepConfig((*nodes)[1], mood);
  const int64_t created_ms = (*nodes)[1].created_ms;
  EXPECT_GE(created_ms, before) << "created_ms is the store's, not the caller's";
  EXPECT_LE(created_ms, after);

  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  PepNode replaced = mood;
  replaced.access_model = "open";
  replaced.roster_groups.clear();
  replaced.max_items = 3;
  replaced.persist_items = true;
  replaced.send_last = "never";
  replaced.notify_retract = true;
  replaced.notify_delete = true;
  replaced.title = "";
  replaced.created_ms = 7;
  ASSERT_TRUE(this->PutPepNode(replaced).ok());
  nodes = this->ListPepNodes("alice");
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 2u) << "the same name replaces, it does not add";
  ExpectSamePepConfig((*nodes)[1], replaced);
  EXPECT_EQ((*nodes)[1].created_ms, created_ms) << "replacing keeps created_ms";

  PepNode unnamed = MakePepNode("alice", "");
  EXPECT_EQ(this->PutPepNode(unnamed).error().code, Errc::kInvalidArgument);
  // Not in store.h's contract (the hub validates): values outside XEP-0060's
  // are refused rather than stored.
  PepNode odd = MakePepNode("alice", "odd");
  odd.access_model = "authorize";
  EXPECT_EQ(this->PutPepNode(odd).error().code, Errc::kInvalidArgument);
  odd = MakePepNode("alice", "odd");
  odd.send_last = "sometimes";
  EXPECT_EQ(this->PutPepNode(odd).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(this->ListPepNodes("alice")->size(), 2u) << "refused puts create nothing";
  EXPECT_EQ(this->ListPepNodes("bob")->size(), 1u) << "per account";
}

TYPED_TEST_P(StoreConformance, PepNodeCountIsBoundedForNewNodesOnly) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n1"), 2).ok());
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n2"), 2).ok());
  EXPECT_EQ(this->PutPepNode(MakePepNode("alice", "n3"), 2).error().code, Errc::kLimitExceeded);
  EXPECT_EQ(this->PublishPepItem(MakePepNode("alice", "n3"), MakePepItem("a"), 2).error().code,
            Errc::kLimitExceeded);
  EXPECT_EQ(this->SetPepItems(MakePepNode("alice", "n3"), {MakePepItem("a")}, 2).error().code,
            Errc::kLimitExceeded);
  EXPECT_EQ(this->ListPepNodes("alice")->size(), 2u);
  EXPECT_EQ(this->GetPepItems("alice", "n3").error().code, Errc::kNotFound) << "nothing was written";
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n1", 5), 2).ok()) << "replacing is not growing";
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n1"), MakePepItem("a"), 2).ok());
  ASSERT_TRUE(this->SetPepItems(MakePepNode("alice", "n2"), {MakePepItem("b")}, 2).ok());
  ASSERT_TRUE(this->DeletePepNode("alice", "n2").ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n3"), MakePepItem("c"), 2).ok()) << "room again";
  EXPECT_EQ(this->ListPepNodes("alice")->size(), 2u);
}

TYPED_TEST_P(StoreConformance, LoweringPepMaxItemsPrunesTheOldest) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  for (const char* id : {"i1", "i2", "i3", "i4", "i5"}) {
    ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n", 5), MakePepItem(id)).ok());
  }
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "other", 5), MakePepItem("o1")).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")),
            (std::vector<std::string>{"i5", "i4", "i3", "i2", "i1"}));
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n", 2)).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"i5", "i4"}));
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n", 5)).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"i5", "i4"}))
      << "raising max_items brings nothing back";
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "other")), std::vector<std::string>{"o1"})
      << "other nodes are untouched";
}

TYPED_TEST_P(StoreConformance, DeletePepNodeTakesItsItems) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n"), MakePepItem("a")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n"), MakePepItem("b")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "m"), MakePepItem("c")).ok());
  ASSERT_TRUE(this->DeletePepNode("alice", "n").ok());
  auto nodes = this->ListPepNodes("alice");
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].node, "m");
  EXPECT_EQ(this->GetPepItems("alice", "n").error().code, Errc::kNotFound);
  EXPECT_EQ(this->DeletePepNode("alice", "n").error().code, Errc::kNotFound) << "gone already";
  EXPECT_EQ(this->DeletePepNode("alice", "never").error().code, Errc::kNotFound);
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n")).ok());
  auto items = this->GetPepItems("alice", "n");
  ASSERT_TRUE(items.ok()) << items.error().message;
  EXPECT_TRUE(items->empty()) << "a node made again under the old name starts empty";
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "m")), std::vector<std::string>{"c"});
}

TYPED_TEST_P(StoreConformance, PublishPepItemCreatesTheNodeOnceAndKeepsItsConfig) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const int64_t before = NowMsForTest();
  PepNode config = MakePepNode("alice", "urn:xmpp:avatar:metadata", 3);
  ASSERT_TRUE(this->PublishPepItem(config, MakePepItem("a")).ok());
  const int64_t after = NowMsForTest();
  auto nodes = this->ListPepNodes("alice");
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  ExpectSamePepConfig((*nodes)[0], config);
  EXPECT_GE((*nodes)[0].created_ms, before);
  EXPECT_LE((*nodes)[0].created_ms, after);

  PepNode other;  // defaults, and max_items 1: must not replace the stored config
  other.username = "alice";
  other.node = config.node;
  ASSERT_TRUE(this->PublishPepItem(other, MakePepItem("b")).ok());
  nodes = this->ListPepNodes("alice");
  ASSERT_EQ(nodes->size(), 1u);
  ExpectSamePepConfig((*nodes)[0], config);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", config.node)), (std::vector<std::string>{"b", "a"}))
      << "pruned by the stored max_items (3), not the given one (1)";

  EXPECT_EQ(this->PublishPepItem(config, MakePepItem("")).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(this->PublishPepItem(MakePepNode("alice", ""), MakePepItem("c")).error().code,
            Errc::kInvalidArgument);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", config.node)), (std::vector<std::string>{"b", "a"}));
}

TYPED_TEST_P(StoreConformance, RepublishingAPepItemMakesItNewestAndOldItemsArePruned) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const PepNode node = MakePepNode("alice", "n", 3);
  const int64_t before = NowMsForTest();
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(this->PublishPepItem(node, MakePepItem(id)).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"c", "b", "a"}));

  PepItem again = MakePepItem("a", "2");
  again.publisher = "alice@example.org/phone";
  ASSERT_TRUE(this->PublishPepItem(node, again).ok());
  const int64_t after = NowMsForTest();
  auto items = this->GetPepItems("alice", "n");
  EXPECT_EQ(this->PepIds(items), (std::vector<std::string>{"a", "c", "b"}))
      << "re-publishing makes it newest";
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 3u);
  EXPECT_EQ((*items)[0].xml, again.xml);
  EXPECT_EQ((*items)[0].publisher, again.publisher);
  EXPECT_EQ((*items)[1].xml, MakePepItem("c").xml);
  EXPECT_EQ((*items)[1].publisher, "alice@example.org");
  for (const auto& item : *items) {
    EXPECT_GE(item.updated_ms, before) << "updated_ms is the store's";
    EXPECT_LE(item.updated_ms, after);
  }

  ASSERT_TRUE(this->PublishPepItem(node, MakePepItem("d")).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"d", "a", "c"}))
      << "the oldest beyond max_items goes";
  PepItem empty_payload = MakePepItem("e");
  empty_payload.xml = "";
  ASSERT_TRUE(this->PublishPepItem(node, empty_payload).ok());
  items = this->GetPepItems("alice", "n", {}, 1);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].id, "e");
  EXPECT_EQ((*items)[0].xml, "") << "an item without payload";
}

TYPED_TEST_P(StoreConformance, SetPepItemsLeavesExactlyTheGivenItems) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const PepNode node = MakePepNode("alice", "n", 3);
  ASSERT_TRUE(this->PublishPepItem(node, MakePepItem("x")).ok());
  ASSERT_TRUE(this->PublishPepItem(node, MakePepItem("a")).ok());
  ASSERT_TRUE(this->SetPepItems(node, {MakePepItem("a", "2"), MakePepItem("b"), MakePepItem("c")}).ok());
  auto items = this->GetPepItems("alice", "n");
  EXPECT_EQ(this->PepIds(items), (std::vector<std::string>{"c", "b", "a"})) << "exactly those, newest last";
  ASSERT_TRUE(items.ok());
  EXPECT_EQ(items->back().xml, MakePepItem("a", "2").xml);

  ASSERT_TRUE(
      this->SetPepItems(node, {MakePepItem("a"), MakePepItem("b"), MakePepItem("c"), MakePepItem("d")}).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"d", "c", "b"}))
      << "then pruned to max_items like a publish";
  EXPECT_EQ(this->SetPepItems(node, {MakePepItem("p"), MakePepItem("")}).error().code,
            Errc::kInvalidArgument);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"d", "c", "b"}))
      << "a refused set changes nothing";

  ASSERT_TRUE(this->SetPepItems(MakePepNode("alice", "n", 1), {MakePepItem("e"), MakePepItem("f")}).ok());
  EXPECT_EQ(this->ListPepNodes("alice")->front().max_items, 3) << "an existing node keeps its config";
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"f", "e"}));

  const PepNode fresh = MakePepNode("alice", "fresh", 4);
  ASSERT_TRUE(this->SetPepItems(fresh, {MakePepItem("p")}).ok()) << "creates the node";
  auto nodes = this->ListPepNodes("alice");
  ASSERT_EQ(nodes->size(), 2u);
  ExpectSamePepConfig((*nodes)[0], fresh);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "fresh")), std::vector<std::string>{"p"});

  ASSERT_TRUE(this->SetPepItems(node, {}).ok());
  items = this->GetPepItems("alice", "n");
  ASSERT_TRUE(items.ok()) << "the node stays";
  EXPECT_TRUE(items->empty());
}

TYPED_TEST_P(StoreConformance, GetPepItemsByIdsOrNewestFirst) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const PepNode node = MakePepNode("alice", "n", 10);
  // Ids are the client's choice: quotes, backslashes, control and non-ASCII
  // characters must survive however the backend passes id lists.
  const std::string odd = "it\"em\\1\t\xc3\xa9";
  for (const std::string& id :
       {std::string("a"), std::string("b"), odd, std::string("d"), std::string("e")}) {
    ASSERT_TRUE(this->PublishPepItem(node, MakePepItem(id)).ok());
  }
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {}, -1)),
            (std::vector<std::string>{"e", "d", odd, "b", "a"}))
      << "max < 0: all";
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {}, 2)), (std::vector<std::string>{"e", "d"}));
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {}, 0)), std::vector<std::string>{});
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {}, 100)).size(), 5u);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {"a", "missing", "d", odd}, 0)),
            (std::vector<std::string>{"d", odd, "a"}))
      << "by ids: newest first whatever the order asked, missing ids skipped, max ignored";
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n", {"missing"})), std::vector<std::string>{});
  auto got = this->GetPepItems("alice", "n", {odd});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].xml, MakePepItem(odd).xml);
  EXPECT_EQ((*got)[0].publisher, "alice@example.org");

  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "empty")).ok());
  auto none = this->GetPepItems("alice", "empty");
  ASSERT_TRUE(none.ok()) << "a node without items is not an error";
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(this->GetPepItems("alice", "absent").error().code, Errc::kNotFound);
  EXPECT_EQ(this->GetPepItems("alice", "absent", {"a"}).error().code, Errc::kNotFound);
  EXPECT_EQ(this->GetPepItems("nobody", "n").error().code, Errc::kNotFound);
}

TYPED_TEST_P(StoreConformance, RetractAndPurgePepItems) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const PepNode node = MakePepNode("alice", "n", 10);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(this->PublishPepItem(node, MakePepItem(id)).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "m"), MakePepItem("a")).ok());
  auto removed = this->RetractPepItems("alice", "n", {"a", "missing", "a"});
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(*removed, 1) << "counts what went";
  EXPECT_EQ(*this->RetractPepItems("alice", "n", {}), 0);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"c", "b"}));
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "m")), std::vector<std::string>{"a"})
      << "the same id in another node stays";
  EXPECT_EQ(this->RetractPepItems("alice", "absent", {"a"}).error().code, Errc::kNotFound);

  ASSERT_TRUE(this->PurgePepNode("alice", "n").ok());
  auto items = this->GetPepItems("alice", "n");
  ASSERT_TRUE(items.ok()) << "purging keeps the node";
  EXPECT_TRUE(items->empty());
  EXPECT_EQ(this->ListPepNodes("alice")->size(), 2u);
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "m")), std::vector<std::string>{"a"});
  ASSERT_TRUE(this->PurgePepNode("alice", "n").ok()) << "purging an empty node";
  EXPECT_EQ(this->PurgePepNode("alice", "absent").error().code, Errc::kNotFound);
  ASSERT_TRUE(this->PublishPepItem(node, MakePepItem("z")).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), std::vector<std::string>{"z"});
}

TYPED_TEST_P(StoreConformance, LastPepItemsAcrossOwnersAndNodes) {
  for (const char* user : {"alice", "bob", "carol"}) ASSERT_TRUE(this->CreateAccount(MakeAccount(user)).ok());
  const std::string mood = "http://jabber.org/protocol/mood";
  const std::string tune = "http://jabber.org/protocol/tune";
  const std::string odd = "we\"ird\\node \xc3\xa9\n";
  PepNode alice_mood = MakePepNode("alice", mood);
  alice_mood.roster_groups = {"Work"};
  ASSERT_TRUE(this->PublishPepItem(alice_mood, MakePepItem("m1")).ok());
  ASSERT_TRUE(this->PublishPepItem(alice_mood, MakePepItem("m2")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", tune), MakePepItem("t1")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "not-asked"), MakePepItem("x")).ok());
  PepNode bob_mood = MakePepNode("bob", mood);
  bob_mood.access_model = "presence";
  bob_mood.roster_groups.clear();
  ASSERT_TRUE(this->PublishPepItem(bob_mood, MakePepItem("b1")).ok());
  ASSERT_TRUE(this->PublishPepItem(bob_mood, MakePepItem("b2")).ok());
  ASSERT_TRUE(this->PublishPepItem(bob_mood, MakePepItem("b1", "2")).ok());  // b1 is newest again
  ASSERT_TRUE(this->PutPepNode(MakePepNode("bob", tune)).ok());              // no items
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("bob", odd), MakePepItem("w1")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("carol", "not-asked"), MakePepItem("y")).ok());

  auto last = this->LastPepItems({"alice", "bob", "carol", "nobody", "alice"}, {mood, tune, odd, "absent"});
  ASSERT_TRUE(last.ok()) << last.error().message;
  std::sort(last->begin(), last->end(), [](const PepLastItem& a, const PepLastItem& b) {
    return std::tie(a.node.username, a.node.node) < std::tie(b.node.username, b.node.node);
  });
  std::vector<std::string> got;
  for (const auto& l : *last) got.push_back(l.node.username + " " + l.node.node + " " + l.item.id);
  EXPECT_EQ(got, (std::vector<std::string>{"alice " + mood + " m2", "alice " + tune + " t1",
                                           "bob " + mood + " b1", "bob " + odd + " w1"}))
      << "each asked node with items, once, with its newest item";
  ASSERT_EQ(last->size(), 4u);
  ExpectSamePepConfig((*last)[0].node, alice_mood);
  EXPECT_GT((*last)[0].node.created_ms, 0);
  EXPECT_EQ((*last)[0].item.xml, MakePepItem("m2").xml);
  EXPECT_EQ((*last)[0].item.publisher, "alice@example.org");
  EXPECT_GT((*last)[0].item.updated_ms, 0);
  ExpectSamePepConfig((*last)[2].node, bob_mood);
  EXPECT_EQ((*last)[2].item.xml, MakePepItem("b1", "2").xml);
  ExpectSamePepConfig((*last)[3].node, MakePepNode("bob", odd));

  EXPECT_TRUE(this->LastPepItems({"nobody"}, {mood})->empty()) << "owners without an account have no nodes";
  EXPECT_TRUE(this->LastPepItems({}, {mood})->empty());
  EXPECT_TRUE(this->LastPepItems({"alice"}, {})->empty());
  EXPECT_TRUE(this->LastPepItems({"bob"}, {tune})->empty()) << "a node without items";

  // Owners who block the one asking are left out, whichever of its JIDs they block.
  ASSERT_TRUE(this->Block("bob", {"dave@example.org"}).ok());
  ASSERT_TRUE(this->Block("alice", {"other@example.org"}).ok());
  auto unblocked = this->LastPepItems({"alice", "bob"}, {mood}, {"dave@example.org/phone", "dave@example.org",
                                                                 "example.org"});
  ASSERT_TRUE(unblocked.ok());
  ASSERT_EQ(unblocked->size(), 1u);
  EXPECT_EQ((*unblocked)[0].node.username, "alice");
  EXPECT_EQ(this->LastPepItems({"alice", "bob"}, {mood}, {"carol@example.org"})->size(), 2u);
}

TYPED_TEST_P(StoreConformance, PepWritesNeedAnAccountAndPepDataGoesWithIt) {
  const PepNode nobody = MakePepNode("nobody", "n");
  EXPECT_EQ(this->PutPepNode(nobody).error().code, Errc::kNotFound);
  EXPECT_EQ(this->PutPepNode(nobody, 0).error().code, Errc::kNotFound) << "no account comes before the limit";
  EXPECT_EQ(this->PublishPepItem(nobody, MakePepItem("a")).error().code, Errc::kNotFound);
  EXPECT_EQ(this->SetPepItems(nobody, {MakePepItem("a")}).error().code, Errc::kNotFound);
  EXPECT_EQ(this->DeletePepNode("nobody", "n").error().code, Errc::kNotFound);
  EXPECT_EQ(this->RetractPepItems("nobody", "n", {"a"}).error().code, Errc::kNotFound);
  EXPECT_EQ(this->PurgePepNode("nobody", "n").error().code, Errc::kNotFound);
  auto nodes = this->ListPepNodes("nobody");
  ASSERT_TRUE(nodes.ok()) << "reads of a missing account are empty";
  EXPECT_TRUE(nodes->empty());

  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("bob")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("alice", "n"), MakePepItem("a")).ok());
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "m")).ok());
  ASSERT_TRUE(this->PublishPepItem(MakePepNode("bob", "n"), MakePepItem("b")).ok());
  ASSERT_TRUE(this->DeleteAccount("alice").ok());
  EXPECT_TRUE(this->ListPepNodes("alice")->empty());
  EXPECT_TRUE(this->LastPepItems({"alice"}, {"n"})->empty());
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  EXPECT_TRUE(this->ListPepNodes("alice")->empty()) << "a new account with the old name starts clean";
  EXPECT_EQ(this->GetPepItems("alice", "n").error().code, Errc::kNotFound);
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "n")).ok());
  EXPECT_TRUE(this->GetPepItems("alice", "n")->empty()) << "no items came back with the name";
  EXPECT_EQ(this->PepIds(this->GetPepItems("bob", "n")), std::vector<std::string>{"b"})
      << "other owners are untouched";
}

TYPED_TEST_P(StoreConformance, PepNodesAndItemsSurviveReopen) {
  ASSERT_TRUE(this->CreateAccount(MakeAccount("alice")).ok());
  const PepNode node = MakePepNode("alice", "n", 3);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(this->PublishPepItem(node, MakePepItem(id)).ok());
  ASSERT_TRUE(this->PutPepNode(MakePepNode("alice", "empty")).ok());
  auto before = this->GetPepItems("alice", "n");
  ASSERT_TRUE(before.ok());
  const int64_t created_ms = this->ListPepNodes("alice")->back().created_ms;
  this->Reopen();
  auto nodes = this->ListPepNodes("alice");
  ASSERT_TRUE(nodes.ok()) << nodes.error().message;
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].node, "empty");
  ExpectSamePepConfig((*nodes)[1], node);
  EXPECT_EQ((*nodes)[1].created_ms, created_ms);
  auto after = this->GetPepItems("alice", "n");
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_EQ((*after)[i].id, (*before)[i].id);
    EXPECT_EQ((*after)[i].xml, (*before)[i].xml);
    EXPECT_EQ((*after)[i].publisher, (*before)[i].publisher);
    EXPECT_EQ((*after)[i].updated_ms, (*before)[i].updated_ms);
  }
  ASSERT_TRUE(this->PublishPepItem(node, MakePepItem("a", "2")).ok());
  EXPECT_EQ(this->PepIds(this->GetPepItems("alice", "n")), (std::vector<std::string>{"a", "c", "b"}))
      << "publish order continues across a reopen";
}

REGISTER_TYPED_TEST_SUITE_P(
    StoreConformance, AccountRoundTrips, CreateAccountTwiceIsConflictAndKeepsOriginal,
    MissingAccountIsNotFound, UsernamesCompareByteForByte, SetCredentialsReplacesBothKeySets,
    ListAccountsIsSorted, CreateAccountsInBulk, CreateAccountsConflictFailsTheWholeBatch,
    DeleteAccountThenRecreate, RosterOfUnknownOrNewUserIsEmpty, RosterItemRoundTripsAndVersionBumps,
    PutRosterItemReplaces, RemoveRosterItemBumpsVersion, RosterWritesNeedAnAccountAndAValidState,
    RostersArePerUser, OfflineMessagesKeepOrderAndContent, DeleteOfflineUpToIdAndIdsAreNotReused,
    OfflineOfUnknownUser, VCardSetGetReplace, DeleteAccountCascades, RepliesRunOnTheCallersExecutor,
    WritesFromOneThreadApplyInOrder, ReadAfterWriteReplySeesTheWrite,
    ConcurrentWritersAreAllDurableAndVisible, AFailingWriteFailsAlone,
    CloseDrainsQueuedWritesAndLaterCallsAreUnavailable, DataSurvivesReopen,
    ArchiveKeepsBothOwnersCopiesInOrder, ArchivePagesForwardAndBack, ArchiveFiltersCombine,
    ArchiveRecognisesRetransmissionsByOriginId, ArchiveEntriesAfterTheFirstShareItsStanza,
    ArchiveManyGivesEachCallItsOutcome, ArchiveBatchIsAllOrNothing, PruneArchiveByAgeAndCount,
    AssignedArchiveIdsFollowCommitOrderAndTheClock, ArchiveSurvivesReopen, DeviceStateRoundTripsAndIsReplaced,
    DeviceStatesNeedAnAccountAndGoWithIt, SweepDetachesAttachedRowsAndDropsExpiredOnes,
    PushRegistrationsRoundTripAndAreReplaced, PushRegistrationsDeleteByNodeOrService,
    PushRegistrationsNeedAnAccountAndGoWithIt, BlocklistAddsRemovesAndSorts,
    BlocklistNeedsAnAccountAndGoesWithIt, PrivateStorageRoundTripsReplacesAndIsBounded,
    ArchivePrefsDefaultRoundTripAndCheck, PepNodesAreCreatedReplacedAndListed,
    PepNodeCountIsBoundedForNewNodesOnly, LoweringPepMaxItemsPrunesTheOldest, DeletePepNodeTakesItsItems,
    PublishPepItemCreatesTheNodeOnceAndKeepsItsConfig, RepublishingAPepItemMakesItNewestAndOldItemsArePruned,
    SetPepItemsLeavesExactlyTheGivenItems, GetPepItemsByIdsOrNewestFirst, RetractAndPurgePepItems,
    LastPepItemsAcrossOwnersAndNodes, PepWritesNeedAnAccountAndPepDataGoesWithIt,
    PepNodesAndItemsSurviveReopen);

}  // namespace nines::store::conformance
