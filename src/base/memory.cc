#include "base/memory.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace nines {
namespace {

// Freed objects (parsers, buffers of ~1-10 KiB) worth a trim: a few MiB.
constexpr size_t kReleasedBeforeTrim = 256;
// Fewer than that are trimmed after this many minimum intervals.
constexpr double kSlowTrimFactor = 6;

std::atomic<size_t> g_released{0};
std::atomic<int64_t> g_last_trim_ns{0};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool NoteMemoryReleased(size_t released, double min_interval_seconds) {
  size_t total = released == 0 ? g_released.load(std::memory_order_relaxed)
                               : g_released.fetch_add(released, std::memory_order_relaxed) + released;
  if (total == 0) return false;
  int64_t now = NowNs();
  int64_t last = g_last_trim_ns.load(std::memory_order_relaxed);
  const int64_t since = last == 0 ? INT64_MAX : now - last;
  // Many objects: trim soon. A few: trim eventually, so the tail of a burst
  // does not stay resident forever.
  const double wait =
      total >= kReleasedBeforeTrim ? min_interval_seconds : kSlowTrimFactor * min_interval_seconds;
  if (since < static_cast<int64_t>(wait * 1e9)) return false;
  // One thread wins the right to trim; the others go on.
  if (!g_last_trim_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) return false;
  g_released.store(0, std::memory_order_relaxed);
#if defined(__GLIBC__)
  malloc_trim(0);
  if (spdlog::should_log(spdlog::level::debug)) {
    struct mallinfo2 mi = mallinfo2();
    spdlog::debug(
        "returned freed heap pages to the system ({} objects freed, trim took {} us); heap in use {} KiB, "
        "free {} KiB, mmapped {} KiB",
        total, (NowNs() - now) / 1000, mi.uordblks / 1024, mi.fordblks / 1024, mi.hblkhd / 1024);
  }
  return true;
#else
  return false;
#endif
}

}  // namespace nines
