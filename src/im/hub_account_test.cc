// Account deletion and the hub (XEP-0077 §3.2): the account's sessions end,
// its contacts' subscriptions are cancelled, and nothing of it stays in
// memory for an account made later with the same name. Also a deletion the
// hub was not told of (`nines user del` on a running server), which it
// learns of from the store's answers.

#include <gtest/gtest.h>

#include <algorithm>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using store::Subscription;
using testing::HubTest;
using testing::Session;

class AccountTest : public HubTest {
 protected:
  void Friends(const std::string& a, const std::string& b) {
    for (const auto& [user, contact] : {std::pair{a, b}, std::pair{b, a}}) {
      store_.AddAccount(user);
      store::RosterItem item;
      item.jid = contact + "@example.com";
      item.subscription = Subscription::kBoth;
      store_.PutItemDirect(user, item);
    }
  }
  // Deletes the account in the store only, as the session's <remove/> or
  // `nines user del` does before (or without) telling the hub.
  void DeleteInStore(const std::string& user) {
    std::optional<Result<void>> done;
    store_.DeleteAccount(
        user, store::Reply<void>(loops_.loop(0).executor(), [&](Result<void> r) { done = std::move(r); }));
    Drain();
    ASSERT_TRUE(done.has_value());
    ASSERT_TRUE(done->ok());
  }
  std::vector<xmpp::SessionRef> KickedWith(std::string_view condition) {
    std::vector<xmpp::SessionRef> out;
    for (const auto& [ref, c] : port_->kicks()) {
      if (c == condition) out.push_back(ref);
    }
    return out;
  }
  static size_t Count(const std::vector<xml::Element>& got, std::string_view from, std::string_view type) {
    size_t n = 0;
    for (const auto& e : got) {
      if (e.name() == "presence" && e.Attr("from") == from && e.Attr("type") == type) ++n;
    }
    return n;
  }
};

TEST_F(AccountTest, RemovalEndsTheOtherSessionsAndCancelsTheSubscriptions) {
  Friends("alice", "bob");
  Session a = Online("alice", "a");
  Session b = Online("alice", "b");
  Session bob = Online("bob", "b");
  Forget(a);
  Forget(b);
  Forget(bob);

  DeleteInStore("alice");
  hub_->AccountRemoved(a.ref, a.jid);
  Drain();

  // The other session ends; the one that asked closes itself.
  EXPECT_EQ(KickedWith("not-authorized"), std::vector<xmpp::SessionRef>{b.ref});
  // Bob sees both resources go, then both subscriptions end (RFC 6121
  // §3.2.2, §3.3.2), and his roster says so.
  auto got = Got(bob);
  EXPECT_EQ(Count(got, "alice@example.com/a", "unavailable"), 1u);
  EXPECT_EQ(Count(got, "alice@example.com/b", "unavailable"), 1u);
  EXPECT_EQ(Count(got, "alice@example.com", "unsubscribe"), 1u);
  EXPECT_EQ(Count(got, "alice@example.com", "unsubscribed"), 1u);
  ASSERT_NE(store_.Item("bob", "alice@example.com"), nullptr);
  EXPECT_EQ(store_.Item("bob", "alice@example.com")->subscription, Subscription::kNone);

  // Bob's later presence no longer goes to the name (what the old sessions
  // got meanwhile, such as bob's unavailable presence of §3.3.3, aside).
  Forget(a);
  Forget(b);
  Send(bob, "<presence><show>away</show></presence>");
  EXPECT_TRUE(GotNamed(a, "presence").empty());
  EXPECT_TRUE(GotNamed(b, "presence").empty());
  // A message to it is refused as for any missing account (RFC 6121 §8.5.1).
  Send(bob, "<message to='alice@example.com' type='chat' id='m1'><body>there?</body></message>");
  auto errors = GotNamed(bob, "message", "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(ErrorCondition(errors[0]), "service-unavailable");
  EXPECT_TRUE(GotNamed(a, "message").empty());

  // A new account of the same name starts empty, even while the old
  // sessions are still on their way out.
  store_.AddAccount("alice");
  Session fresh = Login("alice", "new");
  auto roster = Ask(fresh, "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
  ASSERT_NE(roster.Child("query", "jabber:iq:roster"), nullptr);
  EXPECT_TRUE(roster.Child("query", "jabber:iq:roster")->Children().empty());
}

TEST_F(AccountTest, DetachedAndSilentSessionsAreEndedToo) {
  Session a = Online("alice", "a");
  Session idle = Login("alice", "idle");        // bound, never available
  Session detached = Online("alice", "phone");  // waiting to be resumed (XEP-0198)
  hub_->SetAsleep(detached.ref, detached.jid, true);
  Drain();
  DeleteInStore("alice");
  hub_->AccountRemoved(a.ref, a.jid);
  Drain();
  auto kicked = KickedWith("not-authorized");
  std::sort(kicked.begin(), kicked.end(), [](auto x, auto y) { return x.id < y.id; });
  auto want = std::vector<xmpp::SessionRef>{idle.ref, detached.ref};
  std::sort(want.begin(), want.end(), [](auto x, auto y) { return x.id < y.id; });
  EXPECT_EQ(kicked, want);
}

// A session that authenticated before the deletion and binds after it does
// not bring the account back: the bind looks the account up again.
TEST_F(AccountTest, ASessionThatBindsAfterTheDeletionIsEnded) {
  Session a = Online("alice", "a");
  DeleteInStore("alice");
  hub_->AccountRemoved(a.ref, a.jid);
  Drain();
  Logout(a);  // the session that asked closes itself
  xmpp::SessionRef late{1, 999};
  auto bare = xmpp::Jid::Parse(Bare("alice"));
  ASSERT_TRUE(bare.ok());
  hub_->Bind(late, *bare, "late", [](Result<xmpp::Jid>) {});
  Drain();
  EXPECT_EQ(KickedWith("not-authorized"), std::vector<xmpp::SessionRef>{late});
}

// `nines user del` while the account is online: the hub learns of it from
// the archive write of the next message to it.
TEST_F(AccountTest, ADeletionBehindTheHubsBackIsNoticedAtTheNextMessage) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  DeleteInStore("alice");
  Send(bob, "<message to='alice@example.com' type='chat' id='m1'><body>hi</body></message>");
  auto errors = GotNamed(bob, "message", "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(ErrorCondition(errors[0]), "service-unavailable");
  EXPECT_TRUE(GotNamed(alice, "message").empty());
  EXPECT_EQ(KickedWith("not-authorized"), std::vector<xmpp::SessionRef>{alice.ref}) << "and not bob's";
  // Known now: the next one is refused without asking the store.
  const int archive_calls = store_.calls("Archive");
  Send(bob, "<message to='alice@example.com' type='chat' id='m2'><body>hello?</body></message>");
  EXPECT_EQ(GotNamed(bob, "message", "error").size(), 1u);
  EXPECT_EQ(store_.calls("Archive"), archive_calls);
}

// ...or from the archive write of the next message it sends: the message
// is still its recipient's, and the sender's sessions end.
TEST_F(AccountTest, ASenderDeletedBehindTheHubsBackIsNoticedAtItsNextMessage) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  DeleteInStore("alice");
  Send(alice, "<message to='bob@example.com' type='chat' id='m1'><body>last words</body></message>");
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ChildText("body"), "last words");
  EXPECT_EQ(store_.archive("bob").size(), 1u);
  EXPECT_EQ(KickedWith("not-authorized"), std::vector<xmpp::SessionRef>{alice.ref});
}

}  // namespace
}  // namespace nines::im
