// LoopPool: one event loop (io_context + thread) per core.
//
// A connection lives on one loop for its whole life. Work for another loop is
// posted to that loop's io_context (its queue); nothing on the hot path takes
// a lock that another loop holds for long. Each loop also ticks once a second,
// which sessions use for their deadlines instead of one timer each.
//
// Thread safety: Post() may be called from any thread. Everything else in a
// Loop is touched only by that loop's thread once Run() has started.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace nines::net {

class Loop {
 public:
  explicit Loop(size_t index);
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  size_t index() const { return index_; }
  boost::asio::io_context& context() { return context_; }
  boost::asio::any_io_executor executor() { return context_.get_executor(); }

  template <class F>
  void Post(F&& f) {
    boost::asio::post(context_, std::forward<F>(f));
  }

  // True when called on this loop's thread.
  bool InLoop() const { return std::this_thread::get_id() == thread_id_; }

  // A scratch buffer for reads: connections read into it and parse at once,
  // so an idle connection holds no read buffer of its own. Loop thread only.
  std::vector<char>& scratch() { return scratch_; }

  // Called once a second on the loop thread, in registration order.
  void OnTick(std::function<void()> fn) { tick_handlers_.push_back(std::move(fn)); }

  // Seconds since the loop started, updated by the tick; cheap monotonic clock for deadlines.
  int64_t now_seconds() const { return now_seconds_; }
  // Runs `fn` on this loop once `delay` has passed, and at most
  // kDeferredSlot later. One timer serves every such callback, so sessions
  // can defer small writes (an XEP-0198 <a/> waiting to ride with a
  // delivery) without a timer each. Due times are rounded up to the next
  // slot boundary, so that callbacks deferred within one slot share one
  // timer expiry (and one wakeup) instead of re-arming the timer each;
  // callbacks due in the same slot run in the order they were deferred.
  // Loop thread only.
  void RunAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  static constexpr std::chrono::milliseconds kDeferredSlot{10};
  // Times the RunAfter timer has expired (for tests).
  uint64_t deferred_expiries() const { return deferred_expiries_; }

 private:
  friend class LoopPool;
  void StartTicking();

  size_t index_;
  boost::asio::io_context context_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread::id thread_id_;
  std::vector<char> scratch_;
  std::vector<std::function<void()>> tick_handlers_;
  std::unique_ptr<boost::asio::steady_timer> tick_timer_;
  int64_t now_seconds_ = 0;

  // RunAfter: callbacks with their due time, and the one timer, which waits
  // for the earliest of them while any is queued.
  void ArmDeferred(std::chrono::steady_clock::time_point due);
  void RunDue();
  // By slot (due time), each in the order deferred: an expiry touches only
  // the slots that are due, however many callbacks wait for later ones.
  std::map<std::chrono::steady_clock::time_point, std::vector<std::function<void()>>> deferred_;
  std::unique_ptr<boost::asio::steady_timer> deferred_timer_;
  std::optional<std::chrono::steady_clock::time_point> deferred_armed_for_;
  uint64_t deferred_expiries_ = 0;
};

class LoopPool {
 public:
  // `count` 0 means one loop per hardware thread.
  explicit LoopPool(size_t count);
  ~LoopPool();

  size_t size() const { return loops_.size(); }
  Loop& loop(size_t i) { return *loops_[i]; }

  // Starts one thread per loop. Returns at once.
  void Start();
  // Lets loops run out of work and joins the threads: call after everything
  // that keeps work alive (listeners, sessions, timers) has been closed.
  void Join();
  // Stops all loops at once (abandoning queued work) and joins.
  void Stop();

  // For tests and fuzzers that drive the loops on their own thread instead
  // of Start(), and for a shutdown after Stop(): runs ready handlers on every
  // loop until none is left, for at most `max_rounds` rounds. False if work
  // was still arriving at the end.
  bool PollUntilIdle(int max_rounds = 100000);

 private:
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

}  // namespace nines::net
