#include "bench/histogram.h"

#include <charconv>
#include <cmath>

namespace nines::bench {
namespace {

constexpr size_t kBuckets = 256 + 32 * 128;  // BucketOf(kMaxValue) + 1

bool ParseU64(std::string_view text, uint64_t& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

uint64_t Histogram::BucketLow(size_t index) {
  if (index < 256) return index;
  const size_t j = index - 256;
  const unsigned shift = static_cast<unsigned>(j / 128 + 1);
  return (uint64_t{128} + j % 128) << shift;
}

uint64_t Histogram::BucketHigh(size_t index) {
  if (index < 256) return index;
  const size_t j = index - 256;
  const unsigned shift = static_cast<unsigned>(j / 128 + 1);
  return ((uint64_t{129} + j % 128) << shift) - 1;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.count_ != 0) {
    if (other.min_ < min_) min_ = other.min_;
    if (other.max_ > max_) max_ = other.max_;
  }
}

void Histogram::Clear() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  count_ = sum_ = max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (p > 100.0) p = 100.0;
  // The tolerance keeps 99.9% of 1000 at rank 999 although 0.999 * 1000
  // comes out a hair above 999 in binary floating point.
  const double exact = p / 100.0 * static_cast<double>(count_);
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - exact * 1e-12));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const uint64_t low = BucketLow(i);
      uint64_t value = low + (BucketHigh(i) - low) / 2;
      if (value < min_) value = min_;
      if (value > max_) value = max_;
      return value;
    }
  }
  return max_;
}

std::string Histogram::Serialize() const {
  std::string out = std::to_string(count_) + ' ' + std::to_string(sum_) + ' ' + std::to_string(min()) + ' ' +
                    std::to_string(max_);
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (buckets_[i] == 0) continue;
    out += ' ';
    out += std::to_string(i);
    out += ':';
    out += std::to_string(buckets_[i]);
  }
  return out;
}

bool Histogram::MergeSerialized(std::string_view text) {
  uint64_t header[4];
  size_t pos = 0;
  for (int field = 0; field < 4; ++field) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    if (!ParseU64(text.substr(pos, end - pos), header[field])) return false;
    pos = end + 1;
  }
  uint64_t bucket_total = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(pos, end - pos);
    size_t colon = item.find(':');
    uint64_t index = 0, n = 0;
    if (colon == std::string_view::npos || !ParseU64(item.substr(0, colon), index) ||
        !ParseU64(item.substr(colon + 1), n) || index >= buckets_.size()) {
      return false;
    }
    buckets_[index] += n;
    bucket_total += n;
    pos = end + 1;
  }
  if (bucket_total != header[0]) return false;
  count_ += header[0];
  sum_ += header[1];
  if (header[0] != 0) {
    if (header[2] < min_) min_ = header[2];
    if (header[3] > max_) max_ = header[3];
  }
  return true;
}

}  // namespace nines::bench
