#include "im/stanza_text.h"

#include <gtest/gtest.h>

#include "im/jid_view.h"
#include "xml/element.h"

namespace nines::im {
namespace {

TEST(StanzaTextTest, WithToAddsTheAttributeAfterTheName) {
  EXPECT_EQ(WithTo("<presence from='a@b/c'/>", "d@e"), "<presence to='d@e' from='a@b/c'/>");
  EXPECT_EQ(WithTo("<presence/>", "d@e"), "<presence to='d@e'/>");
  EXPECT_EQ(WithTo("<presence><show>away</show></presence>", "x'y@e"),
            "<presence to='x&apos;y@e'><show>away</show></presence>");
}

TEST(StanzaTextTest, RootAttrReadsOnlyTheRootsAttributes) {
  std::string_view m = "<message from='a@x/r' to='b@x/it&apos;s' type='chat'><body to='no'/></message>";
  EXPECT_EQ(RootAttr(m, "to"), "b@x/it&apos;s");
  EXPECT_EQ(RootAttr(m, "type"), "chat");
  EXPECT_EQ(RootAttr(m, "id"), std::nullopt);
  EXPECT_EQ(RootAttr("<presence/>", "to"), std::nullopt);
  EXPECT_EQ(RootAttr("<presence type='x'/>", "type"), "x");
  std::string escaped;
  AppendAttr(escaped, "to", "b@x/it's");
  EXPECT_EQ(escaped, " to='b@x/it&apos;s'") << "values compare in their escaped form";
}

// What the serialiser escapes, RootAttrText gives back: the way a session's
// kept text is read again for a reroute (HubImpl::RerouteText).
TEST(StanzaTextTest, RootAttrTextUndoesTheSerialisersEscapes) {
  const std::string tricky = "b@x/&<>\"' tab\tlf\ncr\r \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  xml::Element m("message", "jabber:client");
  m.SetAttr("from", tricky);
  m.SetAttr("id", "plain");
  std::string text;
  m.SerializeTo(text, "jabber:client");
  EXPECT_EQ(RootAttrText(text, "from"), tricky) << text;
  EXPECT_EQ(RootAttrText(text, "id"), "plain");
  EXPECT_EQ(RootAttrText(text, "to"), std::nullopt);
  EXPECT_EQ(RootAttrText("<message id='&#x41;&#66;&#x1F600;'/>", "id"), "AB\xF0\x9F\x98\x80");
  EXPECT_EQ(RootAttrText("<message id='&nbsp;'/>", "id"), std::nullopt) << "not an escape we write";
  EXPECT_EQ(RootAttrText("<message id='a&amp'/>", "id"), std::nullopt);
  EXPECT_EQ(RootAttrText("<message id='&#xD800;'/>", "id"), std::nullopt);
}

TEST(StanzaTextTest, AppendChildXml) {
  std::string s = "<message to='a@b'/>";
  ASSERT_TRUE(AppendChildXml(s, "<x/>"));
  EXPECT_EQ(s, "<message to='a@b'><x/></message>");
  s = "<message to='a@b'><body>hi</body></message>";
  ASSERT_TRUE(AppendChildXml(s, "<x/>"));
  EXPECT_EQ(s, "<message to='a@b'><body>hi</body><x/></message>");
  s = "junk";
  EXPECT_FALSE(AppendChildXml(s, "<x/>"));
  EXPECT_EQ(s, "junk");
}

TEST(StanzaTextTest, StanzaIdGoesBeforeTheRootsEndTag) {
  const std::string sid = "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='42'/>";
  EXPECT_EQ(WithStanzaId("<message to='a@b'><body>hi</body></message>", "bob@localhost", 42),
            "<message to='a@b'><body>hi</body>" + sid + "</message>");
  EXPECT_EQ(WithStanzaId("<message to='a@b'/>", "bob@localhost", 42),
            "<message to='a@b'>" + sid + "</message>");
  // The owner is escaped like any attribute value; ids keep their sign.
  EXPECT_EQ(WithStanzaId("<m><b/></m>", "o'k&<", -7),
            "<m><b/><stanza-id xmlns='urn:xmpp:sid:0' by='o&apos;k&amp;&lt;' id='-7'/></m>");
  EXPECT_EQ(WithStanzaId("junk", "bob@localhost", 1), "junk");
  // In place: the same text, whatever the shape, spare capacity or not.
  for (std::string stanza : {"<message to='a@b'><body>hi</body></message>", "<message to='a@b'/>",
                             "<m><b/></m>", "junk", "<m>text</m>"}) {
    for (size_t spare : {0, 200}) {
      std::string in_place = stanza;
      in_place.reserve(stanza.size() + spare);
      InsertStanzaId(in_place, "o'k@b", 9000000000);
      EXPECT_EQ(in_place, WithStanzaId(stanza, "o'k@b", 9000000000)) << stanza;
    }
  }
}

TEST(StanzaTextTest, Timestamps) {
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTimestamp(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(DelayXml("example.com", 1700000000123),
            "<delay xmlns='urn:xmpp:delay' from='example.com' stamp='2023-11-14T22:13:20.123Z'/>");
  EXPECT_GT(NowUnixMs(), 1700000000000);
}

TEST(StanzaTextTest, ParseTimestamp) {
  int64_t ms = 0;
  ASSERT_TRUE(ParseTimestamp("2024-05-01T12:34:56Z", ms));
  EXPECT_EQ(FormatTimestamp(ms), "2024-05-01T12:34:56.000Z");
  ASSERT_TRUE(ParseTimestamp("2024-05-01T12:34:56.789123Z", ms));
  EXPECT_EQ(FormatTimestamp(ms), "2024-05-01T12:34:56.789Z");
  ASSERT_TRUE(ParseTimestamp("2024-05-01T14:34:56+02:00", ms));
  EXPECT_EQ(FormatTimestamp(ms), "2024-05-01T12:34:56.000Z");
  ASSERT_TRUE(ParseTimestamp("2024-05-01T10:04:56-02:30", ms));
  EXPECT_EQ(FormatTimestamp(ms), "2024-05-01T12:34:56.000Z");
  ASSERT_TRUE(ParseTimestamp("1970-01-01T00:00:00Z", ms));
  EXPECT_EQ(ms, 0);
  for (const char* bad :
       {"", "2024-05-01", "2024-05-01T12:34:56", "2024-13-01T00:00:00Z", "2024-05-01T12:34:56.Z",
        "2024-05-01T12:34:56Zjunk", "2024-05-01 12:34:56Z", "yesterday"}) {
    EXPECT_FALSE(ParseTimestamp(bad, ms)) << bad;
  }
}

TEST(StanzaTextTest, WithNamespace) {
  EXPECT_EQ(WithNamespace("<message to='a'><body>x</body></message>", "jabber:client"),
            "<message xmlns='jabber:client' to='a'><body>x</body></message>");
  EXPECT_EQ(WithNamespace("<message/>", "jabber:client"), "<message xmlns='jabber:client'/>");
}

TEST(JidViewTest, Split) {
  JidView v = SplitJid("alice@example.com/phone/x");
  EXPECT_EQ(v.local, "alice");
  EXPECT_EQ(v.domain, "example.com");
  EXPECT_EQ(v.resource, "phone/x");
  EXPECT_EQ(v.Bare(), "alice@example.com");
  EXPECT_FALSE(v.IsBare());
  v = SplitJid("example.com");
  EXPECT_EQ(v.local, "");
  EXPECT_EQ(v.domain, "example.com");
  EXPECT_TRUE(v.IsBare());
  EXPECT_EQ(v.Bare(), "example.com");
  v = SplitJid("example.com/res@x");
  EXPECT_EQ(v.local, "");
  EXPECT_EQ(v.domain, "example.com");
  EXPECT_EQ(v.resource, "res@x");
  EXPECT_EQ(BareOf("a@b/c"), "a@b");
}

}  // namespace
}  // namespace nines::im
