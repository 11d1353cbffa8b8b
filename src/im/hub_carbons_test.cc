// XEP-0280 message carbons.

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class CarbonsTest : public HubTest {
 protected:
  void Enable(const Session& s) {
    Send(s, "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
    auto got = GotNamed(s, "iq", "result");
    ASSERT_EQ(got.size(), 1u);
  }
  // The forwarded message inside a <kind/> carbon, or null.
  static const xml::Element* Forwarded(const xml::Element& m, std::string_view kind) {
    const xml::Element* wrapper = m.Child(kind, "urn:xmpp:carbons:2");
    if (wrapper == nullptr) return nullptr;
    const xml::Element* fwd = wrapper->Child("forwarded", "urn:xmpp:forward:0");
    return fwd != nullptr ? fwd->Child("message", "jabber:client") : nullptr;
  }
};

TEST_F(CarbonsTest, ReceivedAndSentCopiesReachTheOtherDevices) {
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop");
  Session tablet = Online("alice", "tablet");  // never enables carbons
  Session bob = Online("bob");
  Enable(phone);
  Enable(laptop);
  // To alice's full JID: the phone gets it, the laptop a <received/> copy.
  Send(bob, "<message to='alice@example.com/phone' type='chat' id='b1'><body>hi phone</body></message>");
  auto to_phone = GotNamed(phone, "message");
  ASSERT_EQ(to_phone.size(), 1u);
  EXPECT_EQ(to_phone[0].ChildText("body"), "hi phone");
  auto copy = GotNamed(laptop, "message");
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0].Attr("from"), "alice@example.com");
  EXPECT_EQ(copy[0].Attr("to"), "alice@example.com/laptop");
  const xml::Element* inner = Forwarded(copy[0], "received");
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->ChildText("body"), "hi phone");
  EXPECT_EQ(inner->Attr("from"), "bob@example.com/res");
  ASSERT_NE(inner->Child("stanza-id", "urn:xmpp:sid:0"), nullptr) << "the copy carries the archive id";
  EXPECT_TRUE(GotNamed(tablet, "message").empty()) << "carbons are opt-in";
  // From the phone: the laptop gets a <sent/> copy with alice's own archive id.
  Send(phone, "<message to='bob@example.com' type='chat' id='a1'><body>hi bob</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  auto sent = GotNamed(laptop, "message");
  ASSERT_EQ(sent.size(), 1u);
  const xml::Element* out = Forwarded(sent[0], "sent");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->ChildText("body"), "hi bob");
  EXPECT_EQ(out->Attr("to"), "bob@example.com");
  const xml::Element* sid = out->Child("stanza-id", "urn:xmpp:sid:0");
  ASSERT_NE(sid, nullptr);
  EXPECT_EQ(sid->Attr("by"), "alice@example.com");
  EXPECT_EQ(std::string(sid->Attr("id")), std::to_string(store_.archive("alice").back().id));
  EXPECT_TRUE(GotNamed(phone, "message").empty()) << "the sender gets no copy of its own message";
  EXPECT_TRUE(GotNamed(tablet, "message").empty());
}

TEST_F(CarbonsTest, BareJidDeliveryCopiesOnlyToResourcesThatDidNotGetIt) {
  Session phone = Online("alice", "phone", 5);
  Session laptop = Online("alice", "laptop", 1);  // lower priority: not a bare-JID target
  Session bob = Online("bob");
  Enable(phone);
  Enable(laptop);
  Send(bob, "<message to='alice@example.com' type='chat'><body>x</body></message>");
  auto direct = GotNamed(phone, "message");
  ASSERT_EQ(direct.size(), 1u);
  EXPECT_EQ(direct[0].Child("received"), nullptr);
  auto copy = GotNamed(laptop, "message");
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_NE(Forwarded(copy[0], "received"), nullptr);
}

TEST_F(CarbonsTest, WhatIsNotCopied) {
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop");
  Session bob = Online("bob");
  Enable(laptop);
  const std::string to = "to='alice@example.com/phone'";
  Send(bob, "<message " + to + " type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>");
  Send(bob, "<message " + to + " type='chat'><body>n</body><no-copy xmlns='urn:xmpp:hints'/></message>");
  Send(bob, "<message " + to + " type='headline'><body>h</body></message>");
  Send(bob, "<message " + to + " type='normal'><x xmlns='jabber:x:oob'/></message>");
  auto direct = GotNamed(phone, "message");
  ASSERT_EQ(direct.size(), 4u);
  EXPECT_EQ(direct[0].Child("private"), nullptr) << "<private/> is removed before delivery";
  EXPECT_TRUE(GotNamed(laptop, "message").empty());
  // Chat states and receipts are copied.
  Send(bob, "<message " + to +
                " type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
  Send(bob, "<message " + to + "><received xmlns='urn:xmpp:receipts' id='r'/></message>");
  EXPECT_EQ(GotNamed(laptop, "message").size(), 2u);
}

TEST_F(CarbonsTest, DisableStopsCopiesAndTheSettingIsPerResource) {
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop");
  Session bob = Online("bob");
  Enable(laptop);
  Send(laptop, "<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>");
  ASSERT_EQ(GotNamed(laptop, "iq", "result").size(), 1u);
  Send(bob, "<message to='alice@example.com/phone' type='chat'><body>x</body></message>");
  EXPECT_TRUE(GotNamed(laptop, "message").empty());
  EXPECT_EQ(ErrorCondition(Ask(laptop, "<iq type='set' id='e'><bogus xmlns='urn:xmpp:carbons:2'/></iq>")),
            "bad-request");
}

TEST_F(CarbonsTest, AdvertisedOnTheServer) {
  Session s = Online("alice");
  EXPECT_TRUE(Has(Features(Ask(s,
                               "<iq type='get' id='d' to='example.com'>"
                               "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")),
                  "urn:xmpp:carbons:2"));
}

// One loop: every account's home is the loop the recipient's work runs on,
// so the <sent/> step takes its on-the-spot check (carbons.cc) every time.
class OneLoopCarbons : public HubTest {
 protected:
  OneLoopCarbons() : HubTest(1) {}
  void Enable(const Session& s) {
    Send(s, "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
    ASSERT_EQ(GotNamed(s, "iq", "result").size(), 1u);
  }
};

TEST_F(OneLoopCarbons, SentCopiesFollowTheOtherResourcesSettingsMessageByMessage) {
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop");
  Session bob = Online("bob");
  // Nobody else of alice's has carbons on: nothing besides the message.
  Send(phone, "<message to='bob@example.com' type='chat' id='a1'><body>one</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  EXPECT_TRUE(GotNamed(laptop, "message").empty());
  EXPECT_TRUE(GotNamed(phone, "message").empty());
  // The sender itself turning carbons on gets it no copy of its own message.
  Enable(phone);
  Send(phone, "<message to='bob@example.com' type='chat' id='a2'><body>two</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  EXPECT_TRUE(GotNamed(laptop, "message").empty());
  EXPECT_TRUE(GotNamed(phone, "message").empty());
  // Once the laptop has them on, it gets <sent/> copies, from the next message on.
  Enable(laptop);
  Send(phone, "<message to='bob@example.com' type='chat' id='a3'><body>three</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  auto sent = GotNamed(laptop, "message");
  ASSERT_EQ(sent.size(), 1u);
  const xml::Element* wrapper = sent[0].Child("sent", "urn:xmpp:carbons:2");
  ASSERT_NE(wrapper, nullptr);
  // Unavailable resources get none, carbons or not.
  Send(laptop, "<presence type='unavailable'/>");
  Forget(laptop);
  Send(phone, "<message to='bob@example.com' type='chat' id='a4'><body>four</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  EXPECT_TRUE(GotNamed(laptop, "message").empty());
}

}  // namespace
}  // namespace nines::im
