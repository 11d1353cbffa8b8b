#include "bench/histogram.h"

#include <gtest/gtest.h>

#include <random>

namespace nines::bench {
namespace {

TEST(Histogram, BucketsCoverEveryValueWithinOnePercent) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{257}, uint64_t{1000},
                     uint64_t{123456789}, Histogram::kMaxValue}) {
    const size_t b = Histogram::BucketOf(v);
    EXPECT_LE(Histogram::BucketLow(b), v) << v;
    EXPECT_GE(Histogram::BucketHigh(b), v) << v;
    EXPECT_LE(static_cast<double>(Histogram::BucketHigh(b) - Histogram::BucketLow(b)), 0.008 * v + 1) << v;
  }
  // Buckets are contiguous.
  for (size_t b = 0; b + 1 < Histogram::BucketOf(Histogram::kMaxValue); ++b) {
    ASSERT_EQ(Histogram::BucketHigh(b) + 1, Histogram::BucketLow(b + 1)) << b;
  }
}

TEST(Histogram, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.Percentile(50), 0u);
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 50u);
  EXPECT_EQ(h.Percentile(90), 90u);
  EXPECT_EQ(h.Percentile(99), 99u);
  EXPECT_EQ(h.Percentile(99.9), 100u);
  EXPECT_EQ(h.Percentile(100), 100u);
  EXPECT_EQ(h.Percentile(0.001), 1u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, PercentilesOfUniformMillionWithinOnePercent) {
  Histogram h;
  std::mt19937_64 rng(42);
  std::vector<uint64_t> values;
  for (int i = 0; i < 1'000'000; ++i) {
    const uint64_t v = 1000 + rng() % 10'000'000;  // 1 us .. 10 ms in ns
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const uint64_t exact = values[static_cast<size_t>(std::ceil(p / 100 * values.size())) - 1];
    const double got = static_cast<double>(h.Percentile(p));
    EXPECT_NEAR(got, static_cast<double>(exact), 0.01 * static_cast<double>(exact)) << p;
  }
}

TEST(Histogram, OneOutlierShowsAtTheTop) {
  Histogram h;
  for (int i = 0; i < 999; ++i) h.Record(1'000'000);
  h.Record(500'000'000);
  EXPECT_NEAR(static_cast<double>(h.Percentile(99)), 1e6, 1e4);
  EXPECT_NEAR(static_cast<double>(h.Percentile(99.9)), 1e6, 1e4);
  EXPECT_NEAR(static_cast<double>(h.Percentile(100)), 5e8, 5e6);
  EXPECT_EQ(h.max(), 500'000'000u);
}

TEST(Histogram, ClampsHugeValues) {
  Histogram h;
  h.Record(UINT64_MAX);
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
}

TEST(Histogram, MergeAndSerializeAgree) {
  Histogram a, b;
  for (uint64_t v = 0; v < 5000; v += 7) a.Record(v * 1000);
  for (uint64_t v = 0; v < 300; ++v) b.Record(v);
  Histogram merged = a;
  merged.Merge(b);
  Histogram parsed;
  ASSERT_TRUE(parsed.MergeSerialized(a.Serialize()));
  ASSERT_TRUE(parsed.MergeSerialized(b.Serialize()));
  EXPECT_EQ(parsed.count(), merged.count());
  EXPECT_EQ(parsed.min(), merged.min());
  EXPECT_EQ(parsed.max(), merged.max());
  for (double p : {1.0, 50.0, 99.0, 100.0}) EXPECT_EQ(parsed.Percentile(p), merged.Percentile(p)) << p;
  Histogram bad;
  EXPECT_FALSE(bad.MergeSerialized("2 0 0 0 5:1"));  // counts disagree
  EXPECT_FALSE(bad.MergeSerialized("x"));
}

}  // namespace
}  // namespace nines::bench
