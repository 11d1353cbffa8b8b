// Hub::Restore: a resource bound again for a session resumed from the store,
// with the archive replayed after its cursor (im/restore.cc).

#include <gtest/gtest.h>

#include "im/testing/hub_fixture.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class RestoreTest : public HubTest {
 protected:
  // alice and bob subscribed to each other (before either logs in).
  void Friends() {
    store_.AddAccount("alice");
    store_.AddAccount("bob");
    store::RosterItem to_bob;
    to_bob.jid = Bare("bob");
    to_bob.subscription = store::Subscription::kBoth;
    store_.PutItemDirect("alice", to_bob);
    store::RosterItem to_alice;
    to_alice.jid = Bare("alice");
    to_alice.subscription = store::Subscription::kBoth;
    store_.PutItemDirect("bob", to_alice);
  }
  void Chat(const Session& from, const std::string& to, const std::string& body) {
    Send(from, "<message to='" + to + "' type='chat' id='" + body + "'><body>" + body + "</body></message>");
  }
  static std::vector<std::string> Bodies(const std::vector<xml::Element>& got) {
    std::vector<std::string> out;
    for (const auto& e : got) {
      if (e.name() != "message") continue;
      if (const xml::Element* body = e.Child("body")) {
        out.push_back(body->Text());
      } else if (const xml::Element* received = e.Child("received", "urn:xmpp:carbons:2")) {
        const xml::Element* fwd = received->Child("forwarded", "urn:xmpp:forward:0");
        const xml::Element* inner = fwd ? fwd->Child("message", "jabber:client") : nullptr;
        out.push_back("carbon:" + (inner ? inner->ChildText("body") : std::string("?")));
      }
    }
    return out;
  }
  static int64_t StanzaId(const xml::Element& m) {
    const xml::Element* sid = m.Child("stanza-id", "urn:xmpp:sid:0");
    return sid ? std::stoll(std::string(sid->Attr("id"))) : 0;
  }
  // Restores alice/`resource` as a new session; returns the session and the result.
  std::pair<Session, Result<xmpp::Jid>> Restore(xmpp::RestoredResource restored, bool drain = true) {
    xmpp::SessionRef ref{static_cast<uint32_t>(next_id_ % loops_.size()), next_id_};
    ++next_id_;
    auto bare = xmpp::Jid::Parse(Bare("alice"));
    result_.reset();
    hub_->Restore(ref, *bare, std::move(restored), [this](Result<xmpp::Jid> r) { result_ = std::move(r); });
    if (drain) Drain();
    Session s{ref, result_ && result_->ok() ? **result_ : xmpp::Jid()};
    return {s, result_ ? *result_ : Result<xmpp::Jid>(MakeError(Errc::kInternal, "no answer"))};
  }
  std::optional<Result<xmpp::Jid>> result_;
};

TEST_F(RestoreTest, ReplaysWhatCameAfterTheCursorOnceInOrderThenLiveMessages) {
  Friends();
  Session bob = Online("bob");
  Session phone = Online("alice", "phone");
  Chat(bob, Bare("alice"), "m1");
  auto first = Got(phone);
  ASSERT_EQ(Bodies(first), (std::vector<std::string>{"m1"}));
  const int64_t cursor = StanzaId(first[0]);
  ASSERT_GT(cursor, 0);
  Chat(bob, Bare("alice"), "m2");
  Chat(bob, Bare("alice") + "/phone", "m3");
  Logout(phone);                                // the process that held it died
  Chat(bob, Bare("alice"), "m4");  // nobody bound: archived and kept offline
  ASSERT_EQ(store_.offline("alice").size(), 1u);
  Forget(bob);

  xmpp::RestoredResource r;
  r.resource = "phone";
  r.cursor = cursor;
  r.max_replay = 100;
  r.presence = "<presence from='" + Bare("alice") + "/phone'><show>away</show></presence>";
  auto [restored, result] = Restore(r);
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->Full(), Bare("alice") + "/phone");
  auto got = Got(restored);
  EXPECT_EQ(Bodies(got), (std::vector<std::string>{"m2", "m3", "m4"})) << "after the cursor, in order";
  int64_t last = cursor;
  for (const auto& m : got) {
    if (m.name() != "message") continue;
    EXPECT_GT(StanzaId(m), last) << "with their archive ids, increasing";
    last = StanzaId(m);
    EXPECT_NE(m.Child("delay", "urn:xmpp:delay"), nullptr);
  }
  // The presence is back: the contact sees it, and the probe answer comes back.
  auto to_bob = GotNamed(bob, "presence");
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].ChildText("show"), "away");
  // m4 went offline while nobody was bound, and the replay covered it: not again.
  Chat(bob, Bare("alice"), "m5");
  auto live = Got(restored);
  EXPECT_EQ(Bodies(live), (std::vector<std::string>{"m5"}));
  EXPECT_EQ(port_->ArchiveIds(restored.ref).size(), 0u);
  EXPECT_TRUE(store_.offline("alice").empty()) << "what the replay gave is not kept offline";
}

TEST_F(RestoreTest, LiveDeliveriesCarryTheArchiveIdTheCursorFollows) {
  Session bob = Online("bob");
  Session phone = Online("alice", "phone");
  Chat(bob, Bare("alice"), "m1");
  Chat(bob, Bare("alice"), "m2");
  auto ids = port_->ArchiveIds(phone.ref);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_GT(ids[0], 0);
  EXPECT_GT(ids[1], ids[0]);
  auto got = Got(phone);
  EXPECT_EQ(StanzaId(got[0]), ids[0]) << "the id passed along is the stanza-id";
  Send(bob, "<message to='" + Bare("alice") + "' type='chat'><composing "
            "xmlns='http://jabber.org/protocol/chatstates'/></message>");
  EXPECT_EQ(port_->ArchiveIds(phone.ref), (std::vector<int64_t>{0})) << "not archived: no id";
}

TEST_F(RestoreTest, MessagesArrivingDuringTheReplayWaitAndAreNotDuplicated) {
  Session bob = Online("bob");
  Session phone = Online("alice", "phone");
  Chat(bob, Bare("alice"), "m1");
  const int64_t cursor = StanzaId(Got(phone)[0]);
  Chat(bob, Bare("alice"), "m2");
  Logout(phone);
  Session laptop = Online("alice", "laptop");  // keeps the account's messages flowing meanwhile
  store_.Hold("QueryArchive");
  xmpp::RestoredResource r;
  r.resource = "phone";
  r.cursor = cursor;
  r.max_replay = 100;
  r.presence = "<presence from='" + Bare("alice") + "/phone'/>";
  auto [restored, pending] = Restore(r);
  EXPECT_FALSE(result_.has_value()) << "waits for the archive read";
  Chat(bob, Bare("alice") + "/phone", "m3");  // archived after the read was issued
  store_.Release();
  Drain();
  ASSERT_TRUE(result_ && result_->ok());
  Session s{restored.ref, **result_};
  EXPECT_EQ(Bodies(Got(s)), (std::vector<std::string>{"m2", "m3"})) << "the replay first, then the rest, once";
}

TEST_F(RestoreTest, CarbonsReplayOtherResourcesMessagesAsReceivedCopies) {
  Session bob = Online("bob");
  Session phone = Online("alice", "phone");
  Session laptop = Online("alice", "laptop", 10);
  Chat(bob, Bare("alice"), "x");  // to the laptop (higher priority)
  Forget(phone);
  Forget(laptop);
  Logout(phone);
  xmpp::RestoredResource r;
  r.resource = "phone";
  r.cursor = 1;
  r.max_replay = 100;
  r.carbons = true;
  auto [restored, result] = Restore(r);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(Bodies(Got(restored)), (std::vector<std::string>{"x"})) << "to the bare JID: this one too";

  xmpp::RestoredResource negative = r;
  negative.resource = "watch";
  negative.priority = -1;
  negative.carbons = false;
  auto [watch, ok] = Restore(negative);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Bodies(Got(watch)), (std::vector<std::string>{})) << "negative priority gets no bare-JID messages";
  Chat(bob, Bare("alice") + "/laptop", "y");
  Forget(restored);
  negative.resource = "tablet";
  negative.priority = 0;
  negative.carbons = true;
  auto [tablet, fine] = Restore(negative);
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(Bodies(Got(tablet)), (std::vector<std::string>{"x", "carbon:y"}))
      << "another resource's message comes as a received carbon";
}

TEST_F(RestoreTest, TooMuchToReplayFailsAndBindsNothing) {
  Session bob = Online("bob");
  Online("alice", "laptop");
  for (int i = 0; i < 5; ++i) Chat(bob, Bare("alice"), "m" + std::to_string(i));
  xmpp::RestoredResource r;
  r.resource = "phone";
  r.cursor = 1;
  r.max_replay = 4;
  auto [s, result] = Restore(r);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, Errc::kLimitExceeded);
  EXPECT_TRUE(Got(s).empty());
  Chat(bob, Bare("alice") + "/phone", "later");
  EXPECT_TRUE(Got(s).empty()) << "not bound";
}

TEST_F(RestoreTest, AnUnknownAccountIsNotFound) {
  xmpp::RestoredResource r;
  r.resource = "phone";
  r.max_replay = 10;
  auto [s, result] = Restore(r);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, Errc::kNotFound);
}

}  // namespace
}  // namespace nines::im
