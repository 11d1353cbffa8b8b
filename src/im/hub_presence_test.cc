// Roster (RFC 6121 §2), subscriptions (§3) and presence (§4) through the hub.

#include <gtest/gtest.h>

#include "im/jid_view.h"
#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using store::Subscription;
using testing::HubTest;
using testing::Session;

class PresenceTest : public HubTest {
 protected:
  // Writes roster items straight into the store (before anyone logs in).
  void Item(const std::string& user, const std::string& contact, Subscription sub, bool ask = false,
            bool pending_in = false) {
    store_.AddAccount(user);
    store::RosterItem item;
    item.jid = contact + "@example.com";
    item.subscription = sub;
    item.ask_out = ask;
    item.pending_in = pending_in;
    store_.PutItemDirect(user, item);
  }
  void Friends(const std::string& a, const std::string& b) {
    Item(a, b, Subscription::kBoth);
    Item(b, a, Subscription::kBoth);
  }
  // The single roster item in a push or result, or null.
  static const xml::Element* RosterItemOf(const xml::Element& iq) {
    const xml::Element* q = iq.Child("query", "jabber:iq:roster");
    return q != nullptr ? q->Child("item", "jabber:iq:roster") : nullptr;
  }
  std::vector<xml::Element> Pushes(const Session& s) {
    std::vector<xml::Element> out;
    for (auto& e : Got(s)) {
      if (e.name() == "iq" && e.Attr("type") == "set" && e.Child("query", "jabber:iq:roster")) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }
  const store::RosterItem* Stored(const std::string& user, const std::string& contact) {
    return store_.Item(user, contact + "@example.com");
  }
};

// --- Roster -----------------------------------------------------------------

TEST_F(PresenceTest, RosterSetPushesToInterestedResourcesAndGetReturnsIt) {
  Session a = Online("alice", "a");         // requested the roster
  Session quiet = Login("alice", "quiet");  // did not
  Send(a,
       "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='Bob@Example.com' name='Bob'>"
       "<group>Friends</group><group>Work</group></item></query></iq>");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(got[0].Attr("id"), "s1");
  EXPECT_EQ(got[1].Attr("type"), "set");
  EXPECT_FALSE(got[1].HasAttr("from"));
  EXPECT_EQ(got[1].Attr("to"), a.full());
  const xml::Element* item = RosterItemOf(got[1]);
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->Attr("jid"), "bob@example.com");  // normalised
  EXPECT_EQ(item->Attr("name"), "Bob");
  EXPECT_EQ(item->Attr("subscription"), "none");
  EXPECT_FALSE(item->HasAttr("ask"));
  EXPECT_EQ(item->Children().size(), 2u);
  EXPECT_TRUE(Got(quiet).empty());

  ASSERT_NE(Stored("alice", "bob"), nullptr);
  EXPECT_EQ(Stored("alice", "bob")->name, "Bob");

  Send(quiet, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>");
  auto result = Got(quiet);
  ASSERT_EQ(result.size(), 1u);
  item = RosterItemOf(result[0]);
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->Attr("name"), "Bob");
  EXPECT_FALSE(result[0].Child("query", "jabber:iq:roster")->HasAttr("ver"));  // not asked for
}

TEST_F(PresenceTest, RosterVersioning) {
  Item("alice", "bob", Subscription::kNone);
  Session a = Login("alice");
  Send(a, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster' ver=''/></iq>");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  const xml::Element* q = got[0].Child("query", "jabber:iq:roster");
  ASSERT_NE(q, nullptr);
  std::string ver(q->Attr("ver"));
  EXPECT_EQ(ver, std::to_string(store_.roster("alice").version));
  EXPECT_EQ(q->Children().size(), 1u);

  // Current version: an empty result, and nothing else.
  Send(a, "<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='" + ver + "'/></iq>");
  got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_TRUE(got[0].Children().empty());

  // A change is pushed with the new version; the old one gets the full roster.
  Send(a,
       "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='carol@example.com'/></query></iq>");
  auto pushes = Pushes(a);
  ASSERT_EQ(pushes.size(), 1u);
  std::string ver2(pushes[0].Child("query", "jabber:iq:roster")->Attr("ver"));
  EXPECT_NE(ver2, ver);
  Send(a, "<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='" + ver + "'/></iq>");
  got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Child("query", "jabber:iq:roster")->Attr("ver"), ver2);
  EXPECT_EQ(got[0].Child("query", "jabber:iq:roster")->Children().size(), 2u);
}

TEST_F(PresenceTest, RosterSetValidation) {
  Config c = DefaultConfig();
  c.limits.roster_size = 1;
  MakeHub(c);
  Session a = Online("alice");
  auto expect_error = [&](const std::string& query, const std::string& condition) {
    Send(a, "<iq type='set' id='bad'><query xmlns='jabber:iq:roster'>" + query + "</query></iq>");
    auto got = Got(a);
    ASSERT_EQ(got.size(), 1u) << query;
    EXPECT_EQ(got[0].Attr("type"), "error") << query;
    EXPECT_EQ(ErrorCondition(got[0]), condition) << query;
  };
  expect_error("<item jid='b@example.com'/><item jid='c@example.com'/>", "bad-request");
  expect_error("", "bad-request");
  expect_error("<item jid='b@example.com' subscription='both'/>", "bad-request");
  expect_error("<item jid='b@example.com'><group>x</group><group>x</group></item>", "bad-request");
  expect_error("<item jid='@@bad'/>", "bad-request");
  expect_error("<item jid='b@example.com/res'/>", "bad-request");
  expect_error("<item jid='b@example.com'><group></group></item>", "not-acceptable");
  expect_error("<item jid='alice@example.com'/>", "not-allowed");
  expect_error("<item jid='nobody@example.com' subscription='remove'/>", "item-not-found");
  Send(a, "<iq type='set' id='ok'><query xmlns='jabber:iq:roster'><item jid='b@example.com'/></query></iq>");
  Forget(a);
  expect_error("<item jid='c@example.com'/>", "policy-violation");  // roster_size = 1
  // Updating an existing item is fine at the limit.
  Send(a,
       "<iq type='set' id='ok2'><query xmlns='jabber:iq:roster'><item jid='b@example.com' "
       "name='B'/></query></iq>");
  EXPECT_EQ(Got(a)[0].Attr("type"), "result");
  // A roster set addressed to someone else's account is not ours to answer.
  Send(
      a,
      "<iq type='set' id='x' to='bob@example.com'><query xmlns='jabber:iq:roster'><item jid='z@example.com'/>"
      "</query></iq>");
  store_.AddAccount("bob");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "error");
}

TEST_F(PresenceTest, RosterWriteFailure) {
  Session a = Online("alice");
  store_.FailNext("PutRosterItem", Errc::kUnavailable);
  Send(a, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='b@example.com'/></query></iq>");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "internal-server-error");
  // The cache was dropped and reloads from the store: no phantom item.
  Send(a, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>");
  got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].Child("query", "jabber:iq:roster")->Children().empty());
}

// A write fails while another is in flight: the reload waits for it, or its
// read could miss the write and bring the removed item back into the cache.
TEST_F(PresenceTest, AReloadAfterAFailedRosterWriteWaitsForTheWritesInFlight) {
  store::RosterItem y;
  y.jid = "y@example.com";
  store_.PutItemDirect("alice", y);
  Session a = Online("alice");
  store_.Hold("RemoveRosterItem");
  Send(a,
       "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='y@example.com' "
       "subscription='remove'/></query></iq>");
  ASSERT_EQ(store_.held(), 1u);
  store_.FailNext("PutRosterItem", Errc::kUnavailable);
  Send(a, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='b@example.com'/></query></iq>");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "internal-server-error");
  Send(a, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_TRUE(Got(a).empty()) << "the get waits for the reload, which waits for the remove";
  store_.Release();
  Drain();
  Forget(a);
  Send(a, "<iq type='get' id='g2'><query xmlns='jabber:iq:roster'/></iq>");
  got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].Child("query", "jabber:iq:roster")->Children().empty()) << got[0].Serialize();
}

// --- Subscriptions ------------------------------------------------------------

TEST_F(PresenceTest, SubscriptionHandshake) {
  Session alice = Online("alice", "a");
  Session bob = Online("bob", "b");
  Send(alice, "<presence to='bob@example.com/b' type='subscribe' id='sub1'><status>hi</status></presence>");
  // §3.1.2: alice's push with ask='subscribe'.
  auto pushes = Pushes(alice);
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(RosterItemOf(pushes[0])->Attr("ask"), "subscribe");
  EXPECT_EQ(RosterItemOf(pushes[0])->Attr("subscription"), "none");
  // §3.1.3: bob gets it from alice's bare JID, to his bare JID.
  auto requests = GotNamed(bob, "presence", "subscribe");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].Attr("from"), "alice@example.com");
  EXPECT_EQ(requests[0].Attr("to"), "bob@example.com");
  EXPECT_EQ(requests[0].ChildText("status"), "hi");
  // Not in bob's roster yet.
  Send(bob, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_TRUE(Got(bob)[0].Child("query", "jabber:iq:roster")->Children().empty());

  Send(bob, "<presence to='alice@example.com' type='subscribed'/>");
  auto bob_pushes = Pushes(bob);
  ASSERT_EQ(bob_pushes.size(), 1u);
  EXPECT_EQ(RosterItemOf(bob_pushes[0])->Attr("subscription"), "from");
  auto alice_got = Got(alice);
  auto subscribed = Named(alice_got, "presence", "subscribed");
  ASSERT_EQ(subscribed.size(), 1u);
  EXPECT_EQ(subscribed[0]->Attr("from"), "bob@example.com");
  bool pushed_to = false;
  bool bob_presence = false;
  for (auto& e : alice_got) {
    if (e.name() == "iq" && RosterItemOf(e) != nullptr) {
      EXPECT_EQ(RosterItemOf(e)->Attr("subscription"), "to");
      EXPECT_FALSE(RosterItemOf(e)->HasAttr("ask"));
      pushed_to = true;
    }
    if (e.name() == "presence" && e.Attr("from") == "bob@example.com/b" && !e.HasAttr("type"))
      bob_presence = true;
  }
  EXPECT_TRUE(pushed_to);
  EXPECT_TRUE(bob_presence);  // §3.1.5: the contact's current presence follows
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kTo);
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kFrom);
  EXPECT_FALSE(Stored("bob", "alice")->pending_in);

  // Now bob's presence reaches alice, and alice's does not reach bob.
  Send(bob, "<presence><show>away</show></presence>");
  EXPECT_EQ(GotNamed(alice, "presence").size(), 1u);
  Forget(bob);  // its own echo
  Send(alice, "<presence><show>dnd</show></presence>");
  EXPECT_TRUE(GotNamed(bob, "presence").empty());

  // And the other way round to both.
  Send(bob, "<presence to='alice@example.com' type='subscribe'/>");
  Send(alice, "<presence to='bob@example.com' type='subscribed'/>");
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kBoth);
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kBoth);
  EXPECT_FALSE(Stored("bob", "alice")->ask_out);
}

TEST_F(PresenceTest, RequestWaitsForLoginAndStaysOutOfTheRoster) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Send(alice, "<presence to='bob@example.com' type='subscribe'/>");
  ASSERT_NE(Stored("bob", "alice"), nullptr);
  EXPECT_TRUE(Stored("bob", "alice")->pending_in);
  EXPECT_FALSE(Stored("bob", "alice")->pending_in_stanza.empty());

  Session bob = Login("bob");
  Send(bob, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_TRUE(Got(bob)[0].Child("query", "jabber:iq:roster")->Children().empty());
  Send(bob, "<presence/>");
  auto requests = GotNamed(bob, "presence", "subscribe");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].Attr("from"), "alice@example.com");
  // Each new login sees it again until it is answered.
  Session bob2 = Login("bob", "second");
  Send(bob2, "<presence/>");
  EXPECT_EQ(GotNamed(bob2, "presence", "subscribe").size(), 1u);

  // Refused: the record goes away and alice's request is cancelled.
  Send(bob, "<presence to='alice@example.com' type='unsubscribed'/>");
  EXPECT_EQ(Stored("bob", "alice"), nullptr);
  EXPECT_TRUE(Pushes(bob).empty());
  EXPECT_FALSE(Stored("alice", "bob")->ask_out);
  EXPECT_EQ(GotNamed(alice, "presence", "unsubscribed").size(), 1u);
}

TEST_F(PresenceTest, PreApproval) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  // §3.4: bob approves before being asked.
  Send(bob, "<presence to='alice@example.com' type='subscribed'/>");
  auto pushes = Pushes(bob);
  ASSERT_EQ(pushes.size(), 1u);
  EXPECT_EQ(RosterItemOf(pushes[0])->Attr("approved"), "true");
  EXPECT_EQ(RosterItemOf(pushes[0])->Attr("subscription"), "none");
  EXPECT_TRUE(Got(alice).empty());  // not routed
  EXPECT_TRUE(Stored("bob", "alice")->preapproved);

  Send(alice, "<presence to='bob@example.com' type='subscribe'/>");
  // Approved on bob's behalf: bob is not asked.
  auto bob_got = Got(bob);
  EXPECT_TRUE(Named(bob_got, "presence", "subscribe").empty());
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kFrom);
  EXPECT_FALSE(Stored("bob", "alice")->preapproved);
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kTo);
  auto alice_got = Got(alice);
  EXPECT_EQ(Named(alice_got, "presence", "subscribed").size(), 1u);
  bool presence = false;
  for (auto* p : Named(alice_got, "presence", "")) presence |= p->Attr("from") == bob.full();
  EXPECT_TRUE(presence);
}

TEST_F(PresenceTest, PreApprovalCancelledByUnsubscribed) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Send(bob, "<presence to='alice@example.com' type='subscribed'/>");
  Send(bob, "<presence to='alice@example.com' type='unsubscribed'/>");
  EXPECT_FALSE(Stored("bob", "alice")->preapproved);
  Forget(bob);
  Send(alice, "<presence to='bob@example.com' type='subscribe'/>");
  EXPECT_EQ(GotNamed(bob, "presence", "subscribe").size(), 1u);  // asked, not auto-approved
}

TEST_F(PresenceTest, SubscribeWhenAlreadySubscribedIsAnsweredByTheServer) {
  Item("alice", "bob", Subscription::kNone);
  Item("bob", "alice", Subscription::kFrom);
  Session alice = Online("alice");
  Session bob = Online("bob");
  Send(alice, "<presence to='bob@example.com' type='subscribe'/>");
  EXPECT_TRUE(GotNamed(bob, "presence", "subscribe").empty());
  EXPECT_EQ(GotNamed(alice, "presence", "subscribed").size(), 1u);
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kTo);
}

TEST_F(PresenceTest, UnsubscribeAndCancel) {
  Friends("alice", "bob");
  Session alice = Online("alice");
  Session bob = Online("bob");
  Forget(alice);
  // alice stops wanting bob's presence: alice To->None side of Both -> From.
  Send(alice, "<presence to='bob@example.com' type='unsubscribe'/>");
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kFrom);
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kTo);
  auto bob_got = Got(bob);
  EXPECT_EQ(Named(bob_got, "presence", "unsubscribe").size(), 1u);
  // bob's server says goodbye to alice (bob's presence no longer reaches her).
  auto alice_got = Got(alice);
  bool unavailable = false;
  for (auto* p : Named(alice_got, "presence", "unavailable")) unavailable |= p->Attr("from") == bob.full();
  EXPECT_TRUE(unavailable);
  // alice cancels bob's subscription to her.
  Send(alice, "<presence to='bob@example.com' type='unsubscribed'/>");
  EXPECT_EQ(Stored("alice", "bob")->subscription, Subscription::kNone);
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kNone);
  bob_got = Got(bob);
  EXPECT_EQ(Named(bob_got, "presence", "unsubscribed").size(), 1u);
  unavailable = false;
  for (auto* p : Named(bob_got, "presence", "unavailable")) unavailable |= p->Attr("from") == alice.full();
  EXPECT_TRUE(unavailable);
}

TEST_F(PresenceTest, RosterRemoveCancelsBothWays) {
  Friends("alice", "bob");
  Session alice = Online("alice");
  Session bob = Online("bob");
  Forget(alice);
  Forget(bob);
  Send(alice,
       "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@example.com' "
       "subscription='remove'/></query></iq>");
  auto got = Got(alice);
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(RosterItemOf(got[1])->Attr("subscription"), "remove");
  EXPECT_EQ(Stored("alice", "bob"), nullptr);
  EXPECT_EQ(Stored("bob", "alice")->subscription, Subscription::kNone);
  auto bob_got = Got(bob);
  EXPECT_EQ(Named(bob_got, "presence", "unsubscribe").size(), 1u);
  EXPECT_EQ(Named(bob_got, "presence", "unsubscribed").size(), 1u);
  EXPECT_EQ(Named(bob_got, "presence", "unavailable").size(), 1u);
}

// --- Presence ---------------------------------------------------------------------

TEST_F(PresenceTest, InitialPresenceBroadcastsAndProbes) {
  Friends("alice", "bob");
  Item("alice", "carol", Subscription::kTo);  // alice sees carol; carol does not see alice
  Item("carol", "alice", Subscription::kFrom);
  Item("alice", "dave", Subscription::kFrom);  // dave sees alice
  Item("dave", "alice", Subscription::kTo);
  Session bob = Online("bob", "b");
  Session carol = Online("carol", "c");
  Session dave = Online("dave", "d");
  Forget(bob);
  Forget(carol);
  Forget(dave);

  Session alice = Login("alice", "a");
  Send(alice, "<presence><status>here</status><priority>2</priority></presence>");
  auto to_bob = GotNamed(bob, "presence");
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].Attr("from"), "alice@example.com/a");
  EXPECT_EQ(to_bob[0].Attr("to"), "bob@example.com");
  EXPECT_EQ(to_bob[0].ChildText("status"), "here");
  EXPECT_EQ(GotNamed(dave, "presence").size(), 1u);
  EXPECT_TRUE(GotNamed(carol, "presence").empty());

  // alice hears her own presence, and (answers to her probes) bob's and carol's.
  auto got = GotNamed(alice, "presence");
  std::set<std::string> from;
  for (auto& p : got) from.insert(std::string(p.Attr("from")));
  EXPECT_EQ(from, (std::set<std::string>{"alice@example.com/a", "bob@example.com/b", "carol@example.com/c"}));
  for (auto& p : got) {
    if (p.Attr("from") != "alice@example.com/a") {
      EXPECT_EQ(p.Attr("to"), "alice@example.com/a");
    }
  }

  // Subsequent presence goes to the same people.
  Send(alice, "<presence><show>away</show></presence>");
  EXPECT_EQ(GotNamed(bob, "presence").size(), 1u);
  EXPECT_EQ(GotNamed(dave, "presence").size(), 1u);
  EXPECT_TRUE(GotNamed(carol, "presence").empty());
  EXPECT_TRUE(GotNamed(alice, "presence").size() == 1u);  // the echo, no new probes

  // Logout: unavailable to subscribers.
  Logout(alice);
  auto gone = GotNamed(bob, "presence", "unavailable");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].Attr("from"), "alice@example.com/a");
  EXPECT_EQ(GotNamed(dave, "presence", "unavailable").size(), 1u);
  EXPECT_TRUE(GotNamed(carol, "presence").empty());
}

TEST_F(PresenceTest, ProbeOfOfflineContactIsAnsweredUnavailable) {
  Friends("alice", "bob");
  Session alice = Login("alice");
  Send(alice, "<presence/>");
  auto got = GotNamed(alice, "presence", "unavailable");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("from"), "bob@example.com");
}

TEST_F(PresenceTest, ProbeFromANonSubscriberRevealsNothing) {
  // Inconsistent rosters: alice thinks she may see bob; bob never agreed.
  Item("alice", "bob", Subscription::kTo);
  Item("bob", "alice", Subscription::kNone);
  Session bob = Online("bob", "b");
  Session alice = Login("alice", "a");
  Send(alice, "<presence/>");
  for (auto& p : GotNamed(alice, "presence")) EXPECT_NE(BareOf(p.Attr("from")), "bob@example.com");
}

TEST_F(PresenceTest, OwnResourcesSeeEachOther) {
  Session a = Online("alice", "a", 1);
  Session b = Login("alice", "b");
  Send(b, "<presence/>");
  auto at_a = GotNamed(a, "presence");
  ASSERT_EQ(at_a.size(), 1u);
  EXPECT_EQ(at_a[0].Attr("from"), "alice@example.com/b");
  auto at_b = GotNamed(b, "presence");
  std::set<std::string> from;
  for (auto& p : at_b) from.insert(std::string(p.Attr("from")));
  EXPECT_EQ(from, (std::set<std::string>{"alice@example.com/a", "alice@example.com/b"}));
  Send(b, "<presence type='unavailable'/>");
  auto gone = GotNamed(a, "presence", "unavailable");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].Attr("from"), "alice@example.com/b");
}

TEST_F(PresenceTest, DirectedPresenceAndUnavailableOnLogout) {
  Session alice = Online("alice", "a");
  Session carol = Online("carol", "c");
  Session erin = Online("erin", "e");
  Send(alice, "<presence to='carol@example.com/c'><status>psst</status></presence>");
  Send(alice, "<presence to='erin@example.com'/>");
  auto got = GotNamed(carol, "presence");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("from"), alice.full());
  EXPECT_EQ(got[0].ChildText("status"), "psst");
  EXPECT_EQ(GotNamed(erin, "presence").size(), 1u);
  // Directed unavailable to erin: she is forgotten.
  Send(alice, "<presence to='erin@example.com' type='unavailable'/>");
  EXPECT_EQ(GotNamed(erin, "presence", "unavailable").size(), 1u);
  Logout(alice);
  auto gone = GotNamed(carol, "presence", "unavailable");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].Attr("from"), alice.full());
  EXPECT_TRUE(GotNamed(erin, "presence").empty());
}

TEST_F(PresenceTest, PresenceErrorStopsBroadcasts) {
  Friends("alice", "bob");
  Session alice = Online("alice", "a");
  Session bob = Online("bob", "b");
  Forget(alice);
  Send(bob,
       "<presence to='alice@example.com/a' type='error'><error type='cancel'>"
       "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>");
  EXPECT_EQ(GotNamed(alice, "presence", "error").size(), 1u);
  Send(alice, "<presence><show>away</show></presence>");
  EXPECT_TRUE(GotNamed(bob, "presence").empty());
}

TEST_F(PresenceTest, InvalidPresenceTypeAndClientProbes) {
  Friends("alice", "bob");
  Session alice = Online("alice");
  Session bob = Online("bob");
  Forget(alice);
  Send(alice, "<presence type='bogus' id='x'/>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "bad-request");
  Forget(bob);
  Send(alice, "<presence to='bob@example.com' type='probe'/>");
  EXPECT_TRUE(Got(alice).empty());
  EXPECT_TRUE(Got(bob).empty());
}

TEST_F(PresenceTest, PresenceToRemoteContactsIsSkipped) {
  Item("alice", "bob", Subscription::kBoth);
  store::RosterItem remote;
  remote.jid = "rita@elsewhere.net";
  remote.subscription = Subscription::kBoth;
  store_.PutItemDirect("alice", remote);
  Session alice = Login("alice");
  Send(alice, "<presence/>");
  for (auto& e : Got(alice)) EXPECT_NE(e.Attr("type"), "error") << e.Serialize();
  Send(alice, "<presence to='rita@elsewhere.net' type='subscribe' id='rs'/>");
  auto got = Got(alice);
  bool error = false;
  for (auto& e : got) error |= e.name() == "presence" && ErrorCondition(e) == "remote-server-not-found";
  EXPECT_TRUE(error);
}

}  // namespace
}  // namespace nines::im
