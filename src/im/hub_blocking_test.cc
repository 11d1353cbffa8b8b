// XEP-0191 blocking through the hub: the list, its pushes, and what a
// block stops in each direction.

#include <gtest/gtest.h>

#include "im/account.h"
#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using store::Subscription;
using testing::HubTest;
using testing::Session;

class BlockingTest : public HubTest {
 protected:
  void Friends(const std::string& a, const std::string& b) {
    for (auto [user, contact] : {std::pair{a, b}, std::pair{b, a}}) {
      store_.AddAccount(user);
      store::RosterItem item;
      item.jid = contact + "@example.com";
      item.subscription = Subscription::kBoth;
      store_.PutItemDirect(user, item);
    }
  }
  xml::Element Block(const Session& s, const std::string& items, std::string_view verb = "block") {
    return Ask(s, "<iq type='set' id='b1'><" + std::string(verb) + " xmlns='urn:xmpp:blocking'>" + items + "</" +
                      std::string(verb) + "></iq>");
  }
  std::vector<std::string> List(const Session& s) {
    xml::Element r = Ask(s, "<iq type='get' id='l1'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
    EXPECT_EQ(r.Attr("type"), "result");
    std::vector<std::string> out;
    const xml::Element* list = r.Child("blocklist", "urn:xmpp:blocking");
    EXPECT_NE(list, nullptr);
    if (list == nullptr) return out;
    for (const xml::Element* item : list->Children()) out.emplace_back(item->Attr("jid"));
    return out;
  }
  static bool IsBlockedError(const xml::Element& e) {
    const xml::Element* error = e.Child("error");
    return e.Attr("type") == "error" && error != nullptr &&
           error->Child("not-acceptable", "urn:ietf:params:xml:ns:xmpp-stanzas") != nullptr &&
           error->Child("blocked", "urn:xmpp:blocking:errors") != nullptr;
  }
};

TEST(BlockListTest, MatchesAsXep0191Says) {
  BlockList list;
  list.jids = {"bob@example.com", "carol@example.com/phone", "spam.example", "example.org/bot"};
  EXPECT_TRUE(list.Blocks("bob@example.com"));
  EXPECT_TRUE(list.Blocks("bob@example.com/any")) << "a bare JID covers its resources";
  EXPECT_TRUE(list.Blocks("carol@example.com/phone"));
  EXPECT_FALSE(list.Blocks("carol@example.com/laptop")) << "a full JID only itself";
  EXPECT_FALSE(list.Blocks("carol@example.com"));
  EXPECT_TRUE(list.Blocks("spam.example"));
  EXPECT_TRUE(list.Blocks("x@spam.example/r")) << "a domain covers every JID at it";
  EXPECT_TRUE(list.Blocks("x@mail.spam.example")) << "and its subdomains";
  EXPECT_FALSE(list.Blocks("x@notspam.example"));
  EXPECT_TRUE(list.Blocks("example.org/bot"));
  EXPECT_TRUE(list.Blocks("someone@example.org/bot")) << "domain/resource: that resource of any user there";
  EXPECT_FALSE(list.Blocks("someone@example.org/human"));
  EXPECT_FALSE(list.Blocks("dave@example.com"));
}

TEST_F(BlockingTest, TheServerAdvertisesItAndTheListStartsEmpty) {
  Session alice = Online("alice", "phone");
  auto info = Ask(alice, "<iq type='get' id='d' to='example.com'><query "
                         "xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_TRUE(Has(Features(info), "urn:xmpp:blocking"));
  EXPECT_TRUE(List(alice).empty());
}

TEST_F(BlockingTest, ABlockIsStoredBeforeTheResultThenPushed) {
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop");
  EXPECT_TRUE(List(phone).empty());  // the phone asked: it gets pushes
  store_.Hold("Block");
  Send(phone, "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='Bob@Example.com'/>"
              "<item jid='spam.example'/></block></iq>");
  EXPECT_TRUE(Got(phone).empty()) << "nothing before the write";
  store_.Release();
  Drain();
  auto got = Got(phone);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(got[0].Attr("id"), "b1");
  EXPECT_EQ(got[1].Attr("type"), "set") << "the push";
  const xml::Element* pushed = got[1].Child("block", "urn:xmpp:blocking");
  ASSERT_NE(pushed, nullptr);
  EXPECT_EQ(pushed->Children().size(), 2u);
  EXPECT_EQ(pushed->Children()[0]->Attr("jid"), "bob@example.com") << "normalised";
  EXPECT_TRUE(Got(laptop).empty()) << "the laptop never asked for the list";
  EXPECT_EQ(store_.blocklist("alice"), (std::set<std::string>{"bob@example.com", "spam.example"}));
  EXPECT_EQ(List(laptop), (std::vector<std::string>{"bob@example.com", "spam.example"}));
}

TEST_F(BlockingTest, BadRequestsAreRefused) {
  Config c = DefaultConfig();
  c.limits.blocklist_items = 2;
  MakeHub(c);
  Session alice = Online("alice", "phone");
  xml::Element r = Block(alice, "");
  EXPECT_EQ(ErrorCondition(r), "bad-request") << "a block needs an item";
  r = Block(alice, "<item jid='a@@b'/>");
  EXPECT_EQ(ErrorCondition(r), "jid-malformed");
  r = Block(alice, "<item jid='a@b.c'/><item jid='d@e.f'/><item jid='g@h.i'/>");
  EXPECT_EQ(ErrorCondition(r), "resource-constraint");
  r = Ask(alice, "<iq type='set' id='x'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "bad-request");
  EXPECT_TRUE(store_.blocklist("alice").empty());
  EXPECT_EQ(Block(alice, "<item jid='a@b.c'/><item jid='d@e.f'/>").Attr("type"), "result");
  EXPECT_EQ(Block(alice, "<item jid='a@b.c'/>").Attr("type"), "result") << "already there: no growth";
}

TEST_F(BlockingTest, NothingFromABlockedContactGetsThrough) {
  Friends("alice", "bob");
  Session alice = Online("alice", "phone");
  Session bob = Online("bob", "desk");
  Session carol = Online("carol", "desk");
  ASSERT_EQ(Block(alice, "<item jid='bob@example.com'/>").Attr("type"), "result");
  Forget(bob);
  const int archived = store_.calls("Archive");

  Send(bob, "<message to='alice@example.com' type='chat' id='m1'><body>hi</body></message>");
  EXPECT_TRUE(GotNamed(alice, "message").empty());
  auto err = GotNamed(bob, "message", "error");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(ErrorCondition(err[0]), "service-unavailable") << "as if alice were not there";
  EXPECT_EQ(store_.calls("Archive"), archived) << "not archived either";

  Send(bob, "<presence><show>away</show></presence>");
  Send(bob, "<presence to='alice@example.com/phone'/>");
  Send(bob, "<presence type='subscribe' to='alice@example.com'/>");
  EXPECT_TRUE(GotNamed(alice, "presence").empty());
  EXPECT_TRUE(GotNamed(bob, "presence", "error").empty()) << "presence is dropped without a word";

  xml::Element iq = Ask(bob, "<iq type='get' to='alice@example.com/phone' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(ErrorCondition(iq), "service-unavailable");
  iq = Ask(bob, "<iq type='get' to='alice@example.com' id='q2'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(ErrorCondition(iq), "service-unavailable");
  EXPECT_TRUE(Got(alice).empty());

  Send(carol, "<message to='alice@example.com' type='chat' id='c1'><body>hello</body></message>");
  EXPECT_EQ(GotNamed(alice, "message").size(), 1u) << "others still get through";
}

TEST_F(BlockingTest, NothingGoesToABlockedContact) {
  Session alice = Online("alice", "phone");
  Session bob = Online("bob", "desk");
  ASSERT_EQ(Block(alice, "<item jid='bob@example.com'/>").Attr("type"), "result");
  Forget(alice);
  Send(alice, "<message to='bob@example.com/desk' type='chat' id='m1'><body>psst</body></message>");
  auto err = GotNamed(alice, "message", "error");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_TRUE(IsBlockedError(err[0])) << err[0].Serialize();
  EXPECT_EQ(err[0].Attr("id"), "m1");
  Send(alice, "<iq type='get' to='bob@example.com/desk' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>");
  auto iq = GotNamed(alice, "iq", "error");
  ASSERT_EQ(iq.size(), 1u);
  EXPECT_TRUE(IsBlockedError(iq[0]));
  Send(alice, "<iq type='result' to='bob@example.com/desk' id='q2'/>");
  Send(alice, "<presence to='bob@example.com/desk'/>");
  auto refused = Got(alice);
  ASSERT_EQ(refused.size(), 1u) << "a result is dropped, a directed presence refused";
  EXPECT_EQ(refused[0].name(), "presence");
  EXPECT_TRUE(IsBlockedError(refused[0]));
  EXPECT_TRUE(Got(bob).empty());
}

TEST_F(BlockingTest, TheContactSeesTheUserLeaveAndComeBack) {
  Friends("alice", "bob");
  Session bob = Online("bob", "desk");
  Session alice = Online("alice", "phone");
  Forget(bob);
  ASSERT_EQ(Block(alice, "<item jid='bob@example.com'/>").Attr("type"), "result");
  auto gone = GotNamed(bob, "presence");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].Attr("type"), "unavailable");
  EXPECT_EQ(gone[0].Attr("from"), "alice@example.com/phone");

  Send(alice, "<presence><show>away</show></presence>");
  EXPECT_TRUE(GotNamed(bob, "presence").empty()) << "broadcasts skip him";

  List(alice);  // asks for pushes
  Send(alice, "<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@example.com'/>"
              "</unblock></iq>");
  auto answers = Got(alice);
  ASSERT_EQ(answers.size(), 2u) << "the result and the push";
  EXPECT_EQ(answers[0].Attr("type"), "result");
  ASSERT_NE(answers[1].Child("unblock", "urn:xmpp:blocking"), nullptr);
  auto back = GotNamed(bob, "presence");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].Attr("type"), "");
  EXPECT_EQ(back[0].ChildText("show"), "away") << "the current presence";
  Send(bob, "<message to='alice@example.com' type='chat' id='m2'><body>back?</body></message>");
  EXPECT_EQ(GotNamed(alice, "message").size(), 1u);
}

TEST_F(BlockingTest, UnblockWithoutItemsClearsTheList) {
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Block(alice, "<item jid='a@b.c'/><item jid='d.e'/>").Attr("type"), "result");
  List(alice);
  Send(alice, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>");
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  const xml::Element* push = got[1].Child("unblock", "urn:xmpp:blocking");
  ASSERT_NE(push, nullptr);
  EXPECT_TRUE(push->Children().empty()) << "an empty <unblock/>: everything";
  EXPECT_TRUE(store_.blocklist("alice").empty());
  EXPECT_TRUE(List(alice).empty());
}

TEST_F(BlockingTest, TheListOutlivesTheSessionAndTheProcess) {
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Block(alice, "<item jid='bob@example.com'/>").Attr("type"), "result");
  Logout(alice);
  MakeHub(DefaultConfig());  // nothing in memory
  Session bob = Online("bob", "desk");
  // alice is offline: her account loads for the message, and refuses it.
  Send(bob, "<message to='alice@example.com' type='chat' id='m1'><body>hi</body></message>");
  EXPECT_EQ(GotNamed(bob, "message", "error").size(), 1u);
  EXPECT_EQ(store_.calls("StoreOffline"), 0) << "not kept for later";
  // A new session of hers is checked as soon as it is bound.
  Session again = Online("alice", "laptop");
  Send(again, "<message to='bob@example.com' type='chat' id='m2'><body>hi</body></message>");
  auto err = GotNamed(again, "message", "error");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_TRUE(IsBlockedError(err[0]));
  EXPECT_TRUE(GotNamed(bob, "message").empty());
}

}  // namespace
// BlockKeysFor lists exactly the entries BlockList::Blocks matches, so a
// store asked about keys agrees with the in-memory check.
TEST(BlockKeys, AgreeWithBlocksForEveryKindOfEntry) {
  const std::vector<std::string> entries = {"bob@example.com", "bob@example.com/phone", "example.com",
                                            "example.com/phone", "sub.example.com", "other.org",
                                            "carol@example.com", "example.com/desk"};
  const std::vector<std::string> jids = {"bob@example.com/phone", "bob@example.com/desk", "bob@example.com",
                                         "carol@sub.example.com/x", "dave@a.other.org/y", "example.com",
                                         "eve@elsewhere.net/phone"};
  for (const auto& entry : entries) {
    BlockList list;
    list.jids.insert(entry);
    for (const auto& jid : jids) {
      auto keys = BlockKeysFor(jid);
      const bool by_keys = std::find(keys.begin(), keys.end(), entry) != keys.end();
      EXPECT_EQ(by_keys, list.Blocks(jid)) << "entry " << entry << ", jid " << jid;
    }
  }
}

}  // namespace nines::im
