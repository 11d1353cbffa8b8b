// The IQ registry and the services on it: disco, version, ping, vCard,
// legacy session, and the IQ error cases of RFC 6120 §8 / RFC 6121 §8.5.

#include <gtest/gtest.h>

#include <algorithm>

#include "im/iq_registry.h"
#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using store::Subscription;
using testing::HubTest;
using testing::Session;

class IqTest : public HubTest {};  // Ask() and Features() come from HubTest

TEST_F(IqTest, ServerDiscoInfoListsExactlyTheRegistry) {
  Session a = Login("alice");
  xml::Element r = Ask(a,
                       "<iq to='example.com' type='get' id='d1'>"
                       "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Attr("from"), "example.com");
  EXPECT_EQ(r.Attr("to"), a.full());
  EXPECT_EQ(r.Attr("id"), "d1");
  const xml::Element* identity = r.Child("query")->Child("identity");
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->Attr("category"), "server");
  EXPECT_EQ(identity->Attr("type"), "im");
  auto features = Features(r);
  EXPECT_EQ(features, hub_->registry().Features(kScopeServer, *config_->Get()));
  for (const char* f : {"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
                        "urn:xmpp:ping", "jabber:iq:version", "vcard-temp", "msgoffline"}) {
    EXPECT_NE(std::find(features.begin(), features.end(), f), features.end()) << f;
  }
  // Optional and core protocols are not advertised.
  EXPECT_EQ(std::find(features.begin(), features.end(), "urn:ietf:params:xml:ns:xmpp-session"),
            features.end());
  EXPECT_EQ(std::find(features.begin(), features.end(), "jabber:iq:roster"), features.end());
}

TEST_F(IqTest, EveryAdvertisedFeatureHasAHandlerOrAModule) {
  const IqRegistry& registry = hub_->registry();
  Config config = DefaultConfig();
  for (Scope scope : {kScopeServer, kScopeSelf, kScopeAccount}) {
    for (const auto& feature : registry.Features(scope, config)) {
      // Offline storage and stanza-ids are message handling, not IQs.
      bool handled = feature == "msgoffline" || feature == "urn:xmpp:sid:0";
      // Answered for one's own account, advertised by the server too
      // (XEP-0280 §3, XEP-0191 §3.1).
      const bool own = feature == "urn:xmpp:carbons:2" || feature == "urn:xmpp:blocking";
      // Features a module implements through another namespace's handler:
      // XEP-0060 sub-features through pubsub, XEP-0402 #compat through
      // private storage, XEP-0398 through vCard.
      std::string via;
      if (feature.starts_with("http://jabber.org/protocol/pubsub#")) via = "http://jabber.org/protocol/pubsub";
      if (feature == "urn:xmpp:bookmarks:1#compat") via = "jabber:iq:private";
      if (feature == "urn:xmpp:pep-vcard-conversion:0") via = "vcard-temp";
      for (const auto& h : registry.handlers()) {
        handled |= h.feature == feature && (h.scopes & scope) != 0;
        handled |= own && h.ns == feature && (h.scopes & kScopeSelf) != 0;
        handled |= !via.empty() && h.ns == via && h.set && (h.scopes & scope) != 0;
      }
      EXPECT_TRUE(handled) << feature;
    }
  }
}

TEST_F(IqTest, StreamFeatures) {
  const auto& features = hub_->registry().StreamFeatures();
  ASSERT_EQ(features.size(), 2u);
  for (const auto& f : features) EXPECT_EQ(testing::Parse(f).Children().size(), 0u) << f;  // well-formed
}

TEST_F(IqTest, VersionFollowsConfig) {
  Session a = Login("alice");
  xml::Element r = Ask(a, "<iq to='example.com' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Child("query")->ChildText("name"), "nines");
  EXPECT_EQ(r.Child("query")->ChildText("version"), NINES_VERSION);
  EXPECT_EQ(r.Child("query")->Child("os"), nullptr);

  Config c = DefaultConfig();
  c.version_show = false;
  MakeHub(c);
  a = Login("alice", "again");
  r = Ask(a, "<iq to='example.com' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  r = Ask(
      a,
      "<iq to='example.com' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  auto features = Features(r);
  EXPECT_EQ(std::find(features.begin(), features.end(), "jabber:iq:version"), features.end());

  c.version_show = true;
  c.version_show_os = true;
  MakeHub(c);
  a = Login("alice", "third");
  r = Ask(a, "<iq to='example.com' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>");
  EXPECT_FALSE(r.Child("query")->ChildText("os").empty());
}

TEST_F(IqTest, PingServerAndOwnBareJid) {
  Session a = Login("alice");
  xml::Element r = Ask(a, "<iq to='example.com' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Attr("from"), "example.com");
  r = Ask(a, "<iq to='alice@example.com' type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Attr("from"), "alice@example.com");
  r = Ask(a, "<iq type='get' id='p3'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_FALSE(r.HasAttr("from"));  // the request had no 'to'
}

TEST_F(IqTest, LegacySession) {
  Session a = Login("alice");
  xml::Element r = Ask(
      a,
      "<iq to='example.com' type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  r = Ask(a, "<iq type='set' id='s2'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
}

TEST_F(IqTest, ErrorCases) {
  Session a = Login("alice", "a");
  store_.AddAccount("bob");
  // Unknown namespace, to the server / own account / another account.
  xml::Element r = Ask(a, "<iq to='example.com' type='get' id='u1'><query xmlns='urn:example:nope'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  EXPECT_EQ(r.Attr("from"), "example.com");
  EXPECT_EQ(r.Attr("to"), a.full());
  r = Ask(a, "<iq type='set' id='u2'><query xmlns='urn:example:nope'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  r = Ask(a, "<iq to='bob@example.com' type='get' id='u3'><query xmlns='urn:example:nope'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  EXPECT_EQ(r.Attr("from"), "bob@example.com");
  // Ping is answered for one's own bare JID only.
  r = Ask(a, "<iq to='bob@example.com' type='get' id='u4'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  // No such account, even for a known namespace.
  r = Ask(a,
          "<iq to='nobody@example.com' type='get' id='u5'>"
          "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  // A resource of the server, and a remote domain.
  r = Ask(a, "<iq to='example.com/admin' type='get' id='u6'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  r = Ask(a, "<iq to='elsewhere.net' type='get' id='u7'><ping xmlns='urn:xmpp:ping'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "remote-server-not-found");
  // Results and errors to the server or a bare JID are dropped.
  Send(a, "<iq to='example.com' type='result' id='x1'/>");
  Send(a, "<iq type='error' id='x2'/>");
  Send(a, "<iq to='bob@example.com' type='result' id='x3'/>");
  EXPECT_TRUE(Got(a).empty());
  // Another account's roster is not ours.
  r = Ask(a, "<iq to='bob@example.com' type='get' id='u8'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
}

TEST_F(IqTest, AccountDiscoOnlyForSelfAndSubscribers) {
  store_.AddAccount("bob");
  store::RosterItem carol;
  carol.jid = "carol@example.com";
  carol.subscription = Subscription::kFrom;
  store_.PutItemDirect("bob", carol);
  Session alice = Login("alice");
  Session bob = Login("bob");
  Session c = Login("carol");
  const std::string info = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
  xml::Element r = Ask(alice, "<iq to='bob@example.com' type='get' id='i'>" + info + "</iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");
  r = Ask(c, "<iq to='bob@example.com' type='get' id='i'>" + info + "</iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Attr("from"), "bob@example.com");
  const xml::Element* identity = r.Child("query")->Child("identity");
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->Attr("category"), "account");
  EXPECT_EQ(identity->Attr("type"), "registered");
  EXPECT_EQ(Features(r), hub_->registry().Features(kScopeAccount, *config_->Get()));
  r = Ask(bob, "<iq to='bob@example.com' type='get' id='i'>" + info + "</iq>");
  EXPECT_EQ(Features(r), hub_->registry().Features(kScopeSelf, *config_->Get()));
  r = Ask(bob, "<iq type='get' id='n'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "item-not-found");
  r = Ask(c,
          "<iq to='bob@example.com' type='get' id='it'><query "
          "xmlns='http://jabber.org/protocol/disco#items'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
}

TEST_F(IqTest, VCard) {
  Session alice = Login("alice");
  Session bob = Login("bob");
  // None yet: an empty vCard for oneself, item-not-found for others.
  xml::Element r = Ask(alice, "<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  ASSERT_NE(r.Child("vCard", "vcard-temp"), nullptr);
  EXPECT_TRUE(r.Child("vCard", "vcard-temp")->Children().empty());
  r = Ask(bob, "<iq to='alice@example.com' type='get' id='g'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "item-not-found");

  r = Ask(alice,
          "<iq type='set' id='s'><vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN>"
          "<NICKNAME>al</NICKNAME></vCard></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(store_.vcards().count("alice"), 1u);
  r = Ask(bob, "<iq to='alice@example.com' type='get' id='g2'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(r.Attr("from"), "alice@example.com");
  ASSERT_NE(r.Child("vCard", "vcard-temp"), nullptr);
  EXPECT_EQ(r.Child("vCard", "vcard-temp")->ChildText("FN", "vcard-temp"), "Alice & Co");

  // Only one's own can be set.
  r = Ask(bob, "<iq to='alice@example.com' type='set' id='s2'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(r.Attr("type"), "error");
  EXPECT_NE(store_.vcards()["alice"].find("Alice"), std::string::npos);

  Config c = DefaultConfig();
  c.limits.vcard_size = 100;
  MakeHub(c);
  alice = Login("alice", "again");
  r = Ask(alice, "<iq type='set' id='big'><vCard xmlns='vcard-temp'><DESC>" + std::string(200, 'x') +
                     "</DESC></vCard></iq>");
  EXPECT_EQ(ErrorCondition(r), "not-acceptable");

  // The server has an (empty) vCard.
  r = Ask(alice, "<iq to='example.com' type='get' id='sv'><vCard xmlns='vcard-temp'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");
}

TEST_F(IqTest, HandlersSeeTheLoadedAccount) {
  store_.FailNext("GetRoster", Errc::kUnavailable);
  Session a = Login("alice");
  // The load failed: the roster request is answered with an error, and the
  // next request loads again.
  xml::Element r = Ask(a, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
  EXPECT_EQ(r.Attr("type"), "result");  // Login's eager load failed; this one reloaded
  store_.FailNext("GetRoster", Errc::kUnavailable);
  Session b = Login("bob");
  store_.FailNext("GetRoster", Errc::kUnavailable);
  Forget(b);
  Send(a, "<iq to='bob@example.com' type='get' id='x'><vCard xmlns='vcard-temp'/></iq>");
  auto got = Got(a);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorCondition(got[0]), "internal-server-error");
}

}  // namespace
}  // namespace nines::im
