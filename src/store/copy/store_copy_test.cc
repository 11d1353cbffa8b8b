// `nines store migrate`: a server's SQLite data, copied to PostgreSQL, reads
// back the same through the Store interface, and ids keep increasing.
#include "store/copy/store_copy.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "store/postgres/pg_test_database.h"
#include "store/store_conformance.h"

namespace nines::store::copy {
namespace {

using conformance::Await;
using conformance::MakeAccount;
using conformance::MakeItem;
using conformance::MakeMessage;
namespace pgtest = postgres::testing;

template <class T>
T Must(Result<T> result) {
  EXPECT_TRUE(result.ok()) << result.error().message;
  return std::move(result).value();
}
void Must(Result<void> result) { EXPECT_TRUE(result.ok()) << result.error().message; }

const std::vector<std::string> kUsers = {"alice", "bob", "carol"};

class StoreCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto reason = pgtest::SkipReason()) GTEST_SKIP() << *reason;
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / "nines-copy-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/nines.db";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Something in every table.
  void Fill(Store& s) {
    for (const auto& user : kUsers) {
      Must(Await<void>(io_, [&](Reply<void> r) { s.CreateAccount(MakeAccount(user), std::move(r)); }));
    }
    RosterItem item = MakeItem("bob@example.org", Subscription::kBoth, {"Friends", "Work"});
    item.pending_in = true;
    item.pending_in_stanza = "<presence type='subscribe'>\ttab\nline \\ back</presence>";
    Must(Await<int64_t>(io_, [&](Reply<int64_t> r) { s.PutRosterItem("alice", item, std::move(r)); }));
    Must(Await<int64_t>(io_, [&](Reply<int64_t> r) {
      s.PutRosterItem("bob", MakeItem("alice@example.org", Subscription::kTo), std::move(r));
    }));
    for (int i = 0; i < 5; ++i) {
      Must(Await<int64_t>(
          io_, [&](Reply<int64_t> r) { s.StoreOffline("carol", MakeMessage("m" + std::to_string(i)), std::move(r)); }));
    }
    // The newest offline id goes: the copy must not hand it out again.
    auto loaded = Must(Await<std::vector<OfflineMessage>>(
        io_, [&](Reply<std::vector<OfflineMessage>> r) { s.LoadOffline("carol", std::move(r)); }));
    Must(Await<void>(io_, [&](Reply<void> r) { s.DeleteOffline("carol", loaded.back().id, std::move(r)); }));
    Must(Await<int64_t>(io_, [&](Reply<int64_t> r) { s.StoreOffline("carol", MakeMessage("kept"), std::move(r)); }));
    Must(Await<void>(io_, [&](Reply<void> r) { s.SetVCard("alice", "<vCard xmlns='vcard-temp'/>", std::move(r)); }));
    for (int i = 0; i < 20; ++i) {
      std::vector<ArchiveEntry> entries(2);
      entries[0].username = "alice";
      entries[0].message.peer = "bob@example.org";
      entries[0].message.outgoing = true;
      entries[0].message.origin_id = "o" + std::to_string(i);
      entries[1].username = "bob";
      entries[1].message.peer = "alice@example.org";
      entries[1].message.peer_resource = "phone";
      for (auto& e : entries) e.message.stanza = "<message><body>" + std::to_string(i) + "</body></message>";
      Must(Await<ArchiveOutcome>(io_, [&](Reply<ArchiveOutcome> r) { s.Archive(entries, std::move(r)); }));
    }
    ArchivePrefs prefs;
    prefs.default_mode = "roster";
    prefs.always = {"bob@example.org"};
    prefs.never = {"spam@example.org"};
    Must(Await<void>(io_, [&](Reply<void> r) { s.SetArchivePrefs("alice", prefs, std::move(r)); }));
    Must(Await<void>(io_, [&](Reply<void> r) { s.Block("alice", {"spam@example.org", "example.net"}, std::move(r)); }));
    Must(Await<void>(io_, [&](Reply<void> r) {
      s.SetPrivate("bob", "storage storage:rosternotes", "<storage xmlns='storage:rosternotes'/>", 100, std::move(r));
    }));
    DeviceState device;
    device.key = "abc123";
    device.username = "alice";
    device.resource = "laptop";
    device.inbound_h = 7;
    device.cursor = 42;
    device.presence = "<presence/>";
    device.carbons = true;
    device.resume_timeout_s = 300;
    Must(Await<void>(io_, [&](Reply<void> r) { s.PutDeviceState(device, std::move(r)); }));
    PushRegistration push;
    push.username = "bob";
    push.jid = "push.example.org";
    push.node = "n1";
    push.resource = "phone";
    push.created_ms = 1700000000000;
    Must(Await<void>(io_, [&](Reply<void> r) { s.PutPushRegistration(push, std::move(r)); }));
    PepNode node;
    node.username = "alice";
    node.node = "urn:xmpp:avatar:metadata";
    node.access_model = "roster";
    node.roster_groups = {"Friends"};
    node.max_items = 3;
    for (int i = 0; i < 4; ++i) {
      PepItem item{"i" + std::to_string(i), "<metadata xmlns='urn:xmpp:avatar:metadata'/>", "alice@example.org", 0};
      Must(Await<void>(io_, [&](Reply<void> r) { s.PublishPepItem(node, item, 100, std::move(r)); }));
    }
  }

  // Everything readable about kUsers, as text.
  std::string Dump(Store& s) {
    std::ostringstream out;
    auto names = Must(Await<std::vector<std::string>>(
        io_, [&](Reply<std::vector<std::string>> r) { s.ListAccounts(std::move(r)); }));
    for (const auto& n : names) out << "account " << n << "\n";
    for (const auto& user : kUsers) {
      auto a = Must(Await<Account>(io_, [&](Reply<Account> r) { s.GetAccount(user, std::move(r)); }));
      out << user << " keys " << a.sha1.salt.size() << a.sha1.stored_key << a.sha256.server_key
          << a.sha256.iterations << " " << a.created_ms << "\n";
      auto roster = Must(Await<Roster>(io_, [&](Reply<Roster> r) { s.GetRoster(user, std::move(r)); }));
      out << "roster v" << roster.version << "\n";
      for (const auto& i : roster.items) {
        out << " " << i.jid << "|" << i.name << "|" << SubscriptionName(i.subscription) << i.ask_out << i.pending_in
            << i.preapproved << "|" << i.pending_in_stanza << "|";
        for (const auto& g : i.groups) out << g << ",";
        out << "\n";
      }
      auto offline = Must(Await<std::vector<OfflineMessage>>(
          io_, [&](Reply<std::vector<OfflineMessage>> r) { s.LoadOffline(user, std::move(r)); }));
      for (const auto& m : offline) out << " offline " << m.id << " " << m.stamp_ms << " " << m.stanza << "\n";
      auto vcard = Await<std::string>(io_, [&](Reply<std::string> r) { s.GetVCard(user, std::move(r)); });
      out << " vcard " << (vcard.ok() ? *vcard : "none") << "\n";
      ArchiveQuery query;
      query.max = 1000;
      auto page = Must(Await<ArchivePage>(
          io_, [&](Reply<ArchivePage> r) { s.QueryArchive(user, query, std::move(r)); }));
      for (const auto& m : page.messages) {
        out << " mam " << m.id << " " << m.stamp_ms << " " << m.peer << "/" << m.peer_resource << " " << m.outgoing
            << " " << m.origin_id << " " << m.stanza << "\n";
      }
      auto prefs = Must(Await<ArchivePrefs>(io_, [&](Reply<ArchivePrefs> r) { s.GetArchivePrefs(user, std::move(r)); }));
      out << " prefs " << prefs.default_mode << " " << prefs.always.size() << prefs.never.size() << "\n";
      auto blocked = Must(Await<std::vector<std::string>>(
          io_, [&](Reply<std::vector<std::string>> r) { s.GetBlocklist(user, std::move(r)); }));
      for (const auto& j : blocked) out << " block " << j << "\n";
      auto priv = Await<std::string>(io_, [&](Reply<std::string> r) {
        s.GetPrivate(user, "storage storage:rosternotes", std::move(r));
      });
      out << " private " << (priv.ok() ? *priv : "none") << "\n";
      auto pushes = Must(Await<std::vector<PushRegistration>>(
          io_, [&](Reply<std::vector<PushRegistration>> r) { s.ListPushRegistrations(user, std::move(r)); }));
      for (const auto& p : pushes) out << " push " << p.jid << " " << p.node << " " << p.resource << "\n";
      auto nodes = Must(Await<std::vector<PepNode>>(
          io_, [&](Reply<std::vector<PepNode>> r) { s.ListPepNodes(user, std::move(r)); }));
      for (const auto& n : nodes) {
        out << " pep " << n.node << " " << n.access_model << " " << n.max_items << " " << n.roster_groups.size()
            << "\n";
        auto items = Must(Await<std::vector<PepItem>>(
            io_, [&](Reply<std::vector<PepItem>> r) { s.GetPepItems(user, n.node, {}, -1, std::move(r)); }));
        for (const auto& i : items) out << "  item " << i.id << " " << i.xml << " " << i.updated_ms << "\n";
      }
    }
    auto device = Await<DeviceState>(io_, [&](Reply<DeviceState> r) { s.GetDeviceState("abc123", std::move(r)); });
    out << "device " << (device.ok() ? device->resource + " " + std::to_string(device->cursor) : "none") << "\n";
    return out.str();
  }

  boost::asio::io_context io_;
  std::string dir_;
  std::string path_;
};

TEST_F(StoreCopyTest, EverythingReadsBackTheSameAndIdsKeepIncreasing) {
  std::string before;
  {
    auto sqlite = Must(OpenSqlite(SqliteOptions{path_}));
    Fill(*sqlite);
    before = Dump(*sqlite);
    sqlite->Close();
  }
  pgtest::TestDatabase database;
  std::vector<std::string> reported;
  auto report = CopySqliteToPostgres(path_, database.uri(), [&](const TableProgress& p) {
    if (p.done == p.total) reported.push_back(p.table);
  });
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->tables.size(), 16u);
  EXPECT_GT(report->rows, 60);
  EXPECT_EQ(reported.size(), 16u) << "each table reports its end";

  PostgresOptions options;
  options.uri = database.uri();
  auto pg = Must(OpenPostgres(options));
  EXPECT_EQ(Dump(*pg), before);

  // New ids come after every copied one: offline ids are never reused (not
  // even the deleted newest), archive ids and PEP order keep increasing.
  auto offline = Must(Await<int64_t>(io_, [&](Reply<int64_t> r) { pg->StoreOffline("carol", MakeMessage("new"), std::move(r)); }));
  EXPECT_EQ(offline, 7) << "ids 1-5, then 6 (kept); 5 was deleted and must not come back";
  std::vector<ArchiveEntry> entry(1);
  entry[0].username = "carol";
  entry[0].message.peer = "alice@example.org";
  entry[0].message.stanza = "<message/>";
  auto archived = Must(Await<ArchiveOutcome>(io_, [&](Reply<ArchiveOutcome> r) { pg->Archive(entry, std::move(r)); }));
  EXPECT_GT(archived.id, std::stoll(database.Sql("SELECT max(id) FROM archive WHERE username <> 'carol'")));
  PepNode node;
  node.username = "alice";
  node.node = "urn:xmpp:avatar:metadata";
  Must(Await<void>(io_, [&](Reply<void> r) {
    pg->PublishPepItem(node, PepItem{"new", "<metadata xmlns='urn:xmpp:avatar:metadata'/>", "alice@example.org", 0},
                       100, std::move(r));
  }));
  auto newest = Must(Await<std::vector<PepItem>>(
      io_, [&](Reply<std::vector<PepItem>> r) { pg->GetPepItems("alice", node.node, {}, 1, std::move(r)); }));
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].id, "new");
  pg->Close();
}

TEST_F(StoreCopyTest, RefusesATargetThatHoldsAccountsAndAMissingSource) {
  {
    auto sqlite = Must(OpenSqlite(SqliteOptions{path_}));
    Must(Await<void>(io_, [&](Reply<void> r) { sqlite->CreateAccount(MakeAccount("alice"), std::move(r)); }));
    sqlite->Close();
  }
  pgtest::TestDatabase database;
  auto nothing = [](const TableProgress&) {};
  ASSERT_TRUE(CopySqliteToPostgres(path_, database.uri(), nothing).ok());
  auto again = CopySqliteToPostgres(path_, database.uri(), nothing);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::kConflict);
  EXPECT_EQ(database.Sql("SELECT count(*) FROM accounts"), "1") << "a refused copy changes nothing";

  auto missing = CopySqliteToPostgres(dir_ + "/absent.db", database.uri(), nothing);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/absent.db")) << "a missing source is not created";
}

}  // namespace
}  // namespace nines::store::copy

namespace nines::store::conformance {
// This binary uses the suite's helpers, not the suite.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoreConformance);
}  // namespace nines::store::conformance
