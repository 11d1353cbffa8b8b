#include "base/memory.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace nines {

bool TrimPolicy::Note(size_t released, double now_seconds) {
  pending_ += released;
  if (pending_ == 0) return false;
  const double wait = pending_ >= options_.many ? interval_ : options_.few_factor * interval_;
  if (trimmed_once_ && now_seconds - last_ < wait) return false;
  trimmed_once_ = true;
  last_ = now_seconds;
  pending_ = 0;
  return true;
}

void TrimPolicy::Trimmed(size_t bytes_returned) {
  if (bytes_returned >= options_.productive_bytes) {
    interval_ = options_.min_interval_seconds;
  } else {
    interval_ = std::min(interval_ * 2, options_.max_interval_seconds);
  }
}

namespace {

std::mutex g_mutex;
TrimPolicy g_policy;  // guarded by g_mutex

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Resident bytes of this process, from /proc/self/statm (0 if unreadable).
size_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

bool NoteMemoryReleased(size_t released) {
  {
    std::lock_guard lock(g_mutex);
    if (!g_policy.Note(released, NowSeconds())) return false;
  }
#if defined(__GLIBC__)
  const double start = NowSeconds();
  const size_t before = ResidentBytes();
  malloc_trim(0);
  const size_t after = ResidentBytes();
  const size_t returned = before > after ? before - after : 0;
  double next = 0;
  {
    std::lock_guard lock(g_mutex);
    g_policy.Trimmed(returned);
    next = g_policy.interval_seconds();
  }
  spdlog::debug(
      "malloc_trim returned {} KiB to the system in {:.1f} ms; next trim in {:.0f} s at the earliest",
      returned / 1024, (NowSeconds() - start) * 1e3, next);
  return true;
#else
  return false;
#endif
}

}  // namespace nines
