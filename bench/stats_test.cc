#include "bench/stats.h"

#include <gtest/gtest.h>

#include <vector>

namespace nines::bench {
namespace {

constexpr std::string_view kStatus =
    "Name:\tnines\n"
    "VmRSS:\t   21536 kB\n"
    "RssAnon:\t    8832 kB\n"
    "RssFile:\t   12704 kB\n";

TEST(StatusFieldKib, ReadsTheNamedFieldOnly) {
  EXPECT_EQ(StatusFieldKib(kStatus, "VmRSS:"), 21536u);
  EXPECT_EQ(StatusFieldKib(kStatus, "RssAnon:"), 8832u);
  EXPECT_EQ(StatusFieldKib(kStatus, "RssFile:"), 12704u);
  EXPECT_EQ(StatusFieldKib(kStatus, "RssShmem:"), 0u) << "absent";
  EXPECT_EQ(StatusFieldKib("", "VmRSS:"), 0u);
}

TEST(StatusFieldKib, ThisProcessHasAnonymousMemory) {
  std::vector<char> touched(8 << 20, 1);  // 8 MiB, written, so resident
  const uint64_t anon = ReadAnonRssKib(0);
  EXPECT_GE(anon, 8u * 1024) << "RssAnon must count the 8 MiB just written";
  EXPECT_LE(anon, ReadRssKib(0));
  EXPECT_EQ(touched[12345], 1);
}

TEST(StatCpuTicks, AddsUserAndSystemTimeAfterTheName) {
  // A name with a space and a parenthesis, as /proc allows.
  EXPECT_EQ(StatCpuTicks("4242 (a b) c)) S 1 4242 4242 0 -1 4194560 2263 0 0 0 1234 56 0 0 20 0 3 0"), 1290);
  EXPECT_EQ(StatCpuTicks("1 (x) S 0 1 1 0 -1 0 0 0 0 0 7 0 0 0 20"), 7);
  EXPECT_LT(StatCpuTicks(""), 0);
  EXPECT_LT(StatCpuTicks("1 (x) S 0 1"), 0) << "truncated";
  EXPECT_LT(StatCpuTicks("1 (x) S 0 1 1 0 -1 0 0 0 0 0 u 0 0"), 0) << "not a number";
}

TEST(StatCpuTicks, ThisProcessUsesCpu) {
  const double before = ReadCpuSeconds(0);
  ASSERT_GE(before, 0);
  volatile uint64_t x = 0;
  while (ReadCpuSeconds(0) < before + 0.05) x = x + 1;  // at least 5 ticks of work
  EXPECT_GE(ReadCpuSeconds(0), before + 0.05);
  EXPECT_LT(ReadCpuSeconds(-5), 0) << "no such process";
}

}  // namespace
}  // namespace nines::bench
