#include "xmpp/csi.h"

#include <gtest/gtest.h>

namespace nines::xmpp {
namespace {

TEST(Csi, PresenceUpdatesWaitAndCollapsePerSender) {
  auto a = ClassifyForCsi("<presence from='b@x/1' to='a@x'><show>away</show></presence>");
  EXPECT_FALSE(a.important);
  EXPECT_EQ(a.collapse_key, "p b@x/1");
  auto gone = ClassifyForCsi("<presence type='unavailable' from='b@x/1' to='a@x'/>");
  EXPECT_FALSE(gone.important);
  EXPECT_EQ(gone.collapse_key, a.collapse_key) << "unavailable replaces the update before it";
  EXPECT_NE(ClassifyForCsi("<presence from='b@x/2' to='a@x'/>").collapse_key, a.collapse_key);
}

TEST(Csi, SubscriptionsAndErrorsAreImportant) {
  EXPECT_TRUE(ClassifyForCsi("<presence type='subscribe' from='b@x' to='a@x'/>").important);
  EXPECT_TRUE(ClassifyForCsi("<presence type='subscribed' from='b@x' to='a@x'/>").important);
  EXPECT_TRUE(ClassifyForCsi("<presence type='error' from='b@x' to='a@x'/>").important);
  EXPECT_TRUE(ClassifyForCsi("<message type='error' from='b@x'><error/></message>").important);
}

TEST(Csi, MessagesAPersonReadsAreImportant) {
  EXPECT_TRUE(ClassifyForCsi("<message from='b@x/1' type='chat'><body>hi</body><active "
                             "xmlns='http://jabber.org/protocol/chatstates'/></message>")
                  .important);
  EXPECT_TRUE(ClassifyForCsi("<message from='b@x/1'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>")
                  .important);
  EXPECT_TRUE(ClassifyForCsi("<message from='b@x/1'><propose xmlns='urn:xmpp:jingle-message:0'/></message>")
                  .important);
  EXPECT_TRUE(ClassifyForCsi("<iq type='get' from='x' id='1'><ping xmlns='urn:xmpp:ping'/></iq>").important);
  EXPECT_TRUE(ClassifyForCsi("<message from='b@x/1'><x xmlns='urn:example:unknown'/></message>").important)
      << "an unknown payload is not guessed at";
}

TEST(Csi, ChatStatesCollapseReceiptsAndMarkersWaitInOrder) {
  auto typing = ClassifyForCsi(
      "<message from=\"b@x/1\" type=\"chat\"><composing xmlns=\"http://jabber.org/protocol/chatstates\"/></message>");
  EXPECT_FALSE(typing.important);
  EXPECT_EQ(typing.collapse_key, "c b@x/1");
  auto receipt = ClassifyForCsi("<message from='b@x/1'><received xmlns='urn:xmpp:receipts' id='m1'/></message>");
  EXPECT_FALSE(receipt.important);
  EXPECT_EQ(receipt.collapse_key, "") << "each receipt is kept";
  auto marker = ClassifyForCsi(
      "<message from='b@x/1'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>");
  EXPECT_FALSE(marker.important);
  EXPECT_EQ(marker.collapse_key, "");
}

TEST(Csi, PepEventsWaitInOrderAndAreNeverCollapsed) {
  auto nick = ClassifyForCsi(
      "<message type='headline' from='b@x' to='a@x/1'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
      "<items node='http://jabber.org/protocol/nick'><item id='current'><nick xmlns='http://jabber.org/protocol/nick'>"
      "B</nick></item></items></event></message>");
  EXPECT_FALSE(nick.important);
  EXPECT_EQ(nick.collapse_key, "") << "two items of one node are two things (bookmarks)";
  // The same payload outside a headline is not a PEP event.
  EXPECT_TRUE(ClassifyForCsi("<message from='b@x'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>")
                  .important);
}

}  // namespace
}  // namespace nines::xmpp
