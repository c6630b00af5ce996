#include "steepest/interrupt.hpp"

namespace steepest {

thread_local ScopedInterruptPoll::State ScopedInterruptPoll::current_;

ScopedInterruptPoll::ScopedInterruptPoll(InterruptPoll* poll,
                                         std::chrono::steady_clock::duration interval)
    : previous_(current_) {
  current_ = State{poll, interval, std::chrono::steady_clock::now(), false};
}

ScopedInterruptPoll::~ScopedInterruptPoll() { current_ = previous_; }

bool interrupt_requested() {
  ScopedInterruptPoll::State& s = ScopedInterruptPoll::current_;
  if (s.poll == nullptr || s.stopped) return s.stopped;
  const auto now = std::chrono::steady_clock::now();
  if (now - s.last < s.interval) return false;
  s.last = now;
  s.stopped = s.poll->stop_requested();
  return s.stopped;
}

}  // namespace steepest
