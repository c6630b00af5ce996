// Interruption: a long computation stops at a safe boundary, within a fraction of a second,
// when its caller asks.
//
// The caller (the Python bindings) installs an InterruptPoll on its thread for the duration of
// a call. The core asks it, at most every kPollInterval, at the boundaries where stopping is
// safe: between the operations of a forward or backward pass, between the tiles and K chunks of
// a large product (gemm), between the steps of an epoch and the row chunks of inference. Once
// the poll says stop, check_interrupt() throws Interrupted: train_step catches it and abandons
// the step before its update (parameters, optimizer state and random generator stay as they
// were). Only the installing thread asks the poll; the pool's workers stop through the
// product's own flag. Without a poll nothing is asked, and the work done never depends on it.
#pragma once

#include <chrono>
#include <exception>

namespace steepest {

constexpr std::chrono::milliseconds kPollInterval{20};

struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

class InterruptPoll {
 public:
  virtual ~InterruptPoll() = default;
  // True when the computation should stop. Called on the installing thread only.
  virtual bool stop_requested() = 0;
};

// Installs poll on this thread until destroyed; then the one installed before, if any, again.
// It is asked at most every interval (the first time an interval after installation).
class ScopedInterruptPoll {
 public:
  explicit ScopedInterruptPoll(InterruptPoll* poll,
                               std::chrono::steady_clock::duration interval = kPollInterval);
  ~ScopedInterruptPoll();
  ScopedInterruptPoll(const ScopedInterruptPoll&) = delete;
  ScopedInterruptPoll& operator=(const ScopedInterruptPoll&) = delete;

 private:
  struct State {
    InterruptPoll* poll = nullptr;
    std::chrono::steady_clock::duration interval{};
    std::chrono::steady_clock::time_point last{};
    bool stopped = false;  // the poll said stop: it is not asked again
  };
  State previous_;
  friend bool interrupt_requested();
  static thread_local State current_;
};

// True once this thread's poll (asked at most every interval) has said stop; false on a thread
// without a poll.
bool interrupt_requested();

// Throws Interrupted when interrupt_requested().
inline void check_interrupt() {
  if (interrupt_requested()) throw Interrupted();
}

}  // namespace steepest
