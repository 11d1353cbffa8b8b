#include "bench/sasl_client.h"

#include <gtest/gtest.h>

#include <vector>

namespace nines::bench {
namespace {

std::string Decode(std::string_view b64) {
  std::string out;
  EXPECT_TRUE(Base64Decode(b64, out));
  return out;
}

// RFC 5802 §5.
TEST(ScramClient, Rfc5802Sha1Vector) {
  ScramClient client(ScramHash::kSha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
  EXPECT_EQ(client.ClientFirst(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
  std::string final_message, error;
  ASSERT_TRUE(client.ClientFinal("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                                 final_message, error))
      << error;
  EXPECT_EQ(final_message, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
  EXPECT_TRUE(client.VerifyServerFinal("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", error)) << error;
}

// RFC 7677 §3.
TEST(ScramClient, Rfc7677Sha256Vector) {
  ScramClient client(ScramHash::kSha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(client.ClientFirst(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  std::string final_message, error;
  ASSERT_TRUE(client.ClientFinal(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", final_message,
      error))
      << error;
  EXPECT_EQ(final_message,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  EXPECT_TRUE(client.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", error)) << error;
}

TEST(ScramClient, RejectsWrongServerSignature) {
  ScramClient client(ScramHash::kSha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
  client.ClientFirst();
  std::string final_message, error;
  ASSERT_TRUE(client.ClientFinal("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                                 final_message, error));
  EXPECT_FALSE(client.VerifyServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", error));
  EXPECT_FALSE(client.VerifyServerFinal("e=invalid-proof", error));
  EXPECT_NE(error.find("invalid-proof"), std::string::npos);
}

TEST(ScramClient, RejectsNonceThatDoesNotExtendOurs) {
  ScramClient client(ScramHash::kSha256, "user", "pencil", "abc");
  client.ClientFirst();
  std::string out, error;
  EXPECT_FALSE(client.ClientFinal("r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096", out, error));
  EXPECT_FALSE(client.ClientFinal("r=abc,s=QSXCR+Q6sek8bf92,i=4096", out, error));  // no server part
  EXPECT_FALSE(client.ClientFinal("r=abcdef,s=QSXCR+Q6sek8bf92", out, error));
  EXPECT_FALSE(client.ClientFinal("r=abcdef,s=QSXCR+Q6sek8bf92,i=0", out, error));
  EXPECT_FALSE(client.ClientFinal("r=abcdef,s=!!!!,i=4096", out, error));
}

TEST(ScramClient, EscapesUsername) {
  ScramClient client(ScramHash::kSha1, "a,b=c", "p", "n");
  EXPECT_EQ(client.ClientFirst(), "n,,n=a=2Cb=3Dc,r=n");
}

TEST(ScramClient, RandomNonceByDefault) {
  ScramClient a(ScramHash::kSha1, "u", "p"), b(ScramHash::kSha1, "u", "p");
  EXPECT_NE(a.ClientFirst(), b.ClientFirst());
}

TEST(ScramKeyCache, DerivesOncePerPasswordSaltAndIterations) {
  const uint64_t before = ScramKeyDerivations();
  for (int i = 0; i < 100; ++i) DeriveScramKeys(ScramHash::kSha256, "cache-test", "salt-1", 4096);
  EXPECT_EQ(ScramKeyDerivations(), before + 1);
  DeriveScramKeys(ScramHash::kSha256, "cache-test", "salt-2", 4096);
  DeriveScramKeys(ScramHash::kSha1, "cache-test", "salt-1", 4096);
  DeriveScramKeys(ScramHash::kSha256, "cache-test", "salt-1", 4097);
  EXPECT_EQ(ScramKeyDerivations(), before + 4);
}

TEST(Plain, InitialResponse) {
  EXPECT_EQ(Decode(PlainInitialResponse("user3", "bench")), std::string("\0user3\0bench", 12));
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(Decode(Base64Encode(s)), s);
  }
  std::string out;
  EXPECT_FALSE(Base64Decode("abc", out));
  EXPECT_FALSE(Base64Decode("a!c=", out));
  EXPECT_EQ(Base64Encode("pencil"), "cGVuY2ls");
}

}  // namespace
}  // namespace nines::bench
