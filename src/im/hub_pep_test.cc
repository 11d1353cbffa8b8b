// XEP-0163 personal eventing through the hub, with XEP-0115 capabilities
// (filtered notifications), XEP-0402 #compat bookmarks and XEP-0398 avatar
// conversion: who hears of an item and when, who may read it, publish-options,
// store failures and durability (G1), and that PEP work lets the account's
// state go.

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/caps.h"
#include "im/stanza_text.h"
#include "im/testing/hub_fixture.h"
#include "xmpp/base64.h"

namespace nines::im {
namespace {

using store::Subscription;
using testing::FakeStore;
using testing::HubTest;
using testing::Session;

constexpr std::string_view kPubsub = "http://jabber.org/protocol/pubsub";
constexpr std::string_view kEvent = "http://jabber.org/protocol/pubsub#event";
constexpr std::string_view kErrors = "http://jabber.org/protocol/pubsub#errors";
constexpr std::string_view kStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
constexpr std::string_view kDiscoInfo = "http://jabber.org/protocol/disco#info";
constexpr std::string_view kClientNode = "https://example.org/client";
constexpr std::string_view kTune = "http://jabber.org/protocol/tune";
constexpr std::string_view kMood = "http://jabber.org/protocol/mood";
constexpr std::string_view kBookmarks = "urn:xmpp:bookmarks:1";
constexpr std::string_view kAvatarDataNs = "urn:xmpp:avatar:data";
constexpr std::string_view kAvatarMetadataNs = "urn:xmpp:avatar:metadata";

std::string Digest(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha1(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string Sha1Hex(std::string_view bytes) {
  std::string hex = xmpp::HexEncode(Digest(bytes));
  std::transform(hex.begin(), hex.end(), hex.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return hex;
}

std::string Tune(std::string_view title) {
  return "<tune xmlns='http://jabber.org/protocol/tune'><title>" + std::string(title) + "</title></tune>";
}

std::string Field(std::string_view var, std::string_view value) {
  return "<field var='" + std::string(var) + "'><value>" + std::string(value) + "</value></field>";
}

// XEP-0402 §3: the options a bookmarks client publishes with.
std::string BookmarkOptions() {
  return Field("pubsub#persist_items", "true") + Field("pubsub#max_items", "max") +
         Field("pubsub#send_last_published_item", "never") + Field("pubsub#access_model", "whitelist");
}

class PepTest : public HubTest {
 protected:
  // ---- XEP-0115

  // The disco#info features of a client that wants events of `nodes`.
  static std::vector<std::string> Wants(std::vector<std::string_view> nodes) {
    std::vector<std::string> features = {"http://jabber.org/protocol/caps", std::string(kDiscoInfo)};
    for (std::string_view n : nodes) {
      features.emplace_back(n);
      features.push_back(std::string(n) + "+notify");
    }
    return features;
  }
  static std::string QueryXml(const std::vector<std::string>& features, std::string_view node) {
    std::string q = "<query xmlns='http://jabber.org/protocol/disco#info'";
    if (!node.empty()) q += " node='" + std::string(node) + "'";
    q += "><identity category='client' type='pc' name='Test'/>";
    for (const auto& f : features) q += "<feature var='" + f + "'/>";
    return q + "</query>";
  }
  // The XEP-0115 §5 sha-1 'ver' of what QueryXml(features) answers.
  static std::string Ver(const std::vector<std::string>& features) {
    xml::Element iq = testing::Parse("<iq type='result' id='v'>" + QueryXml(features, {}) + "</iq>");
    const xml::Element* query = iq.Child("query", kDiscoInfo);
    EXPECT_NE(query, nullptr);
    if (query == nullptr) return {};
    auto s = CapsVerificationString(*query);
    EXPECT_TRUE(s.ok());
    if (!s.ok()) return {};
    std::string ver = xmpp::Base64Encode(Digest(*s));
    EXPECT_TRUE(VerifyCaps({"sha-1", std::string(kClientNode), ver}, *query));
    return ver;
  }
  static std::string CapsPresence(const std::string& ver, std::string_view inner = {}) {
    return "<presence>" + std::string(inner) +
           "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='" + std::string(kClientNode) +
           "' ver='" + ver + "'/></presence>";
  }
  // The server's capability question among `got`, taken out of it.
  static std::optional<xml::Element> TakeCapsQuery(std::vector<xml::Element>& got) {
    for (auto it = got.begin(); it != got.end(); ++it) {
      if (it->name() == "iq" && it->Attr("type") == "get" && it->Child("query", kDiscoInfo) != nullptr) {
        xml::Element q = std::move(*it);
        got.erase(it);
        return q;
      }
    }
    return std::nullopt;
  }
  // Answers the server's question as `s`, with these features.
  void AnswerCaps(const Session& s, const xml::Element& question, const std::vector<std::string>& features) {
    const xml::Element* q = question.Child("query", kDiscoInfo);
    ASSERT_NE(q, nullptr);
    Send(s, "<iq type='result' to='example.com' id='" + std::string(question.Attr("id")) + "'>" +
                QueryXml(features, q->Attr("node")) + "</iq>");
  }
  // Available presence claiming `features`, the server's question (if it
  // asks) answered truthfully. Returns what `s` got, the question left out.
  std::vector<xml::Element> Available(const Session& s, const std::vector<std::string>& features,
                                      std::string_view inner = {}) {
    Send(s, CapsPresence(Ver(features), inner));
    auto got = Got(s);
    if (auto q = TakeCapsQuery(got)) {
      AnswerCaps(s, *q, features);
      for (auto& e : Got(s)) got.push_back(std::move(e));
    }
    return got;
  }
  // Login, roster get, available presence with those capabilities; what it
  // got is forgotten.
  Session CapsOnline(std::string_view user, std::string_view resource,
                     const std::vector<std::string>& features) {
    Session s = Login(user, resource);
    Send(s, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    Available(s, features);
    Forget(s);
    return s;
  }

  // ---- setup

  // `contact` in `user`'s roster, straight into the store (before login).
  void AddContact(const std::string& user, const std::string& contact, Subscription sub,
                  std::vector<std::string> groups = {}) {
    store_.AddAccount(user);
    store::RosterItem item;
    item.jid = contact + "@example.com";
    item.subscription = sub;
    item.groups = std::move(groups);
    store_.PutItemDirect(user, item);
  }

  // ---- requests

  static std::string PublishIq(std::string_view node, std::string_view id, std::string_view payload,
                               std::string_view options = {}) {
    std::string iq =
        "<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" +
        std::string(node) + "'><item";
    if (!id.empty()) iq += " id='" + std::string(id) + "'";
    iq += ">" + std::string(payload) + "</item></publish>";
    if (!options.empty()) {
      iq +=
          "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
          "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
          std::string(options) + "</x></publish-options>";
    }
    return iq + "</pubsub></iq>";
  }
  // Publishes as `s` and returns the IQ answer (anything else `s` got is dropped).
  xml::Element Publish(const Session& s, std::string_view node, std::string_view id, std::string_view payload,
                       std::string_view options = {}) {
    Forget(s);
    Send(s, PublishIq(node, id, payload, options));
    std::vector<xml::Element> answers;
    for (auto& e : Got(s)) {
      if (e.name() == "iq" && e.Attr("id") == "pub") answers.push_back(std::move(e));
    }
    EXPECT_EQ(answers.size(), 1u) << "one answer to a publish";
    if (answers.empty()) return {};
    return std::move(answers[0]);
  }
  static std::string PublishedId(const xml::Element& result, std::string_view node) {
    const xml::Element* pubsub = result.Child("pubsub", kPubsub);
    const xml::Element* publish = pubsub != nullptr ? pubsub->Child("publish", kPubsub) : nullptr;
    const xml::Element* item = publish != nullptr ? publish->Child("item", kPubsub) : nullptr;
    EXPECT_NE(item, nullptr) << result.Serialize();
    if (item == nullptr) return {};
    EXPECT_EQ(publish->Attr("node"), node);
    return std::string(item->Attr("id"));
  }
  xml::Element GetItems(const Session& s, std::string_view owner, std::string_view node) {
    return Ask(s, "<iq type='get' id='items' to='" + std::string(owner) +
                      "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" +
                      std::string(node) + "'/></pubsub></iq>");
  }
  // The item ids of an items result, in order.
  static std::vector<std::string> ResultIds(const xml::Element& result) {
    std::vector<std::string> ids;
    const xml::Element* pubsub = result.Child("pubsub", kPubsub);
    const xml::Element* items = pubsub != nullptr ? pubsub->Child("items", kPubsub) : nullptr;
    if (items == nullptr) return ids;
    for (const xml::Element* item : items->Children()) ids.emplace_back(item->Attr("id"));
    return ids;
  }
  // A private storage request as `s`; its answer (events `s` got meanwhile are dropped).
  xml::Element Private(const Session& s, std::string_view type, std::string_view inner) {
    Forget(s);
    Send(s, "<iq type='" + std::string(type) + "' id='priv'><query xmlns='jabber:iq:private'>" +
                std::string(inner) + "</query></iq>");
    std::vector<xml::Element> answers;
    for (auto& e : Got(s)) {
      if (e.name() == "iq" && e.Attr("id") == "priv") answers.push_back(std::move(e));
    }
    EXPECT_EQ(answers.size(), 1u) << "one answer to a private storage request";
    if (answers.empty()) return {};
    return std::move(answers[0]);
  }

  // ---- what arrived

  // The PEP event messages among `got` (XEP-0060 §7.1.2.1).
  static std::vector<const xml::Element*> Events(const std::vector<xml::Element>& got) {
    std::vector<const xml::Element*> out;
    for (const auto& e : got) {
      if (e.name() == "message" && e.Child("event", kEvent) != nullptr) out.push_back(&e);
    }
    return out;
  }
  // The ids of the items announced for `node` among `got`, in order (and
  // with `from` as the owner, if given).
  static std::vector<std::string> EventIds(const std::vector<xml::Element>& got, std::string_view node,
                                           std::string_view from = {}) {
    std::vector<std::string> ids;
    for (const xml::Element* m : Events(got)) {
      const xml::Element* items = m->Child("event", kEvent)->Child("items", kEvent);
      if (items == nullptr || items->Attr("node") != node) continue;
      if (!from.empty() && m->Attr("from") != from) continue;
      for (const xml::Element* item : items->Children()) {
        if (item->name() == "item") ids.emplace_back(item->Attr("id"));
      }
    }
    return ids;
  }
  // The ids retracted from `node` among `got`.
  static std::vector<std::string> RetractedIds(const std::vector<xml::Element>& got, std::string_view node) {
    std::vector<std::string> ids;
    for (const xml::Element* m : Events(got)) {
      const xml::Element* items = m->Child("event", kEvent)->Child("items", kEvent);
      if (items == nullptr || items->Attr("node") != node) continue;
      for (const xml::Element* r : items->Children()) {
        if (r->name() == "retract") ids.emplace_back(r->Attr("id"));
      }
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  // The XEP-0060 condition (pubsub#errors) of an error, "" if none.
  static std::string PubsubCondition(const xml::Element& stanza) {
    const xml::Element* error = stanza.Child("error");
    if (error == nullptr) return "";
    for (const xml::Element* c : error->Children()) {
      if (c->ns() == kErrors) return c->name();
    }
    return "";
  }
  // type, defined condition and pubsub condition of an error, e.g.
  // "auth not-authorized presence-subscription-required".
  static std::string ErrorOf(const xml::Element& stanza) {
    const xml::Element* error = stanza.Child("error");
    if (stanza.Attr("type") != "error" || error == nullptr) return "not an error: " + stanza.Serialize();
    std::string defined;
    for (const xml::Element* c : error->Children()) {
      if (c->ns() == kStanzas && c->name() != "text") defined = c->name();
    }
    std::string out = std::string(error->Attr("type")) + " " + defined;
    std::string app = PubsubCondition(stanza);
    if (!app.empty()) out += " " + app;
    return out;
  }

  // The value of field `var` in the node_config form of a configure result.
  static std::string ConfigValue(const xml::Element& result, std::string_view var) {
    const xml::Element* pubsub = result.Child("pubsub", "http://jabber.org/protocol/pubsub#owner");
    const xml::Element* configure =
        pubsub != nullptr ? pubsub->Child("configure", "http://jabber.org/protocol/pubsub#owner") : nullptr;
    const xml::Element* form = configure != nullptr ? configure->Child("x", "jabber:x:data") : nullptr;
    if (form == nullptr) return "no form";
    for (const xml::Element* field : form->Children()) {
      if (field->name() == "field" && field->Attr("var") == var)
        return field->ChildText("value", "jabber:x:data");
    }
    return "no field";
  }

  // ---- the store

  const FakeStore::PepData* StoredNode(const std::string& user, std::string_view node) {
    auto it = store_.pep().find({user, std::string(node)});
    return it == store_.pep().end() ? nullptr : &it->second;
  }
  std::vector<std::string> StoredIds(const std::string& user, std::string_view node) {
    std::vector<std::string> ids;
    if (const auto* data = StoredNode(user, node)) {
      for (const auto& item : data->items) ids.push_back(item.id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }
};

using Ids = std::vector<std::string>;

// ---------------------------------------------------------------------------
// Publishing and filtered notifications

TEST_F(PepTest, PublishAnswersWithTheItemIdAndGeneratesOneIfAbsent) {
  Session alice = Online("alice", "laptop");
  xml::Element r = Publish(alice, kTune, "song-1", Tune("One"));
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  EXPECT_EQ(PublishedId(r, kTune), "song-1");
  const FakeStore::PepData* node = StoredNode("alice", kTune);
  ASSERT_NE(node, nullptr) << "auto-created (XEP-0163 §4.2)";
  EXPECT_EQ(node->node.access_model, "presence") << "XEP-0163 §5 default";
  ASSERT_EQ(node->items.size(), 1u);
  EXPECT_EQ(node->items[0].id, "song-1");
  EXPECT_EQ(node->items[0].publisher, "alice@example.com");
  std::optional<xml::Element> payload = ParseElement(node->items[0].xml);
  ASSERT_TRUE(payload.has_value()) << node->items[0].xml;
  EXPECT_EQ(payload->name(), "tune");
  EXPECT_EQ(payload->ns(), kTune);
  EXPECT_EQ(payload->ChildText("title", kTune), "One");

  r = Publish(alice, kTune, "", Tune("Two"));
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  const std::string id = PublishedId(r, kTune);
  EXPECT_FALSE(id.empty()) << "the service makes one up (XEP-0060 §7.1.2)";
  EXPECT_NE(id, "song-1");
  EXPECT_EQ(StoredIds("alice", kTune), Ids{id}) << "stored under the id the result names (one item kept)";
}

TEST_F(PepTest, OnlyTheOwnersResourcesThatAskedForTheNodeHearOfIt) {
  Session phone = CapsOnline("alice", "phone", Wants({kTune}));
  Session tablet = CapsOnline("alice", "tablet", Wants({kMood}));
  Session laptop = Online("alice", "laptop");
  Forget(phone);
  Forget(tablet);

  Send(laptop, PublishIq(kTune, "s1", Tune("One")));
  auto at_laptop = Got(laptop);
  ASSERT_EQ(at_laptop.size(), 1u) << "no caps: only the result";
  EXPECT_EQ(at_laptop[0].Attr("type"), "result");
  auto at_phone = Got(phone);
  ASSERT_EQ(at_phone.size(), 1u);
  const xml::Element& m = at_phone[0];
  EXPECT_EQ(m.name(), "message");
  EXPECT_EQ(m.Attr("type"), "headline");
  EXPECT_EQ(m.Attr("from"), "alice@example.com");
  EXPECT_EQ(m.Attr("to"), "alice@example.com/phone");
  const xml::Element* items =
      m.Child("event", kEvent) ? m.Child("event", kEvent)->Child("items", kEvent) : nullptr;
  ASSERT_NE(items, nullptr) << m.Serialize();
  EXPECT_EQ(items->Attr("node"), kTune);
  const xml::Element* item = items->Child("item", kEvent);
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->Attr("id"), "s1");
  ASSERT_NE(item->Child("tune", kTune), nullptr) << "the payload is delivered";
  EXPECT_EQ(item->Child("tune", kTune)->ChildText("title", kTune), "One");
  EXPECT_TRUE(Got(tablet).empty()) << "its caps do not list tune+notify";

  Send(phone, PublishIq(kTune, "s2", Tune("Two")));
  auto again = Got(phone);
  ASSERT_EQ(again.size(), 2u) << "the publisher hears of its own item too";
  EXPECT_EQ(again[0].Attr("type"), "result");
  EXPECT_EQ(EventIds(again, kTune), Ids{"s2"});
  EXPECT_TRUE(Got(laptop).empty());
  EXPECT_TRUE(Got(tablet).empty());
}

TEST_F(PepTest, TheServerAsksOnceWhatAHashStandsFor) {
  const auto features = Wants({kTune});
  const std::string ver = Ver(features);
  Session phone = Login("alice", "phone");
  Send(phone, CapsPresence(ver));
  auto got = Got(phone);
  auto question = TakeCapsQuery(got);
  ASSERT_TRUE(question.has_value()) << "XEP-0115 §6.3: the server asks";
  EXPECT_EQ(question->Attr("from"), "example.com");
  EXPECT_EQ(question->Attr("to"), "alice@example.com/phone");
  EXPECT_TRUE(question->Attr("id").starts_with("nines-caps-")) << question->Attr("id");
  EXPECT_EQ(question->Child("query", kDiscoInfo)->Attr("node"), std::string(kClientNode) + "#" + ver);
  AnswerCaps(phone, *question, features);
  EXPECT_TRUE(Got(phone).empty()) << "no answer to an answer, and no items yet";

  Session tablet = Login("alice", "tablet");
  Send(tablet, CapsPresence(ver));
  got = Got(tablet);
  EXPECT_FALSE(TakeCapsQuery(got).has_value()) << "a verified hash is not asked about again";
  Session bob = Login("bob", "desk");
  Send(bob, CapsPresence(ver));
  got = Got(bob);
  EXPECT_FALSE(TakeCapsQuery(got).has_value()) << "not for another account either: the cache is shared";

  Forget(phone);
  Forget(tablet);
  Send(phone, PublishIq(kTune, "s1", Tune("One")));
  EXPECT_EQ(EventIds(Got(phone), kTune), Ids{"s1"});
  EXPECT_EQ(EventIds(Got(tablet), kTune), Ids{"s1"}) << "the cached features applied at once";
}

TEST_F(PepTest, AnAnswerThatDoesNotHashIsNotBelieved) {
  const auto claimed = Wants({kTune});
  auto answered = claimed;
  answered.push_back("urn:example:something-else");  // still lists tune+notify, but hashes otherwise
  Session laptop = Online("alice", "laptop");
  ASSERT_EQ(Publish(laptop, kTune, "s1", Tune("One")).Attr("type"), "result");

  Session phone = Login("alice", "phone");
  Send(phone, CapsPresence(Ver(claimed)));
  auto got = Got(phone);
  auto question = TakeCapsQuery(got);
  ASSERT_TRUE(question.has_value());
  AnswerCaps(phone, *question, answered);
  EXPECT_TRUE(Events(Got(phone)).empty()) << "no last item for features that are not verified";
  Send(laptop, PublishIq(kTune, "s2", Tune("Two")));
  EXPECT_TRUE(Events(Got(phone)).empty()) << "XEP-0115 §8.4: a wrong answer gives the resource no caps";

  // §5.4: the question is closed for the client that answered wrongly (a
  // later answer from it counts for nothing) and goes to the next client
  // that claims the hash, at once.
  AnswerCaps(phone, *question, claimed);
  EXPECT_TRUE(Events(Got(phone)).empty());
  Session tablet = Login("alice", "tablet");
  Send(tablet, CapsPresence(Ver(claimed)));
  got = Got(tablet);
  auto again = TakeCapsQuery(got);
  ASSERT_TRUE(again.has_value()) << "the next claimer is asked";
  EXPECT_NE(again->Attr("id"), question->Attr("id"));
  AnswerCaps(tablet, *again, claimed);
  EXPECT_EQ(EventIds(Got(tablet), kTune), Ids{"s2"}) << "verified: the last item comes";
  Send(laptop, PublishIq(kTune, "s3", Tune("Three")));
  EXPECT_EQ(EventIds(Got(tablet), kTune), Ids{"s3"});
  EXPECT_TRUE(Events(Got(phone)).empty()) << "the client that answered wrongly is not told";
}

TEST_F(PepTest, AWrongAnswerSendsTheQuestionToAnotherClaimerAtOnce) {
  const auto claimed = Wants({kTune});
  auto wrong = claimed;
  wrong.push_back("urn:example:something-else");
  Session laptop = Online("alice", "laptop");
  ASSERT_EQ(Publish(laptop, kTune, "s1", Tune("One")).Attr("type"), "result");
  Session liar = Login("alice", "liar");
  Send(liar, CapsPresence(Ver(claimed)));
  auto got = Got(liar);
  auto question = TakeCapsQuery(got);
  ASSERT_TRUE(question.has_value());
  Session honest = Login("alice", "honest");
  Send(honest, CapsPresence(Ver(claimed)));
  got = Got(honest);
  EXPECT_FALSE(TakeCapsQuery(got).has_value()) << "one question per hash in flight";
  // An error is as good as a wrong answer: the waiting client is asked now.
  Send(liar, "<iq type='error' to='example.com' id='" + std::string(question->Attr("id")) +
                 "'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                 "</error></iq>");
  got = Got(honest);
  auto next = TakeCapsQuery(got);
  ASSERT_TRUE(next.has_value()) << "XEP-0115 §5.4: check another entity with the same hash";
  AnswerCaps(honest, *next, claimed);
  EXPECT_EQ(EventIds(Got(honest), kTune), Ids{"s1"});
}

TEST_F(PepTest, AClaimWhileTheQuestionIsOpenIsNotAskedAgainAndHearsOfTheAnswer) {
  const auto features = Wants({kTune});
  const std::string ver = Ver(features);
  Session phone = Login("alice", "phone");
  Send(phone, CapsPresence(ver));
  auto got = Got(phone);
  auto question = TakeCapsQuery(got);
  ASSERT_TRUE(question.has_value());
  Session bob = Login("bob", "desk");
  Send(bob, CapsPresence(ver));
  got = Got(bob);
  EXPECT_FALSE(TakeCapsQuery(got).has_value()) << "one question per hash in flight";
  AnswerCaps(phone, *question, features);

  Session alice_laptop = Online("alice", "laptop");
  Session bob_laptop = Online("bob", "laptop");
  Forget(phone);
  Forget(bob);
  Send(alice_laptop, PublishIq(kTune, "a1", Tune("A")));
  Send(bob_laptop, PublishIq(kTune, "b1", Tune("B")));
  EXPECT_EQ(EventIds(Got(phone), kTune), Ids{"a1"});
  EXPECT_EQ(EventIds(Got(bob), kTune), Ids{"b1"}) << "the waiting resource got the features too";
}

TEST_F(PepTest, ContactsHearIfSubscribedToThePresenceAskedAndNotBlockedEitherWay) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("alice", "carol", Subscription::kBoth);
  AddContact("alice", "dave", Subscription::kTo);
  AddContact("alice", "erin", Subscription::kNone);
  AddContact("alice", "frank", Subscription::kFrom);
  AddContact("alice", "gina", Subscription::kFrom);
  AddContact("alice", "hank", Subscription::kFrom);
  AddContact("bob", "alice", Subscription::kTo);
  AddContact("carol", "alice", Subscription::kBoth);
  AddContact("dave", "alice", Subscription::kFrom);
  AddContact("erin", "alice", Subscription::kNone);
  AddContact("frank", "alice", Subscription::kTo);
  AddContact("gina", "alice", Subscription::kTo);
  AddContact("hank", "alice", Subscription::kTo);
  store_.blocklist("alice").insert("gina@example.com");  // the owner blocks gina
  store_.blocklist("hank").insert("alice@example.com");  // hank blocks the owner
  const auto wants = Wants({kTune});

  Session alice = Online("alice", "phone");
  std::map<std::string, Session> contacts;
  for (const char* name : {"bob", "carol", "dave", "erin", "gina", "hank"}) {
    contacts.emplace(name, CapsOnline(name, "res", wants));
  }
  contacts.emplace("frank", CapsOnline("frank", "res", Wants({kMood})));
  for (auto& [name, s] : contacts) Forget(s);

  Send(alice, PublishIq(kTune, "s1", Tune("One")));
  for (auto& [name, s] : contacts) {
    auto got = Got(s);
    if (name == "bob" || name == "carol") {
      ASSERT_EQ(got.size(), 1u) << name;
      EXPECT_EQ(got[0].Attr("from"), "alice@example.com") << name;
      EXPECT_EQ(got[0].Attr("to"), s.full()) << name;
      EXPECT_EQ(EventIds(got, kTune), Ids{"s1"}) << name;
    } else {
      EXPECT_TRUE(got.empty()) << name << " got " << (got.empty() ? "" : got[0].Serialize());
    }
  }
}

TEST_F(PepTest, NotificationsToContactsFollowTheAccessModel) {
  AddContact("alice", "bob", Subscription::kFrom, {"Friends"});
  AddContact("alice", "carol", Subscription::kBoth, {"Work"});
  AddContact("bob", "alice", Subscription::kTo);
  AddContact("carol", "alice", Subscription::kBoth);
  const auto wants = Wants({"urn:example:friends", "urn:example:private", "urn:example:open"});
  Session alice = Online("alice", "phone");
  Session bob = CapsOnline("bob", "res", wants);
  Session carol = CapsOnline("carol", "res", wants);
  Forget(bob);
  Forget(carol);

  ASSERT_EQ(Publish(alice, "urn:example:friends", "f1", Tune("F"),
                    Field("pubsub#access_model", "roster") + Field("pubsub#roster_groups_allowed", "Friends"))
                .Attr("type"),
            "result");
  EXPECT_EQ(EventIds(Got(bob), "urn:example:friends"), Ids{"f1"});
  EXPECT_TRUE(Got(carol).empty()) << "not in an allowed roster group";

  ASSERT_EQ(Publish(alice, "urn:example:private", "p1", Tune("P"), Field("pubsub#access_model", "whitelist"))
                .Attr("type"),
            "result");
  EXPECT_TRUE(Got(bob).empty()) << "XEP-0223: the owner's alone";
  EXPECT_TRUE(Got(carol).empty());

  ASSERT_EQ(
      Publish(alice, "urn:example:open", "o1", Tune("O"), Field("pubsub#access_model", "open")).Attr("type"),
      "result");
  EXPECT_EQ(EventIds(Got(bob), "urn:example:open"), Ids{"o1"});
  EXPECT_EQ(EventIds(Got(carol), "urn:example:open"), Ids{"o1"});
}

// ---------------------------------------------------------------------------
// Access models on items retrieval (XEP-0060 §6.5.9)

TEST_F(PepTest, ItemsRetrievalFollowsTheAccessModelWithTheXep0060Conditions) {
  AddContact("alice", "bob", Subscription::kFrom, {"Friends"});
  AddContact("alice", "carol", Subscription::kTo, {"Work"});  // alice sees carol; carol does not see alice
  AddContact("bob", "alice", Subscription::kTo);
  AddContact("carol", "alice", Subscription::kFrom);
  store_.AddAccount("dave");  // a stranger
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Publish(alice, "urn:example:presence", "i1", Tune("P")).Attr("type"), "result");
  ASSERT_EQ(Publish(alice, "urn:example:roster", "i1", Tune("R"),
                    Field("pubsub#access_model", "roster") + Field("pubsub#roster_groups_allowed", "Friends"))
                .Attr("type"),
            "result");
  ASSERT_EQ(
      Publish(alice, "urn:example:whitelist", "i1", Tune("W"), Field("pubsub#access_model", "whitelist"))
          .Attr("type"),
      "result");
  ASSERT_EQ(
      Publish(alice, "urn:example:open", "i1", Tune("O"), Field("pubsub#access_model", "open")).Attr("type"),
      "result");
  Session bob = Online("bob", "res");
  Session carol = Online("carol", "res");
  Session dave = Online("dave", "res");

  xml::Element r = GetItems(bob, "alice@example.com", "urn:example:presence");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  EXPECT_EQ(r.Attr("from"), "alice@example.com");
  EXPECT_EQ(ResultIds(r), Ids{"i1"});
  const xml::Element* items = r.Child("pubsub", kPubsub)->Child("items", kPubsub);
  EXPECT_EQ(items->Attr("node"), "urn:example:presence");
  ASSERT_NE(items->Child("item", kPubsub)->Child("tune", kTune), nullptr) << "with the payload";
  EXPECT_EQ(ErrorOf(GetItems(carol, "alice@example.com", "urn:example:presence")),
            "auth not-authorized presence-subscription-required");
  EXPECT_EQ(ErrorOf(GetItems(dave, "alice@example.com", "urn:example:presence")),
            "auth not-authorized presence-subscription-required");

  EXPECT_EQ(ResultIds(GetItems(bob, "alice@example.com", "urn:example:roster")), Ids{"i1"});
  EXPECT_EQ(ErrorOf(GetItems(carol, "alice@example.com", "urn:example:roster")),
            "auth not-authorized not-in-roster-group");
  EXPECT_EQ(ErrorOf(GetItems(dave, "alice@example.com", "urn:example:roster")),
            "auth not-authorized not-in-roster-group");

  EXPECT_EQ(ErrorOf(GetItems(bob, "alice@example.com", "urn:example:whitelist")),
            "cancel not-allowed closed-node");
  EXPECT_EQ(ErrorOf(GetItems(dave, "alice@example.com", "urn:example:whitelist")),
            "cancel not-allowed closed-node");

  EXPECT_EQ(ResultIds(GetItems(dave, "alice@example.com", "urn:example:open")), Ids{"i1"});
  EXPECT_EQ(ResultIds(GetItems(carol, "alice@example.com", "urn:example:open")), Ids{"i1"});

  for (const char* node :
       {"urn:example:presence", "urn:example:roster", "urn:example:whitelist", "urn:example:open"}) {
    EXPECT_EQ(ResultIds(GetItems(alice, "alice@example.com", node)), Ids{"i1"}) << "the owner reads " << node;
  }
  EXPECT_EQ(ErrorOf(GetItems(bob, "alice@example.com", "urn:example:none")), "cancel item-not-found");

  // Disco lists (and describes) only what the requester may read.
  xml::Element disco = Ask(bob,
                           "<iq type='get' id='d' to='alice@example.com'><query "
                           "xmlns='http://jabber.org/protocol/disco#items'/></iq>");
  ASSERT_EQ(disco.Attr("type"), "result") << disco.Serialize();
  Ids listed;
  for (const xml::Element* item :
       disco.Child("query", "http://jabber.org/protocol/disco#items")->Children()) {
    EXPECT_EQ(item->Attr("jid"), "alice@example.com");
    listed.emplace_back(item->Attr("node"));
  }
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, (Ids{"urn:example:open", "urn:example:presence", "urn:example:roster"}));
  xml::Element info =
      Ask(bob,
          "<iq type='get' id='d' to='alice@example.com'><query "
          "xmlns='http://jabber.org/protocol/disco#info' node='urn:example:whitelist'/></iq>");
  EXPECT_EQ(ErrorOf(info), "cancel item-not-found");
  info = Ask(alice,
             "<iq type='get' id='d' to='alice@example.com'><query "
             "xmlns='http://jabber.org/protocol/disco#info' node='urn:example:whitelist'/></iq>");
  ASSERT_EQ(info.Attr("type"), "result") << info.Serialize();
  const xml::Element* identity = info.Child("query", kDiscoInfo)->Child("identity", kDiscoInfo);
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->Attr("category"), "pubsub");
  EXPECT_EQ(identity->Attr("type"), "leaf");

  // Only the owner publishes and manages.
  EXPECT_EQ(ErrorOf(Ask(bob,
                        "<iq type='set' id='p' to='alice@example.com'>"
                        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:example:open'>"
                        "<item id='x'>" +
                            Tune("X") + "</item></publish></pubsub></iq>")),
            "auth forbidden");
  EXPECT_EQ(
      ErrorOf(Ask(bob,
                  "<iq type='set' id='p' to='alice@example.com'>"
                  "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='urn:example:open'/>"
                  "</pubsub></iq>")),
      "auth forbidden");
  EXPECT_EQ(StoredIds("alice", "urn:example:open"), Ids{"i1"});

  // The owner need not be online: her state is loaded for the request.
  Logout(alice);
  EXPECT_EQ(ResultIds(GetItems(bob, "alice@example.com", "urn:example:presence")), Ids{"i1"});
  EXPECT_EQ(ErrorOf(GetItems(dave, "alice@example.com", "urn:example:presence")),
            "auth not-authorized presence-subscription-required");
}

// ---------------------------------------------------------------------------
// publish-options (XEP-0060 §7.1.5)

TEST_F(PepTest, PublishOptionsArePreconditionsOnAnExistingNode) {
  Session alice = Online("alice", "phone");
  const std::string node = "urn:example:n";
  xml::Element r = Publish(alice, node, "1", Tune("1"), Field("pubsub#access_model", "open"));
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  ASSERT_NE(StoredNode("alice", node), nullptr);
  EXPECT_EQ(StoredNode("alice", node)->node.access_model, "open") << "a new node takes the options";

  r = Publish(alice, node, "2", Tune("2"), Field("pubsub#access_model", "presence"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met");
  EXPECT_EQ(StoredIds("alice", node), Ids{"1"}) << "nothing published";
  EXPECT_EQ(StoredNode("alice", node)->node.access_model, "open") << "nor reconfigured";

  r = Publish(alice, node, "3", Tune("3"), Field("pubsub#made_up_option", "x"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met") << "an option the service does not know";
  r = Publish(alice, "urn:example:new", "1", Tune("1"), Field("pubsub#made_up_option", "x"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met") << "nor on a new node";
  EXPECT_EQ(StoredNode("alice", "urn:example:new"), nullptr) << "which is not created";

  r = Publish(alice, node, "4", Tune("4"),
              Field("pubsub#persist_items", "1") + Field("pubsub#access_model", "open"));
  EXPECT_EQ(r.Attr("type"), "result") << r.Serialize();
  r = Publish(alice, node, "5", Tune("5"), Field("pubsub#persist_items", "true"));
  EXPECT_EQ(r.Attr("type"), "result") << "'true' is '1' (XEP-0004 boolean)";
  r = Publish(alice, node, "6", Tune("6"), Field("pubsub#notify_retract", "false"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met") << "notify_retract is on";
  r = Publish(alice, node, "7", Tune("7"), Field("pubsub#notify_retract", "1"));
  EXPECT_EQ(r.Attr("type"), "result");
  r = Publish(alice, node, "8", Tune("8"), Field("pubsub#max_items", "1"));
  EXPECT_EQ(r.Attr("type"), "result");
  EXPECT_EQ(StoredIds("alice", node), Ids{"8"});
}

// ---------------------------------------------------------------------------
// The last published item (XEP-0163 §4.3.4)

// limits.pep_nodes and limits.pep_items, each with its XEP-0060 condition.
TEST_F(PepTest, NodeAndItemLimitsAreRefusedWithTheirConditions) {
  Config c = DefaultConfig();
  c.limits.pep_nodes = 2;
  c.limits.pep_items = 5;
  MakeHub(c);
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Publish(alice, "urn:example:a", "1", Tune("1")).Attr("type"), "result");
  ASSERT_EQ(Publish(alice, "urn:example:b", "1", Tune("1")).Attr("type"), "result");
  xml::Element r = Publish(alice, "urn:example:c", "1", Tune("1"));
  EXPECT_EQ(ErrorOf(r), "modify not-acceptable max-nodes-exceeded") << r.Serialize();
  EXPECT_EQ(StoredNode("alice", "urn:example:c"), nullptr);
  EXPECT_EQ(Publish(alice, "urn:example:a", "2", Tune("2")).Attr("type"), "result") << "existing nodes still work";

  r = Publish(alice, "urn:example:a", "3", Tune("3"), Field("pubsub#max_items", "6"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met") << "more items than the server keeps";
  r = Publish(alice, "urn:example:b", "2", Tune("2"), Field("pubsub#max_items", "max"));
  EXPECT_EQ(ErrorOf(r), "cancel conflict precondition-not-met") << "b keeps one item, not 'max'";
}

TEST_F(PepTest, TheLastItemComesWithInitialPresenceOnce) {
  Session laptop = Online("alice", "laptop");
  ASSERT_EQ(Publish(laptop, kTune, "s1", Tune("One"), Field("pubsub#max_items", "5")).Attr("type"), "result");
  ASSERT_EQ(Publish(laptop, kTune, "s2", Tune("Two")).Attr("type"), "result");
  const auto wants = Wants({kTune});

  Session phone = Login("alice", "phone");
  Send(phone, CapsPresence(Ver(wants)));
  auto got = Got(phone);
  auto question = TakeCapsQuery(got);
  ASSERT_TRUE(question.has_value());
  EXPECT_TRUE(Events(got).empty()) << "nothing before the server knows what the client wants";
  AnswerCaps(phone, *question, wants);
  got = Got(phone);
  ASSERT_EQ(EventIds(got, kTune, "alice@example.com"), Ids{"s2"}) << "the newest item only";
  const xml::Element* delay = Events(got)[0]->Child("delay", "urn:xmpp:delay");
  ASSERT_NE(delay, nullptr) << "XEP-0060 §12.1: an old item is stamped";
  EXPECT_EQ(delay->Attr("from"), "example.com");
  EXPECT_FALSE(delay->Attr("stamp").empty());

  Send(phone, CapsPresence(Ver(wants), "<show>away</show>"));
  EXPECT_TRUE(Events(Got(phone)).empty()) << "a later presence with the same caps brings nothing again";

  Session tablet = Login("alice", "tablet");
  Send(tablet, CapsPresence(Ver(wants)));
  got = Got(tablet);
  EXPECT_FALSE(TakeCapsQuery(got).has_value());
  EXPECT_EQ(EventIds(got, kTune), Ids{"s2"}) << "known caps: with the presence";
  EXPECT_TRUE(Events(Got(phone)).empty()) << "not to the others again";
}

TEST_F(PepTest, ANodeThatSaysNeverIsNotSentOnPresence) {
  Session laptop = Online("alice", "laptop");
  ASSERT_EQ(Publish(laptop, kTune, "s1", Tune("One"), Field("pubsub#send_last_published_item", "never"))
                .Attr("type"),
            "result");
  ASSERT_EQ(Publish(laptop, kMood, "m1", "<mood xmlns='http://jabber.org/protocol/mood'><happy/></mood>")
                .Attr("type"),
            "result");
  Session phone = Login("alice", "phone");
  auto got = Available(phone, Wants({kTune, kMood}));
  EXPECT_TRUE(EventIds(got, kTune).empty()) << "send_last_published_item never";
  EXPECT_EQ(EventIds(got, kMood), Ids{"m1"});
}

TEST_F(PepTest, ContactsLastItemsComeWithInitialPresenceAsTheirNodesAllow) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("alice", "carol", Subscription::kBoth, {"Friends"});
  AddContact("alice", "dave", Subscription::kNone);
  AddContact("bob", "alice", Subscription::kTo);
  AddContact("carol", "alice", Subscription::kBoth);
  AddContact("dave", "alice", Subscription::kNone);
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Publish(alice, kTune, "t1", Tune("T")).Attr("type"), "result");
  ASSERT_EQ(Publish(alice, "urn:example:private", "p1", Tune("P"), Field("pubsub#access_model", "whitelist"))
                .Attr("type"),
            "result");
  ASSERT_EQ(Publish(alice, "urn:example:friends", "f1", Tune("F"),
                    Field("pubsub#access_model", "roster") + Field("pubsub#roster_groups_allowed", "Friends"))
                .Attr("type"),
            "result");
  Logout(alice);  // the items are read from the store; her roster is loaded for the roster model
  const auto wants = Wants({kTune, "urn:example:private", "urn:example:friends"});

  Session bob = Login("bob", "res");
  auto got = Available(bob, wants);
  EXPECT_EQ(EventIds(got, kTune, "alice@example.com"), Ids{"t1"});
  EXPECT_TRUE(EventIds(got, "urn:example:private").empty());
  EXPECT_TRUE(EventIds(got, "urn:example:friends").empty()) << "bob is not in an allowed group";

  Session carol = Login("carol", "res");
  got = Available(carol, wants);
  EXPECT_EQ(EventIds(got, kTune, "alice@example.com"), Ids{"t1"});
  EXPECT_TRUE(EventIds(got, "urn:example:private").empty());
  EXPECT_EQ(EventIds(got, "urn:example:friends", "alice@example.com"), Ids{"f1"});
  for (const xml::Element* m : Events(got)) EXPECT_EQ(m->Attr("to"), "carol@example.com/res");

  Session dave = Login("dave", "res");
  got = Available(dave, wants);
  EXPECT_TRUE(Events(got).empty()) << "not subscribed to alice";
}

TEST_F(PepTest, NoLastItemAcrossABlockEitherWay) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("alice", "carol", Subscription::kFrom);
  AddContact("bob", "alice", Subscription::kTo);
  AddContact("carol", "alice", Subscription::kTo);
  store_.blocklist("alice").insert("bob@example.com");    // the owner blocks bob
  store_.blocklist("carol").insert("alice@example.com");  // carol blocks the owner
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Publish(alice, kTune, "t1", Tune("T")).Attr("type"), "result");
  ASSERT_EQ(
      Publish(alice, "urn:example:open", "o1", Tune("O"), Field("pubsub#access_model", "open")).Attr("type"),
      "result");
  const auto wants = Wants({kTune, "urn:example:open"});

  Session carol = Login("carol", "res");
  EXPECT_TRUE(Events(Available(carol, wants)).empty()) << "carol blocks alice";
  Session bob = Login("bob", "res");
  auto got = Available(bob, wants);
  EXPECT_TRUE(Events(got).empty()) << "XEP-0191: alice blocks bob, so nothing of hers reaches him; got "
                                   << (Events(got).empty() ? "" : Events(got)[0]->Serialize());
}

// ---------------------------------------------------------------------------
// Failures and durability

class PepWithContactTest : public PepTest {
 protected:
  void SetUp() override {
    PepTest::SetUp();
    AddContact("alice", "bob", Subscription::kFrom);
    AddContact("bob", "alice", Subscription::kTo);
    phone_ = CapsOnline("alice", "phone", Wants({kTune}));
    bob_ = CapsOnline("bob", "desk", Wants({kTune}));
    laptop_ = Online("alice", "laptop");
    Forget(phone_);
    Forget(bob_);
  }
  Session phone_, bob_, laptop_;
};

TEST_F(PepWithContactTest, AFailedWriteIsAnErrorTellsNobodyAndTheNextPublishReloads) {
  ASSERT_EQ(Publish(laptop_, kTune, "s1", Tune("One")).Attr("type"), "result");
  Forget(phone_);
  Forget(bob_);
  const int lists = store_.calls("ListPepNodes");

  store_.FailNext("PublishPepItem", Errc::kUnavailable);
  xml::Element r = Publish(laptop_, kTune, "s2", Tune("Two"));
  EXPECT_EQ(ErrorOf(r), "wait internal-server-error");
  EXPECT_TRUE(Got(phone_).empty()) << "nothing to tell of";
  EXPECT_TRUE(Got(bob_).empty());
  EXPECT_EQ(StoredIds("alice", kTune), Ids{"s1"});

  r = Publish(laptop_, kTune, "s3", Tune("Three"));
  EXPECT_EQ(r.Attr("type"), "result") << r.Serialize();
  EXPECT_EQ(store_.calls("ListPepNodes"), lists + 1) << "the failure dropped the node cache";
  EXPECT_EQ(EventIds(Got(phone_), kTune), Ids{"s3"});
  EXPECT_EQ(EventIds(Got(bob_), kTune), Ids{"s3"});
  EXPECT_EQ(StoredIds("alice", kTune), Ids{"s3"});
}

TEST_F(PepWithContactTest, AFailedNodeListIsAnErrorAndIsReadAgain) {
  store_.FailNext("ListPepNodes", Errc::kUnavailable);
  EXPECT_EQ(ErrorOf(Publish(laptop_, kTune, "s1", Tune("One"))), "wait internal-server-error");
  EXPECT_EQ(StoredNode("alice", kTune), nullptr);
  EXPECT_TRUE(Got(phone_).empty());
  EXPECT_EQ(Publish(laptop_, kTune, "s1", Tune("One")).Attr("type"), "result");
  EXPECT_EQ(EventIds(Got(phone_), kTune), Ids{"s1"});
}

TEST_F(PepWithContactTest, NobodyHearsOfAnItemBeforeItIsDurable) {
  store_.Hold("PublishPepItem");
  Send(laptop_, PublishIq(kTune, "s1", Tune("One")));
  EXPECT_EQ(store_.held(), 1u);
  EXPECT_TRUE(Got(laptop_).empty()) << "G1: no result before the write";
  EXPECT_TRUE(Got(phone_).empty()) << "G1: no notification before the write";
  EXPECT_TRUE(Got(bob_).empty());
  store_.Release();
  Drain();
  auto got = Got(laptop_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(EventIds(Got(phone_), kTune), Ids{"s1"});
  EXPECT_EQ(EventIds(Got(bob_), kTune), Ids{"s1"});
}

TEST_F(PepWithContactTest, ARetractIsToldOnceDurable) {
  ASSERT_EQ(Publish(laptop_, kTune, "s1", Tune("One")).Attr("type"), "result");
  Forget(phone_);
  Forget(bob_);
  store_.Hold("RetractPepItems");
  Send(laptop_, "<iq type='set' id='ret'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='" +
                    std::string(kTune) + "'><item id='s1'/></retract></pubsub></iq>");
  EXPECT_TRUE(Got(laptop_).empty());
  EXPECT_TRUE(Got(phone_).empty());
  store_.Release();
  Drain();
  auto got = Got(laptop_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Attr("type"), "result");
  EXPECT_EQ(RetractedIds(Got(phone_), kTune), Ids{"s1"});
  EXPECT_EQ(RetractedIds(Got(bob_), kTune), Ids{"s1"});
  EXPECT_TRUE(StoredIds("alice", kTune).empty());
}

// A failed write drops the node cache while another write is in flight; the
// reload must not read the store before that write lands, or a node made
// private would read as open again (and stay so in the cache).
TEST_F(PepTest, AReloadAfterAFailedWriteWaitsForTheWritesInFlight) {
  store_.AddAccount("dave");  // a stranger
  Session alice = Online("alice", "phone");
  ASSERT_EQ(
      Publish(alice, "urn:example:open", "i1", Tune("O"), Field("pubsub#access_model", "open")).Attr("type"),
      "result");
  Session dave = Online("dave", "res");
  ASSERT_EQ(ResultIds(GetItems(dave, "alice@example.com", "urn:example:open")), Ids{"i1"});

  store_.Hold("PutPepNode");
  Send(alice,
       "<iq type='set' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure "
       "node='urn:example:open'><x xmlns='jabber:x:data' type='submit'>" +
           Field("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config") +
           Field("pubsub#access_model", "whitelist") + "</x></configure></pubsub></iq>");
  ASSERT_EQ(store_.held(), 1u);
  store_.FailNext("PublishPepItem", Errc::kLimitExceeded);
  EXPECT_NE(Publish(alice, "urn:example:other", "o1", Tune("X")).Attr("type"), "result");

  Send(dave,
       "<iq type='get' id='items2' to='alice@example.com'><pubsub "
       "xmlns='http://jabber.org/protocol/pubsub'><items node='urn:example:open'/></pubsub></iq>");
  EXPECT_TRUE(Got(dave).empty()) << "the read waits for the configure to land";
  store_.Release();
  Drain();
  auto got = Got(dave);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ErrorOf(got[0]), "cancel not-allowed closed-node");
  EXPECT_EQ(ErrorOf(GetItems(dave, "alice@example.com", "urn:example:open")),
            "cancel not-allowed closed-node");
}

// ---------------------------------------------------------------------------
// Eviction

TEST_F(PepTest, TheAccountIsEvictedOncePepWorkIsDone) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("bob", "alice", Subscription::kTo);
  const auto wants = Wants({kTune, kBookmarks, std::string_view(kAvatarMetadataNs)});
  Session alice = CapsOnline("alice", "phone", wants);
  Session bob = CapsOnline("bob", "desk", wants);
  ASSERT_EQ(Publish(alice, kTune, "s1", Tune("One")).Attr("type"), "result");
  ASSERT_EQ(ErrorOf(Publish(alice, kTune, "s2", Tune("Two"), Field("pubsub#access_model", "open"))),
            "cancel conflict precondition-not-met");
  EXPECT_EQ(ResultIds(GetItems(alice, "alice@example.com", kTune)), Ids{"s1"});
  EXPECT_EQ(ResultIds(GetItems(bob, "alice@example.com", kTune)), Ids{"s1"});
  EXPECT_EQ(Ask(alice,
                "<iq type='get' id='d' to='alice@example.com'><query "
                "xmlns='http://jabber.org/protocol/disco#items'/></iq>")
                .Attr("type"),
            "result");
  EXPECT_EQ(
      Private(alice, "set",
              "<storage xmlns='storage:bookmarks'><conference jid='room@conference.example.com'/></storage>")
          .Attr("type"),
      "result");
  EXPECT_EQ(Private(alice, "get", "<storage xmlns='storage:bookmarks'/>").Attr("type"), "result");
  const std::string image = "not really a png";
  Forget(alice);
  Send(alice, "<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>" +
                  xmpp::Base64Encode(image) + "</BINVAL></PHOTO></vCard></iq>");
  ASSERT_NE(StoredNode("alice", kAvatarMetadataNs), nullptr);
  Send(alice, "<iq type='set' id='ret'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='" +
                  std::string(kTune) + "'><item id='s1'/></retract></pubsub></iq>");
  Send(alice,
       "<iq type='set' id='del'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='" +
           std::string(kTune) + "'/></pubsub></iq>");
  Forget(alice);
  Forget(bob);

  Logout(alice);
  int loads = store_.calls("GetRoster");
  int lists = store_.calls("ListPepNodes");
  EXPECT_EQ(ErrorOf(GetItems(bob, "alice@example.com", kTune)), "cancel item-not-found");
  EXPECT_EQ(store_.calls("GetRoster"), loads + 1) << "alice's state went with her session: loaded afresh";
  EXPECT_EQ(store_.calls("ListPepNodes"), lists + 1);
  EXPECT_EQ(ErrorOf(GetItems(bob, "alice@example.com", kTune)), "cancel item-not-found");
  EXPECT_EQ(store_.calls("GetRoster"), loads + 2) << "and evicted again after the request";
  EXPECT_EQ(store_.calls("ListPepNodes"), lists + 2);

  Logout(bob);
  Session carol = Online("carol");
  loads = store_.calls("GetRoster");
  Send(carol, "<message to='bob@example.com' type='chat'><body>1</body></message>");
  EXPECT_EQ(store_.calls("GetRoster"), loads + 1) << "bob's state went too";
}

// ---------------------------------------------------------------------------
// XEP-0402 #compat: XEP-0048 bookmarks in private storage

TEST_F(PepTest, LegacyBookmarksAreAViewOfTheNode) {
  Session phone = CapsOnline("alice", "phone", Wants({kBookmarks}));
  Session laptop = Online("alice", "laptop");
  Forget(phone);
  xml::Element r = Private(laptop, "set",
                           "<storage xmlns='storage:bookmarks'>"
                           "<conference jid='Room@Conference.example.com' name='The Room' autojoin='true'>"
                           "<nick>al</nick><password>pw</password></conference>"
                           "<conference jid='other@conference.example.com' autojoin='false'/>"
                           "<url name='Site' url='https://example.org/'/>"
                           "</storage>");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();

  const FakeStore::PepData* node = StoredNode("alice", kBookmarks);
  ASSERT_NE(node, nullptr) << "the set went into the XEP-0402 node";
  EXPECT_EQ(node->node.access_model, "whitelist") << "XEP-0402 §3";
  EXPECT_EQ(node->node.send_last, "never");
  EXPECT_EQ(node->node.max_items, DefaultConfig().limits.pep_items);
  EXPECT_EQ(StoredIds("alice", kBookmarks),
            (Ids{"other@conference.example.com", "room@conference.example.com"}));
  for (const auto& item : node->items) {
    std::optional<xml::Element> conference = ParseElement(item.xml);
    ASSERT_TRUE(conference.has_value()) << item.xml;
    EXPECT_EQ(conference->name(), "conference");
    EXPECT_EQ(conference->ns(), kBookmarks);
    if (item.id == "room@conference.example.com") {
      EXPECT_EQ(conference->Attr("name"), "The Room");
      EXPECT_EQ(conference->Attr("autojoin"), "true");
      EXPECT_EQ(conference->ChildText("nick", kBookmarks), "al");
      EXPECT_EQ(conference->ChildText("password", kBookmarks), "pw");
    } else {
      EXPECT_NE(conference->Attr("autojoin"), "true");
    }
  }
  auto events = Got(phone);
  auto announced = EventIds(events, kBookmarks, "alice@example.com");
  std::sort(announced.begin(), announced.end());
  EXPECT_EQ(announced, (Ids{"other@conference.example.com", "room@conference.example.com"}))
      << "XEP-0402 clients hear of them";

  // An XEP-0402 client adds one.
  r = Publish(phone, kBookmarks, "third@conference.example.com",
              "<conference xmlns='urn:xmpp:bookmarks:1' name='Third'><nick>al3</nick></conference>",
              BookmarkOptions());
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();

  r = Private(laptop, "get", "<storage xmlns='storage:bookmarks'/>");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  const xml::Element* query = r.Child("query", "jabber:iq:private");
  const xml::Element* storage = query != nullptr ? query->Child("storage", "storage:bookmarks") : nullptr;
  ASSERT_NE(storage, nullptr) << r.Serialize();
  std::map<std::string, const xml::Element*> conferences;
  int urls = 0;
  for (const xml::Element* c : storage->Children()) {
    if (c->name() == "conference") conferences[std::string(c->Attr("jid"))] = c;
    if (c->name() == "url") {
      ++urls;
      EXPECT_EQ(c->ns(), "storage:bookmarks");
      EXPECT_EQ(c->Attr("url"), "https://example.org/") << "what XEP-0402 has no place for is kept";
    }
  }
  EXPECT_EQ(urls, 1);
  ASSERT_EQ(conferences.size(), 3u) << r.Serialize();
  const xml::Element* room = conferences["room@conference.example.com"];
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->ns(), "storage:bookmarks");
  EXPECT_EQ(room->Attr("name"), "The Room");
  EXPECT_EQ(room->Attr("autojoin"), "true");
  EXPECT_EQ(room->ChildText("nick", "storage:bookmarks"), "al");
  EXPECT_EQ(room->ChildText("password", "storage:bookmarks"), "pw");
  const xml::Element* third = conferences["third@conference.example.com"];
  ASSERT_NE(third, nullptr) << "built from the node";
  EXPECT_EQ(third->Attr("name"), "Third");
  EXPECT_EQ(third->ChildText("nick", "storage:bookmarks"), "al3");
}

// XEP-0402 #compat: a legacy set reaches XEP-0402 clients as the changes it
// makes to the node.
TEST_F(PepTest, ALegacySetAnnouncesOnlyWhatChangesAndRetractsWhatItDrops) {
  Session phone = CapsOnline("alice", "phone", Wants({kBookmarks}));
  Session laptop = Online("alice", "laptop");
  const std::string room =
      "<conference jid='room@conference.example.com' name='The Room' autojoin='true'>"
      "<nick>al</nick></conference>";
  ASSERT_EQ(Private(laptop, "set",
                    "<storage xmlns='storage:bookmarks'>" + room +
                        "<conference jid='other@conference.example.com'/></storage>")
                .Attr("type"),
            "result");
  Forget(phone);
  ASSERT_EQ(Private(laptop, "set",
                    "<storage xmlns='storage:bookmarks'>" + room +
                        "<conference jid='new@conference.example.com' name='New'/></storage>")
                .Attr("type"),
            "result");
  EXPECT_EQ(StoredIds("alice", kBookmarks),
            (Ids{"new@conference.example.com", "room@conference.example.com"}));
  auto events = Got(phone);
  EXPECT_EQ(EventIds(events, kBookmarks), Ids{"new@conference.example.com"})
      << "the unchanged room is not announced";
  EXPECT_EQ(RetractedIds(events, kBookmarks), Ids{"other@conference.example.com"})
      << "the dropped one is retracted";
}

TEST_F(PepTest, LegacyBookmarksGoIntoTheNodeBeforeTheFirstPublish) {
  store_.AddAccount("alice");
  store_.SetPrivate(
      "alice", "storage:bookmarks storage",
      "<storage xmlns='storage:bookmarks'><conference jid='old@conference.example.com' name='Old'/>"
      "</storage>",
      100, store::Reply<void>(loops_.loop(0).executor(), [](const Result<void>& r) { EXPECT_TRUE(r.ok()); }));
  Drain();
  Session alice = Online("alice", "phone");
  xml::Element r = Publish(alice, kBookmarks, "new@conference.example.com",
                           "<conference xmlns='urn:xmpp:bookmarks:1' name='New'/>", BookmarkOptions());
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  EXPECT_EQ(StoredIds("alice", kBookmarks), (Ids{"new@conference.example.com", "old@conference.example.com"}))
      << "nothing saved the old way is hidden by the new";
  EXPECT_EQ(ResultIds(GetItems(alice, "alice@example.com", kBookmarks)).size(), 2u);
}

TEST_F(PepTest, ANodeStartedFromLegacyBookmarksStaysPrivateWhateverThePublishSays) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("bob", "alice", Subscription::kTo);
  store_.SetPrivate("alice", "storage:bookmarks storage",
                    "<storage xmlns='storage:bookmarks'><conference jid='old@conference.example.com'>"
                    "<password>secret</password></conference></storage>",
                    100, store::Reply<void>(loops_.loop(0).executor(), [](const Result<void>&) {}));
  Drain();
  Session bob = CapsOnline("bob", "desk", Wants({kBookmarks}));
  Session alice = Online("alice", "phone");
  Forget(bob);
  // A client that publishes without XEP-0402's publish-options.
  xml::Element r = Publish(alice, kBookmarks, "new@conference.example.com",
                           "<conference xmlns='urn:xmpp:bookmarks:1' name='New'/>");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  ASSERT_NE(StoredNode("alice", kBookmarks), nullptr);
  EXPECT_EQ(StoredNode("alice", kBookmarks)->node.access_model, "whitelist")
      << "the node was created whitelist";
  EXPECT_EQ(StoredIds("alice", kBookmarks).size(), 2u);
  EXPECT_TRUE(Events(Got(bob)).empty()) << "a contact hears nothing of the owner's bookmarks";
  EXPECT_EQ(ErrorOf(GetItems(bob, "alice@example.com", kBookmarks)), "cancel not-allowed closed-node")
      << "and cannot read them (with their passwords)";
  // The owner's view of the node agrees with the store.
  r = Ask(
      alice,
      "<iq type='get' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" +
          std::string(kBookmarks) + "'/></pubsub></iq>");
  EXPECT_EQ(ConfigValue(r, "pubsub#access_model"), "whitelist") << r.Serialize();
  EXPECT_EQ(ConfigValue(r, "pubsub#max_items"), std::to_string(DefaultConfig().limits.pep_items));
  EXPECT_EQ(ConfigValue(r, "pubsub#send_last_published_item"), "never");
  // So an XEP-0402 client that publishes with the §3 options is not refused.
  r = Publish(alice, kBookmarks, "third@conference.example.com",
              "<conference xmlns='urn:xmpp:bookmarks:1' name='Third'/>", BookmarkOptions());
  EXPECT_EQ(r.Attr("type"), "result") << r.Serialize();
}

// ---------------------------------------------------------------------------
// XEP-0398: vCard avatars and PEP avatars

class PepAvatarTest : public PepTest {
 protected:
  const std::string image_ = std::string("\x89PNG\r\n\x1a\n", 8) + "a tiny picture";
  const std::string base64_ = xmpp::Base64Encode(image_);
  const std::string hash_ = Sha1Hex(image_);

  // The XEP-0153 photo hash in the presence from `from` among `got`;
  // nullopt if there is no <photo/>.
  static std::optional<std::string> PhotoIn(const std::vector<xml::Element>& got, std::string_view from) {
    for (const auto& e : got) {
      if (e.name() != "presence" || e.Attr("from") != from) continue;
      const xml::Element* x = e.Child("x", "vcard-temp:x:update");
      const xml::Element* photo = x != nullptr ? x->Child("photo", "vcard-temp:x:update") : nullptr;
      if (photo == nullptr) return std::nullopt;
      return photo->Text();
    }
    ADD_FAILURE() << "no presence from " << from;
    return std::nullopt;
  }
  // The picture and its announcement, each in an open node (XEP-0084).
  xml::Element PublishAvatarData(const Session& s) {
    return Publish(s, kAvatarDataNs, hash_, "<data xmlns='urn:xmpp:avatar:data'>" + base64_ + "</data>",
                   Field("pubsub#access_model", "open"));
  }
  xml::Element PublishAvatarMetadata(const Session& s) {
    return Publish(s, kAvatarMetadataNs, hash_,
                   "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='" + hash_ + "' bytes='" +
                       std::to_string(image_.size()) + "' type='image/png' width='1' height='1'/></metadata>",
                   Field("pubsub#access_model", "open"));
  }
  std::optional<xml::Element> StoredVCard(const std::string& user) {
    auto it = store_.vcards().find(user);
    if (it == store_.vcards().end()) return std::nullopt;
    return ParseElement(it->second);
  }
};

TEST_F(PepAvatarTest, AVCardPhotoBecomesThePepAvatarAndThePresenceHash) {
  AddContact("alice", "bob", Subscription::kFrom);
  AddContact("bob", "alice", Subscription::kTo);
  Session bob = Online("bob", "desk");
  Session alice = Online("alice", "phone");
  Forget(bob);
  Send(alice, "<presence/>");
  EXPECT_EQ(PhotoIn(Got(bob), "alice@example.com/phone"), std::nullopt) << "no avatar, no <x/>";

  xml::Element r = Ask(alice,
                       "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO>"
                       "<TYPE>image/png</TYPE><BINVAL>" +
                           base64_ + "</BINVAL></PHOTO></vCard></iq>");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();

  const FakeStore::PepData* data = StoredNode("alice", kAvatarDataNs);
  ASSERT_NE(data, nullptr) << "XEP-0398: the photo is published";
  EXPECT_EQ(data->node.access_model, "open") << "as readable as the vCard";
  ASSERT_EQ(data->items.size(), 1u);
  EXPECT_EQ(data->items[0].id, hash_) << "XEP-0084: the id is the SHA-1 of the image";
  std::optional<xml::Element> payload = ParseElement(data->items[0].xml);
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(payload->name(), "data");
  EXPECT_EQ(payload->ns(), kAvatarDataNs);
  EXPECT_EQ(payload->Text(), base64_);

  const FakeStore::PepData* metadata = StoredNode("alice", kAvatarMetadataNs);
  ASSERT_NE(metadata, nullptr);
  EXPECT_EQ(metadata->node.access_model, "open");
  ASSERT_EQ(metadata->items.size(), 1u);
  EXPECT_EQ(metadata->items[0].id, hash_);
  payload = ParseElement(metadata->items[0].xml);
  ASSERT_TRUE(payload.has_value());
  const xml::Element* info = payload->Child("info", kAvatarMetadataNs);
  ASSERT_NE(info, nullptr) << metadata->items[0].xml;
  EXPECT_EQ(info->Attr("id"), hash_);
  EXPECT_EQ(info->Attr("bytes"), std::to_string(image_.size()));
  EXPECT_EQ(info->Attr("type"), "image/png");

  Send(alice, "<presence><show>away</show></presence>");
  EXPECT_EQ(PhotoIn(Got(bob), "alice@example.com/phone"), hash_) << "XEP-0398 §4";
  Send(alice, "<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>");
  EXPECT_EQ(PhotoIn(Got(bob), "alice@example.com/phone"), "") << "the client's own word stands";

  // The hash is read with the account.
  Logout(alice);
  Forget(bob);
  Session again = Online("alice", "laptop");
  EXPECT_EQ(PhotoIn(Got(bob), "alice@example.com/laptop"), hash_);
  (void)again;
}

TEST_F(PepAvatarTest, AnAvatarWithAnOpenDataNodeBecomesTheVCardPhoto) {
  store_.AddAccount("alice");
  store_.vcards()["alice"] = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
  Session alice = Online("alice", "phone");
  ASSERT_EQ(PublishAvatarData(alice).Attr("type"), "result");
  EXPECT_EQ(store_.calls("SetVCard"), 0) << "the data alone changes nothing";
  ASSERT_EQ(PublishAvatarMetadata(alice).Attr("type"), "result");
  std::optional<xml::Element> vcard = StoredVCard("alice");
  ASSERT_TRUE(vcard.has_value());
  EXPECT_EQ(vcard->ChildText("FN", "vcard-temp"), "Alice") << "the rest of the vCard is kept";
  const xml::Element* photo = vcard->Child("PHOTO", "vcard-temp");
  ASSERT_NE(photo, nullptr) << store_.vcards()["alice"];
  EXPECT_EQ(photo->ChildText("TYPE", "vcard-temp"), "image/png");
  EXPECT_EQ(photo->ChildText("BINVAL", "vcard-temp"), base64_);
  EXPECT_EQ(store_.calls("SetVCard"), 1);
  EXPECT_EQ(StoredIds("alice", kAvatarDataNs), Ids{hash_}) << "and the vCard does not publish it back again";

  xml::Element r = Ask(alice, "<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>");
  ASSERT_NE(r.Child("vCard", "vcard-temp"), nullptr);
  EXPECT_NE(r.Child("vCard", "vcard-temp")->Child("PHOTO", "vcard-temp"), nullptr);

  Send(alice, "<presence/>");
  auto own = Got(alice);
  ASSERT_FALSE(own.empty());
  const xml::Element* x = own[0].Child("x", "vcard-temp:x:update");
  ASSERT_NE(x, nullptr) << own[0].Serialize();
  EXPECT_EQ(x->ChildText("photo", "vcard-temp:x:update"), hash_);

  // Empty metadata withdraws the avatar (XEP-0084 §4.5).
  ASSERT_EQ(Publish(alice, kAvatarMetadataNs, "current", "<metadata xmlns='urn:xmpp:avatar:metadata'/>")
                .Attr("type"),
            "result");
  vcard = StoredVCard("alice");
  ASSERT_TRUE(vcard.has_value());
  EXPECT_EQ(vcard->Child("PHOTO", "vcard-temp"), nullptr) << store_.vcards()["alice"];
  EXPECT_EQ(vcard->ChildText("FN", "vcard-temp"), "Alice");
}

TEST_F(PepAvatarTest, TheConversionWaitsForAVCardSetInFlightAndKeepsIt) {
  store_.AddAccount("alice");
  store_.vcards()["alice"] = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
  Session alice = Online("alice", "phone");
  ASSERT_EQ(PublishAvatarData(alice).Attr("type"), "result");
  // The client's new vCard is on its way to the store when the avatar's metadata
  // arrives; the store could answer the conversion's read before that write.
  store_.Hold("SetVCard");
  Send(alice, "<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>Alice Smith</FN></vCard></iq>");
  ASSERT_EQ(PublishAvatarMetadata(alice).Attr("type"), "result");
  store_.Release();
  Drain();
  std::optional<xml::Element> vcard = StoredVCard("alice");
  ASSERT_TRUE(vcard.has_value());
  EXPECT_EQ(vcard->ChildText("FN", "vcard-temp"), "Alice Smith") << "the client's set is not undone";
  const xml::Element* photo = vcard->Child("PHOTO", "vcard-temp");
  ASSERT_NE(photo, nullptr) << store_.vcards()["alice"];
  EXPECT_EQ(photo->ChildText("BINVAL", "vcard-temp"), base64_);
  EXPECT_EQ(store_.calls("SetVCard"), 2);
}

TEST_F(PepAvatarTest, AnAvatarShownOnlyToContactsStaysOutOfTheVCard) {
  store_.AddAccount("alice");
  store_.vcards()["alice"] = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
  Session alice = Online("alice", "phone");
  ASSERT_EQ(Publish(alice, kAvatarDataNs, hash_, "<data xmlns='urn:xmpp:avatar:data'>" + base64_ + "</data>")
                .Attr("type"),
            "result");  // presence access: the default
  ASSERT_EQ(Publish(alice, kAvatarMetadataNs, hash_,
                    "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='" + hash_ + "' bytes='" +
                        std::to_string(image_.size()) + "' type='image/png'/></metadata>")
                .Attr("type"),
            "result");
  EXPECT_EQ(store_.calls("SetVCard"), 0) << "XEP-0398 §3: the vCard is public, this picture is not";
  std::optional<xml::Element> vcard = StoredVCard("alice");
  ASSERT_TRUE(vcard.has_value());
  EXPECT_EQ(vcard->Child("PHOTO", "vcard-temp"), nullptr);
}

}  // namespace
}  // namespace nines::im
