// XEP-0049 private XML storage through the hub.

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class PrivateTest : public HubTest {
 protected:
  xml::Element Query(const Session& s, std::string_view type, std::string_view inner, std::string_view to = {}) {
    std::string iq = "<iq type='" + std::string(type) + "' id='p1'";
    if (!to.empty()) iq += " to='" + std::string(to) + "'";
    return Ask(s, iq + "><query xmlns='jabber:iq:private'>" + std::string(inner) + "</query></iq>");
  }
  static const xml::Element* Stored(const xml::Element& result, std::string_view name, std::string_view ns) {
    const xml::Element* q = result.Child("query", "jabber:iq:private");
    return q != nullptr ? q->Child(name, ns) : nullptr;
  }
};

TEST_F(PrivateTest, WhatIsStoredComesBackAndNothingElse) {
  Session alice = Online("alice", "phone");
  xml::Element empty = Query(alice, "get", "<prefs xmlns='exodus:prefs'/>");
  EXPECT_EQ(empty.Attr("type"), "result");
  const xml::Element* none = Stored(empty, "prefs", "exodus:prefs");
  ASSERT_NE(none, nullptr) << "nothing stored: the empty element as asked";
  EXPECT_TRUE(none->Children().empty());

  store_.Hold("SetPrivate");
  Send(alice, "<iq type='set' id='s1'><query xmlns='jabber:iq:private'><prefs xmlns='exodus:prefs'>"
              "<defaultnick>Hamlet</defaultnick></prefs></query></iq>");
  EXPECT_TRUE(Got(alice).empty()) << "no result before the write";
  store_.Release();
  Drain();
  auto got = Got(alice);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");

  xml::Element back = Query(alice, "get", "<prefs xmlns='exodus:prefs'/>");
  const xml::Element* prefs = Stored(back, "prefs", "exodus:prefs");
  ASSERT_NE(prefs, nullptr) << back.Serialize();
  EXPECT_EQ(prefs->ChildText("defaultnick", "exodus:prefs"), "Hamlet");
  xml::Element other_result = Query(alice, "get", "<prefs xmlns='other:ns'/>");
  const xml::Element* other = Stored(other_result, "prefs", "other:ns");
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->Children().empty()) << "keyed by namespace too";

  Session bob = Online("bob", "desk");
  xml::Element theirs = Query(bob, "get", "<prefs xmlns='exodus:prefs'/>", "alice@example.com");
  EXPECT_EQ(ErrorCondition(theirs), "forbidden");
  theirs = Query(bob, "set", "<prefs xmlns='exodus:prefs'/>", "alice@example.com");
  EXPECT_EQ(ErrorCondition(theirs), "forbidden");
}

TEST_F(PrivateTest, BadRequestsAndLimits) {
  Config c = DefaultConfig();
  c.limits.private_items = 2;
  c.limits.private_item_size = 300;
  MakeHub(c);
  Session alice = Online("alice", "phone");
  EXPECT_EQ(ErrorCondition(Query(alice, "get", "")), "bad-request");
  EXPECT_EQ(ErrorCondition(Query(alice, "get", "<a xmlns='x'/><b xmlns='y'/>")), "bad-request");
  EXPECT_EQ(ErrorCondition(Query(alice, "set", "")), "bad-request");
  EXPECT_EQ(ErrorCondition(Query(alice, "get", "<a/>")), "not-acceptable") << "in jabber:iq:private itself";
  EXPECT_EQ(ErrorCondition(Query(alice, "set", "<a xmlns='jabber:client'/>")), "not-acceptable");
  EXPECT_EQ(ErrorCondition(Query(alice, "set", "<a xmlns='x'>" + std::string(400, 'z') + "</a>")),
            "not-acceptable");
  EXPECT_EQ(Query(alice, "set", "<a xmlns='x'/><b xmlns='y'/>").Attr("type"), "result") << "two at once";
  EXPECT_EQ(ErrorCondition(Query(alice, "set", "<c xmlns='z'/>")), "resource-constraint");
  EXPECT_EQ(Query(alice, "set", "<a xmlns='x'>again</a>").Attr("type"), "result") << "replacing is fine";
}

}  // namespace
}  // namespace nines::im
