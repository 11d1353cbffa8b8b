#include "xml/element.h"

#include <gtest/gtest.h>

namespace nines::xml {
namespace {

TEST(ElementTest, AttributesSetFindReplaceRemove) {
  Element e("message", "jabber:client");
  EXPECT_FALSE(e.HasAttr("to"));
  EXPECT_EQ(e.Attr("to"), "");
  EXPECT_EQ(e.FindAttr("to"), nullptr);
  e.SetAttr("to", "a@b").SetAttr("type", "chat");
  EXPECT_EQ(e.Attr("to"), "a@b");
  EXPECT_TRUE(e.HasAttr("type"));
  e.SetAttr("to", "c@d");
  ASSERT_EQ(e.attrs().size(), 2u);
  EXPECT_EQ(e.attrs()[0].name, "to");
  EXPECT_EQ(e.attrs()[0].value, "c@d");
  e.RemoveAttr("to");
  EXPECT_FALSE(e.HasAttr("to"));
  ASSERT_EQ(e.attrs().size(), 1u);
  e.AppendAttr("id", "1");
  EXPECT_EQ(*e.FindAttr("id"), "1");
}

TEST(ElementTest, ChildrenAndText) {
  Element e("message", "jabber:client");
  e.AddChild("body", "jabber:client").AddText("hello");
  e.AddChild("x", "urn:a").AddText("1");
  e.AddChild("x", "urn:b").AddText("2");
  e.AddText("tail");
  e.AddText("");
  e.AddText(" more");
  EXPECT_EQ(e.ChildText("body"), "hello");
  EXPECT_EQ(e.ChildText("x"), "1");
  EXPECT_EQ(e.ChildText("x", "urn:b"), "2");
  EXPECT_EQ(e.ChildText("missing"), "");
  EXPECT_EQ(e.Child("x", "urn:c"), nullptr);
  EXPECT_EQ(e.Children().size(), 3u);
  // Adjacent text is merged into one node.
  EXPECT_EQ(e.nodes().size(), 4u);
  EXPECT_EQ(e.Text(), "tail more");
  Element* body = e.Child("body");
  ASSERT_NE(body, nullptr);
  body->SetAttr("xml:lang", "en");
  EXPECT_EQ(e.Child("body")->Attr("xml:lang"), "en");
  e.RemoveChildren("x", "urn:a");
  EXPECT_EQ(e.Children().size(), 2u);
  EXPECT_EQ(e.ChildText("x"), "2");
  e.ClearChildren();
  EXPECT_TRUE(e.nodes().empty());
}

TEST(ElementTest, AddChildMovesElement) {
  Element inner("item", "urn:x");
  inner.SetAttr("a", "b");
  Element outer("query", "urn:x");
  Element& added = outer.AddChild(std::move(inner));
  EXPECT_EQ(added.Attr("a"), "b");
  EXPECT_EQ(outer.Child("item", "urn:x"), &added);
}

TEST(ElementTest, SerializeOmitsXmlnsWhenInherited) {
  Element e("message", "jabber:client");
  e.SetAttr("to", "a@b");
  e.AddChild("body", "jabber:client").AddText("hi");
  e.AddChild("active", "http://jabber.org/protocol/chatstates");
  EXPECT_EQ(e.Serialize("jabber:client"),
            "<message to='a@b'><body>hi</body>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>");
  EXPECT_EQ(e.Serialize(),
            "<message xmlns='jabber:client' to='a@b'><body>hi</body>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>");
}

TEST(ElementTest, SerializeUndeclaresDefaultNamespaceForEmptyNs) {
  Element e("iq", "jabber:client");
  e.AddChild("plain", "");
  EXPECT_EQ(e.Serialize("jabber:client"), "<iq><plain xmlns=''/></iq>");
}

TEST(ElementTest, SerializeEscapesTextAndAttributes) {
  Element e("body", "jabber:client");
  e.SetAttr("a", "<&>\"'\t\n\r");
  e.AddText("<&>\"'\t\n\r]]>");
  EXPECT_EQ(e.Serialize("jabber:client"),
            "<body a='&lt;&amp;&gt;&quot;&apos;&#9;&#10;&#13;'>"
            "&lt;&amp;&gt;&quot;&apos;\t\n&#13;]]&gt;</body>");
}

TEST(ElementTest, SerializeDropsUnrepresentableControlCharacters) {
  Element e("body", "jabber:client");
  e.SetAttr("a", std::string("x\x01y\0z", 5));
  e.AddText(std::string("a\x1f" "b\x0b" "c", 5));
  EXPECT_EQ(e.Serialize("jabber:client"), "<body a='xyz'>abc</body>");
}

TEST(ElementTest, AppendEscapedLeavesUtf8Alone) {
  std::string out;
  AppendEscaped(out, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(out, "caf\xc3\xa9 \xf0\x9f\x98\x80");
}

TEST(ElementTest, SerializeXmlLangAsIs) {
  Element e("message", "jabber:client");
  e.SetAttr("xml:lang", "de");
  EXPECT_EQ(e.Serialize("jabber:client"), "<message xml:lang='de'/>");
}

TEST(ElementTest, SerializeNamespacedAttributesWithGeneratedPrefixes) {
  Element e("x", "urn:x");
  e.SetAttr("{urn:attr}one", "1");
  e.SetAttr("plain", "p");
  e.SetAttr("{urn:attr}two", "2");
  e.SetAttr("{urn:other}three", "3");
  e.AddChild("y", "urn:x").SetAttr("{urn:attr}four", "4");
  EXPECT_EQ(e.Serialize("urn:x"),
            "<x xmlns:a0='urn:attr' a0:one='1' plain='p' a0:two='2' xmlns:a1='urn:other' a1:three='3'>"
            "<y xmlns:a0='urn:attr' a0:four='4'/></x>");
}

TEST(ElementTest, SerializeSkipsNamespaceDeclarationAttributes) {
  Element e("x", "urn:x");
  e.SetAttr("xmlns", "urn:evil");
  e.SetAttr("xmlns:p", "urn:evil");
  e.SetAttr("ok", "1");
  EXPECT_EQ(e.Serialize("urn:x"), "<x ok='1'/>");
}

TEST(ElementTest, SerializeStreamsNamespaceWithStreamPrefix) {
  Element features("features", std::string(kStreamsNs));
  features.AddChild("starttls", "urn:ietf:params:xml:ns:xmpp-tls").AddChild("required",
                                                                          "urn:ietf:params:xml:ns:xmpp-tls");
  features.AddChild("plain", "jabber:client");
  EXPECT_EQ(features.Serialize("jabber:client"),
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            "<plain/></stream:features>");
  // Where the streams namespace is the default one, no prefix is needed.
  EXPECT_EQ(features.Serialize(kStreamsNs),
            "<features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            "<plain xmlns='jabber:client'/></features>");
}

TEST(ElementTest, SerializeToAppends) {
  Element e("a", "");
  std::string out = "prefix:";
  e.SerializeTo(out);
  EXPECT_EQ(out, "prefix:<a/>");
}

TEST(ElementTest, CloneIsDeepAndEqual) {
  Element e("iq", "jabber:client");
  e.SetAttr("type", "get");
  Element& query = e.AddChild("query", "jabber:iq:roster");
  query.AddChild("item", "jabber:iq:roster").SetAttr("jid", "a@b");
  query.AddText("t");
  Element copy = e.Clone();
  EXPECT_TRUE(copy == e);
  EXPECT_EQ(copy.Serialize(), e.Serialize());
  copy.Child("query")->Child("item")->SetAttr("jid", "c@d");
  EXPECT_FALSE(copy == e);
  EXPECT_EQ(e.Child("query")->Child("item")->Attr("jid"), "a@b");
}

TEST(ElementTest, EqualityComparesEverything) {
  Element a("x", "urn:a");
  Element b("x", "urn:a");
  EXPECT_TRUE(a == b);
  b.set_ns("urn:b");
  EXPECT_FALSE(a == b);
  b.set_ns("urn:a");
  a.AddText("t");
  EXPECT_FALSE(a == b);
  b.AddText("t");
  EXPECT_TRUE(a == b);
  a.SetAttr("k", "v");
  EXPECT_FALSE(a == b);
  b.SetAttr("k", "w");
  EXPECT_FALSE(a == b);
  b.SetAttr("k", "v");
  EXPECT_TRUE(a == b);
  a.AddChild("c", "urn:a");
  b.AddText("c");
  EXPECT_FALSE(a == b);
}


TEST(ElementTest, RenameNamespaceMovesTheTreeButNotOtherNamespaces) {
  Element message("message", "jabber:component:accept");
  message.SetAttr("to", "alice@example.com");
  message.AddChild("body", "jabber:component:accept").AddText("hi");
  Element& x = message.AddChild("x", "jabber:x:data");
  x.AddChild("field", "jabber:x:data");
  message.RenameNamespace("jabber:component:accept", "jabber:client");
  EXPECT_EQ(message.ns(), "jabber:client");
  EXPECT_EQ(message.Serialize("jabber:client"),
            "<message to='alice@example.com'><body>hi</body><x xmlns='jabber:x:data'><field/></x></message>");
}

}  // namespace
}  // namespace nines::xml
