#include "base/memory.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(NINES_HAVE_JEMALLOC)
#include <jemalloc/jemalloc.h>
#endif

namespace nines {

bool TrimPolicy::Note(size_t released, double now_seconds) {
  pending_ += released;
  if (pending_ == 0) return false;
  // A burst (thousands of idle sessions dropping their parsers at once) is
  // what trims exist for: earlier trims that found nothing to return must not
  // hold it back for minutes.
  const double wait = pending_ >= options_.burst  ? options_.min_interval_seconds
                      : pending_ >= options_.many ? interval_
                                                  : options_.few_factor * interval_;
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

const char* ProcessAllocator() {
#if defined(NINES_HAVE_JEMALLOC)
  // jemalloc counts what each thread allocates; a calloc it does not see was
  // served by someone else.
  auto allocated = [] {
    uint64_t n = 0;
    size_t len = sizeof(n);
    return mallctl("thread.allocated", &n, &len, nullptr, 0) == 0 ? n : 0;
  };
  const uint64_t before = allocated();
  void* volatile probe = std::calloc(1, 4096);  // volatile: the pair is not optimised away
  const bool ours = allocated() >= before + 4096;
  std::free(probe);
  return ours ? "jemalloc" : "system malloc";
#else
  return "system malloc";
#endif
}

namespace {

// Gives the allocator's free pages back to the system; false where this
// build has no way to.
bool ReturnFreePages() {
#if defined(NINES_HAVE_JEMALLOC)
  // This thread's cache back to the arenas, then every arena's dirty pages
  // back to the system (jemalloc would otherwise wait for its decay timer,
  // which runs only when the arena is used again).
  mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  static const std::string purge = "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0);
  return true;
#elif defined(__GLIBC__)
  malloc_trim(0);
  return true;
#else
  return false;
#endif
}

}  // namespace

bool NoteMemoryReleased(size_t released) {
  {
    std::lock_guard lock(g_mutex);
    if (!g_policy.Note(released, NowSeconds())) return false;
  }
  const double start = NowSeconds();
  const size_t before = ResidentBytes();
  if (!ReturnFreePages()) return false;
  const size_t after = ResidentBytes();
  const size_t returned = before > after ? before - after : 0;
  double next = 0;
  {
    std::lock_guard lock(g_mutex);
    g_policy.Trimmed(returned);
    next = g_policy.interval_seconds();
  }
  spdlog::debug(
      "the heap trim returned {} KiB to the system in {:.1f} ms; next trim in {:.0f} s at the earliest",
      returned / 1024, (NowSeconds() - start) * 1e3, next);
  return true;
}

}  // namespace nines
