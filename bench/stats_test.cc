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

}  // namespace
}  // namespace nines::bench
