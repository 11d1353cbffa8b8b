#include "bench/xml_scan.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "xml/stream_parser.h"

namespace nines::bench {
namespace {

struct Event {
  StanzaScanner::Event kind;
  std::string text;
};

// Feeds `input` in chunks of `chunk` bytes the way the loop does: keep the
// unconsumed tail, append, rescan.
std::vector<Event> ScanInChunks(std::string_view input, size_t chunk) {
  StanzaScanner scanner;
  std::string buf;
  std::vector<Event> events;
  for (size_t at = 0; at < input.size(); at += chunk) {
    buf.append(input.substr(at, chunk));
    for (;;) {
      std::string_view element;
      const auto ev = scanner.Next(buf.data(), buf.size(), element);
      if (ev == StanzaScanner::Event::kNeedMore) break;
      events.push_back({ev, std::string(element)});
      if (ev == StanzaScanner::Event::kError) return events;
    }
    const size_t keep = scanner.KeepFrom();
    buf.erase(0, keep);
    scanner.Rebase(keep);
  }
  return events;
}

const char kStream[] =
    "<?xml version='1.0'?>"
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from=\"d\">"
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    "</mechanisms></stream:features>\n  \n"
    "<message from='user2@localhost/bench' a='x>y' b=\"it's\"><body>1 2 3 4</body><x/></message>"
    "<presence/>"
    "<iq type='result'><![CDATA[ <not> a tag ]] ]]><!-- a > comment --></iq>"
    "</stream:stream>";

TEST(StanzaScanner, FramesAStreamWholeAndByteByByte) {
  const std::vector<std::string> want = {
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from=\"d\">",
      "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
      "</mechanisms></stream:features>",
      "<message from='user2@localhost/bench' a='x>y' b=\"it's\"><body>1 2 3 4</body><x/></message>",
      "<presence/>",
      "<iq type='result'><![CDATA[ <not> a tag ]] ]]><!-- a > comment --></iq>",
  };
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, sizeof kStream}) {
    const auto events = ScanInChunks(kStream, chunk);
    ASSERT_EQ(events.size(), want.size() + 1) << "chunk " << chunk;
    EXPECT_EQ(events[0].kind, StanzaScanner::Event::kStreamOpen);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(events[i].text, want[i]) << "chunk " << chunk;
    for (size_t i = 1; i < want.size(); ++i) EXPECT_EQ(events[i].kind, StanzaScanner::Event::kStanza);
    EXPECT_EQ(events.back().kind, StanzaScanner::Event::kStreamClose);
  }
}

TEST(StanzaScanner, KeepsNothingBetweenStanzas) {
  StanzaScanner s;
  const std::string input = "<stream:stream><a/>   ";
  std::string_view el;
  EXPECT_EQ(s.Next(input.data(), input.size(), el), StanzaScanner::Event::kStreamOpen);
  EXPECT_EQ(s.Next(input.data(), input.size(), el), StanzaScanner::Event::kStanza);
  EXPECT_EQ(s.Next(input.data(), input.size(), el), StanzaScanner::Event::kNeedMore);
  EXPECT_EQ(s.KeepFrom(), input.size());
}

TEST(StanzaScanner, RejectsDoctypeAndStrayEndTag) {
  EXPECT_EQ(ScanInChunks("<!DOCTYPE x><stream:stream>", 1).back().kind, StanzaScanner::Event::kError);
  EXPECT_EQ(ScanInChunks("</x>", 100).back().kind, StanzaScanner::Event::kError);
}

TEST(XmlView, NamesAttributesChildrenText) {
  const std::string_view msg =
      "<message from='a@b/c' type=\"chat\" xmlns='jabber:client'><thread>t</thread>"
      "<body>hello &amp; &lt;you&gt; &#65;&#x42;</body><stanza-id xmlns='urn:xmpp:sid:0' id='1'/></message>";
  EXPECT_EQ(LocalName(msg), "message");
  EXPECT_EQ(LocalName("<stream:features>...</stream:features>"), "features");
  EXPECT_EQ(LocalName("<a/>"), "a");
  std::string_view v;
  ASSERT_TRUE(GetAttr(msg, "from", v));
  EXPECT_EQ(v, "a@b/c");
  ASSERT_TRUE(GetAttr(msg, "type", v));
  EXPECT_EQ(v, "chat");
  EXPECT_FALSE(GetAttr(msg, "id", v));  // the child's id is not ours
  std::string_view body;
  ASSERT_TRUE(FindChild(msg, "body", body));
  EXPECT_EQ(Unescape(Content(body)), "hello & <you> AB");
  std::string_view sid;
  ASSERT_TRUE(FindChild(msg, "stanza-id", sid));
  EXPECT_TRUE(GetAttr(sid, "id", v));
  EXPECT_EQ(v, "1");
  EXPECT_FALSE(FindChild(msg, "nothing", v));
  EXPECT_EQ(Content("<x/>"), "");
  EXPECT_EQ(Content("<x a='/'>text</x>"), "text");
  // Children are walked at one level only.
  const std::string_view nested = "<q><item jid='1'><group>g</group></item><item jid='2'/><!-- c --></q>";
  const std::string_view content = Content(nested);
  size_t pos = 0;
  std::string_view child;
  std::vector<std::string> jids;
  while (NextChild(content, pos, child)) {
    ASSERT_TRUE(GetAttr(child, "jid", v));
    jids.emplace_back(v);
  }
  EXPECT_EQ(jids, (std::vector<std::string>{"1", "2"}));
}

// Not a pass/fail test: measures the two ways to read server output on a
// typical routed <message/>, the reason the bench scans instead of parsing
// (see xml_scan.h). Prints ns per stanza.
TEST(StanzaScanner, ScannerVsStreamParser) {
  const std::string header =
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>";
  const std::string one =
      "<message from='user2@localhost/bench' to='user1@localhost/bench' type='chat' id='12345'>"
      "<body>123456 2 12345 98765432109876</body></message>";
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += one;
  constexpr int kRounds = 2000;
  using Clock = std::chrono::steady_clock;

  StanzaScanner scanner;
  std::string buf = header;
  std::string_view el;
  ASSERT_EQ(scanner.Next(buf.data(), buf.size(), el), StanzaScanner::Event::kStreamOpen);
  size_t scanned = 0;
  auto t0 = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    buf.erase(0, scanner.KeepFrom());
    scanner.Rebase(scanner.KeepFrom());
    buf += batch;
    for (;;) {
      auto ev = scanner.Next(buf.data(), buf.size(), el);
      if (ev != StanzaScanner::Event::kStanza) break;
      std::string_view body;
      scanned += LocalName(el).size() + (FindChild(el, "body", body) ? 1 : 0);
    }
  }
  const double scan_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / (kRounds * 100);

  xml::StreamParser parser(xml::ParserLimits{});
  std::vector<xml::ParseEvent> events;
  parser.Feed(header, events);
  size_t parsed = 0;
  t0 = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    events.clear();
    parser.Feed(batch, events);
    for (auto& e : events) parsed += e.element.ChildText("body").size() > 0;
  }
  const double parse_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / (kRounds * 100);
  EXPECT_GT(scanned, 0u);
  EXPECT_EQ(parsed, static_cast<size_t>(kRounds) * 100);
  std::printf("per <message/>: StanzaScanner %.0f ns, xml::StreamParser %.0f ns (%.1fx)\n", scan_ns, parse_ns,
              parse_ns / scan_ns);
}

}  // namespace
}  // namespace nines::bench
