#include "xmpp/jid/jid.h"

#include <gtest/gtest.h>

#include <string>

namespace nines::xmpp {
namespace {

struct Parts {
  std::string local;
  std::string domain;
  std::string resource;
};

void ExpectParses(const std::string& text, const Parts& want) {
  Result<Jid> jid = Jid::Parse(text);
  ASSERT_TRUE(jid.ok()) << "'" << text << "': " << jid.error().message;
  EXPECT_EQ(jid->local(), want.local) << text;
  EXPECT_EQ(jid->domain(), want.domain) << text;
  EXPECT_EQ(jid->resource(), want.resource) << text;
}

void ExpectRejected(const std::string& text) {
  Result<Jid> jid = Jid::Parse(text);
  ASSERT_FALSE(jid.ok()) << "'" << text << "' parsed as " << jid->Full();
  EXPECT_EQ(jid.error().code, Errc::kInvalidArgument) << text;
}

// ---------------------------------------------------------------------------
// RFC 7622 §3.5 examples

TEST(JidTest, Rfc7622ValidExamples) {
  ExpectParses("juliet@example.com", {"juliet", "example.com", ""});
  ExpectParses("juliet@example.com/foo", {"juliet", "example.com", "foo"});
  ExpectParses("juliet@example.com/foo bar", {"juliet", "example.com", "foo bar"});
  ExpectParses("juliet@example.com/foo@bar", {"juliet", "example.com", "foo@bar"});
  ExpectParses("foo\\20bar@example.com", {"foo\\20bar", "example.com", ""});
  ExpectParses("fussball@example.com", {"fussball", "example.com", ""});
  ExpectParses("fu\u00dfball@example.com", {"fu\u00dfball", "example.com", ""});
  ExpectParses("\u03c0@example.com", {"\u03c0", "example.com", ""});
  ExpectParses("\u03a3@example.com/foo", {"\u03c3", "example.com", "foo"});
  ExpectParses("\u03c3@example.com/foo", {"\u03c3", "example.com", "foo"});
  ExpectParses("\u03c2@example.com/foo", {"\u03c2", "example.com", "foo"});
  ExpectParses("king@example.com/\u265a", {"king", "example.com", "\u265a"});
  ExpectParses("example.com", {"", "example.com", ""});
  ExpectParses("example.com/foobar", {"", "example.com", "foobar"});
  ExpectParses("a.example.com/b@example.net", {"", "a.example.com", "b@example.net"});
}

TEST(JidTest, Rfc7622InvalidExamples) {
  ExpectRejected("\"juliet\"@example.com");   // quotation marks in localpart
  ExpectRejected("foo bar@example.com");      // space in localpart
  ExpectRejected("@example.com/");            // empty localpart and resourcepart
  ExpectRejected("henry\u2163@example.com");  // ROMAN NUMERAL FOUR
  ExpectRejected("\u265a@example.com");       // BLACK CHESS KING in localpart
  ExpectRejected("juliet@");                  // empty domainpart
  ExpectRejected("/foobar");                  // empty localpart and domainpart
}

// RFC 7622 §3.5 lists "juliet@example.com/ foo" as invalid ("leading space in
// the resourcepart"), but no rule of RFC 7622 or of the OpaqueString profile
// (RFC 8265 §4.2) forbids it: U+0020 is FREE_PVAL. We follow the rules, not
// the example, as other PRECIS-based implementations do; rejecting an address
// peers consider valid would drop their traffic.
TEST(JidTest, LeadingSpaceInResourceIsAllowedDespiteRfcExample) {
  ExpectParses("juliet@example.com/ foo", {"juliet", "example.com", " foo"});
}

// ---------------------------------------------------------------------------
// Splitting (RFC 7622 §3.1)

TEST(JidTest, SplitsOnFirstSlashThenFirstAt) {
  ExpectParses("a@b/c@d/e", {"a", "b", "c@d/e"});
  ExpectParses("b/c@d", {"", "b", "c@d"});
  ExpectParses("mercutio@example.net//@", {"mercutio", "example.net", "/@"});
  ExpectParses("mercutio@example.net/@", {"mercutio", "example.net", "@"});
}

TEST(JidTest, SecondAtEndsUpInDomainAndIsRejected) { ExpectRejected("a@b@example.com"); }

TEST(JidTest, EmptyPartsNextToSeparatorsAreErrors) {
  ExpectRejected("");
  ExpectRejected("@example.com");
  ExpectRejected("example.com/");
  ExpectRejected("juliet@example.com/");
  ExpectRejected("@");
  ExpectRejected("/");
  ExpectRejected("@/");
  ExpectRejected("juliet@/res");
}

// ---------------------------------------------------------------------------
// Normalisation

TEST(JidTest, CaseMapsLocalAndDomainButNotResource) {
  Result<Jid> jid = Jid::Parse("Juliet@Example.com/Balcony");
  ASSERT_TRUE(jid.ok()) << jid.error().message;
  EXPECT_EQ(jid->Full(), "juliet@example.com/Balcony");
  EXPECT_EQ(jid->BareString(), "juliet@example.com");
}

TEST(JidTest, FullwidthLocalpartIsWidthMapped) {
  ExpectParses("\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com", {"juliet", "example.com", ""});
}

TEST(JidTest, FullwidthDomainIsMapped) {
  ExpectParses("juliet@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
               {"juliet", "example.com", ""});
}

TEST(JidTest, NfcInAllParts) {
  ExpectParses("caf\x65\xcc\x81@example.com/caf\x65\xcc\x81", {"caf\u00e9", "example.com", "caf\u00e9"});
  ExpectParses("juliet@cafe\xcc\x81.example", {"juliet", "caf\u00e9.example", ""});
}

TEST(JidTest, ResourceMapsNonAsciiSpaces) {
  ExpectParses("juliet@example.com/a\u00a0b", {"juliet", "example.com", "a b"});
}

TEST(JidTest, ResourceAllowsSpacesAtSignsSlashesAndSymbols) {
  ExpectParses("juliet@example.com/ spaced  out ", {"juliet", "example.com", " spaced  out "});
  ExpectParses("room@conference.example.com/Romeo@Verona",
               {"room", "conference.example.com", "Romeo@Verona"});
  ExpectParses("juliet@example.com/a/b/c", {"juliet", "example.com", "a/b/c"});
  ExpectParses("juliet@example.com/\U0001F339 rose", {"juliet", "example.com", "\U0001F339 rose"});
}

TEST(JidTest, ResourceRejectsControls) {
  ExpectRejected("juliet@example.com/a\tb");
  ExpectRejected("juliet@example.com/a\nb");
  ExpectRejected(std::string("juliet@example.com/a\0b", 23));
}

// ---------------------------------------------------------------------------
// Localpart restrictions

TEST(JidTest, LocalpartRejectsSpacesAndControls) {
  ExpectRejected("foo bar@example.com");
  ExpectRejected("foo\u3000bar@example.com");
  ExpectRejected("foo\u00a0bar@example.com");
  ExpectRejected("foo\tbar@example.com");
  ExpectRejected("foo\x01@example.com");
  ExpectRejected(std::string("foo\0@example.com", 16));
}

TEST(JidTest, LocalpartProhibitedCharacters) {
  // RFC 7622 §3.3.1: " & ' / : < > @ (the last two cannot survive splitting,
  // so they are tested through NormalizeLocal and FromParts).
  for (const char* bad : {"\"", "&", "'", ":", "<", ">"}) {
    ExpectRejected(std::string("a") + bad + "b@example.com");
  }
  for (const char* bad : {"a\"b", "a&b", "a'b", "a/b", "a:b", "a<b", "a>b", "a@b"}) {
    EXPECT_FALSE(Jid::NormalizeLocal(bad).ok()) << bad;
    EXPECT_FALSE(Jid::FromParts(bad, "example.com", "").ok()) << bad;
  }
}

TEST(JidTest, LocalpartProhibitedCharactersAfterWidthMapping) {
  ExpectRejected("a\uff20b@example.com");  // FULLWIDTH COMMERCIAL AT
  ExpectRejected("a\uff0fb@example.com");  // FULLWIDTH SOLIDUS
  ExpectRejected("a\uff1ab@example.com");  // FULLWIDTH COLON
  ExpectRejected("a\uff06b@example.com");  // FULLWIDTH AMPERSAND
}

TEST(JidTest, LocalpartAllowsOtherAsciiPunctuation) {
  ExpectParses("a.b-c_d+e!#$%*=?^`{|}~@example.com", {"a.b-c_d+e!#$%*=?^`{|}~", "example.com", ""});
}

// ---------------------------------------------------------------------------
// Domainpart

TEST(JidTest, IdnDomainStaysUnicode) {
  ExpectParses("b\u00fccher.example", {"", "b\u00fccher.example", ""});
  ExpectParses("juliet@B\u00dcCHER.example", {"juliet", "b\u00fccher.example", ""});
}

TEST(JidTest, ALabelIsConvertedToULabel) {
  ExpectParses("XN--BCHER-KVA.example", {"", "b\u00fccher.example", ""});
  ExpectParses("juliet@xn--bcher-kva.example/r", {"juliet", "b\u00fccher.example", "r"});
}

TEST(JidTest, DomainIsNontransitional) {
  // IDNA2008: ß is kept, not mapped to "ss" as IDNA2003 did.
  ExpectParses("fa\u00df.example", {"", "fa\u00df.example", ""});
}

TEST(JidTest, TrailingDotIsStripped) {
  ExpectParses("example.com.", {"", "example.com", ""});
  ExpectParses("juliet@Example.COM./r", {"juliet", "example.com", "r"});
  ExpectParses("example.com\u3002", {"", "example.com", ""});  // IDEOGRAPHIC FULL STOP
  ExpectRejected("example.com..");
  ExpectRejected(".");
  ExpectRejected("juliet@.");
}

TEST(JidTest, DomainRejectsNonHostNames) {
  ExpectRejected("juliet@exa mple.com");
  ExpectRejected("juliet@example.com ");
  ExpectRejected("juliet@exa_mple.com");
  ExpectRejected("juliet@example..com");
  ExpectRejected("juliet@.example.com");
  ExpectRejected("juliet@-example.com");
  ExpectRejected("juliet@example-.com");
  ExpectRejected("juliet@exa\tmple.com");
  ExpectRejected("juliet@xn--invalid-punycode-\xc3\xa9.example");
  ExpectRejected("juliet@\u2665.example");  // symbols are not valid in IDNA2008
  ExpectRejected("juliet@exa<mple.com");
}

TEST(JidTest, DomainIsIdna2008NotJustUts46) {
  // UTS #46 calls these "valid" (NV8); IDNA2008 does not.
  ExpectRejected("i\u2764.ws");
  ExpectRejected("xn--i-7iq.ws");      // the same, as an A-label
  ExpectRejected("a\u0640b.example");  // ARABIC TATWEEL (RFC 5892 exception)
  ExpectRejected("a\u20d7.example");   // combining mark for symbols
  // Scripts other than Latin are fine.
  ExpectParses("\u4f8b\u3048.\u30c6\u30b9\u30c8", {"", "\u4f8b\u3048.\u30c6\u30b9\u30c8", ""});
  ExpectParses("\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
               {"", "\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", ""});
  ExpectParses("\u0645\u062b\u0627\u0644.example", {"", "\u0645\u062b\u0627\u0644.example", ""});
  ExpectParses("xn--fsqu00a.xn--zckzah", {"", "\u4f8b\u5b50.\u30c6\u30b9\u30c8", ""});
}

TEST(JidTest, IpLiteralDomains) {
  ExpectParses("juliet@[::1]/r", {"juliet", "[::1]", "r"});
  ExpectParses("[2001:DB8:0:0:0:0:0:1]", {"", "[2001:db8::1]", ""});
  ExpectParses("juliet@192.0.2.1", {"juliet", "192.0.2.1", ""});
  ExpectRejected("juliet@[::1");
  ExpectRejected("juliet@[]");
  ExpectRejected("juliet@[192.0.2.1]");
  ExpectRejected("juliet@[::1]:5222");
  ExpectRejected("juliet@[fe80::1%eth0]");
  ExpectRejected("juliet@[not an address]");
}

// ---------------------------------------------------------------------------
// Lengths and encoding

TEST(JidTest, PartsUpTo1023BytesAreAccepted) {
  const std::string local(1023, 'a');
  const std::string resource(1023, 'r');
  std::string domain;
  while (domain.size() < 1023) domain += "abcdefghi.";  // 63-byte labels are not needed
  domain.resize(1023);
  if (domain.back() == '.') domain.back() = 'x';
  Result<Jid> jid = Jid::FromParts(local, domain, resource);
  ASSERT_TRUE(jid.ok()) << jid.error().message;
  EXPECT_EQ(jid->local().size(), 1023u);
  EXPECT_EQ(jid->domain().size(), 1023u);
  EXPECT_EQ(jid->resource().size(), 1023u);
}

TEST(JidTest, OversizePartsAreRejected) {
  ExpectRejected(std::string(1024, 'a') + "@example.com");
  ExpectRejected("juliet@example.com/" + std::string(1024, 'r'));
  std::string domain;
  while (domain.size() < 1030) domain += "abcdefghi.";
  domain += "com";
  ExpectRejected("juliet@" + domain);
  // Length is counted after normalisation: 512 two-byte characters are 1024 bytes.
  std::string wide;
  for (int i = 0; i < 512; ++i) wide += "\u00e9";
  ExpectRejected(wide + "@example.com");
  ExpectRejected("juliet@example.com/" + wide);
  // Very large input is refused before any Unicode work.
  ExpectRejected(std::string(1 << 20, 'a') + "@example.com");
}

TEST(JidTest, LengthIsMeasuredAfterMapping) {
  // 1023 fullwidth letters are 3069 bytes raw but 1023 bytes once mapped.
  std::string fullwidth;
  for (int i = 0; i < 1023; ++i) fullwidth += "\uff41";
  Result<Jid> jid = Jid::Parse(fullwidth + "@example.com");
  ASSERT_TRUE(jid.ok()) << jid.error().message;
  EXPECT_EQ(jid->local(), std::string(1023, 'a'));
}

TEST(JidTest, InvalidUtf8IsRejectedInEveryPart) {
  ExpectRejected(
      "juli\xff"
      "et@example.com");
  ExpectRejected("juliet@exam\xc3ple.com");
  ExpectRejected("juliet@example.com/res\xed\xa0\x80");
  ExpectRejected("juliet@example.com/\xc0\xaf");
  ExpectRejected("\x80");
}

// ---------------------------------------------------------------------------
// Value semantics

TEST(JidTest, EqualityAfterNormalisation) {
  Result<Jid> a = Jid::Parse("Juliet@EXAMPLE.com./Balcony");
  Result<Jid> b = Jid::Parse("juliet@example.com/Balcony");
  Result<Jid> c = Jid::Parse("juliet@example.com/balcony");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*b, *c);  // resources are case-sensitive
}

TEST(JidTest, BareAndWithResource) {
  Result<Jid> full = Jid::Parse("juliet@example.com/balcony");
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->IsBare());
  EXPECT_FALSE(full->empty());
  Jid bare = full->Bare();
  EXPECT_TRUE(bare.IsBare());
  EXPECT_EQ(bare.Full(), "juliet@example.com");
  EXPECT_EQ(bare.BareString(), full->BareString());
  Jid other = full->WithResource("orchard");
  EXPECT_EQ(other.Full(), "juliet@example.com/orchard");
  EXPECT_EQ(other.Bare(), bare);
}

TEST(JidTest, DefaultIsEmpty) {
  Jid jid;
  EXPECT_TRUE(jid.empty());
  EXPECT_TRUE(jid.IsBare());
  EXPECT_EQ(jid.Full(), "");
}

TEST(JidTest, DomainOnlyFormatting) {
  Result<Jid> jid = Jid::Parse("Example.com/Res");
  ASSERT_TRUE(jid.ok());
  EXPECT_EQ(jid->Full(), "example.com/Res");
  EXPECT_EQ(jid->BareString(), "example.com");
}

TEST(JidTest, FullRoundTripsThroughParse) {
  for (const char* text : {"Juliet@Example.com/Balcony", "\u03a3@b\u00fccher.example/\u265a", "[::1]/x y",
                           "a.example.com/b@example.net", "XN--BCHER-KVA.example"}) {
    Result<Jid> once = Jid::Parse(text);
    ASSERT_TRUE(once.ok()) << text << ": " << once.error().message;
    Result<Jid> twice = Jid::Parse(once->Full());
    ASSERT_TRUE(twice.ok()) << once->Full();
    EXPECT_EQ(*once, *twice) << text;
  }
}

TEST(JidTest, FromParts) {
  Result<Jid> jid = Jid::FromParts("Romeo", "Example.NET", "Orchard");
  ASSERT_TRUE(jid.ok()) << jid.error().message;
  EXPECT_EQ(jid->Full(), "romeo@example.net/Orchard");
  Result<Jid> domain_only = Jid::FromParts("", "example.net", "");
  ASSERT_TRUE(domain_only.ok());
  EXPECT_EQ(domain_only->Full(), "example.net");
  EXPECT_FALSE(Jid::FromParts("romeo", "", "").ok());
  EXPECT_FALSE(Jid::FromParts("romeo", "example.net", "a\tb").ok());
}

TEST(JidTest, NormalizeSingleParts) {
  Result<std::string> local = Jid::NormalizeLocal("\uff32omeo");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(*local, "romeo");
  EXPECT_FALSE(Jid::NormalizeLocal("").ok());
  Result<std::string> resource = Jid::NormalizeResource("My Phone");
  ASSERT_TRUE(resource.ok());
  EXPECT_EQ(*resource, "My Phone");
  EXPECT_FALSE(Jid::NormalizeResource("").ok());
  Result<std::string> domain = Jid::NormalizeDomain("EXAMPLE.org.");
  ASSERT_TRUE(domain.ok());
  EXPECT_EQ(*domain, "example.org");
  EXPECT_FALSE(Jid::NormalizeDomain("").ok());
}

TEST(JidTest, DomainResultsAreTheSameWhenRepeatedAndPastTheCache) {
  // NormalizeDomain remembers recent successes per thread (256, then starts
  // over). Repeats, case variants, failures and more domains than it holds
  // must all give what the full rules give.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 600; ++i) {
      const std::string n = std::to_string(i);
      EXPECT_EQ(Jid::NormalizeDomain("Host" + n + ".Example.COM").value(), "host" + n + ".example.com");
      EXPECT_EQ(Jid::NormalizeDomain("xn--bcher-kva.example").value(), "b\u00fccher.example");
      EXPECT_FALSE(Jid::NormalizeDomain("bad_" + n + ".example").ok());
      EXPECT_FALSE(Jid::NormalizeDomain("-lead.example").ok());
    }
  }
}

TEST(JidTest, ErrorsAreInvalidArgumentWithReason) {
  Result<Jid> jid = Jid::Parse("foo bar@example.com");
  ASSERT_FALSE(jid.ok());
  EXPECT_EQ(jid.error().code, Errc::kInvalidArgument);
  EXPECT_NE(jid.error().message.find("localpart"), std::string::npos) << jid.error().message;
}

}  // namespace
}  // namespace nines::xmpp
