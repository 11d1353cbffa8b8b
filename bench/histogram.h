// Histogram: a log-linear histogram of non-negative integers (latencies in
// nanoseconds), in the spirit of HdrHistogram.
//
// Values below 256 are counted exactly; above, each power of two is split
// into 128 buckets, so any recorded value is reported within 0.8% of itself.
// Values above kMaxValue (about 18 minutes in ns) are clamped to it. Record()
// is a few instructions and never allocates (the bucket array is allocated
// once, 35 KiB), so it is safe on the per-message path.
//
// Histograms from several threads or processes are combined with Merge(), or
// through Serialize()/Parse() (a sparse text form for the result pipe).
//
// Thread safety: a plain value; one writer at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nines::bench {

class Histogram {
 public:
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 40) - 1;

  Histogram();

  void Record(uint64_t value) {
    if (value > kMaxValue) value = kMaxValue;
    ++buckets_[BucketOf(value)];
    ++count_;
    sum_ += value;
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
  }
  void Merge(const Histogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }

  // The value at percentile `p` (0 < p <= 100): the smallest recorded value
  // v such that at least p% of all values are <= v, reported as the middle
  // of its bucket (clamped to [min, max]). 0 if the histogram is empty.
  uint64_t Percentile(double p) const;

  // "count sum min max idx:n idx:n ..." (only non-empty buckets).
  std::string Serialize() const;
  // Adds the counts from Serialize() output into this histogram; false if
  // the text is malformed (the histogram may then hold part of it).
  bool MergeSerialized(std::string_view text);

  // Bucket arithmetic, exposed for tests.
  static size_t BucketOf(uint64_t value) {
    if (value < 256) return static_cast<size_t>(value);
    const int msb = 63 - __builtin_clzll(value);
    const int shift = msb - 7;  // value >> shift lies in [128, 256)
    return 256 + static_cast<size_t>(shift - 1) * 128 + static_cast<size_t>((value >> shift) - 128);
  }
  static uint64_t BucketLow(size_t index);
  static uint64_t BucketHigh(size_t index);

 private:
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace nines::bench
