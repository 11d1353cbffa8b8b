#include "xmpp/base64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nines::xmpp {
namespace {

TEST(Base64Test, RoundTrips) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
}

TEST(HexTest, RoundTripsAndRejectsJunk) {
  const std::string bytes("\x00\x01\x7f\x80\xff ok", 8);
  EXPECT_EQ(HexEncode(bytes), "00017f80ff206f6b");
  EXPECT_EQ(HexDecode("00017F80ff206f6b"), bytes);
  EXPECT_FALSE(HexDecode("abc").has_value());
  EXPECT_FALSE(HexDecode("zz").has_value());
  EXPECT_EQ(HexDecode(""), std::string());
}

TEST(Base64Test, RejectsNonCanonical) {
  EXPECT_FALSE(Base64Decode("YQ").has_value());       // missing padding
  EXPECT_FALSE(Base64Decode("Y Q==").has_value());    // whitespace
  EXPECT_FALSE(Base64Decode("=YQ=").has_value());     // padding first
  EXPECT_FALSE(Base64Decode("YQ=a").has_value());     // data after padding
  EXPECT_FALSE(Base64Decode("YQ!=").has_value());     // bad character
  EXPECT_EQ(*Base64Decode("YWJj"), "abc");
}

}  // namespace
}  // namespace nines::xmpp
