// XEP-0357 push (registrations and notifications) and routing to and from
// XEP-0114 external components, at the hub. The component is a FakePort
// domain route; the protocol tests drive a real one (tests/protocol).

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Parse;
using testing::Session;

constexpr const char* kService = "push.example.com";

class PushTest : public HubTest {
 protected:
  void SetUp() override { MakeHub(PushConfig()); }

  static Config PushConfig() {
    Config c = DefaultConfig();
    c.component_secrets = {std::string(kService) + "=0123456789abcdef0123"};
    return c;
  }
  // The app server's component, connected.
  void ConnectService() { port_->ConnectDomain(kService, service_); }

  // A stanza from the component, checked and normalised as ComponentSession does.
  void FromService(std::string_view text) {
    xml::Element stanza = Parse(text);
    auto to = xmpp::Jid::Parse(stanza.Attr("to"));
    ASSERT_TRUE(to.ok());
    stanza.SetAttr("to", to->Full());
    hub_->HandleFromComponent(service_, std::move(stanza));
    Drain();
  }

  xml::Element EnableAs(const Session& s, std::string_view node, std::string_view extra = {},
                        std::string_view jid = kService) {
    return Ask(s, "<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='" + std::string(jid) + "' node='" +
                      std::string(node) + "'>" + std::string(extra) + "</enable></iq>");
  }
  void Enable(const Session& s, std::string_view node, std::string_view extra = {}) {
    xml::Element reply = EnableAs(s, node, extra);
    ASSERT_EQ(reply.Attr("type"), "result") << reply.Serialize();
  }

  // The notifications the app server got since the last call.
  std::vector<xml::Element> Notifications() {
    std::vector<xml::Element> out;
    for (auto& e : port_->Take(service_)) {
      if (e.name() == "iq" && e.Child("pubsub", "http://jabber.org/protocol/pubsub") != nullptr) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }
  static const xml::Element* Publish(const xml::Element& iq) {
    const xml::Element* pubsub = iq.Child("pubsub", "http://jabber.org/protocol/pubsub");
    return pubsub != nullptr ? pubsub->Child("publish", "http://jabber.org/protocol/pubsub") : nullptr;
  }
  // The summary form's fields of a notification: var -> value.
  static std::map<std::string, std::string> Summary(const xml::Element& iq) {
    std::map<std::string, std::string> out;
    const xml::Element* publish = Publish(iq);
    if (publish == nullptr) return out;
    const xml::Element* item = publish->Child("item", "http://jabber.org/protocol/pubsub");
    const xml::Element* n = item != nullptr ? item->Child("notification", "urn:xmpp:push:0") : nullptr;
    const xml::Element* x = n != nullptr ? n->Child("x", "jabber:x:data") : nullptr;
    if (x == nullptr) return out;
    EXPECT_EQ(x->Attr("type"), "submit");
    for (const xml::Element* f : x->Children()) {
      if (f->name() == "field") out[std::string(f->Attr("var"))] = f->ChildText("value", "jabber:x:data");
    }
    return out;
  }
  void Chat(const Session& from, std::string_view to, std::string_view body) {
    Send(from, "<message type='chat' to='" + std::string(to) + "' id='m'><body>" + std::string(body) +
                   "</body></message>");
  }
  void Sleep(const Session& s, bool asleep) {
    hub_->SetAsleep(s.ref, s.jid, asleep);
    Drain();
  }

  xmpp::SessionRef service_{0, 9000};
};

TEST_F(PushTest, TheAccountAdvertisesPushAndAConfigCanTurnItOff) {
  Session alice = Online("alice", "phone");
  auto info = Ask(alice, "<iq type='get' id='d' to='alice@example.com'>"
                         "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_TRUE(Has(Features(info), "urn:xmpp:push:0"));

  Config off = PushConfig();
  off.push_enabled = false;
  MakeHub(off);
  Session alice2 = Online("alice", "laptop");
  info = Ask(alice2, "<iq type='get' id='d' to='alice@example.com'>"
                     "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_FALSE(Has(Features(info), "urn:xmpp:push:0"));
  xml::Element refused = EnableAs(alice2, "n1");
  EXPECT_EQ(refused.Attr("type"), "error");
  EXPECT_EQ(ErrorCondition(refused), "service-unavailable");
  EXPECT_TRUE(store_.pushes("alice").empty());
}

TEST_F(PushTest, EnableIsStoredBeforeTheResultAndChecked) {
  Session alice = Online("alice", "phone");
  store_.Hold("PutPushRegistration");
  Send(alice, "<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='push.example.com' node='n1'/></iq>");
  EXPECT_TRUE(Got(alice).empty()) << "no result before the registration is durable";
  store_.Release();
  Drain();
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  ASSERT_EQ(store_.pushes("alice").size(), 1u);
  EXPECT_EQ(store_.pushes("alice")[0].jid, "push.example.com");
  EXPECT_EQ(store_.pushes("alice")[0].node, "n1");
  EXPECT_EQ(store_.pushes("alice")[0].resource, "phone");

  // With publish-options: kept, whole.
  Enable(alice, "n2",
         "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
         "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
         "<field var='secret'><value>s3cr3t</value></field></x>");
  ASSERT_EQ(store_.pushes("alice").size(), 2u);
  EXPECT_NE(store_.pushes("alice")[1].options.find("s3cr3t"), std::string::npos);
  EXPECT_NE(store_.pushes("alice")[1].options.find("xmlns='jabber:x:data'"), std::string::npos);

  struct Bad {
    std::string iq;
    std::string condition;
  };
  for (const Bad& bad : {
           Bad{"<enable xmlns='urn:xmpp:push:0' jid='push.example.com'/>", "bad-request"},
           Bad{"<enable xmlns='urn:xmpp:push:0' node='n'/>", "bad-request"},
           Bad{"<enable xmlns='urn:xmpp:push:0' jid='a@@b' node='n'/>", "bad-request"},
           Bad{"<enable xmlns='urn:xmpp:push:0' jid='push.elsewhere.org' node='n'/>", "remote-server-not-found"},
           Bad{"<enable xmlns='urn:xmpp:push:0' jid='example.com' node='n'/>", "remote-server-not-found"},
           Bad{"<enable xmlns='urn:xmpp:push:0' jid='push.example.com' node='" + std::string(2000, 'n') + "'/>",
               "not-acceptable"},
           Bad{"<other xmlns='urn:xmpp:push:0'/>", "bad-request"},
       }) {
    xml::Element reply = Ask(alice, "<iq type='set' id='b'>" + bad.iq + "</iq>");
    EXPECT_EQ(reply.Attr("type"), "error") << bad.iq;
    EXPECT_EQ(ErrorCondition(reply), bad.condition) << bad.iq;
  }
  EXPECT_EQ(store_.pushes("alice").size(), 2u);
}

TEST_F(PushTest, RegistrationsAreLimitedPerAccountAndReplacedByNode) {
  Config c = PushConfig();
  c.push_max_registrations = 2;
  MakeHub(c);
  Session alice = Online("alice", "phone");
  Enable(alice, "n1");
  Enable(alice, "n2");
  Enable(alice, "n1");  // the same node again replaces it
  xml::Element third = EnableAs(alice, "n3");
  EXPECT_EQ(third.Attr("type"), "error");
  EXPECT_EQ(ErrorCondition(third), "resource-constraint");
  EXPECT_EQ(store_.pushes("alice").size(), 2u);
}

TEST_F(PushTest, AnOfflineDeviceIsNotifiedWithTheSummaryForm) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "node-1",
         "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
         "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
         "<field var='secret'><value>s3cr3t</value></field></x>");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "wake up");
  auto n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].Attr("type"), "set");
  EXPECT_EQ(n[0].Attr("from"), "alice@example.com");
  EXPECT_EQ(n[0].Attr("to"), "push.example.com");
  ASSERT_NE(Publish(n[0]), nullptr);
  EXPECT_EQ(Publish(n[0])->Attr("node"), "node-1");
  auto summary = Summary(n[0]);
  EXPECT_EQ(summary["FORM_TYPE"], "urn:xmpp:push:summary");
  EXPECT_EQ(summary["message-count"], "1");
  EXPECT_EQ(summary.count("last-message-sender"), 0u) << "push.include_sender is off by default";
  EXPECT_EQ(summary.count("last-message-body"), 0u) << "push.include_body is off by default";
  const xml::Element* options =
      n[0].Child("pubsub", "http://jabber.org/protocol/pubsub")->Child("publish-options",
                                                                       "http://jabber.org/protocol/pubsub");
  ASSERT_NE(options, nullptr);
  EXPECT_NE(options->Serialize().find("s3cr3t"), std::string::npos);

  Chat(bob, "alice@example.com", "again");
  n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Summary(n[0])["message-count"], "2");

  // Chat states alone wake nobody.
  Send(bob, "<message type='chat' to='alice@example.com'><composing "
            "xmlns='http://jabber.org/protocol/chatstates'/></message>");
  EXPECT_TRUE(Notifications().empty());

  // The device comes back: the count starts again.
  Session back = Online("alice", "phone");
  Logout(back);
  Chat(bob, "alice@example.com", "third");
  n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Summary(n[0])["message-count"], "1");
}

TEST_F(PushTest, SenderAndBodyOnlyWhenConfigured) {
  Config c = PushConfig();
  c.push_include_sender = true;
  c.push_include_body = true;
  MakeHub(c);
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "fish &amp; chips");
  auto n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  auto summary = Summary(n[0]);
  EXPECT_EQ(summary["last-message-sender"], "bob@example.com");
  EXPECT_EQ(summary["last-message-body"], "fish & chips");
}

TEST_F(PushTest, AnAsleepDeviceIsNotifiedAndAnAwakeOneIsNot) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "awake");
  EXPECT_EQ(GotNamed(phone, "message").size(), 1u);
  EXPECT_TRUE(Notifications().empty()) << "the device got it itself";

  Sleep(phone, true);  // detached or inactive
  Chat(bob, "alice@example.com", "asleep");
  EXPECT_EQ(GotNamed(phone, "message").size(), 1u) << "still queued for the session";
  auto n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Summary(n[0])["message-count"], "1");
  Chat(bob, "alice@example.com/phone", "to the full JID");
  EXPECT_EQ(Notifications().size(), 1u);

  Sleep(phone, false);
  Chat(bob, "alice@example.com", "awake again");
  EXPECT_TRUE(Notifications().empty());
  Sleep(phone, true);
  Chat(bob, "alice@example.com", "asleep again");
  n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Summary(n[0])["message-count"], "1") << "waking up reset the count";
}

TEST_F(PushTest, ADeviceThatIsNotConnectedIsNotifiedWhileAnotherGetsTheMessage) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Logout(phone);
  Session laptop = Online("alice", "laptop");
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "hi");
  EXPECT_EQ(GotNamed(laptop, "message").size(), 1u);
  EXPECT_EQ(Notifications().size(), 1u) << "the phone will find it in the archive";
  // To the laptop's full JID, without carbons for the phone: still archived for alice.
  Chat(bob, "alice@example.com/laptop", "just the laptop");
  EXPECT_EQ(Notifications().size(), 1u);
}

TEST_F(PushTest, RegistrationsSurviveARestartOfTheHub) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Logout(phone);
  MakeHub(PushConfig());  // same store, nothing in memory
  ConnectService();
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "after the restart");
  EXPECT_EQ(Notifications().size(), 1u);
}

TEST_F(PushTest, DisableStopsNotifications) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Enable(phone, "n2");
  xml::Element r = Ask(phone, "<iq type='set' id='x'><disable xmlns='urn:xmpp:push:0' jid='push.example.com' "
                              "node='n1'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  ASSERT_EQ(store_.pushes("alice").size(), 1u);
  EXPECT_EQ(store_.pushes("alice")[0].node, "n2");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "one");
  auto n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Publish(n[0])->Attr("node"), "n2");

  Session laptop = Online("alice", "laptop");
  r = Ask(laptop, "<iq type='set' id='x'><disable xmlns='urn:xmpp:push:0' jid='push.example.com'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_TRUE(store_.pushes("alice").empty()) << "no node: every node at that app server";
  Logout(laptop);
  Chat(bob, "alice@example.com", "two");
  EXPECT_TRUE(Notifications().empty());
  r = Ask(bob, "<iq type='set' id='x'><disable xmlns='urn:xmpp:push:0'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "bad-request");
}

TEST_F(PushTest, AnAppServerThatRefusesLosesTheRegistration) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "gone-node");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "one");
  auto n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  std::string id(n[0].Attr("id"));
  // 'wait' keeps it.
  FromService("<iq type='error' from='push.example.com' to='alice@example.com' id='" + id +
              "'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
  EXPECT_EQ(store_.pushes("alice").size(), 1u);
  // 'cancel' removes it.
  FromService("<iq type='error' from='push.example.com' to='alice@example.com' id='" + id +
              "'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
  EXPECT_TRUE(store_.pushes("alice").empty());
  Chat(bob, "alice@example.com", "two");
  EXPECT_TRUE(Notifications().empty());
}

// The refusal's delete is not durable yet when the next message comes; the
// account was evicted meanwhile (nobody online), so the registrations are
// loaded again, and that read must not bring the refused one back (a CI run
// saw a second notification here).
TEST_F(PushTest, ARefusedRegistrationStaysGoneWhileItsDeleteIsInFlight) {
  ConnectService();
  Session phone = Online("alice", "phone");
  Enable(phone, "gone-node");
  Enable(phone, "kept-node");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "one");
  auto n = Notifications();
  ASSERT_EQ(n.size(), 2u);
  std::string id;
  for (const auto& iq : n) {
    if (Publish(iq)->Attr("node") == "gone-node") id = std::string(iq.Attr("id"));
  }
  ASSERT_FALSE(id.empty());
  store_.Hold("DeletePushRegistrations");
  FromService(
      "<iq type='error' from='push.example.com' to='alice@example.com' id='" + id +
      "'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
  ASSERT_EQ(store_.held(), 1u);
  Chat(bob, "alice@example.com", "two");
  n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Publish(n[0])->Attr("node"), "kept-node");
  store_.Release();
  Drain();
  ASSERT_EQ(store_.pushes("alice").size(), 1u);
  EXPECT_EQ(store_.pushes("alice")[0].node, "kept-node");
  Chat(bob, "alice@example.com", "three");
  n = Notifications();
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(Publish(n[0])->Attr("node"), "kept-node");
}

TEST_F(PushTest, NoNotificationReachesAnAppServerThatIsNotConnected) {
  Session phone = Online("alice", "phone");
  Enable(phone, "n1");
  Logout(phone);
  Session bob = Online("bob");
  Chat(bob, "alice@example.com", "lost in the void");
  EXPECT_TRUE(Notifications().empty());
  EXPECT_TRUE(GotNamed(bob, "message", "error").empty()) << "the sender hears nothing of the push";
  EXPECT_EQ(store_.pushes("alice").size(), 1u) << "kept for when it connects";
}

// --- routing to and from components (XEP-0114) ------------------------------

TEST_F(PushTest, StanzasReachAComponentAndComeBack) {
  ConnectService();
  Session alice = Online("alice", "laptop");
  Send(alice, "<message to='bot@push.example.com' type='chat' id='m1'><body>hello bot</body></message>");
  auto got = port_->Take(service_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("from"), "alice@example.com/laptop");
  EXPECT_EQ(got[0].ChildText("body"), "hello bot");
  EXPECT_EQ(port_->done(alice.ref), 1) << "handed to the component: the sender's session may acknowledge it";

  FromService("<message from='bot@push.example.com' to='alice@example.com' type='chat' id='r1'>"
              "<body>hello alice</body></message>");
  auto back = GotNamed(alice, "message");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].Attr("from"), "bot@push.example.com");
  EXPECT_EQ(back[0].ChildText("body"), "hello alice");
  EXPECT_NE(back[0].Child("stanza-id", "urn:xmpp:sid:0"), nullptr) << "archived for alice";

  // An IQ round trip, both ways.
  Send(alice, "<iq type='get' to='push.example.com' id='q1'><query "
              "xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  got = port_->Take(service_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("id"), "q1");
  FromService("<iq type='result' from='push.example.com' to='alice@example.com/laptop' id='q1'/>");
  auto result = GotNamed(alice, "iq", "result");
  ASSERT_EQ(result.size(), 1u);
  EXPECT_EQ(result[0].Attr("from"), "push.example.com");

  // The component asks the server.
  FromService("<iq type='get' from='push.example.com' to='example.com' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  got = port_->Take(service_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(got[0].Attr("to"), "push.example.com");
}

TEST_F(PushTest, AComponentsMessageForAnOfflineUserIsKeptAndUnknownUsersBounce) {
  ConnectService();
  store_.AddAccount("carol");
  FromService("<message from='bot@push.example.com' to='carol@example.com' type='chat' id='o1'>"
              "<body>while you were out</body></message>");
  EXPECT_EQ(store_.calls("StoreOffline"), 1);
  FromService("<message from='bot@push.example.com' to='nobody@example.com' type='chat' id='o2'>"
              "<body>?</body></message>");
  auto got = port_->Take(service_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "error");
  EXPECT_EQ(ErrorCondition(got[0]), "service-unavailable");
  EXPECT_EQ(got[0].Attr("to"), "bot@push.example.com");
}

TEST_F(PushTest, StanzasForAComponentThatIsNotConnectedBounce) {
  Session alice = Online("alice", "laptop");
  Send(alice, "<message to='bot@push.example.com' type='chat' id='m1'><body>anyone?</body></message>");
  auto err = GotNamed(alice, "message", "error");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(ErrorCondition(err[0]), "remote-server-not-found");
  Send(alice, "<iq type='get' to='push.example.com' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>");
  auto iq = GotNamed(alice, "iq", "error");
  ASSERT_EQ(iq.size(), 1u);
  EXPECT_EQ(ErrorCondition(iq[0]), "remote-server-not-found");

  // Connected, then gone with the stanza queued: service-unavailable.
  ConnectService();
  port_->SetGone(service_);
  Send(alice, "<message to='bot@push.example.com' type='chat' id='m2'><body>anyone?</body></message>");
  err = GotNamed(alice, "message", "error");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(ErrorCondition(err[0]), "service-unavailable");
}

}  // namespace
}  // namespace nines::im
