#include "im/caps.h"

#include <gtest/gtest.h>

namespace nines::im {
namespace {

constexpr std::string_view kInfo = "http://jabber.org/protocol/disco#info";

xml::Element Query() { return xml::Element("query", std::string(kInfo)); }

void AddIdentity(xml::Element& q, std::string category, std::string type, std::string lang, std::string name) {
  xml::Element& id = q.AddChild("identity", std::string(kInfo));
  id.SetAttr("category", std::move(category));
  id.SetAttr("type", std::move(type));
  if (!lang.empty()) id.SetAttr("xml:lang", std::move(lang));
  id.SetAttr("name", std::move(name));
}

void AddFeature(xml::Element& q, std::string var) { q.AddChild("feature", std::string(kInfo)).SetAttr("var", std::move(var)); }

void AddField(xml::Element& form, std::string var, std::vector<std::string> values, std::string type = {}) {
  xml::Element& field = form.AddChild("field", "jabber:x:data");
  field.SetAttr("var", std::move(var));
  if (!type.empty()) field.SetAttr("type", std::move(type));
  for (auto& v : values) field.AddChild("value", "jabber:x:data").AddText(v);
}

// XEP-0115 §5.2.
xml::Element SimpleExample() {
  xml::Element q = Query();
  AddIdentity(q, "client", "pc", "", "Exodus 0.9.1");
  AddFeature(q, "http://jabber.org/protocol/caps");
  AddFeature(q, "http://jabber.org/protocol/disco#info");
  AddFeature(q, "http://jabber.org/protocol/disco#items");
  AddFeature(q, "http://jabber.org/protocol/muc");
  return q;
}

// XEP-0115 §5.3, with the features and fields given out of order.
xml::Element ComplexExample() {
  xml::Element q = Query();
  AddIdentity(q, "client", "pc", "en", "Psi 0.11");
  AddIdentity(q, "client", "pc", "el", "\xce\xa8 0.11");
  AddFeature(q, "http://jabber.org/protocol/muc");
  AddFeature(q, "http://jabber.org/protocol/disco#info");
  AddFeature(q, "http://jabber.org/protocol/disco#items");
  AddFeature(q, "http://jabber.org/protocol/caps");
  xml::Element& form = q.AddChild("x", "jabber:x:data");
  form.SetAttr("type", "result");
  AddField(form, "FORM_TYPE", {"urn:xmpp:dataforms:softwareinfo"}, "hidden");
  AddField(form, "ip_version", {"ipv6", "ipv4"});
  AddField(form, "os", {"Mac"});
  AddField(form, "os_version", {"10.5.1"});
  AddField(form, "software", {"Psi"});
  AddField(form, "software_version", {"0.11"});
  return q;
}

TEST(Caps, SimpleExampleOfTheSpecVerifies) {
  auto s = CapsVerificationString(SimpleExample());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s,
            "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<"
            "http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<");
  EXPECT_TRUE(VerifyCaps({"sha-1", "http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0="}, SimpleExample()));
  EXPECT_FALSE(VerifyCaps({"sha-1", "x", "QgayPKawpkPSDYmwT/WM94uAlu1="}, SimpleExample()));
}

TEST(Caps, ComplexExampleWithAFormVerifies) {
  EXPECT_TRUE(VerifyCaps({"sha-1", "http://psi-im.org", "q07IKJEyjvHSyhy//CH0CxmKi8w="}, ComplexExample()));
  // One more feature changes the hash: a client cannot claim another's.
  xml::Element q = ComplexExample();
  AddFeature(q, "http://jabber.org/protocol/pubsub+notify");
  EXPECT_FALSE(VerifyCaps({"sha-1", "http://psi-im.org", "q07IKJEyjvHSyhy//CH0CxmKi8w="}, q));
}

TEST(Caps, SuspiciousAnswersAreRefused) {
  xml::Element repeated_feature = SimpleExample();
  AddFeature(repeated_feature, "http://jabber.org/protocol/muc");
  EXPECT_FALSE(CapsVerificationString(repeated_feature).ok());

  xml::Element repeated_identity = SimpleExample();
  AddIdentity(repeated_identity, "client", "pc", "", "Exodus 0.9.1");
  EXPECT_FALSE(CapsVerificationString(repeated_identity).ok());

  xml::Element two_forms = ComplexExample();
  xml::Element& again = two_forms.AddChild("x", "jabber:x:data");
  AddField(again, "FORM_TYPE", {"urn:xmpp:dataforms:softwareinfo"}, "hidden");
  EXPECT_FALSE(CapsVerificationString(two_forms).ok());
}

TEST(Caps, FormWithoutHiddenFormTypeIsLeftOut) {
  xml::Element q = SimpleExample();
  xml::Element& form = q.AddChild("x", "jabber:x:data");
  AddField(form, "FORM_TYPE", {"urn:example"});  // not hidden
  AddField(form, "a", {"b"});
  EXPECT_TRUE(VerifyCaps({"sha-1", "n", "QgayPKawpkPSDYmwT/WM94uAlu0="}, q));
}

TEST(Caps, ClaimsNeedAKnownHash) {
  xml::Element presence("presence", "jabber:client");
  EXPECT_FALSE(ParseCapsClaim(presence).has_value());
  xml::Element& c = presence.AddChild("c", std::string(kCapsNs));
  c.SetAttr("node", "http://example.org");
  c.SetAttr("ver", "1.0");  // legacy: no hash
  EXPECT_FALSE(ParseCapsClaim(presence).has_value());
  c.SetAttr("hash", "md5");
  EXPECT_FALSE(ParseCapsClaim(presence).has_value());
  c.SetAttr("hash", "SHA-256");
  c.SetAttr("ver", "abc=");
  auto claim = ParseCapsClaim(presence);
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->Key(), "sha-256 abc=");
}

TEST(Caps, FeaturesListNotifyInterests) {
  xml::Element q = SimpleExample();
  AddFeature(q, "urn:xmpp:avatar:metadata+notify");
  AddFeature(q, "http://jabber.org/protocol/nick+notify");
  CapsFeatures f = FeaturesOf(q);
  EXPECT_TRUE(f.Notifies("urn:xmpp:avatar:metadata"));
  EXPECT_TRUE(f.Notifies("http://jabber.org/protocol/nick"));
  EXPECT_FALSE(f.Notifies("urn:xmpp:avatar:data"));
  EXPECT_TRUE(f.Has("http://jabber.org/protocol/muc"));
}

TEST(CapsCache, AsksOnceTellsEveryWaiterAndEvictsOldest) {
  CapsCache cache;
  CapsClaim claim{"sha-1", "n", "v1"};
  std::string id1, id2;
  EXPECT_TRUE(cache.StartQuery(claim, "a@x/1", 1000, id1));
  EXPECT_FALSE(cache.StartQuery(claim, "b@x/1", 2000, id2));  // already asked
  ASSERT_TRUE(cache.ClaimOf(id1, "a@x/1").has_value());
  EXPECT_EQ(cache.ClaimOf(id1, "a@x/1")->ver, "v1");
  EXPECT_FALSE(cache.ClaimOf(id1, "b@x/1").has_value()) << "only the client asked may answer";
  EXPECT_FALSE(cache.ClaimOf("nines-caps-999", "a@x/1").has_value());
  EXPECT_FALSE(cache.ClaimOf("something-else", "a@x/1").has_value());
  // Unanswered for the retry time: the next claimer is asked.
  EXPECT_TRUE(cache.StartQuery(claim, "c@x/1", 1000 + 30000, id2));
  EXPECT_NE(id1, id2);
  EXPECT_FALSE(cache.ClaimOf(id1, "a@x/1").has_value());
  EXPECT_TRUE(cache.ClaimOf(id2, "c@x/1").has_value());
  auto waiters = cache.Insert(claim.Key(), std::make_shared<CapsFeatures>(), 2);
  EXPECT_EQ(waiters, (std::vector<std::string>{"a@x/1", "b@x/1", "c@x/1"}));
  EXPECT_NE(cache.Find("sha-1 v1"), nullptr);
  EXPECT_FALSE(cache.StartQuery(claim, "d@x/1", 50000, id2));  // verified now

  cache.Insert("sha-1 v2", std::make_shared<CapsFeatures>(), 2);
  cache.Insert("sha-1 v3", std::make_shared<CapsFeatures>(), 2);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Find("sha-1 v1"), nullptr);
  EXPECT_NE(cache.Find("sha-1 v3"), nullptr);
}

TEST(CapsCache, AWrongAnswerMovesTheQuestionToTheNextClaimer) {
  CapsCache cache;
  CapsClaim claim{"sha-1", "n", "v"};
  std::string id, waiter, next;
  ASSERT_TRUE(cache.StartQuery(claim, "liar@x/1", 1000, id));
  EXPECT_FALSE(cache.StartQuery(claim, "honest@x/1", 1001, next));
  ASSERT_TRUE(cache.Reask(id, 1002, waiter, next));
  EXPECT_EQ(waiter, "honest@x/1");
  EXPECT_FALSE(cache.ClaimOf(id, "liar@x/1").has_value()) << "the old question is closed";
  ASSERT_TRUE(cache.ClaimOf(next, "honest@x/1").has_value());
  auto told = cache.Insert(claim.Key(), std::make_shared<CapsFeatures>(), 10);
  EXPECT_EQ(told, (std::vector<std::string>{"honest@x/1"})) << "the liar is not told";

  // Nobody left to ask: the question is forgotten, and the next claimer is asked at once.
  CapsClaim other{"sha-1", "n", "w"};
  ASSERT_TRUE(cache.StartQuery(other, "liar@x/1", 2000, id));
  EXPECT_FALSE(cache.Reask(id, 2001, waiter, next));
  EXPECT_TRUE(cache.StartQuery(other, "later@x/1", 2002, next));
}

}  // namespace
}  // namespace nines::im
