#include "net/limiter.h"

#include <algorithm>

namespace nines::net {

bool ConnectionCounter::TryAcquire(const std::string& address, int64_t per_address_cap, int64_t total_cap) {
  std::lock_guard lock(mutex_);
  if (total_cap > 0 && total_ >= total_cap) return false;
  int64_t& n = per_address_[address];
  if (per_address_cap > 0 && n >= per_address_cap) {
    if (n == 0) per_address_.erase(address);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void ConnectionCounter::Release(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto it = per_address_.find(address);
  if (it == per_address_.end()) return;
  if (--it->second <= 0) per_address_.erase(it);
  --total_;
}

int64_t ConnectionCounter::total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

void WindowCounter::Prune(std::deque<Clock::time_point>& events, Clock::time_point now,
                          std::chrono::seconds window) {
  while (!events.empty() && now - events.front() > window) events.pop_front();
}

void WindowCounter::SweepLocked(Clock::time_point now, std::chrono::seconds window) {
  for (auto it = events_.begin(); it != events_.end();) {
    Prune(it->second, now, window);
    it = it->second.empty() ? events_.erase(it) : std::next(it);
  }
}

void WindowCounter::Add(const std::string& key, std::chrono::seconds window) {
  std::lock_guard lock(mutex_);
  auto now = Clock::now();
  if (events_.size() >= kSweepAt) SweepLocked(now, window);
  auto& events = events_[key];
  Prune(events, now, window);
  if (events.size() >= kMaxEventsPerKey) events.pop_front();
  events.push_back(now);
}

int64_t WindowCounter::Count(const std::string& key, std::chrono::seconds window) {
  std::lock_guard lock(mutex_);
  auto it = events_.find(key);
  if (it == events_.end()) return 0;
  Prune(it->second, Clock::now(), window);
  int64_t n = static_cast<int64_t>(it->second.size());
  if (n == 0) events_.erase(it);
  return n;
}

void TokenBucket::Configure(double rate_per_second, double burst) {
  rate_ = rate_per_second;
  burst_ = burst;
  tokens_ = std::min(tokens_, burst_);
}

void TokenBucket::Refill(int64_t now_ms) {
  if (last_ms_ == 0) {
    last_ms_ = now_ms;
    tokens_ = burst_;
    return;
  }
  if (now_ms > last_ms_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ms - last_ms_) / 1000.0);
    last_ms_ = now_ms;
  }
}

bool TokenBucket::TryTake(int64_t now_ms) {
  Refill(now_ms);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return true;
  }
  return false;
}

int64_t TokenBucket::MillisUntilToken(int64_t now_ms) const {
  if (tokens_ >= 1.0 || rate_ <= 0) return 0;
  double need = 1.0 - tokens_;
  int64_t wait = static_cast<int64_t>(need * 1000.0 / rate_) + 1;
  return std::max<int64_t>(1, wait - std::max<int64_t>(0, now_ms - last_ms_));
}

}  // namespace nines::net
