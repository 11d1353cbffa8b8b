// The archive: XEP-0313 MAM queries, XEP-0359 stanza-id and origin-id, and
// delivery only after the archive write.

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class ArchiveTest : public HubTest {
 protected:
  // Sends `count` chat messages from `from` to `to`'s bare JID, bodies "<prefix>0"...
  void Chat(const Session& from, const Session& to, int count, const std::string& prefix = "m") {
    for (int i = 0; i < count; ++i) {
      Send(from, "<message to='" + to.bare() + "' type='chat' id='" + prefix + std::to_string(i) +
                     "'><body>" + prefix + std::to_string(i) + "</body></message>");
    }
  }
  // Runs a MAM query as `s` (the payload goes inside <query/>) and returns
  // what came back: result messages, then the IQ.
  std::vector<xml::Element> Query(const Session& s, const std::string& inner,
                                  const std::string& queryid = "q") {
    Forget(s);
    Send(s, "<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='" + queryid + "'>" + inner +
                "</query></iq>");
    return Got(s);
  }
  static std::string Form(const std::string& fields) {
    return "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2"
           "</value></field>" +
           fields + "</x>";
  }
  static std::string Field(const std::string& var, const std::string& value) {
    return "<field var='" + var + "'><value>" + value + "</value></field>";
  }
  // Bodies of the forwarded messages in a query's answer.
  static std::vector<std::string> Bodies(const std::vector<xml::Element>& got) {
    std::vector<std::string> out;
    for (const auto& e : got) {
      const xml::Element* result = e.Child("result", "urn:xmpp:mam:2");
      if (result == nullptr) continue;
      const xml::Element* fwd = result->Child("forwarded", "urn:xmpp:forward:0");
      const xml::Element* msg = fwd != nullptr ? fwd->Child("message", "jabber:client") : nullptr;
      out.push_back(msg != nullptr ? msg->ChildText("body") : "<no message>");
    }
    return out;
  }
  static std::vector<std::string> ResultIds(const std::vector<xml::Element>& got) {
    std::vector<std::string> out;
    for (const auto& e : got) {
      if (const xml::Element* result = e.Child("result", "urn:xmpp:mam:2"))
        out.emplace_back(result->Attr("id"));
    }
    return out;
  }
  static const xml::Element* Fin(const std::vector<xml::Element>& got) {
    if (got.empty() || got.back().name() != "iq") return nullptr;
    return got.back().Child("fin", "urn:xmpp:mam:2");
  }
};

TEST_F(ArchiveTest, DeliveredMessagesCarryTheArchiveIdAndBothSidesKeepThem) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 3);
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 3u);
  std::vector<std::string> sids;
  for (const auto& m : got) {
    const xml::Element* sid = m.Child("stanza-id", "urn:xmpp:sid:0");
    ASSERT_NE(sid, nullptr);
    EXPECT_EQ(sid->Attr("by"), "bob@example.com");
    sids.emplace_back(sid->Attr("id"));
  }
  EXPECT_LT(std::stoll(sids[0]), std::stoll(sids[1]));
  EXPECT_LT(std::stoll(sids[1]), std::stoll(sids[2]));
  ASSERT_EQ(store_.archive("bob").size(), 3u);
  ASSERT_EQ(store_.archive("alice").size(), 3u);
  EXPECT_TRUE(store_.archive("alice")[0].outgoing);
  EXPECT_EQ(store_.archive("alice")[0].peer, "bob@example.com");
  EXPECT_FALSE(store_.archive("bob")[0].outgoing);
  EXPECT_EQ(store_.archive("bob")[0].peer, "alice@example.com");
  EXPECT_EQ(store_.archive("bob")[0].peer_resource, "res");
  // Both archives answer with the ids bob saw.
  for (const Session* s : {&alice, &bob}) {
    auto answer = Query(*s, "");
    EXPECT_EQ(Bodies(answer), (std::vector<std::string>{"m0", "m1", "m2"}));
    EXPECT_EQ(ResultIds(answer), sids);
    const xml::Element* fin = Fin(answer);
    ASSERT_NE(fin, nullptr);
    EXPECT_EQ(fin->Attr("complete"), "true");
    EXPECT_EQ(fin->Child("set")->ChildText("first"), sids.front());
    EXPECT_EQ(fin->Child("set")->ChildText("last"), sids.back());
    // Results are addressed to the requester, with the query's id.
    EXPECT_EQ(answer.front().Attr("to"), s->full());
    EXPECT_EQ(answer.front().Child("result", "urn:xmpp:mam:2")->Attr("queryid"), "q");
  }
}

TEST_F(ArchiveTest, NothingIsDeliveredBeforeTheArchiveWriteAndOrderIsKept) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.Hold("Archive");
  Send(alice, "<message to='bob@example.com' type='chat'><body>one</body></message>");
  // A chat state is not archived, but must not overtake the message before it.
  Send(alice,
       "<message to='bob@example.com' type='chat'><composing "
       "xmlns='http://jabber.org/protocol/chatstates'/></message>");
  Send(alice, "<message to='bob@example.com' type='chat'><body>two</body></message>");
  EXPECT_TRUE(Got(bob).empty()) << "delivered before it was durable";
  store_.Release();
  Drain();
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].ChildText("body"), "one");
  EXPECT_NE(got[1].Child("composing"), nullptr);
  EXPECT_EQ(got[1].Child("stanza-id"), nullptr) << "chat states are not archived, so they have no archive id";
  EXPECT_EQ(got[2].ChildText("body"), "two");
  EXPECT_EQ(store_.archive("bob").size(), 2u);
}

TEST_F(ArchiveTest, TheSenderHearsWhenEachArchivedMessageIsDone) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.Hold("Archive");
  auto send = [&](const std::string& text) {
    xml::Element stanza = testing::Parse(text);
    stanza.SetAttr("from", alice.full());
    return hub_->HandleStanza(alice.ref, alice.jid, std::move(stanza), 0);
  };
  EXPECT_TRUE(send("<message to='bob@example.com' type='chat'><body>1</body></message>"));
  EXPECT_TRUE(send("<message to='nobody@example.com' type='chat'><body>2</body></message>"));
  EXPECT_FALSE(
      send("<message to='bob@example.com' type='chat'><composing "
           "xmlns='http://jabber.org/protocol/chatstates'/></message>"))
      << "not archived: nothing to wait for";
  EXPECT_FALSE(send("<presence/>"));
  Drain();
  EXPECT_EQ(port_->done(alice.ref), 1) << "the message to an unknown account is finished (refused) at once";
  store_.Release();
  Drain();
  EXPECT_EQ(port_->done(alice.ref), 2) << "and the archived one once its write is done";
  // A failed write and a retransmission finish too.
  store_.FailNext("Archive", Errc::kUnavailable);
  EXPECT_TRUE(send("<message to='bob@example.com' type='chat'><body>3</body></message>"));
  Drain();
  EXPECT_EQ(port_->done(alice.ref), 3);
}

TEST_F(ArchiveTest, WithoutTheArchiveASenderWaitsForTheOfflineWrite) {
  Config config = DefaultConfig();
  config.archive_enabled = false;
  MakeHub(config);
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.AddAccount("carol");  // exists, never online
  auto send = [&](const std::string& text) {
    xml::Element stanza = testing::Parse(text);
    stanza.SetAttr("from", alice.full());
    return hub_->HandleStanza(alice.ref, alice.jid, std::move(stanza), 0);
  };
  store_.Hold("StoreOffline");
  EXPECT_TRUE(send("<message to='carol@example.com' type='chat'><body>1</body></message>"));
  EXPECT_TRUE(send("<message to='bob@example.com' type='chat'><body>2</body></message>"));
  Drain();
  EXPECT_EQ(port_->done(alice.ref), 1) << "handed to bob's session: done; carol's is not durable yet";
  store_.Release();
  Drain();
  EXPECT_EQ(port_->done(alice.ref), 2) << "done once the offline write is";
}

TEST_F(ArchiveTest, WhatIsArchived) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  const std::string to = "to='bob@example.com'";
  Send(alice, "<message " + to + " type='chat'><body>kept</body></message>");
  Send(alice, "<message " + to + "><received xmlns='urn:xmpp:receipts' id='x'/></message>");
  Send(alice,
       "<message " + to + " type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>");
  Send(alice, "<message " + to +
                  " type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/>"
                  "<origin-id xmlns='urn:xmpp:sid:0' id='cs1'/></message>");
  Send(alice,
       "<message " + to + " type='chat'><body>nope</body><no-store xmlns='urn:xmpp:hints'/></message>");
  Send(alice, "<message " + to +
                  " type='chat'><body>nope</body><no-permanent-store xmlns='urn:xmpp:hints'/>"
                  "</message>");
  Send(alice, "<message " + to + " type='chat'><store xmlns='urn:xmpp:hints'/></message>");
  Send(alice, "<message " + to + " type='headline'><body>news</body></message>");
  EXPECT_EQ(GotNamed(bob, "message").size(), 8u) << "every message is still delivered";
  std::vector<std::string> kept;
  for (const auto& m : store_.archive("bob")) kept.push_back(m.stanza);
  ASSERT_EQ(kept.size(), 4u);
  EXPECT_NE(kept[0].find("kept"), std::string::npos);
  EXPECT_NE(kept[1].find("urn:xmpp:receipts"), std::string::npos);
  EXPECT_NE(kept[2].find("chat-markers"), std::string::npos);
  EXPECT_NE(kept[3].find("<store"), std::string::npos);
}

TEST_F(ArchiveTest, ForgedStanzaIdsAreRemoved) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  // Also when the claimed JID is ours only once normalised.
  for (const char* by : {"bob@example.com", "bob@EXAMPLE.com"}) {
    Send(alice, std::string("<message to='bob@example.com' type='chat'><body>hi</body>"
                            "<stanza-id xmlns='urn:xmpp:sid:0' by='") +
                    by + "' id='forged'/></message>");
    auto got = GotNamed(bob, "message");
    ASSERT_EQ(got.size(), 1u) << by;
    int sids = 0;
    for (const xml::Element* c : got[0].Children()) {
      if (c->name() == "stanza-id") {
        ++sids;
        EXPECT_NE(c->Attr("id"), "forged") << by;
      }
    }
    EXPECT_EQ(sids, 1) << by;
  }
}

TEST_F(ArchiveTest, RetransmissionsWithTheSameOriginIdAreDeliveredOnce) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  const std::string msg =
      "<message to='bob@example.com' type='chat' id='a1'><body>once</body>"
      "<origin-id xmlns='urn:xmpp:sid:0' id='orig-1'/></message>";
  Send(alice, msg);
  Send(alice, msg);
  EXPECT_EQ(GotNamed(bob, "message").size(), 1u);
  EXPECT_EQ(store_.archive("bob").size(), 1u);
  EXPECT_EQ(store_.archive("alice")[0].origin_id, "orig-1");
  EXPECT_TRUE(GotNamed(alice, "message", "error").empty()) << "a retransmission is not an error";
}

TEST_F(ArchiveTest, ArchiveFailureIsReportedAndNothingIsDelivered) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.FailNext("Archive", Errc::kUnavailable);
  Send(alice, "<message to='bob@example.com' type='chat' id='lost'><body>x</body></message>");
  EXPECT_TRUE(Got(bob).empty());
  auto errors = GotNamed(alice, "message", "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(ErrorCondition(errors[0]), "internal-server-error");
  EXPECT_EQ(errors[0].Attr("id"), "lost");
}

// The sender's account went between sending and archiving (deleted from
// another loop): the write fails for the sender's entry, and the message is
// archived for its recipient alone and delivered, not bounced.
TEST_F(ArchiveTest, AMessageWhoseSenderIsGoneIsStillTheRecipients) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.FailNext("Archive", Errc::kNotFound);
  Send(alice, "<message to='bob@example.com' type='chat' id='last'><body>bye</body></message>");
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ChildText("body"), "bye");
  ASSERT_NE(got[0].Child("stanza-id", "urn:xmpp:sid:0"), nullptr);
  ASSERT_EQ(store_.archive("bob").size(), 1u);
  EXPECT_TRUE(store_.archive("alice").empty());
  EXPECT_TRUE(GotNamed(alice, "message", "error").empty()) << "not bounced";
  // The sender's sessions end: its account is gone (AccountGoneFromStore).
  ASSERT_EQ(port_->kicks().size(), 1u);
  EXPECT_EQ(port_->kicks()[0].first, alice.ref);
}

TEST_F(ArchiveTest, OfflineMessagesAreArchivedToo) {
  Session alice = Online("alice");
  store_.AddAccount("bob");
  Send(alice, "<message to='bob@example.com' type='chat'><body>later</body></message>");
  EXPECT_EQ(store_.archive("bob").size(), 1u);
  EXPECT_EQ(store_.offline("bob").size(), 1u);
  Session bob = Online("bob");
  (void)bob;
}

TEST_F(ArchiveTest, NotesToSelfAreKeptOnce) {
  Session alice = Online("alice");
  Session phone = Online("alice", "phone");
  Send(alice, "<message to='alice@example.com' type='chat'><body>note</body></message>");
  EXPECT_EQ(store_.archive("alice").size(), 1u);
}

TEST_F(ArchiveTest, DisabledArchiveDeliversWithoutStanzaIds) {
  Config c = DefaultConfig();
  c.archive_enabled = false;
  MakeHub(c);
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 1);
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Child("stanza-id"), nullptr);
  EXPECT_TRUE(store_.archive("bob").empty());
}

TEST_F(ArchiveTest, PagingForwardAndBackWithRsm) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 7);
  auto ids = ResultIds(Query(bob, ""));
  ASSERT_EQ(ids.size(), 7u);
  auto p1 = Query(bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set>");
  EXPECT_EQ(Bodies(p1), (std::vector<std::string>{"m0", "m1", "m2"}));
  ASSERT_NE(Fin(p1), nullptr);
  EXPECT_EQ(Fin(p1)->Attr("complete"), "");
  auto p2 = Query(
      bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>" + ids[2] + "</after></set>");
  EXPECT_EQ(Bodies(p2), (std::vector<std::string>{"m3", "m4", "m5"}));
  auto p3 = Query(
      bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>" + ids[5] + "</after></set>");
  EXPECT_EQ(Bodies(p3), (std::vector<std::string>{"m6"}));
  EXPECT_EQ(Fin(p3)->Attr("complete"), "true");
  // <before/> pages back from the end.
  auto last = Query(bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>");
  EXPECT_EQ(Bodies(last), (std::vector<std::string>{"m5", "m6"}));
  auto earlier = Query(
      bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>" + ids[5] + "</before></set>");
  EXPECT_EQ(Bodies(earlier), (std::vector<std::string>{"m3", "m4"}));
  // max 0: nothing, but the fin tells whether there is more.
  auto none = Query(bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set>");
  EXPECT_TRUE(Bodies(none).empty());
  ASSERT_NE(Fin(none), nullptr);
  EXPECT_EQ(Fin(none)->Attr("complete"), "");
}

TEST_F(ArchiveTest, PageSizeIsCappedByConfig) {
  Config c = DefaultConfig();
  c.archive_max_page = 4;
  MakeHub(c);
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 6);
  auto page = Query(bob, "<set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set>");
  EXPECT_EQ(Bodies(page).size(), 4u);
  EXPECT_EQ(Fin(page)->Attr("complete"), "");
}

TEST_F(ArchiveTest, PagesFitTheSendQueue) {
  Config c = DefaultConfig();
  c.limits.send_queue = 16 * 1024;  // a quarter of it, 4 KiB, per page
  MakeHub(c);
  Session alice = Online("alice");
  Session bob = Online("bob");
  const std::string big(1500, 'x');
  for (int i = 0; i < 6; ++i) {
    Send(alice,
         "<message to='bob@example.com' type='chat'><body>" + std::to_string(i) + big + "</body></message>");
  }
  auto forward = Query(bob, "");
  ASSERT_EQ(Bodies(forward).size(), 2u) << "two results of ~1.6 KiB fit in 4 KiB";
  EXPECT_EQ(Bodies(forward)[0].substr(0, 1), "0");
  EXPECT_EQ(Fin(forward)->Attr("complete"), "") << "a short page is not the last";
  auto back = Query(bob, "<set xmlns='http://jabber.org/protocol/rsm'><before/></set>");
  ASSERT_EQ(Bodies(back).size(), 2u);
  EXPECT_EQ(Bodies(back)[0].substr(0, 1), "4") << "paging back keeps the newest";
  EXPECT_EQ(Bodies(back)[1].substr(0, 1), "5");
  EXPECT_EQ(Fin(back)->Child("set")->ChildText("first"), ResultIds(back)[0]);
}

TEST_F(ArchiveTest, ArchivedMessagesWaitForAReloadInsteadOfBouncing) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  store_.Hold("Archive");
  Send(alice, "<message to='bob@example.com' type='chat'><body>kept</body></message>");
  // A failed roster write makes bob's state reload while the archive write is in flight.
  store_.FailNext("PutRosterItem", Errc::kUnavailable);
  Send(bob,
       "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='carol@example.com'/></query></iq>");
  Forget(bob);
  store_.Release();
  Drain();
  auto got = GotNamed(bob, "message");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ChildText("body"), "kept");
  EXPECT_TRUE(GotNamed(alice, "message", "error").empty()) << "a durable message must not bounce";
}

TEST_F(ArchiveTest, FormFilters) {
  Session alice = Online("alice");
  Session carol = Online("carol");
  Session bob = Online("bob");
  Chat(alice, bob, 2, "a");
  Chat(carol, bob, 2, "c");
  Chat(bob, alice, 1, "b");
  auto with_alice = Query(bob, Form(Field("with", "alice@example.com")));
  EXPECT_EQ(Bodies(with_alice), (std::vector<std::string>{"a0", "a1", "b0"}));
  auto with_carol = Query(bob, Form(Field("with", "Carol@Example.com")));  // normalised
  EXPECT_EQ(Bodies(with_carol), (std::vector<std::string>{"c0", "c1"}));
  auto full = Query(bob, Form(Field("with", "alice@example.com/res")));
  EXPECT_EQ(Bodies(full), (std::vector<std::string>{"a0", "a1"})) << "a full JID matches that resource only";
  auto ids = ResultIds(Query(bob, ""));
  ASSERT_EQ(ids.size(), 5u);
  auto between = Query(bob, Form(Field("after-id", ids[0]) + Field("before-id", ids[4])));
  EXPECT_EQ(Bodies(between), (std::vector<std::string>{"a1", "c0", "c1"}));
  auto picked =
      Query(bob, Form("<field var='ids'><value>" + ids[3] + "</value><value>" + ids[1] + "</value></field>"));
  EXPECT_EQ(Bodies(picked), (std::vector<std::string>{"a1", "c1"}));
  // Time bounds: the future holds nothing, the past holds everything.
  EXPECT_TRUE(Bodies(Query(bob, Form(Field("start", "2999-01-01T00:00:00Z")))).empty());
  EXPECT_EQ(Bodies(Query(bob, Form(Field("end", "2999-01-01T00:00:00Z")))).size(), 5u);
  EXPECT_EQ(
      Bodies(Query(bob, Form(Field("start", "2000-01-01T00:00:00Z") + Field("with", "carol@example.com"))))
          .size(),
      2u);
}

TEST_F(ArchiveTest, BadQueriesGetTheErrorsTheSpecNames) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 1);
  auto error_of = [&](const std::string& inner) {
    auto got = Query(bob, inner);
    if (got.empty() || got.back().Attr("type") != "error") return std::string("<no error>");
    return ErrorCondition(got.back());
  };
  EXPECT_EQ(error_of(Form(Field("start", "yesterday"))), "bad-request");
  EXPECT_EQ(error_of(Form(Field("with", "@@"))), "bad-request");
  EXPECT_EQ(error_of(Form(Field("color", "blue"))), "bad-request");
  EXPECT_EQ(error_of(Form(Field("start", "2020-01-02T00:00:00Z") + Field("end", "2020-01-01T00:00:00Z"))),
            "bad-request");
  EXPECT_EQ(error_of("<set xmlns='http://jabber.org/protocol/rsm'><after>123</after></set>"),
            "item-not-found");
  EXPECT_EQ(error_of("<set xmlns='http://jabber.org/protocol/rsm'><after>junk</after></set>"),
            "item-not-found");
  EXPECT_EQ(error_of(Form(Field("before-id", "42"))), "item-not-found");
  EXPECT_EQ(error_of("<set xmlns='http://jabber.org/protocol/rsm'><index>2</index></set>"),
            "feature-not-implemented");
  EXPECT_EQ(error_of("<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>"), "bad-request");
  // Someone else's archive is not ours to read.
  EXPECT_EQ(ErrorCondition(Ask(
                alice, "<iq type='set' id='x' to='bob@example.com'><query xmlns='urn:xmpp:mam:2'/></iq>")),
            "service-unavailable");
}

TEST_F(ArchiveTest, FormMetadataAndPrefs) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Send(bob, "<iq type='get' id='m'><metadata xmlns='urn:xmpp:mam:2'/></iq>");
  auto empty = GotNamed(bob, "iq", "result");
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].Child("metadata")->Children().empty());
  Chat(alice, bob, 3);
  auto ids = ResultIds(Query(bob, ""));
  Forget(bob);
  Send(bob, "<iq type='get' id='m'><metadata xmlns='urn:xmpp:mam:2'/></iq>");
  auto meta = GotNamed(bob, "iq", "result");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_EQ(meta[0].Child("metadata")->Child("start")->Attr("id"), ids.front());
  EXPECT_EQ(meta[0].Child("metadata")->Child("end")->Attr("id"), ids.back());
  Send(bob, "<iq type='get' id='f'><query xmlns='urn:xmpp:mam:2'/></iq>");
  auto form = GotNamed(bob, "iq", "result");
  ASSERT_EQ(form.size(), 1u);
  std::vector<std::string> vars;
  for (const xml::Element* f : form[0].Child("query")->Child("x")->Children())
    vars.emplace_back(f->Attr("var"));
  EXPECT_EQ(vars,
            (std::vector<std::string>{"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}));
  Send(bob, "<iq type='get' id='p'><prefs xmlns='urn:xmpp:mam:2'/></iq>");
  auto prefs = GotNamed(bob, "iq", "result");
  ASSERT_EQ(prefs.size(), 1u);
  EXPECT_EQ(prefs[0].Child("prefs")->Attr("default"), "always");
}

// --- Preferences (XEP-0313 §6) ---------------------------------------------

class ArchivePrefsTest : public ArchiveTest {
 protected:
  xml::Element Prefs(const Session& s, const std::string& def, const std::vector<std::string>& always = {},
                     const std::vector<std::string>& never = {}) {
    std::string iq = "<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='" + def + "'><always>";
    for (const auto& j : always) iq += "<jid>" + j + "</jid>";
    iq += "</always><never>";
    for (const auto& j : never) iq += "<jid>" + j + "</jid>";
    iq += "</never></prefs></iq>";
    return Ask(s, iq);
  }
  static std::vector<std::string> Jids(const xml::Element& iq, std::string_view list) {
    std::vector<std::string> out;
    const xml::Element* prefs = iq.Child("prefs", "urn:xmpp:mam:2");
    const xml::Element* l = prefs != nullptr ? prefs->Child(list, "urn:xmpp:mam:2") : nullptr;
    if (l == nullptr) return out;
    for (const xml::Element* j : l->Children()) out.push_back(j->Text());
    return out;
  }
  std::vector<std::string> Archived(const Session& s) { return Bodies(Query(s, "")); }
};

TEST_F(ArchivePrefsTest, SetAndGetWithTheirChecks) {
  Session alice = Online("alice");
  xml::Element r = Prefs(alice, "roster", {"Romeo@Montague.lit/balcony"}, {"montague@montague.lit"});
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  EXPECT_EQ(r.Child("prefs", "urn:xmpp:mam:2")->Attr("default"), "roster") << "the result says what is in force";
  EXPECT_EQ(Jids(r, "always"), std::vector<std::string>{"romeo@montague.lit"}) << "bare and normalised";
  EXPECT_EQ(Jids(r, "never"), std::vector<std::string>{"montague@montague.lit"});
  xml::Element got = Ask(alice, "<iq type='get' id='g'><prefs xmlns='urn:xmpp:mam:2'/></iq>");
  EXPECT_EQ(got.Child("prefs", "urn:xmpp:mam:2")->Attr("default"), "roster");
  EXPECT_EQ(Jids(got, "always"), std::vector<std::string>{"romeo@montague.lit"});

  EXPECT_EQ(ErrorCondition(Prefs(alice, "sometimes")), "bad-request");
  EXPECT_EQ(ErrorCondition(Prefs(alice, "always", {"a@b.c"}, {"a@b.c"})), "bad-request");
  EXPECT_EQ(ErrorCondition(Prefs(alice, "always", {"a@@b"})), "jid-malformed");
  Config c = DefaultConfig();
  c.limits.archive_pref_jids = 1;
  MakeHub(c);
  Session again = Online("alice", "laptop");
  EXPECT_EQ(ErrorCondition(Prefs(again, "always", {"a@b.c", "d@e.f"})), "not-acceptable");
  got = Ask(again, "<iq type='get' id='g'><prefs xmlns='urn:xmpp:mam:2'/></iq>");
  EXPECT_EQ(got.Child("prefs", "urn:xmpp:mam:2")->Attr("default"), "roster") << "kept in the store";
}

TEST_F(ArchivePrefsTest, NeverKeepsNothingForThatOwnerOnEitherSide) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  ASSERT_EQ(Prefs(bob, "never").Attr("type"), "result");
  Send(alice, "<message to='bob@example.com' type='chat' id='a1'><body>to bob</body></message>");
  auto in = GotNamed(bob, "message");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].Child("stanza-id", "urn:xmpp:sid:0"), nullptr) << "bob keeps no copy, so no id of his";
  Send(bob, "<message to='alice@example.com' type='chat' id='b1'><body>to alice</body></message>");
  auto back = GotNamed(alice, "message");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_NE(back[0].Child("stanza-id", "urn:xmpp:sid:0"), nullptr) << "alice keeps hers";
  EXPECT_EQ(Archived(alice), (std::vector<std::string>{"to bob", "to alice"}));
  EXPECT_TRUE(Archived(bob).empty());
}

// The sender's account is gone, and the recipient's preferences keep no copy
// of the message: only the sender's archive would have had it. It is
// delivered as it came rather than lost, and the sender's sessions end.
TEST_F(ArchivePrefsTest, AMessageOnlyItsGoneSenderWouldKeepIsStillDelivered) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  ASSERT_EQ(Prefs(bob, "never").Attr("type"), "result");
  store_.FailNext("Archive", Errc::kNotFound);
  Send(alice, "<message to='bob@example.com' type='chat' id='a1'><body>bye</body></message>");
  auto in = GotNamed(bob, "message");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].ChildText("body"), "bye");
  EXPECT_EQ(in[0].Child("stanza-id", "urn:xmpp:sid:0"), nullptr);
  EXPECT_TRUE(GotNamed(alice, "message", "error").empty()) << "not bounced";
  ASSERT_EQ(port_->kicks().size(), 1u);
  EXPECT_EQ(port_->kicks()[0].first, alice.ref);
  EXPECT_EQ(port_->kicks()[0].second, "not-authorized");
}

TEST_F(ArchivePrefsTest, ListsOverrideTheDefault) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Session carol = Online("carol");
  ASSERT_EQ(Prefs(bob, "never", {"alice@example.com"}).Attr("type"), "result");
  Send(alice, "<message to='bob@example.com' type='chat' id='a1'><body>from alice</body></message>");
  Send(carol, "<message to='bob@example.com' type='chat' id='c1'><body>from carol</body></message>");
  EXPECT_EQ(Archived(bob), std::vector<std::string>{"from alice"});
  ASSERT_EQ(Prefs(bob, "always", {}, {"carol@example.com"}).Attr("type"), "result");
  Send(alice, "<message to='bob@example.com' type='chat' id='a2'><body>alice again</body></message>");
  Send(carol, "<message to='bob@example.com' type='chat' id='c2'><body>carol again</body></message>");
  Send(bob, "<message to='carol@example.com' type='chat' id='b1'><body>to carol</body></message>");
  EXPECT_EQ(Archived(bob), (std::vector<std::string>{"from alice", "alice again"}));
  EXPECT_EQ(Archived(carol), (std::vector<std::string>{"from carol", "carol again", "to carol"}))
      << "carol's own preferences are hers";
}

TEST_F(ArchivePrefsTest, RosterKeepsOnlyContactsAndFollowsTheRoster) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Session stranger = Online("stranger");
  Send(bob, "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='alice@example.com'/></query></iq>");
  ASSERT_EQ(Prefs(bob, "roster").Attr("type"), "result");
  Send(alice, "<message to='bob@example.com' type='chat' id='a1'><body>from a contact</body></message>");
  Send(stranger, "<message to='bob@example.com' type='chat' id='s1'><body>from a stranger</body></message>");
  Send(bob, "<message to='stranger@example.com' type='chat' id='b1'><body>to a stranger</body></message>");
  EXPECT_EQ(Archived(bob), std::vector<std::string>{"from a contact"});
  Send(bob, "<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='stranger@example.com'/></query></iq>");
  Send(stranger, "<message to='bob@example.com' type='chat' id='s2'><body>now a contact</body></message>");
  Send(bob, "<message to='stranger@example.com' type='chat' id='b2'><body>to a contact</body></message>");
  EXPECT_EQ(Archived(bob), (std::vector<std::string>{"from a contact", "now a contact", "to a contact"}));
}

// --- Deleting one's archive (XEP-0050 command) ------------------------------

TEST_F(ArchiveTest, AUserCanDeleteTheirArchiveThroughACommand) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 3);
  auto items = Ask(alice, "<iq type='get' id='i' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items' "
                          "node='http://jabber.org/protocol/commands'/></iq>");
  const xml::Element* q = items.Child("query", "http://jabber.org/protocol/disco#items");
  ASSERT_NE(q, nullptr) << items.Serialize();
  ASSERT_EQ(q->Children().size(), 1u);
  std::string node(q->Children()[0]->Attr("node"));
  EXPECT_EQ(node, "urn:nines:delete-archive");
  auto info = Ask(alice, "<iq type='get' id='n' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' "
                         "node='" + node + "'/></iq>");
  const xml::Element* identity =
      info.Child("query", "http://jabber.org/protocol/disco#info")->Child("identity");
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->Attr("type"), "command-node");

  auto step1 = Ask(alice, "<iq type='set' id='c1' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                          "node='" + node + "' action='execute'/></iq>");
  const xml::Element* cmd = step1.Child("command", "http://jabber.org/protocol/commands");
  ASSERT_NE(cmd, nullptr) << step1.Serialize();
  EXPECT_EQ(cmd->Attr("status"), "executing");
  ASSERT_NE(cmd->Child("x", "jabber:x:data"), nullptr) << "a confirmation form";
  std::string session(cmd->Attr("sessionid"));
  EXPECT_EQ(Bodies(Query(alice, "")).size(), 3u) << "nothing deleted yet";

  auto done = Ask(alice, "<iq type='set' id='c2' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                         "node='" + node + "' sessionid='" + session + "' action='complete'>"
                         "<x xmlns='jabber:x:data' type='submit'><field var='confirm'><value>1</value></field></x>"
                         "</command></iq>");
  cmd = done.Child("command", "http://jabber.org/protocol/commands");
  ASSERT_NE(cmd, nullptr) << done.Serialize();
  EXPECT_EQ(cmd->Attr("status"), "completed");
  EXPECT_NE(cmd->ChildText("note", "http://jabber.org/protocol/commands").find("Deleted 3"), std::string::npos);
  EXPECT_TRUE(Bodies(Query(alice, "")).empty());
  EXPECT_EQ(Bodies(Query(bob, "")).size(), 3u) << "bob keeps his copies";

  auto again = Ask(alice, "<iq type='set' id='c3' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                          "node='" + node + "' sessionid='" + session + "' action='complete'/></iq>");
  EXPECT_EQ(ErrorCondition(again), "bad-request") << "a finished session is gone";
  EXPECT_NE(again.Child("error")->Child("bad-sessionid", "http://jabber.org/protocol/commands"), nullptr);
}

TEST_F(ArchiveTest, TheArchiveCommandDoesNothingUnlessConfirmedOrWhenCanceled) {
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 2);
  const std::string node = "urn:nines:delete-archive";
  auto start = [&] {
    auto r = Ask(alice, "<iq type='set' id='c' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                        "node='" + node + "'/></iq>");
    return std::string(r.Child("command", "http://jabber.org/protocol/commands")->Attr("sessionid"));
  };
  std::string s1 = start();
  auto canceled = Ask(alice, "<iq type='set' id='x' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                             "node='" + node + "' sessionid='" + s1 + "' action='cancel'/></iq>");
  EXPECT_EQ(canceled.Child("command", "http://jabber.org/protocol/commands")->Attr("status"), "canceled");
  std::string s2 = start();
  auto unconfirmed = Ask(alice, "<iq type='set' id='y' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                                "node='" + node + "' sessionid='" + s2 + "' action='complete'><x xmlns='jabber:x:data' "
                                "type='submit'><field var='confirm'><value>0</value></field></x></command></iq>");
  EXPECT_EQ(unconfirmed.Child("command", "http://jabber.org/protocol/commands")->Attr("status"), "completed");
  EXPECT_EQ(Bodies(Query(alice, "")).size(), 2u);
  auto unknown = Ask(alice, "<iq type='set' id='z' to='example.com'><command xmlns='http://jabber.org/protocol/commands' "
                            "node='urn:nines:nope'/></iq>");
  EXPECT_EQ(ErrorCondition(unknown), "item-not-found");
}

TEST_F(ArchivePrefsTest, PreferencesApplyAfterAReload) {
  Session bob = Online("bob");
  ASSERT_EQ(Prefs(bob, "never").Attr("type"), "result");
  Logout(bob);
  MakeHub(DefaultConfig());
  Session alice = Online("alice");
  Send(alice, "<message to='bob@example.com' type='chat' id='a1'><body>while away</body></message>");
  Session back = Online("bob", "again");
  EXPECT_TRUE(Archived(back).empty()) << "loaded with the account, even while offline";
  EXPECT_EQ(Archived(alice), std::vector<std::string>{"while away"});
}

TEST_F(ArchiveTest, AdvertisedOnTheAccount) {
  Session bob = Online("bob");
  auto features =
      Features(Ask(bob, "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
  for (const char* f : {"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"}) {
    EXPECT_TRUE(Has(features, f)) << f;
  }
}

TEST_F(ArchiveTest, RetentionTrimsTheArchiveAtLogin) {
  Config c = DefaultConfig();
  c.archive_retention_count = 2;
  MakeHub(c);
  Session alice = Online("alice");
  Session bob = Online("bob");
  Chat(alice, bob, 5);
  Logout(bob);
  Session again = Online("bob");
  auto bodies = Bodies(Query(again, ""));
  EXPECT_EQ(bodies, (std::vector<std::string>{"m3", "m4"}));
}

}  // namespace
}  // namespace nines::im
