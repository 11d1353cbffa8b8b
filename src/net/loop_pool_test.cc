#include "net/loop_pool.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace nines::net {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Runs the loop's context on this thread until `done` or a deadline.
template <class Done>
void RunUntil(Loop& loop, Done done, milliseconds limit = milliseconds(5000)) {
  const auto end = Clock::now() + limit;
  while (!done() && Clock::now() < end) {
    loop.context().restart();
    loop.context().run_for(milliseconds(5));
  }
}

TEST(LoopRunAfter, RunsEachCallbackOnceItIsDueInDueOrder) {
  Loop loop(0);
  std::vector<int> order;
  std::vector<Clock::duration> waited;
  const auto start = Clock::now();
  auto note = [&](int n) {
    return [&, n] {
      order.push_back(n);
      waited.push_back(Clock::now() - start);
    };
  };
  loop.RunAfter(milliseconds(60), note(3));
  loop.RunAfter(milliseconds(20), note(1));  // earlier than the armed timer: re-arms it
  loop.RunAfter(milliseconds(40), note(2));
  RunUntil(loop, [&] { return order.size() == 3; });
  ASSERT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(waited[0], milliseconds(20));
  EXPECT_GE(waited[1], milliseconds(40));
  EXPECT_GE(waited[2], milliseconds(60));
  EXPECT_LT(waited[0], milliseconds(60)) << "the first one did not wait for the last";
}

TEST(LoopRunAfter, ACallbackMayDeferAnother) {
  Loop loop(0);
  int runs = 0;
  loop.RunAfter(milliseconds(5), [&] {
    ++runs;
    loop.RunAfter(milliseconds(5), [&] { ++runs; });
  });
  RunUntil(loop, [&] { return runs == 2; });
  EXPECT_EQ(runs, 2);
  // Nothing is left queued: the context runs out of work.
  loop.context().restart();
  EXPECT_EQ(loop.context().poll(), 0u);
}

// Due times spread over a slot share expiries: ten distinct delays a
// millisecond apart cost at most two timer expiries (a slot boundary may
// fall between them), not ten, and none runs early.
TEST(LoopRunAfter, CallbacksDueWithinASlotShareOneExpiry) {
  Loop loop(0);
  const auto start = Clock::now();
  std::vector<Clock::duration> waited(10);
  int runs = 0;
  for (int i = 0; i < 10; ++i) {
    loop.RunAfter(milliseconds(20 + i), [&, i] {
      waited[i] = Clock::now() - start;
      ++runs;
    });
  }
  RunUntil(loop, [&] { return runs == 10; });
  ASSERT_EQ(runs, 10);
  for (int i = 0; i < 10; ++i) {
    EXPECT_GE(waited[i], milliseconds(20 + i)) << i;
  }
  EXPECT_LE(loop.deferred_expiries(), 2u);
  EXPECT_GE(loop.deferred_expiries(), 1u);
}

}  // namespace
}  // namespace nines::net
