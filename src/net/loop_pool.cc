#include "net/loop_pool.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace nines::net {

Loop::Loop(size_t index) : index_(index), scratch_(64 * 1024) { work_.emplace(context_.get_executor()); }

void Loop::StartTicking() {
  tick_timer_ = std::make_unique<boost::asio::steady_timer>(context_);
  auto start = std::chrono::steady_clock::now();
  // A self-rearming tick; stops when the timer is cancelled.
  struct Ticker {
    Loop* loop;
    std::chrono::steady_clock::time_point start;
    void operator()(const boost::system::error_code& ec) const {
      if (ec) return;
      loop->now_seconds_ =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count();
      for (auto& fn : loop->tick_handlers_) fn();
      loop->tick_timer_->expires_after(std::chrono::seconds(1));
      loop->tick_timer_->async_wait(*this);
    }
  };
  tick_timer_->expires_after(std::chrono::seconds(1));
  tick_timer_->async_wait(Ticker{this, start});
}

void Loop::RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  // Rounded up to a slot boundary (see kDeferredSlot).
  const auto exact = (std::chrono::steady_clock::now() + delay).time_since_epoch();
  const auto slots = (exact + kDeferredSlot - std::chrono::nanoseconds(1)) / kDeferredSlot;
  const std::chrono::steady_clock::time_point due(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(slots * kDeferredSlot));
  deferred_[due].push_back(std::move(fn));
  if (deferred_armed_for_ && *deferred_armed_for_ <= due) return;  // the timer fires first anyway
  ArmDeferred(due);
}

void Loop::ArmDeferred(std::chrono::steady_clock::time_point due) {
  if (!deferred_timer_) deferred_timer_ = std::make_unique<boost::asio::steady_timer>(context_);
  deferred_armed_for_ = due;
  deferred_timer_->expires_at(due);  // cancels a wait for a later time
  deferred_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) RunDue();
  });
}

void Loop::RunDue() {
  ++deferred_expiries_;
  deferred_armed_for_.reset();
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::function<void()>> due;
  while (!deferred_.empty() && deferred_.begin()->first <= now) {
    auto& slot = deferred_.begin()->second;
    if (due.empty()) {
      due = std::move(slot);
    } else {
      for (auto& fn : slot) due.push_back(std::move(fn));
    }
    deferred_.erase(deferred_.begin());
  }
  if (!deferred_.empty()) ArmDeferred(deferred_.begin()->first);
  for (auto& fn : due) fn();  // may defer more
}

LoopPool::LoopPool(size_t count) {
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < count; ++i) loops_.push_back(std::make_unique<Loop>(i));
}

LoopPool::~LoopPool() { Stop(); }

void LoopPool::Start() {
  for (auto& loop : loops_) {
    Loop* l = loop.get();
    threads_.emplace_back([l] {
      l->thread_id_ = std::this_thread::get_id();
      l->StartTicking();
      for (;;) {
        try {
          l->context_.run();
          break;
        } catch (const std::exception& e) {
          // A handler threw: that is a bug (no exceptions on the data path).
          // Log it and keep the loop alive rather than take every session down.
          spdlog::critical("loop {}: unhandled exception: {}", l->index_, e.what());
        }
      }
    });
  }
}

void LoopPool::Join() {
  for (auto& loop : loops_) {
    Loop* l = loop.get();
    boost::asio::post(l->context_, [l] {
      if (l->tick_timer_) l->tick_timer_->cancel();
      l->work_.reset();
    });
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void LoopPool::Stop() {
  for (auto& loop : loops_) loop->context_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool LoopPool::PollUntilIdle(int max_rounds) {
  for (auto& l : loops_) {
    if (l->context_.stopped()) l->context_.restart();  // after Stop(): see Server::Impl::Shutdown
  }
  for (int round = 0; round < max_rounds; ++round) {
    size_t ran = 0;
    for (auto& l : loops_) ran += l->context_.poll();
    if (ran == 0) return true;
  }
  return false;
}

}  // namespace nines::net
