// Binding, message routing (RFC 6121 §8.5) and offline storage (XEP-0160).

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class RoutingTest : public HubTest {};

// --- Bind -------------------------------------------------------------------

TEST_F(RoutingTest, BindGeneratesAnUnguessableResource) {
  Session a = Login("alice", "");
  Session b = Login("alice", "");
  EXPECT_EQ(a.jid.BareString(), "alice@example.com");
  EXPECT_GE(a.jid.resource().size(), 16u);
  EXPECT_NE(a.jid.resource(), b.jid.resource());
}

TEST_F(RoutingTest, SameResourceKicksTheOldSessionWithConflict) {
  Session old_session = Online("alice", "phone");
  Session watcher = Online("alice", "desk");
  Forget(watcher);
  Session fresh = Login("alice", "phone");
  EXPECT_EQ(fresh.full(), "alice@example.com/phone");
  ASSERT_EQ(port_->kicks().size(), 1u);
  EXPECT_EQ(port_->kicks()[0].first, old_session.ref);
  EXPECT_EQ(port_->kicks()[0].second, "conflict");
  // The old resource was available: the other resource hears it leave.
  auto got = Got(watcher);
  auto gone = Named(got, "presence", "unavailable");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0]->Attr("from"), "alice@example.com/phone");
  // The old session's own Unbind comes later and must not unbind the new one.
  hub_->Unbind(old_session.ref, old_session.jid);
  Drain();
  Session bob = Login("bob");
  Send(bob, "<message to='alice@example.com/phone' type='chat'><body>x</body></message>");
  EXPECT_EQ(Got(fresh).size(), 1u);
}

TEST_F(RoutingTest, ResourceLimit) {
  Config c = DefaultConfig();
  c.limits.resources_per_account = 2;
  MakeHub(c);
  Login("alice", "a");
  Login("alice", "b");
  auto third = TryBind("alice", "c", {0, 999});
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, Errc::kLimitExceeded);
  // Taking over an existing resource is not a new one.
  auto again = TryBind("alice", "b", {1, 1000});
  EXPECT_TRUE(again.ok());
}

// --- Messages ---------------------------------------------------------------

TEST_F(RoutingTest, BareJidChatGoesToTheHighestPriority) {
  Session high = Online("alice", "high", 5);
  Session low = Online("alice", "low", 1);
  Session bob = Online("bob");
  Forget(high);
  Forget(low);
  Send(bob, "<message to='alice@example.com' type='chat' id='m1'><body>hi</body></message>");
  auto got = Got(high);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("from"), bob.full());
  EXPECT_EQ(got[0].Attr("to"), "alice@example.com");
  EXPECT_EQ(got[0].ChildText("body"), "hi");
  EXPECT_TRUE(Got(low).empty());
}

TEST_F(RoutingTest, EqualPrioritiesAllGetIt) {
  Session a = Online("alice", "a", 3);
  Session b = Online("alice", "b", 3);
  Session bob = Online("bob");
  Forget(a);
  Forget(b);
  Send(bob, "<message to='alice@example.com'><body>hi</body></message>");
  EXPECT_EQ(Got(a).size(), 1u);
  EXPECT_EQ(Got(b).size(), 1u);
}

TEST_F(RoutingTest, NegativePriorityNeverGetsBareJidMessages) {
  Session neg = Online("alice", "neg", -1);
  Session bob = Online("bob");
  Forget(neg);
  Send(bob, "<message to='alice@example.com' type='chat'><body>hi</body></message>");
  EXPECT_TRUE(Got(neg).empty());
  EXPECT_EQ(store_.offline("alice").size(), 1u);  // stored instead (RFC 6121 §8.5.2.1.1)
  // But a full-JID message reaches it.
  Send(bob, "<message to='alice@example.com/neg' type='chat'><body>direct</body></message>");
  EXPECT_EQ(Got(neg).size(), 1u);
}

TEST_F(RoutingTest, HeadlineGoesToAllNonNegativeOrNowhere) {
  Session a = Online("alice", "a", 3);
  Session b = Online("alice", "b", 0);
  Session c = Online("alice", "c", -5);
  Session bob = Online("bob");
  Forget(a);
  Forget(b);
  Forget(c);
  Send(bob, "<message to='alice@example.com' type='headline'><body>news</body></message>");
  EXPECT_EQ(Got(a).size(), 1u);
  EXPECT_EQ(Got(b).size(), 1u);
  EXPECT_TRUE(Got(c).empty());
  Send(bob, "<message to='carol@example.com' type='headline'><body>news</body></message>");
  store_.AddAccount("carol");
  Send(bob, "<message to='carol@example.com' type='headline'><body>news</body></message>");
  EXPECT_TRUE(store_.offline("carol").empty());
}

TEST_F(RoutingTest, GroupchatToBareJidIsAnError) {
  Online("alice");
  Session bob = Online("bob");
  Forget(bob);
  Send(bob, "<message to='alice@example.com' type='groupchat' id='g1'><body>x</body></message>");
  auto got = Got(bob);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "error");
  EXPECT_EQ(got[0].Attr("id"), "g1");
  EXPECT_EQ(got[0].Attr("from"), "alice@example.com");
  EXPECT_EQ(got[0].Attr("to"), bob.full());
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
}

TEST_F(RoutingTest, FullJidOfAbsentResource) {
  Session alice = Online("alice", "here");
  Session bob = Online("bob");
  Forget(alice);
  Forget(bob);
  // chat/normal: as if to the bare JID.
  Send(bob, "<message to='alice@example.com/gone' type='chat'><body>1</body></message>");
  Send(bob, "<message to='alice@example.com/gone'><body>2</body></message>");
  EXPECT_EQ(Got(alice).size(), 2u);
  // headline and error: dropped; groupchat: error.
  Send(bob, "<message to='alice@example.com/gone' type='headline'><body>3</body></message>");
  Send(bob, "<message to='alice@example.com/gone' type='error'><body>4</body></message>");
  EXPECT_TRUE(Got(alice).empty());
  EXPECT_TRUE(Got(bob).empty());
  Send(bob, "<message to='alice@example.com/gone' type='groupchat'><body>5</body></message>");
  auto errors = Got(bob);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(ErrorCondition(errors[0]), "service-unavailable");
}

TEST_F(RoutingTest, ConnectedButUnavailableResourceGetsFullJidMessages) {
  Session alice = Login("alice", "quiet");  // no presence sent
  Session bob = Online("bob");
  Send(bob, "<message to='alice@example.com/quiet' type='chat'><body>x</body></message>");
  EXPECT_EQ(Got(alice).size(), 1u);
  Send(bob, "<message to='alice@example.com' type='chat'><body>y</body></message>");
  EXPECT_TRUE(Got(alice).empty());
  EXPECT_EQ(store_.offline("alice").size(), 1u);
}

TEST_F(RoutingTest, UnknownAccountAndRemoteDomain) {
  Session bob = Online("bob");
  Forget(bob);
  Send(bob, "<message to='nobody@example.com' type='chat' id='a'><body>x</body></message>");
  Send(bob, "<message to='someone@elsewhere.net' type='chat' id='b'><body>x</body></message>");
  Send(bob, "<presence to='nobody@example.com'/>");  // silently dropped
  Send(bob, "<iq to='nobody@example.com/r' type='get' id='c'><ping xmlns='urn:xmpp:ping'/></iq>");
  auto got = Got(bob);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].Attr("id"), "a");
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
  EXPECT_EQ(got[1].Attr("id"), "b");
  EXPECT_EQ(ErrorCondition(got[1]), "remote-server-not-found");
  EXPECT_EQ(got[2].Attr("id"), "c");
  EXPECT_EQ(ErrorCondition(got[2]), "service-unavailable");
}

TEST_F(RoutingTest, MessageWithoutToGoesToOwnBareJid) {
  Session a = Online("alice", "a");
  Session b = Online("alice", "b");
  Forget(a);
  Forget(b);
  Send(a, "<message type='chat'><body>note to self</body></message>");
  EXPECT_EQ(Got(a).size(), 1u);
  EXPECT_EQ(Got(b).size(), 1u);
}

TEST_F(RoutingTest, MessagesToTheServer) {
  Session bob = Online("bob");
  Forget(bob);
  Send(bob, "<message to='example.com' id='s'><body>hello server</body></message>");
  Send(bob, "<message to='example.com' type='error' id='e'/>");
  auto got = Got(bob);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
}

TEST_F(RoutingTest, RacingLogoutReroutesTheMessage) {
  Session first = Online("alice", "first", 5);
  Session second = Online("alice", "second", 1);
  Session bob = Online("bob");
  Forget(first);
  Forget(second);
  // The session is gone but the hub has not heard its Unbind yet.
  port_->SetGone(first.ref);
  Send(bob, "<message to='alice@example.com' type='chat'><body>race</body></message>");
  auto got = Got(second);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ChildText("body"), "race");
  // With nobody left it goes to offline storage rather than being lost.
  port_->SetGone(second.ref);
  Send(bob, "<message to='alice@example.com/first' type='chat'><body>race2</body></message>");
  EXPECT_EQ(store_.offline("alice").size(), 1u);
}

// A session that cannot deliver a message hands back only its text
// (xmpp::OnGone): the reroute reads from, to and id back from it, escapes
// and all, and gives the next resource the very same stanza.
TEST_F(RoutingTest, AReroutedMessageIsTheSameStanza) {
  Session first = Online("alice", "first", 5);
  Session second = Online("alice", "second", 1);
  Session bob = Online("bob", "b&'<>\"");
  Forget(first);
  Forget(second);
  Forget(bob);
  port_->SetGone(first.ref);
  Send(bob,
       "<message to='alice@example.com' type='chat' id='a&amp;&apos;&lt;'><body>x &amp; y</body></message>");
  auto got = port_->TakeRaw(second.ref);
  ASSERT_EQ(got.size(), 1u);
  auto message = testing::Parse(got[0]);
  EXPECT_EQ(message.Attr("from"), "bob@example.com/b&'<>\"");
  EXPECT_EQ(message.Attr("id"), "a&'<");
  EXPECT_EQ(message.ChildText("body"), "x & y");
  // Rerouted once more (the second resource is gone too), it is stored as it came.
  port_->SetGone(second.ref);
  Send(bob, "<message to='alice@example.com' type='chat' id='again'><body>z</body></message>");
  ASSERT_EQ(store_.offline("alice").size(), 1u);
  auto stored = testing::Parse(store_.offline("alice")[0].stanza);
  EXPECT_EQ(stored.Attr("from"), "bob@example.com/b&'<>\"");
  EXPECT_EQ(stored.Attr("id"), "again");
  EXPECT_TRUE(Got(bob).empty()) << "no error for the sender";
}

// What the text does not say comes along with it: a rerouted message that
// cannot be kept is refused to the session that sent it.
TEST_F(RoutingTest, AReroutedMessageThatCannotBeKeptIsRefusedToItsSender) {
  Config c = DefaultConfig();
  c.limits.offline_messages = 0;
  MakeHub(c);
  Session alice = Online("alice");
  Session bob = Online("bob");
  Forget(alice);
  Forget(bob);
  port_->SetGone(alice.ref);
  Send(bob, "<message to='alice@example.com' type='chat' id='lost?'><body>x</body></message>");
  auto got = Got(bob);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("id"), "lost?");
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
}

TEST_F(RoutingTest, IqToFullJidIsDelivered) {
  Session alice = Online("alice", "a");
  Session bob = Online("bob", "b");
  Forget(alice);
  Send(bob, "<iq to='alice@example.com/a' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("from"), "bob@example.com/b");
  Send(alice, "<iq to='bob@example.com/b' type='result' id='q1'/>");
  auto back = Got(bob);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].Attr("type"), "result");
  // A gone session: the requester gets an error.
  port_->SetGone(alice.ref);
  Send(bob, "<iq to='alice@example.com/a' type='get' id='q2'><query xmlns='jabber:iq:version'/></iq>");
  auto err = Got(bob);
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(ErrorCondition(err[0]), "service-unavailable");
}

// --- Offline storage ------------------------------------------------------

TEST_F(RoutingTest, OfflineMessagesAreDeliveredWithDelayInOrder) {
  Session alice = Online("alice", "phone");
  store_.AddAccount("bob");
  for (int i = 1; i <= 3; ++i) {
    Send(alice, "<message to='bob@example.com' type='chat' id='m" + std::to_string(i) + "'><body>m" +
                    std::to_string(i) + "</body></message>");
  }
  ASSERT_EQ(store_.offline("bob").size(), 3u);
  EXPECT_TRUE(Got(alice).empty());  // no error for the sender

  Session bob = Login("bob");
  EXPECT_TRUE(Got(bob).empty());  // not before initial presence
  Send(bob, "<presence/>");
  auto messages = GotNamed(bob, "message");
  ASSERT_EQ(messages.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(messages[i].ChildText("body"), "m" + std::to_string(i + 1));
    EXPECT_EQ(messages[i].Attr("from"), "alice@example.com/phone");
    const xml::Element* delay = messages[i].Child("delay", "urn:xmpp:delay");
    ASSERT_NE(delay, nullptr);
    EXPECT_EQ(delay->Attr("from"), "example.com");
    EXPECT_EQ(delay->Attr("stamp").size(), 24u);  // 2024-01-01T00:00:00.000Z
    EXPECT_EQ(delay->Attr("stamp").back(), 'Z');
  }
  EXPECT_TRUE(store_.offline("bob").empty());
  // Not again for a second resource.
  Session again = Online("bob", "other");
  EXPECT_TRUE(GotNamed(again, "message").empty());
}

TEST_F(RoutingTest, OfflineWaitsForNonNegativePriority) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Send(alice, "<message to='bob@example.com'><body>later</body></message>");
  Session bob = Login("bob");
  Send(bob, "<presence><priority>-1</priority></presence>");
  EXPECT_TRUE(GotNamed(bob, "message").empty());
  Send(bob, "<presence><priority>1</priority></presence>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
}

TEST_F(RoutingTest, OfflinePolicy) {
  Config c = DefaultConfig();
  c.limits.offline_messages = 2;
  MakeHub(c);
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Forget(alice);
  // Chat states alone are not stored, and not an error either.
  Send(alice,
       "<message to='bob@example.com' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
       "</message>");
  // Nor is anything marked no-store, a headline, or an error.
  Send(alice, "<message to='bob@example.com'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>");
  Send(alice, "<message to='bob@example.com' type='headline'><body>x</body></message>");
  Send(alice, "<message to='bob@example.com' type='error'><body>x</body></message>");
  EXPECT_TRUE(store_.offline("bob").empty());
  EXPECT_TRUE(Got(alice).empty());
  // Receipts are worth keeping.
  Send(alice, "<message to='bob@example.com'><received xmlns='urn:xmpp:receipts' id='x'/></message>");
  Send(alice, "<message to='bob@example.com' type='chat'><body>2</body></message>");
  EXPECT_EQ(store_.offline("bob").size(), 2u);
  // Full: the sender is told (XEP-0160 §3).
  Send(alice, "<message to='bob@example.com' type='chat' id='full'><body>3</body></message>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("id"), "full");
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
  EXPECT_EQ(store_.offline("bob").size(), 2u);
}

TEST_F(RoutingTest, OfflineStoreFailureIsReported) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Forget(alice);
  store_.FailNext("StoreOffline", Errc::kUnavailable);
  Send(alice, "<message to='bob@example.com' id='f'><body>x</body></message>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "internal-server-error");
}

TEST_F(RoutingTest, OfflineWriteRacingWithLogin) {
  Session alice = Online("alice");
  Session bob = Login("bob");
  Send(bob, "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
  Forget(bob);
  // bob is bound but not yet available: the message is stored; its write is
  // still in flight when bob's initial presence loads offline messages.
  store_.Hold("StoreOffline");
  Send(alice, "<message to='bob@example.com' type='chat'><body>racing</body></message>");
  Send(bob, "<presence/>");  // loads offline messages: finds none yet
  EXPECT_TRUE(GotNamed(bob, "message").empty());
  store_.Release();  // the write lands; the hub notices bob is online now
  Drain();
  auto messages = GotNamed(bob, "message");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].ChildText("body"), "racing");
  EXPECT_TRUE(store_.offline("bob").empty());
}

TEST_F(RoutingTest, OfflineDeliveryToAVanishedSessionIsKeptWithItsStamp) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Send(alice, "<message to='bob@example.com' type='chat'><body>keep me</body></message>");
  ASSERT_EQ(store_.offline("bob").size(), 1u);
  store_.offline("bob")[0].stamp_ms = 1700000000123;  // received long ago
  Session bob = Login("bob");
  store_.Hold("LoadOffline");
  Send(bob, "<presence/>");
  port_->SetGone(bob.ref);  // gone before the stored messages arrive
  store_.Release();
  Drain();
  auto& stored = store_.offline("bob");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].stamp_ms, 1700000000123);
  EXPECT_EQ(stored[0].stanza.find("urn:xmpp:delay"), std::string::npos) << stored[0].stanza;
  EXPECT_NE(stored[0].stanza.find("keep me"), std::string::npos);
  // The next login gets it, with the original stamp.
  Logout(bob);
  Session again = Online("bob", "again");
  (void)again;
  EXPECT_TRUE(store_.offline("bob").empty());
}

TEST_F(RoutingTest, LoadFailureAnswersMessagesWithAnError) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  store_.FailNext("CountOffline", Errc::kUnavailable);
  Send(alice, "<message to='bob@example.com' type='chat' id='lf'><body>x</body></message>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "internal-server-error");
  // The next one loads again and is stored.
  Send(alice, "<message to='bob@example.com' type='chat'><body>y</body></message>");
  EXPECT_EQ(store_.offline("bob").size(), 1u);
}

TEST_F(RoutingTest, StateIsEvictedWhenIdle) {
  Session alice = Online("alice");
  Logout(alice);
  store_.AddAccount("bob");
  int loads = store_.calls("GetRoster");
  Session bob = Online("bob");
  Send(bob, "<message to='alice@example.com'><body>1</body></message>");
  Send(bob, "<message to='alice@example.com'><body>2</body></message>");
  // Each message to an offline account loads it afresh: nothing was kept.
  EXPECT_EQ(store_.calls("GetRoster"), loads + 3);
  EXPECT_EQ(store_.offline("alice").size(), 2u);
}

}  // namespace
}  // namespace nines::im
