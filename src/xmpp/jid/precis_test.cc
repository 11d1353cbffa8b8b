#include "xmpp/jid/precis.h"

#include <gtest/gtest.h>

#include <string>

namespace nines::xmpp::precis {
namespace {

// Expects `input` to be accepted and mapped to `expected`.
#define EXPECT_PREP(profile, input, expected)                                            \
  do {                                                                                   \
    auto prepared = profile(input);                                                      \
    ASSERT_TRUE(prepared.ok()) << #profile "(" #input "): " << prepared.error().message; \
    EXPECT_EQ(*prepared, expected) << #profile "(" #input ")";                           \
  } while (0)

#define EXPECT_REJECT(profile, input)                                \
  do {                                                               \
    auto prepared = profile(input);                                  \
    ASSERT_FALSE(prepared.ok()) << #profile "(" #input ") accepted"; \
    EXPECT_EQ(prepared.error().code, Errc::kInvalidArgument);        \
    EXPECT_FALSE(prepared.error().message.empty());                  \
  } while (0)

// ---------------------------------------------------------------------------
// Every ASCII byte, alone and between letters: both profiles have an ASCII
// fast path (precis.cc), and this pins it to what the full rules say. ASCII
// has no right-to-left characters, nothing NFC or width mapping changes, and
// in RFC 8264 §9.11 ASCII7 (U+0021-U+007E) is PVALID while controls are
// DISALLOWED and U+0020 is a space (FreeformClass only).

// Calls check(byte, input) for every ASCII byte, alone and between letters.
template <class Check>
void ForEachAsciiInput(Check check) {
  for (int byte = 0; byte < 0x80; ++byte) {
    const char c = static_cast<char>(byte);
    for (const std::string& input : {std::string(1, c), "a" + std::string(1, c) + "Z"}) check(byte, input);
  }
}

TEST(AsciiFastPathTest, UsernameCaseMappedLowercasesPrintablesAndRejectsTheRest) {
  ForEachAsciiInput([](int byte, const std::string& input) {
    Result<std::string> prepared = UsernameCaseMapped(input);
    if (byte >= 0x21 && byte <= 0x7e) {
      std::string expected = input;
      for (char& ch : expected) {
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      }
      ASSERT_TRUE(prepared.ok()) << byte;
      EXPECT_EQ(*prepared, expected) << byte;
    } else {
      EXPECT_FALSE(prepared.ok()) << byte;
    }
  });
}

TEST(AsciiFastPathTest, OpaqueStringKeepsPrintablesAndSpaceAndRejectsControls) {
  ForEachAsciiInput([](int byte, const std::string& input) {
    Result<std::string> prepared = OpaqueString(input);
    if (byte >= 0x20 && byte <= 0x7e) {
      ASSERT_TRUE(prepared.ok()) << byte;
      EXPECT_EQ(*prepared, input) << byte;
    } else {
      EXPECT_FALSE(prepared.ok()) << byte;
    }
  });
}

// ---------------------------------------------------------------------------
// OpaqueString (RFC 8265 §4.2)

TEST(OpaqueStringTest, AsciiPassesThroughUnchanged) {
  EXPECT_PREP(OpaqueString, "correct horse battery staple", "correct horse battery staple");
  EXPECT_PREP(OpaqueString, "Pa$$w0rd!~", "Pa$$w0rd!~");
  EXPECT_PREP(OpaqueString, " leading and trailing ", " leading and trailing ");
  EXPECT_PREP(OpaqueString, "Balcony", "Balcony");  // no case mapping
}

TEST(OpaqueStringTest, Rfc8265Section4_3Examples) {
  // The valid examples from RFC 8265 §4.3.
  EXPECT_PREP(OpaqueString, "correct horse battery staple", "correct horse battery staple");
  EXPECT_PREP(OpaqueString, "Correct Horse Battery Staple", "Correct Horse Battery Staple");
  EXPECT_PREP(OpaqueString, "\u03c0\u00df\u00e5", "\u03c0\u00df\u00e5");  // πßå
  EXPECT_PREP(OpaqueString, "Jack of \u2666s", "Jack of \u2666s");        // symbol allowed
  // OGHAM SPACE MARK (U+1680) is a non-ASCII space: mapped to U+0020.
  EXPECT_PREP(OpaqueString, "foo\u1680bar", "foo bar");
  // A tab is a control character.
  EXPECT_REJECT(OpaqueString, "my cat is a \tby");
}

TEST(OpaqueStringTest, NonAsciiSpacesMapToAsciiSpace) {
  EXPECT_PREP(OpaqueString, "a\u00a0b", "a b");         // NO-BREAK SPACE
  EXPECT_PREP(OpaqueString, "a\u3000b", "a b");         // IDEOGRAPHIC SPACE
  EXPECT_PREP(OpaqueString, "a\u2002\u2003b", "a  b");  // EN SPACE, EM SPACE
  EXPECT_PREP(OpaqueString, "a\u2000b", "a b");         // EN QUAD (canonically EN SPACE)
}

TEST(OpaqueStringTest, NoWidthMapping) {
  // Fullwidth forms are FREE_PVAL and are kept as they are.
  EXPECT_PREP(OpaqueString, "\uff21\uff22", "\uff21\uff22");
}

TEST(OpaqueStringTest, NormalisesToNfc) {
  EXPECT_PREP(OpaqueString, "e\u0301", "\u00e9");             // e + COMBINING ACUTE
  EXPECT_PREP(OpaqueString, "\u212b", "\u00c5");              // ANGSTROM SIGN
  EXPECT_PREP(OpaqueString, "\u1100\u1161\u11a8", "\uac01");  // conjoining jamo compose
  EXPECT_PREP(OpaqueString, "\u2126", "\u03a9");              // OHM SIGN -> OMEGA
}

TEST(OpaqueStringTest, FreeformClassAllowsSymbolsPunctuationCompat) {
  EXPECT_PREP(OpaqueString, "\u265a", "\u265a");              // BLACK CHESS KING
  EXPECT_PREP(OpaqueString, "\u2163", "\u2163");              // ROMAN NUMERAL FOUR
  EXPECT_PREP(OpaqueString, "\u00bd\u00b2", "\u00bd\u00b2");  // ½²
  EXPECT_PREP(OpaqueString, "\u201chi\u201d", "\u201chi\u201d");
  EXPECT_PREP(OpaqueString, "\U0001F600", "\U0001F600");  // emoji
}

TEST(OpaqueStringTest, RejectsControls) {
  EXPECT_REJECT(OpaqueString, "a\nb");
  EXPECT_REJECT(OpaqueString, "a\rb");
  EXPECT_REJECT(OpaqueString, std::string("a\0b", 3));
  EXPECT_REJECT(OpaqueString, "a\x7f");
  EXPECT_REJECT(OpaqueString, "a\u0085");  // NEL
}

TEST(OpaqueStringTest, RejectsIgnorablesAndOtherDisallowed) {
  EXPECT_REJECT(OpaqueString, "a\u00adb");    // SOFT HYPHEN (default ignorable)
  EXPECT_REJECT(OpaqueString, "a\u200bb");    // ZERO WIDTH SPACE
  EXPECT_REJECT(OpaqueString, "a\ufeffb");    // BOM
  EXPECT_REJECT(OpaqueString, "\ufdd0");      // noncharacter
  EXPECT_REJECT(OpaqueString, "\U0010FFFF");  // noncharacter
  EXPECT_REJECT(OpaqueString, "\ue000");      // private use
  EXPECT_REJECT(OpaqueString, "a\u2028b");    // LINE SEPARATOR
  EXPECT_REJECT(OpaqueString, "a\u2029b");    // PARAGRAPH SEPARATOR
  EXPECT_REJECT(OpaqueString, "\u1100");      // conjoining jamo on its own
  EXPECT_REJECT(OpaqueString, "a\u0640b");    // ARABIC TATWEEL (exception, disallowed)
  EXPECT_REJECT(OpaqueString, "\U000E0001");  // LANGUAGE TAG (format)
}

TEST(OpaqueStringTest, RejectsUnassigned) {
  EXPECT_REJECT(OpaqueString, "\u0378");      // unassigned in the Greek block
  EXPECT_REJECT(OpaqueString, "\U000E0080");  // unassigned
}

TEST(OpaqueStringTest, RejectsEmpty) { EXPECT_REJECT(OpaqueString, ""); }

TEST(OpaqueStringTest, RejectsInvalidUtf8) {
  EXPECT_REJECT(OpaqueString, "\xff");
  EXPECT_REJECT(OpaqueString, "abc\xc3");           // truncated
  EXPECT_REJECT(OpaqueString, "\xc0\xaf");          // overlong '/'
  EXPECT_REJECT(OpaqueString, "\xe0\x80\xaf");      // overlong
  EXPECT_REJECT(OpaqueString, "\xed\xa0\x80");      // UTF-16 surrogate
  EXPECT_REJECT(OpaqueString, "\xf4\x90\x80\x80");  // above U+10FFFF
  EXPECT_REJECT(OpaqueString, "\x80");              // lone continuation
}

TEST(OpaqueStringTest, ErrorMessageDoesNotEchoInput) {
  auto prepared = OpaqueString("hunter2\t");
  ASSERT_FALSE(prepared.ok());
  EXPECT_EQ(prepared.error().message.find("hunter2"), std::string::npos);
}

TEST(OpaqueStringTest, Idempotent) {
  for (const char* s : {"e\u0301 \u00a0x", "\u212b\u2126", "a\u3000\u0308"}) {
    auto once = OpaqueString(s);
    ASSERT_TRUE(once.ok()) << s;
    auto twice = OpaqueString(*once);
    ASSERT_TRUE(twice.ok()) << s;
    EXPECT_EQ(*once, *twice);
  }
}

// ---------------------------------------------------------------------------
// UsernameCaseMapped (RFC 8265 §3.3)

TEST(UsernameCaseMappedTest, LowercasesAscii) {
  EXPECT_PREP(UsernameCaseMapped, "Juliet", "juliet");
  EXPECT_PREP(UsernameCaseMapped, "ROMEO", "romeo");
  EXPECT_PREP(UsernameCaseMapped, "foo\\20bar", "foo\\20bar");  // backslash is ASCII7
  EXPECT_PREP(UsernameCaseMapped, "a.b-c_d+e", "a.b-c_d+e");
}

TEST(UsernameCaseMappedTest, Rfc8265Section3_5Examples) {
  EXPECT_PREP(UsernameCaseMapped, "juliet@example.com", "juliet@example.com");  // ASCII7 '@' allowed here
  EXPECT_PREP(UsernameCaseMapped, "fussball", "fussball");
  EXPECT_PREP(UsernameCaseMapped, "fu\u00dfball", "fu\u00dfball");  // ß is not case folded to ss
  EXPECT_PREP(UsernameCaseMapped, "\u03c0", "\u03c0");              // π
  EXPECT_PREP(UsernameCaseMapped, "\u03a3", "\u03c3");              // Σ -> σ
  EXPECT_PREP(UsernameCaseMapped, "\u03c3", "\u03c3");              // σ
  EXPECT_PREP(UsernameCaseMapped, "\u03c2", "\u03c2");              // ς stays final sigma
  EXPECT_REJECT(UsernameCaseMapped, "foo bar");                     // space
  EXPECT_REJECT(UsernameCaseMapped, "");                            // empty
  EXPECT_REJECT(UsernameCaseMapped, "henry\u2163");                 // ROMAN NUMERAL FOUR
  EXPECT_REJECT(UsernameCaseMapped, "\u265a");                      // BLACK CHESS KING
}

TEST(UsernameCaseMappedTest, CaseMappingIsContextFree) {
  // Final_Sigma is not applied: every Σ maps to σ.
  EXPECT_PREP(UsernameCaseMapped, "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c3");
  // Unconditional multi-code-point mapping: İ -> i + COMBINING DOT ABOVE.
  EXPECT_PREP(UsernameCaseMapped, "\u0130", "i\u0307");
  EXPECT_PREP(UsernameCaseMapped, "\u00c9COLE", "\u00e9cole");
  EXPECT_PREP(UsernameCaseMapped, "\u0414\u0416", "\u0434\u0436");  // Cyrillic
  EXPECT_PREP(UsernameCaseMapped, "\u1e9e", "\u00df");              // CAPITAL SHARP S
  EXPECT_PREP(UsernameCaseMapped, "\u212a", "k");                   // KELVIN SIGN
}

TEST(UsernameCaseMappedTest, WidthMapping) {
  EXPECT_PREP(UsernameCaseMapped, "\uff2a\uff55\uff4c\uff49\uff45\uff54", "juliet");  // fullwidth, mixed case
  EXPECT_PREP(UsernameCaseMapped, "\uff10\uff19", "09");                              // fullwidth digits
  EXPECT_PREP(UsernameCaseMapped, "\uff76\uff9e", "\u30ac");  // halfwidth KA + voiced mark -> GA (NFC)
  // Width mapping exposes ASCII7 punctuation, which IdentifierClass allows.
  EXPECT_PREP(UsernameCaseMapped, "a\uff0eb", "a.b");
}

TEST(UsernameCaseMappedTest, NormalisesToNfc) {
  EXPECT_PREP(UsernameCaseMapped, "e\u0301", "\u00e9");
  EXPECT_PREP(UsernameCaseMapped, "E\u0301", "\u00e9");
  EXPECT_PREP(UsernameCaseMapped, "\u212b", "\u00e5");        // ANGSTROM SIGN -> å
  EXPECT_PREP(UsernameCaseMapped, "\u1100\u1161", "\uac00");  // jamo compose into a syllable
}

TEST(UsernameCaseMappedTest, RejectsSpacesAndControls) {
  EXPECT_REJECT(UsernameCaseMapped, " ");
  EXPECT_REJECT(UsernameCaseMapped, "a\u00a0b");
  EXPECT_REJECT(UsernameCaseMapped, "a\u3000b");
  EXPECT_REJECT(UsernameCaseMapped, "a\tb");
  EXPECT_REJECT(UsernameCaseMapped, "a\nb");
  EXPECT_REJECT(UsernameCaseMapped, std::string("a\0b", 3));
  EXPECT_REJECT(UsernameCaseMapped, "a\x7f");
}

TEST(UsernameCaseMappedTest, RejectsIdentifierDisallowedCategories) {
  EXPECT_REJECT(UsernameCaseMapped, "a\u2665");     // symbol
  EXPECT_REJECT(UsernameCaseMapped, "\U0001F600");  // emoji
  EXPECT_REJECT(UsernameCaseMapped, "a\u00a7");     // SECTION SIGN (punctuation)
  EXPECT_REJECT(UsernameCaseMapped, "a\u2014b");    // EM DASH
  EXPECT_REJECT(UsernameCaseMapped, "\u00bd");      // VULGAR FRACTION (compat)
  EXPECT_REJECT(UsernameCaseMapped, "x\u00b2");     // SUPERSCRIPT TWO (compat)
  EXPECT_REJECT(UsernameCaseMapped, "\ufb01");      // ﬁ ligature (compat)
  EXPECT_REJECT(UsernameCaseMapped, "\u01c5");      // titlecase Dž (lowercases to dž, compat)
  EXPECT_REJECT(UsernameCaseMapped, "\u2460");      // CIRCLED DIGIT ONE
  EXPECT_REJECT(UsernameCaseMapped, "a\u00adb");    // soft hyphen
  EXPECT_REJECT(UsernameCaseMapped, "a\u200bb");    // zero width space
  EXPECT_REJECT(UsernameCaseMapped, "\ue000");      // private use
  EXPECT_REJECT(UsernameCaseMapped, "\u0378");      // unassigned
  EXPECT_REJECT(UsernameCaseMapped, "\u3031");      // exception: disallowed
}

TEST(UsernameCaseMappedTest, ExceptionsPValid) {
  EXPECT_PREP(UsernameCaseMapped, "\u3007", "\u3007");  // IDEOGRAPHIC NUMBER ZERO
  EXPECT_PREP(UsernameCaseMapped, "\u0f0b", "\u0f0b");  // TIBETAN MARK INTERSYLLABIC TSHEG
}

TEST(UsernameCaseMappedTest, ContextualRules) {
  // MIDDLE DOT only between two 'l'.
  EXPECT_PREP(UsernameCaseMapped, "col\u00b7la", "col\u00b7la");
  EXPECT_PREP(UsernameCaseMapped, "COL\u00b7LA", "col\u00b7la");  // context checked after mapping
  EXPECT_REJECT(UsernameCaseMapped, "co\u00b7lla");
  EXPECT_REJECT(UsernameCaseMapped, "\u00b7");
  // GREEK KERAIA must be followed by Greek.
  EXPECT_PREP(UsernameCaseMapped, "\u0375\u03b1", "\u0375\u03b1");
  EXPECT_REJECT(UsernameCaseMapped, "\u0375a");
  // KATAKANA MIDDLE DOT needs a Hiragana, Katakana or Han character.
  EXPECT_PREP(UsernameCaseMapped, "\u30a2\u30fb\u30a4", "\u30a2\u30fb\u30a4");
  EXPECT_REJECT(UsernameCaseMapped, "a\u30fbb");
  // ZWJ / ZWNJ after a virama (Devanagari KA + VIRAMA).
  EXPECT_PREP(UsernameCaseMapped, "\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937");
  EXPECT_PREP(UsernameCaseMapped, "\u0915\u094d\u200c\u0937", "\u0915\u094d\u200c\u0937");
  EXPECT_REJECT(UsernameCaseMapped, "a\u200db");
  EXPECT_REJECT(UsernameCaseMapped, "a\u200cb");
}

TEST(UsernameCaseMappedTest, ArabicRules) {
  // ZWNJ between dual-joining Arabic letters (BEH ZWNJ BEH).
  EXPECT_PREP(UsernameCaseMapped, "\u0628\u200c\u0628", "\u0628\u200c\u0628");
  // Arabic-Indic and Extended Arabic-Indic digits cannot mix.
  EXPECT_PREP(UsernameCaseMapped, "\u0628\u0661\u0662", "\u0628\u0661\u0662");
  EXPECT_PREP(UsernameCaseMapped, "\u0628\u06f1\u06f2", "\u0628\u06f1\u06f2");
  EXPECT_REJECT(UsernameCaseMapped, "\u0628\u0661\u06f2");
}

TEST(UsernameCaseMappedTest, BidiRule) {
  EXPECT_PREP(UsernameCaseMapped, "\u05e9\u05dc\u05d5\u05dd", "\u05e9\u05dc\u05d5\u05dd");  // Hebrew
  EXPECT_PREP(UsernameCaseMapped,
              "\u05d0"
              "1",
              "\u05d0"
              "1");                              // RTL may end in EN
  EXPECT_REJECT(UsernameCaseMapped, "1\u05d0");  // rule 1: starts with EN
  EXPECT_REJECT(UsernameCaseMapped, "a\u05d0");  // rule 5: R in an LTR string
  EXPECT_REJECT(UsernameCaseMapped, "\u05d0a");  // rule 2: L in an RTL string
  EXPECT_REJECT(UsernameCaseMapped, "\u05d0-");  // rule 3: ends with ES
  EXPECT_REJECT(UsernameCaseMapped,
                "\u0628"
                "1\u0661");                           // rule 4: EN and AN mixed
  EXPECT_PREP(UsernameCaseMapped, "abc-1", "abc-1");  // no RTL: rule not applied
}

TEST(UsernameCaseMappedTest, RejectsInvalidUtf8) {
  EXPECT_REJECT(UsernameCaseMapped, "juliet\xff");
  EXPECT_REJECT(UsernameCaseMapped, "\xc3");
  EXPECT_REJECT(UsernameCaseMapped, "\xc1\x81");      // overlong 'A'
  EXPECT_REJECT(UsernameCaseMapped, "\xed\xbf\xbf");  // surrogate
}

TEST(UsernameCaseMappedTest, Idempotent) {
  for (const char* s : {"Juliet", "\uff2a\uff55", "E\u0301", "\u0130", "\u03a3\u03a3", "\uff76\uff9e"}) {
    auto once = UsernameCaseMapped(s);
    ASSERT_TRUE(once.ok()) << s;
    auto twice = UsernameCaseMapped(*once);
    ASSERT_TRUE(twice.ok()) << s;
    EXPECT_EQ(*once, *twice) << s;
  }
}

// Every code point on its own either maps to a stable form or is rejected as
// invalid; the fixed-point loop never gives up on real data.
TEST(UsernameCaseMappedTest, EveryCodePointSettles) {
  for (char32_t c = 0x20; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    if (c == 0x40000) c = 0xE0000;  // planes 4-13 hold nothing (Unicode 15)
    std::string utf8;
    if (c < 0x80) {
      utf8 += static_cast<char>(c);
    } else if (c < 0x800) {
      utf8 += static_cast<char>(0xC0 | (c >> 6));
      utf8 += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      utf8 += static_cast<char>(0xE0 | (c >> 12));
      utf8 += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      utf8 += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      utf8 += static_cast<char>(0xF0 | (c >> 18));
      utf8 += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      utf8 += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      utf8 += static_cast<char>(0x80 | (c & 0x3F));
    }
    for (auto profile : {&UsernameCaseMapped, &OpaqueString}) {
      auto once = profile(utf8);
      if (!once.ok()) {
        ASSERT_EQ(once.error().code, Errc::kInvalidArgument) << std::hex << static_cast<uint32_t>(c);
        ASSERT_EQ(once.error().message.find("stable"), std::string::npos)
            << std::hex << static_cast<uint32_t>(c);
        continue;
      }
      auto twice = profile(*once);
      ASSERT_TRUE(twice.ok()) << std::hex << static_cast<uint32_t>(c);
      ASSERT_EQ(*once, *twice) << std::hex << static_cast<uint32_t>(c);
    }
  }
}

}  // namespace
}  // namespace nines::xmpp::precis
