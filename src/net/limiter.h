// Shared admission counters: connections per IP and failed logins per key.
//
// These are consulted on connect and on authentication failure, not per
// stanza, so a mutex is fine here (it is never held across I/O).
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace nines::net {

// Counts open connections per remote address and in total.
class ConnectionCounter {
 public:
  // Returns false (and counts nothing) if either cap would be exceeded.
  // A cap of 0 means unlimited.
  bool TryAcquire(const std::string& address, int64_t per_address_cap, int64_t total_cap);
  void Release(const std::string& address);
  int64_t total() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, int64_t> per_address_;  // guarded by mutex_
  int64_t total_ = 0;                                      // guarded by mutex_
};

// Counts events per key in a sliding window (failed logins by IP or account,
// registrations by IP). Memory is bounded: keys with no events in the window
// are dropped as they are seen, and the whole table is swept when it grows.
class WindowCounter {
 public:
  // Records one event for `key` now.
  void Add(const std::string& key, std::chrono::seconds window);
  // Events for `key` within the last `window`.
  int64_t Count(const std::string& key, std::chrono::seconds window);

 private:
  using Clock = std::chrono::steady_clock;
  void Prune(std::deque<Clock::time_point>& events, Clock::time_point now, std::chrono::seconds window);
  void SweepLocked(Clock::time_point now, std::chrono::seconds window);

  std::mutex mutex_;
  std::unordered_map<std::string, std::deque<Clock::time_point>> events_;  // guarded by mutex_
  static constexpr size_t kMaxEventsPerKey = 1024;
  static constexpr size_t kSweepAt = 100000;
};

// A token bucket; single-threaded (one per session).
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate_per_second, double burst) : rate_(rate_per_second), burst_(burst), tokens_(burst) {}
  void Configure(double rate_per_second, double burst);
  // Takes one token if available at `now_ms`.
  bool TryTake(int64_t now_ms);
  // Milliseconds until a token is available.
  int64_t MillisUntilToken(int64_t now_ms) const;

 private:
  void Refill(int64_t now_ms);
  double rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  int64_t last_ms_ = 0;
};

}  // namespace nines::net
