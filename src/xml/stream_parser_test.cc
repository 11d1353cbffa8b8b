#include "xml/stream_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace nines::xml {
namespace {

using Kind = ParseEvent::Kind;

constexpr std::string_view kHeader =
    "<?xml version='1.0'?>"
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' "
    "to='example.com' version='1.0' xml:lang='en'>";

std::vector<ParseEvent> FeedAll(StreamParser& parser, std::string_view data) {
  std::vector<ParseEvent> events;
  parser.Feed(data, events);
  return events;
}

std::vector<ParseEvent> FeedBytes(StreamParser& parser, std::string_view data) {
  std::vector<ParseEvent> events;
  for (char c : data) parser.Feed(std::string_view(&c, 1), events);
  return events;
}

std::vector<ParseEvent> Parse(std::string_view data, ParserLimits limits = {}) {
  StreamParser parser(limits);
  return FeedAll(parser, data);
}

// The single error in `events`, which must be the last event.
ParseError LastError(const std::vector<ParseEvent>& events) {
  if (events.empty() || events.back().kind != Kind::kError) return ParseError::kNone;
  return events.back().error;
}

void ExpectSameEvents(const std::vector<ParseEvent>& a, const std::vector<ParseEvent>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].kind, b[i].kind) << i;
    EXPECT_EQ(a[i].error, b[i].error) << i;
    EXPECT_TRUE(a[i].element == b[i].element)
        << i << ": " << a[i].element.Serialize() << " vs " << b[i].element.Serialize();
  }
}

std::string Stream(std::string_view body) { return std::string(kHeader) + std::string(body); }

// A header with one namespace declaration and a short name, for tests of
// tight limits.
constexpr std::string_view kTinyHeader = "<stream xmlns='http://etherx.jabber.org/streams'>";
std::string TinyStream(std::string_view body) { return std::string(kTinyHeader) + std::string(body); }

// --- the stream header --------------------------------------------------------

TEST(StreamParserTest, AnElementInTheXmlNamespaceSerialisesWithTheXmlPrefix) {
  // Found by the fuzzer: such an element was written with the XML namespace
  // as its default namespace, which no parser accepts, so relaying it would
  // break the recipient's stream.
  auto events =
      Parse(std::string(kHeader) +
            "<message to='b@x'><xml:note xmlns='urn:other'><y/></xml:note><body>hi</body></message>");
  ASSERT_EQ(events.size(), 2u);
  ASSERT_EQ(events[1].kind, Kind::kStanza);
  const Element& message = events[1].element;
  std::string text = message.Serialize("jabber:client");
  EXPECT_EQ(text, "<message to='b@x'><xml:note><y xmlns='urn:other'/></xml:note><body>hi</body></message>");
  auto again = Parse(std::string(kHeader) + text);
  ASSERT_EQ(again.size(), 2u);
  ASSERT_EQ(again[1].kind, Kind::kStanza) << again[1].error_text;
  EXPECT_EQ(again[1].element, message);
}

TEST(StreamParserTest, StreamOpenReportsAttributesAndContentNamespace) {
  auto events = Parse(kHeader);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_EQ(events[0].kind, Kind::kStreamOpen);
  const Element& root = events[0].element;
  EXPECT_EQ(root.name(), "stream");
  EXPECT_EQ(root.ns(), kStreamsNs);
  EXPECT_EQ(root.Attr("to"), "example.com");
  EXPECT_EQ(root.Attr("version"), "1.0");
  EXPECT_EQ(root.Attr("xml:lang"), "en");
  EXPECT_EQ(root.Attr("xmlns"), "jabber:client");
  EXPECT_FALSE(root.HasAttr("from"));
  EXPECT_TRUE(root.nodes().empty());
}

TEST(StreamParserTest, BadHeaderAttributeGivesOnlyAnError) {
  ParserLimits limits;
  limits.max_name_length = 8;
  auto events = Parse("<s:stream xmlns:s='http://etherx.jabber.org/streams' toooooooooo='x'>", limits);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, StreamOpenWithoutDefaultNamespaceHasNoXmlnsAttribute) {
  auto events = Parse("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='abc'>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen);
  EXPECT_FALSE(events[0].element.HasAttr("xmlns"));
  EXPECT_EQ(events[0].element.Attr("id"), "abc");
}

TEST(StreamParserTest, UnprefixedStreamRootIsAccepted) {
  auto events = Parse("<stream xmlns='http://etherx.jabber.org/streams'><message/>");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen);
  EXPECT_EQ(events[0].element.Attr("xmlns"), kStreamsNs);  // the session rejects this content namespace
  EXPECT_EQ(events[1].element.ns(), kStreamsNs);
}

TEST(StreamParserTest, OtherStreamPrefixIsAccepted) {
  auto events = Parse(
      "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server'>"
      "<s:features/><message/></s:stream>");
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].element.Attr("xmlns"), "jabber:server");
  EXPECT_EQ(events[1].element.name(), "features");
  EXPECT_EQ(events[1].element.ns(), kStreamsNs);
  EXPECT_EQ(events[2].element.ns(), "jabber:server");
  EXPECT_EQ(events[3].kind, Kind::kStreamClose);
}

TEST(StreamParserTest, WrongStreamNamespaceIsInvalidNamespace) {
  EXPECT_EQ(LastError(Parse("<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client'>")),
            ParseError::kInvalidNamespace);
  EXPECT_EQ(LastError(Parse("<stream xmlns='jabber:client'>")), ParseError::kInvalidNamespace);
  EXPECT_EQ(LastError(Parse("<stream>")), ParseError::kInvalidNamespace);
}

TEST(StreamParserTest, WrongRootElementIsBadFormat) {
  EXPECT_EQ(LastError(Parse("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>")),
            ParseError::kBadFormat);
  EXPECT_EQ(LastError(Parse("<html><body>")), ParseError::kBadFormat);
  EXPECT_EQ(LastError(Parse("<message xmlns='jabber:client'/>")), ParseError::kBadFormat);
}

TEST(StreamParserTest, UnboundStreamPrefixIsNotWellFormed) {
  auto events = Parse("<stream:stream xmlns='jabber:client'>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(LastError(events), ParseError::kNotWellFormed);
  EXPECT_FALSE(events[0].error_text.empty());
}

TEST(StreamParserTest, GarbageIsNotWellFormed) {
  EXPECT_EQ(LastError(Parse("GET / HTTP/1.1\r\n")), ParseError::kNotWellFormed);
  EXPECT_EQ(LastError(Parse(Stream("<message><body></message>"))), ParseError::kNotWellFormed);
  EXPECT_EQ(LastError(Parse(Stream("<message a='1' a='2'/>"))), ParseError::kNotWellFormed);
}

// --- stanzas ------------------------------------------------------------------

TEST(StreamParserTest, StanzasCarryTheirNamespaces) {
  auto events = Parse(
      Stream("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
             "<message to='a@b' type='chat'><body>hi &amp; bye</body>"
             "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
             "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
             "</stream:stream>"));
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen);

  ASSERT_EQ(events[1].kind, Kind::kStanza);
  EXPECT_EQ(events[1].element.name(), "features");
  EXPECT_EQ(events[1].element.ns(), kStreamsNs);
  ASSERT_NE(events[1].element.Child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"), nullptr);

  const Element& message = events[2].element;
  EXPECT_EQ(message.name(), "message");
  EXPECT_EQ(message.ns(), "jabber:client");
  EXPECT_EQ(message.Attr("to"), "a@b");
  EXPECT_EQ(message.Attr("type"), "chat");
  EXPECT_EQ(message.ChildText("body", "jabber:client"), "hi & bye");
  ASSERT_NE(message.Child("active", "http://jabber.org/protocol/chatstates"), nullptr);

  EXPECT_EQ(events[3].element.name(), "error");
  EXPECT_EQ(events[3].element.ns(), kStreamsNs);
  EXPECT_EQ(events[4].kind, Kind::kStreamClose);
}

TEST(StreamParserTest, StanzaXmlLang) {
  auto events = Parse(Stream("<message xml:lang='fr'><body xml:lang='de'>Hallo</body></message>"));
  ASSERT_EQ(events.size(), 2u);
  const Element& message = events[1].element;
  EXPECT_EQ(message.Attr("xml:lang"), "fr");
  EXPECT_EQ(message.Child("body")->Attr("xml:lang"), "de");
  EXPECT_EQ(message.Serialize("jabber:client"),
            "<message xml:lang='fr'><body xml:lang='de'>Hallo</body></message>");
}

TEST(StreamParserTest, PredefinedEntitiesCharacterReferencesAndCdata) {
  auto events = Parse(Stream(
      "<message><body>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x1F600;<![CDATA[<raw>&amp;]]></body></message>"));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].element.ChildText("body"), "<>&\"'AB\xf0\x9f\x98\x80<raw>&amp;");
}

TEST(StreamParserTest, NamespacedAttributesUseClarkNotation) {
  auto events = Parse(Stream("<iq xmlns:p='urn:p' p:a='1' b='2'><q xmlns='urn:q' p:c='3'/></iq>"));
  ASSERT_EQ(events.size(), 2u);
  const Element& iq = events[1].element;
  EXPECT_EQ(iq.Attr("{urn:p}a"), "1");
  EXPECT_EQ(iq.Attr("b"), "2");
  EXPECT_EQ(iq.Child("q", "urn:q")->Attr("{urn:p}c"), "3");
}

TEST(StreamParserTest, WhitespaceKeepalivesProduceNoEvents) {
  StreamParser parser({});
  auto events = FeedAll(parser, kHeader);
  ASSERT_EQ(events.size(), 1u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(FeedAll(parser, " ").empty());
    EXPECT_TRUE(FeedAll(parser, "\n").empty());
    EXPECT_TRUE(FeedAll(parser, "\r\n\t").empty());
    EXPECT_FALSE(parser.InStanza());
  }
  events = FeedAll(parser, "<presence/>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.name(), "presence");
}

TEST(StreamParserTest, TextAtStreamLevelIsBadFormat) {
  EXPECT_EQ(LastError(Parse(Stream("  hello <presence/>"))), ParseError::kBadFormat);
  EXPECT_EQ(LastError(Parse(Stream("<presence/>&amp;"))), ParseError::kBadFormat);
}

TEST(StreamParserTest, StreamCloseStopsParsing) {
  StreamParser parser({});
  auto events = FeedAll(parser, Stream("<presence/></stream:stream><junk/>garbage"));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].kind, Kind::kStreamClose);
  EXPECT_TRUE(FeedAll(parser, "<message/>").empty());
  EXPECT_FALSE(parser.InStanza());
}

TEST(StreamParserTest, FeedAfterErrorReturnsNothing) {
  StreamParser parser({});
  auto events = FeedAll(parser, Stream("<message><!-- x --></message>"));
  EXPECT_EQ(LastError(events), ParseError::kRestrictedXml);
  EXPECT_EQ(events.size(), 2u);
  EXPECT_TRUE(FeedAll(parser, "<presence/>").empty());
  EXPECT_TRUE(FeedAll(parser, kHeader).empty());
  EXPECT_LT(parser.MemoryUsage(), 2048u);
}

TEST(StreamParserTest, OneErrorEventEvenIfExpatKeepsCallingBack) {
  // The start handler fails on the attribute count; expat still reports the
  // end of the empty element, which must be ignored.
  ParserLimits limits;
  limits.max_attributes = 1;
  auto events = Parse(TinyStream("<presence a='1' b='2'/><presence/>"), limits);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
}

// --- incremental feeding ------------------------------------------------------

const std::string& MultiStanzaStream() {
  static const std::string stream = Stream(
      "\n <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
      "<mechanism>SCRAM-SHA-256</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>\r\n"
      "<message to='juliet@example.com/balcony' type='chat' id='m1' xml:lang='en'>"
      "<body>Wherefore art thou? caf\xc3\xa9 \xf0\x9f\x98\x80 &lt;3 &#x263A;</body>"
      "<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>"
      "<x xmlns='urn:x:custom' xmlns:y='urn:y'><y:inner y:attr='v' plain='p'>deep<z>er</z></y:inner></x>"
      "<![CDATA[cdata <here>]]></message> "
      "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
      "<presence><show>away</show><status>\tmulti\nline\r\nstatus</status></presence>"
      "</stream:stream>");
  return stream;
}

TEST(StreamParserTest, ByteByByteFeedingMatchesWholeFeeding) {
  StreamParser whole({});
  auto expected = FeedAll(whole, MultiStanzaStream());
  ASSERT_EQ(expected.size(), 6u);
  EXPECT_EQ(expected.back().kind, Kind::kStreamClose);
  StreamParser bytewise({});
  ExpectSameEvents(FeedBytes(bytewise, MultiStanzaStream()), expected);
}

TEST(StreamParserTest, RandomChunkingMatchesWholeFeeding) {
  auto expected = Parse(MultiStanzaStream());
  std::mt19937 random(42);
  for (int round = 0; round < 200; ++round) {
    StreamParser parser({});
    std::vector<ParseEvent> events;
    std::string_view rest = MultiStanzaStream();
    while (!rest.empty()) {
      size_t n = std::min<size_t>(rest.size(), 1 + random() % 40);
      parser.Feed(rest.substr(0, n), events);
      rest.remove_prefix(n);
    }
    ExpectSameEvents(events, expected);
  }
}

TEST(StreamParserTest, ErrorsAreTheSameByteByByte) {
  const std::string inputs[] = {
      Stream("<message><!-- c --></message>"),
      Stream("<message><body>\xc3\x28</body></message>"),
      "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>",
      "<!DOCTYPE stream [<!ENTITY a 'b'>]><stream:stream>",
      Stream("text"),
  };
  for (const std::string& input : inputs) {
    auto whole = Parse(input);
    StreamParser parser({});
    auto bytewise = FeedBytes(parser, input);
    ASSERT_FALSE(whole.empty()) << input;
    ASSERT_EQ(whole.size(), bytewise.size()) << input;
    EXPECT_EQ(LastError(whole), LastError(bytewise)) << input;
    EXPECT_NE(LastError(whole), ParseError::kNone) << input;
  }
}

TEST(StreamParserTest, InStanzaTracksPartialStanzas) {
  StreamParser parser({});
  EXPECT_FALSE(parser.InStanza());
  FeedAll(parser, kHeader);
  EXPECT_FALSE(parser.InStanza());
  FeedAll(parser, "<mess");
  EXPECT_TRUE(parser.InStanza());
  FeedAll(parser, "age><body>hi");
  EXPECT_TRUE(parser.InStanza());
  auto events = FeedAll(parser, "</body></message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(parser.InStanza());
  FeedAll(parser, "\r");  // expat holds a lone CR back; it is still just whitespace
  EXPECT_FALSE(parser.InStanza());
  FeedAll(parser, "\n<presence/>");
  EXPECT_FALSE(parser.InStanza());
}

// --- limits -------------------------------------------------------------------

std::string MessageOfSize(size_t size) {
  const std::string open = "<message><body>";
  const std::string close = "</body></message>";
  return open + std::string(size - open.size() - close.size(), 'x') + close;
}

TEST(StreamParserTest, StanzaSizeLimitIsExact) {
  ParserLimits limits;
  limits.max_stanza_bytes = 1000;
  for (bool bytewise : {false, true}) {
    StreamParser parser(limits);
    auto feed = [&](std::string_view data) {
      return bytewise ? FeedBytes(parser, data) : FeedAll(parser, data);
    };
    ASSERT_EQ(feed(kHeader).size(), 1u);
    auto events = feed(MessageOfSize(1000));
    ASSERT_EQ(events.size(), 1u) << bytewise;
    EXPECT_EQ(events[0].kind, Kind::kStanza);
    events = feed(MessageOfSize(1001));
    ASSERT_EQ(events.size(), 1u) << bytewise;
    EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
  }
}

TEST(StreamParserTest, StanzaSizeLimitStopsBeforeBuffering) {
  ParserLimits limits;
  limits.max_stanza_bytes = 4096;
  StreamParser parser(limits);
  FeedAll(parser, kHeader);
  // One huge chunk: the parser must not hand more than the cap to expat.
  std::string huge = "<message><body>" + std::string(10 * 1024 * 1024, 'x');
  auto events = FeedAll(parser, huge);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
  // An unterminated start tag is never reported by expat; it is still capped.
  StreamParser tag_parser(limits);
  FeedAll(tag_parser, kHeader);
  std::vector<ParseEvent> tag_events;
  std::string chunk = "<message a='" + std::string(1000, 'a');
  tag_parser.Feed(chunk, tag_events);
  size_t peak = 0;
  for (int i = 0; i < 100 && tag_events.empty(); ++i) {
    tag_parser.Feed(std::string(1000, 'a'), tag_events);
    peak = std::max(peak, tag_parser.MemoryUsage());
  }
  ASSERT_EQ(tag_events.size(), 1u);
  EXPECT_EQ(LastError(tag_events), ParseError::kPolicyViolation);
  EXPECT_LT(peak, 64u * 1024);
}

TEST(StreamParserTest, WhitespaceBetweenStanzasIsNotCounted) {
  ParserLimits limits;
  limits.max_stanza_bytes = 100;
  StreamParser parser(limits);
  FeedAll(parser, kHeader);
  std::vector<ParseEvent> events;
  for (int i = 0; i < 100; ++i)
    parser.Feed(std::string(50, ' ') + "<presence/>" + std::string(70, '\n'), events);
  ASSERT_EQ(events.size(), 100u);
  for (const ParseEvent& event : events) EXPECT_EQ(event.kind, Kind::kStanza);
}

TEST(StreamParserTest, ManySmallStanzasInOneChunkAreNotLimitedTogether) {
  ParserLimits limits;
  limits.max_stanza_bytes = 64;
  std::string body;
  for (int i = 0; i < 1000; ++i) body += "<message><body>hello</body></message>";
  auto events = Parse(Stream(body), limits);
  ASSERT_EQ(events.size(), 1001u);
  EXPECT_EQ(events.back().kind, Kind::kStanza);
}

TEST(StreamParserTest, DepthLimitIsExact) {
  ParserLimits limits;
  limits.max_depth = 4;
  // message(1) > a(2) > b(3) > c(4): allowed.
  auto events = Parse(Stream("<message><a><b><c/></b></a></message>"), limits);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind, Kind::kStanza);
  events = Parse(Stream("<message><a><b><c><d/></c></b></a></message>"), limits);
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, DeepNestingDefaultLimit) {
  std::string open, close;
  for (int i = 0; i < 100000; ++i) {
    open += "<a>";
    close += "</a>";
  }
  auto events = Parse(Stream(open + close));
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, AttributeLimitIsExactAndCountsNamespaceDeclarations) {
  ParserLimits limits;
  limits.max_attributes = 3;
  EXPECT_EQ(Parse(TinyStream("<message a='1' b='2' c='3'/>"), limits).back().kind, Kind::kStanza);
  EXPECT_EQ(LastError(Parse(TinyStream("<message a='1' b='2' c='3' d='4'/>"), limits)),
            ParseError::kPolicyViolation);
  EXPECT_EQ(Parse(TinyStream("<message xmlns:p='urn:p' a='1' p:b='2'/>"), limits).back().kind, Kind::kStanza);
  EXPECT_EQ(LastError(Parse(TinyStream("<message xmlns:p='urn:p' xmlns:q='urn:q' a='1' p:b='2'/>"), limits)),
            ParseError::kPolicyViolation);
  EXPECT_EQ(
      LastError(Parse(TinyStream("<message><x xmlns='urn:x' xmlns:a='a' xmlns:b='b' xmlns:c='c'/></message>"),
                      limits)),
      ParseError::kPolicyViolation);
  // The stream header is limited too (it has five, declarations included).
  EXPECT_EQ(LastError(Parse(kHeader, limits)), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, NameLengthLimitIsExactAndIncludesPrefix) {
  ParserLimits limits;
  limits.max_name_length = 10;
  const std::string ten(10, 'n');
  EXPECT_EQ(Parse(TinyStream("<" + ten + "/>"), limits).back().kind, Kind::kStanza);
  EXPECT_EQ(LastError(Parse(TinyStream("<" + ten + "n/>"), limits)), ParseError::kPolicyViolation);
  EXPECT_EQ(Parse(TinyStream("<m " + ten + "='1'/>"), limits).back().kind, Kind::kStanza);
  EXPECT_EQ(LastError(Parse(TinyStream("<m " + ten + "n='1'/>"), limits)), ParseError::kPolicyViolation);
  // "p:nnnnnnnn" is 10 bytes, "p:nnnnnnnnn" is 11.
  EXPECT_EQ(Parse(TinyStream("<p:nnnnnnnn xmlns:p='urn:p'/>"), limits).back().kind, Kind::kStanza);
  EXPECT_EQ(LastError(Parse(TinyStream("<p:nnnnnnnnn xmlns:p='urn:p'/>"), limits)),
            ParseError::kPolicyViolation);
  EXPECT_EQ(LastError(Parse(TinyStream("<m xmlns:p='urn:p' p:nnnnnnnnn='1'/>"), limits)),
            ParseError::kPolicyViolation);
  // "stream:stream" is 13 bytes.
  EXPECT_EQ(LastError(Parse(kHeader, limits)), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, HeaderSizeLimit) {
  ParserLimits limits;
  limits.max_header_bytes = 200;
  EXPECT_EQ(Parse(kHeader, limits).back().kind, Kind::kStreamOpen);
  const std::string big =
      "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='" + std::string(300, 'a') + "'>";
  EXPECT_EQ(LastError(Parse(big, limits)), ParseError::kPolicyViolation);
  StreamParser parser(limits);
  EXPECT_EQ(LastError(FeedBytes(parser, big)), ParseError::kPolicyViolation);
  // Whitespace before the root counts towards the header.
  EXPECT_EQ(LastError(Parse(std::string(300, ' ') + std::string(kHeader), limits)),
            ParseError::kPolicyViolation);
}

TEST(StreamParserTest, MemoryLimitCatchesTreesOfTinyElements) {
  ParserLimits limits;
  limits.max_stanza_bytes = 64 * 1024;
  limits.max_memory_bytes = 256 * 1024;
  std::string body = "<iq>";
  while (body.size() < 60 * 1024) body += "<a/>";
  body += "</iq>";
  auto events = Parse(Stream(body), limits);
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
  // The default (16 x the stanza cap) admits stanzas of realistic shape.
  limits.max_memory_bytes = 0;
  body = "<iq><query xmlns='jabber:iq:roster'>";
  while (body.size() < 60 * 1024)
    body += "<item jid='user@example.com' subscription='both'><group>G</group></item>";
  body += "</query></iq>";
  StreamParser parser(limits);
  events = FeedAll(parser, Stream(body));
  EXPECT_EQ(events.back().kind, Kind::kStanza);
  EXPECT_GT(events.back().element.Child("query")->Children().size(), 700u);
}

TEST(StreamParserTest, SetLimitsAppliesAfterCurrentStanza) {
  ParserLimits tight;
  tight.max_stanza_bytes = 100;
  ParserLimits loose;
  loose.max_stanza_bytes = 10000;
  StreamParser parser(tight);
  FeedAll(parser, kHeader);
  EXPECT_EQ(LastError(FeedAll(parser, "")), ParseError::kNone);
  parser.SetLimits(loose);
  auto events = FeedAll(parser, MessageOfSize(5000));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStanza);
  // Changed mid-stanza: the stanza in progress keeps the old limits.
  FeedAll(parser, "<message>");
  parser.SetLimits(tight);
  events = FeedAll(parser, std::string(500, 'x') + "</message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStanza);
  events = FeedAll(parser, MessageOfSize(500));
  EXPECT_EQ(LastError(events), ParseError::kPolicyViolation);
}

TEST(StreamParserTest, TrickledLargeTagStillCompletes) {
  // A tag larger than the hold-back threshold, fed in small pieces, is
  // delivered as soon as its '>' arrives.
  StreamParser parser({});
  FeedAll(parser, kHeader);
  std::vector<ParseEvent> events;
  const std::string value(20000, 'v');
  const std::string stanza = "<message id='" + value + "' to='a>b'><body>x</body></message>";
  for (size_t i = 0; i < stanza.size(); i += 7) {
    EXPECT_TRUE(events.empty());
    parser.Feed(std::string_view(stanza).substr(i, 7), events);
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.Attr("id"), value);
  EXPECT_EQ(events[0].element.Attr("to"), "a>b");
  EXPECT_FALSE(parser.InStanza());
}

// Big tags trickled in must be delivered exactly when complete, whatever
// they contain; the hold-back scanner must never miss the real end.
TEST(StreamParserTest, TrickledBigTagsOfEveryKindCompleteAlikeWholeAndBytewise) {
  const std::string big(6000, 'v');
  const std::string gts(6000, '>');
  const std::string body = Stream("<message a=\"" + gts + "it's\" b='say \"hi\" " + gts +
                                  "'><body>x</body></message>"
                                  "<![CDATA[]]><presence id='" +
                                  gts +
                                  "'/>"
                                  "<iq id='" +
                                  big + "'><query xmlns='" + big + "'>" + "<item jid='" + gts +
                                  "'/></query></iq>"
                                  "</stream:stream>");
  auto whole = Parse(body);
  ASSERT_EQ(whole.size(), 5u);
  EXPECT_EQ(whole[1].element.Attr("a"), gts + "it's");
  EXPECT_EQ(whole[1].element.Attr("b"), "say \"hi\" " + gts);
  EXPECT_EQ(whole.back().kind, Kind::kStreamClose);
  StreamParser bytewise({});
  ExpectSameEvents(FeedBytes(bytewise, body), whole);
  std::mt19937 random(7);
  for (int round = 0; round < 20; ++round) {
    StreamParser parser({});
    std::vector<ParseEvent> events;
    std::string_view rest = body;
    while (!rest.empty()) {
      const size_t n = std::min<size_t>(rest.size(), 1 + random() % 300);
      parser.Feed(rest.substr(0, n), events);
      rest.remove_prefix(n);
    }
    ExpectSameEvents(events, whole);
  }
}

TEST(StreamParserTest, TrickledBigRestrictedConstructsAreStillReported) {
  const std::string big(6000, '>');
  const std::string inputs[] = {
      Stream("<message><!-- " + big + " - - - --></message>"),
      Stream("<message><?pi " + big + " ? ?></message>"),
      Stream("<message>&" + std::string(6000, 'e') + ";</message>"),
      "<!DOCTYPE stream SYSTEM '" + big + "'><stream:stream>",
  };
  for (const std::string& input : inputs) {
    auto whole = Parse(input);
    StreamParser parser({});
    auto bytewise = FeedBytes(parser, input);
    EXPECT_EQ(LastError(whole), ParseError::kRestrictedXml) << input.substr(0, 200);
    EXPECT_EQ(LastError(bytewise), ParseError::kRestrictedXml) << input.substr(0, 200);
  }
}

TEST(StreamParserTest, TrickledHeaderAfterLongWhitespaceCompletes) {
  const std::string input = std::string(6000, '\n') + std::string(kHeader.substr(21));  // no XML declaration
  StreamParser parser({});
  auto events = FeedBytes(parser, input);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen) << events[0].error_text;
}

// A peer can send a huge attribute value full of '>' one byte at a time;
// each '>' used to make expat re-scan the whole tag (quadratic: a 200 KB tag
// took seconds). Held back, it takes a single pass.
TEST(StreamParserTest, RegressionTrickledGreaterThanSignsInAttributeAreLinear) {
  StreamParser parser({});
  FeedAll(parser, kHeader);
  const std::string value(200000, '>');
  auto events = FeedBytes(parser, "<message id='" + value + "'/>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.Attr("id"), value);
}

TEST(StreamParserTest, LargeTextStanzaInChunks) {
  StreamParser parser({});
  FeedAll(parser, kHeader);
  std::vector<ParseEvent> events;
  parser.Feed("<iq type='set'><data xmlns='http://jabber.org/protocol/ibb'>", events);
  const std::string chunk(4096, 'A');
  for (int i = 0; i < 50; ++i) parser.Feed(chunk, events);
  EXPECT_TRUE(parser.InStanza());
  parser.Feed("</data></iq>", events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.ChildText("data").size(), 50u * 4096);
}

// --- restricted XML (RFC 6120 §11.1) --------------------------------------------

TEST(StreamParserTest, DoctypeIsRestricted) {
  EXPECT_EQ(LastError(Parse("<!DOCTYPE stream:stream><stream:stream>")), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse("<?xml version='1.0'?>\n<!DOCTYPE html SYSTEM 'http://example.com/x.dtd'>")),
            ParseError::kRestrictedXml);
}

TEST(StreamParserTest, EntityDeclarationsAreRestrictedAndNeverExpanded) {
  auto events = Parse(
      "<!DOCTYPE stream:stream [<!ENTITY x 'expanded'>]>"
      "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
      "<message><body>&x;</body></message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(LastError(events), ParseError::kRestrictedXml);
}

TEST(StreamParserTest, BillionLaughs) {
  std::string doc = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>";
  doc += "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>";
  for (int i = 2; i <= 9; ++i) {
    doc += "<!ENTITY lol" + std::to_string(i) + " '";
    for (int j = 0; j < 10; ++j) doc += "&lol" + std::to_string(i - 1) + ";";
    doc += "'>";
  }
  doc += "]><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>";
  doc += "<message><body>&lol9;</body></message>";
  for (bool bytewise : {false, true}) {
    StreamParser parser({});
    auto events = bytewise ? FeedBytes(parser, doc) : FeedAll(parser, doc);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(LastError(events), ParseError::kRestrictedXml);
    EXPECT_LT(parser.MemoryUsage(), 4096u);
  }
}

TEST(StreamParserTest, ManyPredefinedEntitiesAreNotAnAmplificationAttack) {
  // expat counts each predefined entity as an expansion; their ratio stays
  // far below the amplification limit however many there are.
  std::string text;
  for (int i = 0; i < 25000; ++i) text += "&lt;&amp;";
  StreamParser parser({});
  std::vector<ParseEvent> events;
  parser.Feed(kHeader, events);
  for (int i = 0; i < 10; ++i) parser.Feed("<message><body>" + text + "</body></message>", events);
  ASSERT_EQ(events.size(), 11u) << events.back().error_text;
  EXPECT_EQ(events.back().kind, Kind::kStanza);
  EXPECT_EQ(events.back().element.ChildText("body").size(), 50000u);
}

TEST(StreamParserTest, UndefinedEntityReferenceIsRestricted) {
  EXPECT_EQ(LastError(Parse(Stream("<message><body>&lol;</body></message>"))), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse(Stream("<message a='&ext;'/>"))), ParseError::kRestrictedXml);
}

TEST(StreamParserTest, CommentsAreRestricted) {
  EXPECT_EQ(LastError(Parse("<!-- before --><stream:stream>")), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse(Stream("<!-- between -->"))), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse(Stream("<message><!-- inside --></message>"))), ParseError::kRestrictedXml);
}

TEST(StreamParserTest, ProcessingInstructionsAreRestricted) {
  EXPECT_EQ(LastError(Parse("<?xml-stylesheet href='a'?><stream:stream>")), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse(Stream("<?php echo 1; ?>"))), ParseError::kRestrictedXml);
  EXPECT_EQ(LastError(Parse(Stream("<message><?pi data?></message>"))), ParseError::kRestrictedXml);
  // A second XML declaration is a processing instruction in the wrong place.
  EXPECT_EQ(LastError(Parse(Stream("<?xml version='1.0'?>"))), ParseError::kRestrictedXml);
}

TEST(StreamParserTest, XmlDeclarationIsAllowed) {
  EXPECT_EQ(Parse(kHeader).back().kind, Kind::kStreamOpen);
  EXPECT_EQ(Parse("<?xml version='1.0' encoding='UTF-8'?>" + std::string(kHeader.substr(21))).back().kind,
            Kind::kStreamOpen);
  EXPECT_EQ(Parse("<?xml version='1.0' encoding='utf-8'?>" + std::string(kHeader.substr(21))).back().kind,
            Kind::kStreamOpen);
}

// --- encodings ----------------------------------------------------------------

TEST(StreamParserTest, NonUtf8EncodingDeclarationIsUnsupported) {
  EXPECT_EQ(LastError(Parse("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>")),
            ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(Parse("<?xml version='1.0' encoding='UTF-16'?><stream:stream>")),
            ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(Parse("<?xml version='1.0' encoding='x-made-up'?><stream:stream>")),
            ParseError::kUnsupportedEncoding);
}

TEST(StreamParserTest, Utf16InputIsUnsupported) {
  EXPECT_EQ(LastError(Parse(std::string("\xfe\xff\0<", 4))), ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(Parse(std::string("\xff\xfe<\0", 4))), ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(Parse(std::string("\0<\0s", 4))), ParseError::kUnsupportedEncoding);
  StreamParser parser({});
  EXPECT_EQ(LastError(FeedBytes(parser, std::string("<\0s\0", 4))), ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(Parse(std::string("r\0 a>", 6))), ParseError::kUnsupportedEncoding);
}

// Found by the fuzzer: given "r\0" at once, expat switches to UTF-16LE
// whatever encoding it was told, while given "r" alone it has already decided
// on UTF-8; the verdict must not depend on the chunking.
TEST(StreamParserTest, RegressionNulSecondByteJudgedAlikeWhateverTheChunking) {
  const std::string input("r\0 a>xo", 7);
  StreamParser whole({});
  StreamParser bytewise({});
  EXPECT_EQ(LastError(FeedAll(whole, input)), ParseError::kUnsupportedEncoding);
  EXPECT_EQ(LastError(FeedBytes(bytewise, input)), ParseError::kUnsupportedEncoding);
}

TEST(StreamParserTest, Utf8ByteOrderMarkIsAccepted) {
  EXPECT_EQ(Parse("\xef\xbb\xbf" + std::string(kHeader)).back().kind, Kind::kStreamOpen);
}

TEST(StreamParserTest, InvalidUtf8IsNotWellFormed) {
  const std::string bad[] = {
      "\xc3\x28",              // bad continuation
      "\xc0\xaf",              // overlong '/'
      "\xed\xa0\x80",          // UTF-16 surrogate
      "\xf4\x90\x80\x80",      // above U+10FFFF
      "\xf8\x88\x80\x80\x80",  // five-byte form
      "\xff",                  //
      "\x80",                  // lone continuation
      "\x01",                  // not an XML character
      "&#1;",                  // not an XML character either
  };
  for (const std::string& b : bad) {
    EXPECT_EQ(LastError(Parse(Stream("<message><body>" + b + "</body></message>"))),
              ParseError::kNotWellFormed)
        << b;
    EXPECT_EQ(LastError(Parse(Stream("<message to='" + b + "'/>"))), ParseError::kNotWellFormed) << b;
  }
  EXPECT_EQ(LastError(Parse(Stream("<mess\xc3\x28/>"))), ParseError::kNotWellFormed);
  // Truncated at the end of a feed is fine: the rest may still come.
  StreamParser parser({});
  FeedAll(parser, Stream("<message><body>\xe2\x98"));
  auto events = FeedAll(parser, "\xba</body></message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.ChildText("body"), "\xe2\x98\xba");
}

// --- round trip ---------------------------------------------------------------

std::vector<ParseEvent> ReparseInStream(const Element& stanza) {
  std::string wrapped(kHeader);
  stanza.SerializeTo(wrapped, "jabber:client");
  wrapped += "</stream:stream>";
  return Parse(wrapped);
}

TEST(StreamParserTest, StanzasRoundTripThroughSerialize) {
  auto events =
      Parse(Stream("<message xmlns:c='urn:custom' xmlns:d='urn:deeper' to='a@b' c:flag='1' xml:lang='en'>"
                   "<body>&lt;tricky&gt; &amp; &quot;quoted&quot; &apos;s&apos; ]]&gt; \r\n&#13;&#9;</body>"
                   "<c:payload d:attr='x&#10;y&#9;z&#13;' other='&lt;&gt;'>"
                   "<d:item>one</d:item><item xmlns='urn:default'>two<c:back/></item>"
                   "<plain xmlns=''><nested/></plain></c:payload>"
                   "<stream:error/></message>"
                   "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"));
  ASSERT_EQ(events.size(), 3u);
  for (size_t i = 1; i < events.size(); ++i) {
    const Element& original = events[i].element;
    auto reparsed = ReparseInStream(original);
    ASSERT_EQ(reparsed.size(), 3u) << original.Serialize("jabber:client");
    EXPECT_EQ(reparsed[1].kind, Kind::kStanza);
    EXPECT_TRUE(reparsed[1].element == original) << original.Serialize("jabber:client") << "\nvs\n"
                                                 << reparsed[1].element.Serialize("jabber:client");
    EXPECT_EQ(reparsed[1].element.Serialize("jabber:client"), original.Serialize("jabber:client"));
  }
  const Element& message = events[1].element;
  EXPECT_EQ(message.ChildText("body"), "<tricky> & \"quoted\" 's' ]]> \n\r\t");
  const Element* payload = message.Child("payload", "urn:custom");
  ASSERT_NE(payload, nullptr);
  EXPECT_EQ(payload->Attr("{urn:deeper}attr"), "x\ny\tz\r");
  EXPECT_EQ(payload->Child("plain", "")->Child("nested", "")->ns(), "");
  EXPECT_EQ(payload->Child("item", "urn:default")->Child("back", "urn:custom")->ns(), "urn:custom");
}

// --- reset and compaction -------------------------------------------------------

TEST(StreamParserTest, ResetStartsANewStream) {
  StreamParser parser({});
  auto events = FeedAll(parser, Stream("<presence/><message>partial"));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(parser.InStanza());
  parser.Reset();
  EXPECT_FALSE(parser.InStanza());
  events = FeedAll(parser, Stream("<iq/>"));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen);
  EXPECT_EQ(events[1].element.name(), "iq");
  // After a failure.
  events = FeedAll(parser, "<!-- x -->");
  EXPECT_EQ(LastError(events), ParseError::kRestrictedXml);
  parser.Reset();
  events = FeedAll(parser, Stream("<iq/>"));
  ASSERT_EQ(events.size(), 2u);
  // After the stream closed.
  EXPECT_EQ(FeedAll(parser, "</stream:stream>").back().kind, Kind::kStreamClose);
  parser.Reset();
  events = FeedAll(parser, Stream("<iq/>"));
  ASSERT_EQ(events.size(), 2u);
  // The XML declaration is allowed again at the start of the new stream.
  EXPECT_EQ(events[0].kind, Kind::kStreamOpen);
}

TEST(StreamParserTest, CompactFreesExpatAndReplaysHeader) {
  StreamParser parser({});
  auto events =
      FeedAll(parser,
              "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' "
              "xmlns:ext='urn:example:ext' to='example.com' version='1.0'>"
              "<presence/> ");
  ASSERT_EQ(events.size(), 2u);
  const size_t before = parser.MemoryUsage();
  EXPECT_TRUE(parser.Compact());
  const size_t after = parser.MemoryUsage();
  EXPECT_FALSE(parser.Compact()) << "nothing left to free";
  EXPECT_LT(after, 1024u);
  EXPECT_GT(before, after + 4096);

  events = FeedAll(parser, "<message><ext:data ext:a='1'>x</ext:data></message>");
  ASSERT_EQ(events.size(), 1u) << events[0].error_text;  // no second kStreamOpen
  ASSERT_EQ(events[0].kind, Kind::kStanza) << events[0].error_text;
  EXPECT_EQ(events[0].element.ns(), "jabber:client");
  const Element* data = events[0].element.Child("data", "urn:example:ext");
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(data->Attr("{urn:example:ext}a"), "1");

  parser.Compact();
  events = FeedAll(parser, "<stream:features/>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.ns(), kStreamsNs);
  parser.Compact();
  events = FeedAll(parser, "</stream:stream>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStreamClose);
}

TEST(StreamParserTest, CompactIsANoOpMidStanza) {
  StreamParser parser({});
  FeedAll(parser, Stream("<message><body>hel"));
  const size_t before = parser.MemoryUsage();
  EXPECT_FALSE(parser.Compact());
  EXPECT_EQ(parser.MemoryUsage(), before);
  auto events = FeedAll(parser, "lo</body></message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.ChildText("body"), "hello");
  // A partial start tag is a stanza in progress too.
  FeedAll(parser, "<pres");
  parser.Compact();
  events = FeedAll(parser, "ence/>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.name(), "presence");
}

// Found by the fuzzer: "<![CDATA[" at stream level leaves expat inside the
// section with nothing unparsed on our side; compacting there lost that state
// and the "]]>" that followed became a not-well-formed error.
TEST(StreamParserTest, CompactIsANoOpInsideCdataAtStreamLevel) {
  StreamParser parser({});
  FeedAll(parser, Stream("<presence/><![CDATA["));
  EXPECT_TRUE(parser.InStanza()) << "an open CDATA section is input in progress";
  EXPECT_FALSE(parser.Compact());
  auto events = FeedAll(parser, "]]><iq><!-- x --></iq>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kError);
  EXPECT_EQ(events[0].error_text, "comment not allowed") << "the same error as unchunked input";
}

TEST(StreamParserTest, WhitespaceKeepaliveDoesNotRebuildACompactedParser) {
  StreamParser parser({});
  FeedAll(parser, Stream("<presence/>"));
  EXPECT_TRUE(parser.Compact());
  EXPECT_TRUE(FeedAll(parser, " \n\t \r\n").empty());
  EXPECT_LT(parser.MemoryUsage(), 1024u) << "a keepalive must not cost a parser";
  EXPECT_FALSE(parser.Compact()) << "nothing was rebuilt";
  auto events = FeedAll(parser, " <message><body>hi</body></message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.ChildText("body"), "hi");
}

// Found in review: a creation that failed part-way (here: the memory cap)
// left the slab behind, and nothing freed it.
TEST(StreamParserTest, FailedParserCreationFreesItsSlab) {
  ParserLimits limits;
  limits.max_memory_bytes = 2048;
  StreamParser parser(limits);
  auto events = FeedAll(parser, kHeader);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, Kind::kError);
  EXPECT_LT(parser.MemoryUsage(), 4096u);
}

TEST(StreamParserTest, CompactBeforeAnyInputAndAfterTrailingCr) {
  StreamParser parser({});
  parser.Compact();
  auto events = FeedAll(parser, kHeader);
  ASSERT_EQ(events.size(), 1u);
  FeedAll(parser, "<presence/>\r");
  parser.Compact();
  EXPECT_LT(parser.MemoryUsage(), 1024u);
  events = FeedAll(parser, "\n<presence/>");
  ASSERT_EQ(events.size(), 1u);
}

TEST(StreamParserTest, CompactPreservesLimits) {
  ParserLimits limits;
  limits.max_stanza_bytes = 100;
  StreamParser parser(limits);
  FeedAll(parser, kHeader);
  parser.Compact();
  EXPECT_EQ(LastError(FeedAll(parser, MessageOfSize(101))), ParseError::kPolicyViolation);
}

// --- XEP-0198 <r/> and <a/> without expat ------------------------------------

// Fed whole, the exact forms take the shortcut; fed a byte at a time, expat
// parses them (a lone '<' matches nothing). Both must give the same events.
TEST(StreamParserTest, SmShortcutsGiveTheEventsExpatGives) {
  const std::vector<std::string> bodies = {
      "<r xmlns='urn:xmpp:sm:3'/>",
      "<r xmlns=\"urn:xmpp:sm:3\"/>",
      "<a xmlns='urn:xmpp:sm:3' h='0'/>",
      "<a xmlns=\"urn:xmpp:sm:3\" h=\"4294967295\"/>",
      "<a xmlns='urn:xmpp:sm:3' h='12'/><r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='13'/>",
      "<message to='b@example.com' id='1'><body>hi</body></message><r xmlns='urn:xmpp:sm:3'/>",
      "<a xmlns='urn:xmpp:sm:3' h='7'/><message id='2'><body>x</body></message><r xmlns='urn:xmpp:sm:3'/>",
  };
  for (const auto& body : bodies) {
    StreamParser whole({});
    StreamParser bytes({});
    FeedAll(whole, kHeader);
    FeedAll(bytes, kHeader);
    auto a = FeedAll(whole, body);
    auto b = FeedBytes(bytes, body);
    ASSERT_FALSE(a.empty());
    ExpectSameEvents(a, b);
    EXPECT_GT(whole.SmShortcuts(), 0u) << body;
    EXPECT_EQ(bytes.SmShortcuts(), 0u) << body;
  }
  // What the session reads off them.
  StreamParser parser({});
  FeedAll(parser, kHeader);
  auto events = FeedAll(parser, "<a xmlns='urn:xmpp:sm:3' h='42'/>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kStanza);
  EXPECT_EQ(events[0].element.name(), "a");
  EXPECT_EQ(events[0].element.ns(), "urn:xmpp:sm:3");
  EXPECT_EQ(events[0].element.Attr("h"), "42");
  EXPECT_EQ(parser.SmShortcuts(), 1u);
}

// Only at the top level: the same bytes inside a stanza, or after a tag
// that is not complete, are expat's; other spellings are expat's too.
TEST(StreamParserTest, SmShortcutsOnlyAtTheTopLevelAndInTheExactForms) {
  StreamParser parser({});
  FeedAll(parser, kHeader);
  auto events = FeedAll(parser, "<message id='1'><r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_TRUE(events.empty());
  events = FeedAll(parser, "<r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_TRUE(events.empty()) << "a child of the open message";
  events = FeedAll(parser, "</message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.name(), "message");
  EXPECT_EQ(events[0].element.Children().size(), 2u);
  EXPECT_EQ(parser.SmShortcuts(), 0u);

  // The form ending a write whose stanza is still open is that stanza's child.
  events = FeedAll(parser, "<message id='2'><body>");
  EXPECT_TRUE(events.empty());
  events = FeedAll(parser, "x</body><r xmlns='urn:xmpp:sm:3'/>");
  EXPECT_TRUE(events.empty());
  events = FeedAll(parser, "</message>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].element.Children().size(), 2u);
  EXPECT_EQ(parser.SmShortcuts(), 0u);

  // A start tag completed by the write that ends with the form.
  events = FeedAll(parser, "<message id='3'");
  EXPECT_TRUE(events.empty());
  events = FeedAll(parser, "/><r xmlns='urn:xmpp:sm:3'/>");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].element.name(), "r");
  EXPECT_EQ(parser.SmShortcuts(), 1u) << "the tail after a completed stanza is at the top level";

  // Between stanzas in one write, once the stream has sent one of them (a
  // stream without XEP-0198 is not searched): inside a stanza (or in CDATA,
  // or escaped in a value), expat's.
  for (std::string_view between :
       {"<message id='3'><body>a</body></message><r xmlns='urn:xmpp:sm:3'/><message "
        "id='4'><body>b</body></message>",
        "<message id='5'/><a xmlns=\"urn:xmpp:sm:3\" h=\"9\"/><r xmlns='urn:xmpp:sm:3'/><message id='6'/>"
        "<r xmlns='urn:xmpp:sm:3'/><message id='7'/>"}) {
    StreamParser whole({});
    StreamParser bytes({});
    FeedAll(whole, kHeader);
    FeedAll(bytes, kHeader);
    auto first_a = FeedAll(whole, between);
    auto first_b = FeedBytes(bytes, between);
    ExpectSameEvents(first_a, first_b);
    EXPECT_EQ(whole.SmShortcuts(), 0u) << "not before the stream has used XEP-0198: " << between;
    auto a = FeedAll(whole, between);
    auto b = FeedBytes(bytes, between);
    ExpectSameEvents(a, b);
    EXPECT_GE(whole.SmShortcuts(), 1u) << between;
  }
  for (std::string_view inside :
       {"<message id='4'><body>x</body><r xmlns='urn:xmpp:sm:3'/></message><message id='5'/>",
        "<message id='6'><body><![CDATA[<r xmlns='urn:xmpp:sm:3'/>]]></body></message><message id='7'/>",
        "<message id='8' a='&lt;r xmlns=&apos;urn:xmpp:sm:3&apos;/>'/><message id='9'/>"}) {
    StreamParser whole({});
    StreamParser bytes({});
    FeedAll(whole, kHeader);
    FeedAll(bytes, kHeader);
    FeedAll(whole, "<message id='0'/><r xmlns='urn:xmpp:sm:3'/>");  // the stream uses XEP-0198
    FeedAll(bytes, "<message id='0'/><r xmlns='urn:xmpp:sm:3'/>");
    const uint64_t before = whole.SmShortcuts();
    auto a = FeedAll(whole, inside);
    auto b = FeedBytes(bytes, inside);
    ASSERT_EQ(a.size(), 2u) << inside;
    ExpectSameEvents(a, b);
    EXPECT_EQ(whole.SmShortcuts(), before) << inside;
  }

  for (std::string_view other : {"<r xmlns='urn:xmpp:sm:3' />", "<a h='1' xmlns='urn:xmpp:sm:3'/>",
                                 "<a xmlns='urn:xmpp:sm:3' h='12345678901'/>",
                                 "<a xmlns='urn:xmpp:sm:3' h=''/>", "<r xmlns='urn:xmpp:sm:3\"/>"}) {
    StreamParser p({});
    FeedAll(p, kHeader);
    FeedAll(p, other);
    EXPECT_EQ(p.SmShortcuts(), 0u) << other;
  }
}

// A form inside a token expat holds open (a comment or a processing
// instruction, which a stream may not carry) is not taken, and the rest of
// the write reaches expat as if there were no form: the error comes when the
// token ends, as it does fed a byte at a time. (A split there once left the
// scanner that follows large tokens behind, so the end was never seen.)
TEST(StreamParserTest, SmShortcutsLeaveAnOpenTokenToExpat) {
  for (std::string_view open : {"<!--", "<?p "}) {
    const std::string close = open == "<!--" ? "--" : "?";
    for (size_t size : {10, 1100}) {
      const std::string first =
          std::string(open) + std::string(size, 'x') + "<r xmlns='urn:xmpp:sm:3'/>" + close;
      StreamParser chunked({});
      StreamParser bytes({});
      for (StreamParser* p : {&chunked, &bytes}) {
        FeedAll(*p, kHeader);
        FeedAll(*p, "<message id='0'/><r xmlns='urn:xmpp:sm:3'/>");  // the stream uses XEP-0198
      }
      auto a = FeedAll(chunked, first);
      auto end = FeedAll(chunked, ">");
      a.insert(a.end(), std::make_move_iterator(end.begin()), std::make_move_iterator(end.end()));
      auto b = FeedBytes(bytes, first + ">");
      ExpectSameEvents(a, b);
      EXPECT_EQ(LastError(a), ParseError::kRestrictedXml) << open << " " << size;
    }
  }
}

// Limits that refuse the forms refuse them either way.
TEST(StreamParserTest, SmShortcutsKeepTheLimits) {
  ParserLimits limits;
  limits.max_attributes = 1;  // xmlns and h are two
  StreamParser whole(limits);
  StreamParser bytes(limits);
  ASSERT_EQ(FeedAll(whole, kTinyHeader).size(), 1u);
  FeedAll(bytes, kTinyHeader);
  auto a = FeedAll(whole, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
  auto b = FeedBytes(bytes, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
  ExpectSameEvents(a, b);
  EXPECT_EQ(LastError(a), ParseError::kPolicyViolation);
}

// A compacted parser is not rebuilt for an <r/> or <a/>.
TEST(StreamParserTest, SmShortcutsNeedNoParserAfterCompact) {
  StreamParser parser({});
  FeedAll(parser, kHeader);
  ASSERT_TRUE(parser.Compact());
  const size_t compacted = parser.MemoryUsage();
  auto events = FeedAll(parser, "<a xmlns='urn:xmpp:sm:3' h='3'/><r xmlns='urn:xmpp:sm:3'/>");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].element.name(), "r");
  EXPECT_EQ(parser.MemoryUsage(), compacted) << "expat was not rebuilt";
  EXPECT_FALSE(parser.Compact()) << "nothing to free";
  events = FeedAll(parser, "<message id='m'/>");
  ASSERT_EQ(events.size(), 1u) << "the replayed header still scopes jabber:client";
  EXPECT_EQ(events[0].element.ns(), "jabber:client");
}

TEST(StreamParserTest, StreamErrorConditionNames) {
  EXPECT_STREQ(StreamErrorCondition(ParseError::kNotWellFormed), "not-well-formed");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kRestrictedXml), "restricted-xml");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kPolicyViolation), "policy-violation");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kInvalidNamespace), "invalid-namespace");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kBadFormat), "bad-format");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kUnsupportedEncoding), "unsupported-encoding");
  EXPECT_STREQ(StreamErrorCondition(ParseError::kNone), "undefined-condition");
}

}  // namespace
}  // namespace nines::xml
