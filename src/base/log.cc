#include "base/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>

namespace nines {

void InitLogging() {
  auto logger = spdlog::stderr_logger_mt("nines");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
}

void SetLogLevel(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

bool AllowPeerWarning() {
  constexpr int64_t kPerSecond = 20;
  static std::atomic<int64_t> window{0};
  static std::atomic<int64_t> count{0};
  static std::atomic<int64_t> suppressed{0};
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  int64_t w = window.load(std::memory_order_relaxed);
  if (w != now && window.compare_exchange_strong(w, now)) {
    int64_t dropped = suppressed.exchange(0);
    count.store(0);
    if (dropped > 0) spdlog::warn("{} peer-caused warnings suppressed in the last second", dropped);
  }
  if (count.fetch_add(1, std::memory_order_relaxed) < kPerSecond) return true;
  suppressed.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace nines
