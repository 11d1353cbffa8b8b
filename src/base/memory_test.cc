#include "base/memory.h"

#include <gtest/gtest.h>

namespace nines {
namespace {

TrimPolicy::Options Opts() {
  TrimPolicy::Options o;
  o.min_interval_seconds = 5;
  o.max_interval_seconds = 40;
  o.many = 256;
  o.few_factor = 6;
  o.productive_bytes = 1000;
  o.burst = 1024;
  return o;
}

TEST(TrimPolicyTest, NothingPendingNeverTrims) {
  TrimPolicy p(Opts());
  EXPECT_FALSE(p.Note(0, 0));
  EXPECT_FALSE(p.Note(0, 1000));
}

TEST(TrimPolicyTest, ManyReleasesTrimAtOnceThenWaitForTheInterval) {
  TrimPolicy p(Opts());
  EXPECT_TRUE(p.Note(300, 100)) << "the first batch trims at once";
  p.Trimmed(1 << 20);
  EXPECT_FALSE(p.Note(300, 102)) << "within the interval";
  EXPECT_TRUE(p.Note(0, 105.5)) << "the pending batch is trimmed on a later tick";
  p.Trimmed(1 << 20);
  EXPECT_FALSE(p.Note(0, 200)) << "and then nothing is pending";
}

TEST(TrimPolicyTest, AFewReleasesWaitSixIntervals) {
  TrimPolicy p(Opts());
  EXPECT_TRUE(p.Note(300, 0));
  p.Trimmed(1 << 20);
  EXPECT_FALSE(p.Note(3, 10));
  EXPECT_FALSE(p.Note(0, 29));
  EXPECT_TRUE(p.Note(0, 30.5));
}

TEST(TrimPolicyTest, UnproductiveTrimsBackOffAndAProductiveOneResets) {
  TrimPolicy p(Opts());
  EXPECT_TRUE(p.Note(300, 0));
  p.Trimmed(10);  // gave back almost nothing
  EXPECT_DOUBLE_EQ(p.interval_seconds(), 10);
  EXPECT_FALSE(p.Note(300, 9));
  EXPECT_TRUE(p.Note(0, 10.5));
  p.Trimmed(0);
  EXPECT_DOUBLE_EQ(p.interval_seconds(), 20);
  p.Trimmed(0);
  p.Trimmed(0);
  EXPECT_DOUBLE_EQ(p.interval_seconds(), 40) << "capped at the ceiling";
  p.Trimmed(5000);
  EXPECT_DOUBLE_EQ(p.interval_seconds(), 5);
}

TEST(TrimPolicyTest, ABurstWaitsOnlyTheShortestIntervalWhenBackedOff) {
  TrimPolicy p(Opts());
  EXPECT_TRUE(p.Note(300, 0));
  p.Trimmed(0);  // after the logins: nothing to give back yet
  p.Trimmed(0);
  EXPECT_DOUBLE_EQ(p.interval_seconds(), 20);
  EXPECT_FALSE(p.Note(1500, 4)) << "still within the shortest interval";
  EXPECT_TRUE(p.Note(0, 5.5)) << "the idle sessions' parsers, not 20 s later";
  p.Trimmed(0);
  EXPECT_FALSE(p.Note(300, 11)) << "a smaller batch waits for the backed-off interval";
  EXPECT_TRUE(p.Note(0, 46));
}

TEST(TrimPolicyTest, ProcessWideEntryPointDoesNothingWithNothingReleased) {
  EXPECT_FALSE(NoteMemoryReleased(0));
}

// Release builds must really run on jemalloc: linked after libc, or dropped
// by --as-needed, it would be loaded and unused, and the figures in
// docs/benchmarks.md would not describe the binary.
TEST(ProcessAllocatorTest, IsJemallocWhereLinked) {
#if defined(NINES_HAVE_JEMALLOC)
  EXPECT_STREQ(ProcessAllocator(), "jemalloc");
#else
  EXPECT_STREQ(ProcessAllocator(), "system malloc");
#endif
}

}  // namespace
}  // namespace nines
