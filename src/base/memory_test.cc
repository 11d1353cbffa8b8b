#include "base/memory.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace nines {
namespace {

// One test: the counters are process-wide.
TEST(MemoryTest, TrimsAfterManyReleasesThenWaitsForTheInterval) {
  EXPECT_FALSE(NoteMemoryReleased(0, 0.05)) << "nothing released, nothing to trim";
#if defined(__GLIBC__)
  EXPECT_TRUE(NoteMemoryReleased(300, 0.05)) << "first batch: trims at once";
  EXPECT_FALSE(NoteMemoryReleased(300, 0.05)) << "within the interval";
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_TRUE(NoteMemoryReleased(0, 0.05)) << "the pending batch is trimmed on a later tick";
  EXPECT_FALSE(NoteMemoryReleased(0, 0.05)) << "and then nothing is pending";
  EXPECT_FALSE(NoteMemoryReleased(3, 0.05));
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_FALSE(NoteMemoryReleased(0, 0.05)) << "a few objects wait six intervals";
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_TRUE(NoteMemoryReleased(0, 0.05));
#endif
}

}  // namespace
}  // namespace nines
