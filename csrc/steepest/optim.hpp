// Optimizers: in-place updates over the network's flat params/grads buffers, with the
// semantics and defaults of torch.optim (OptimizerConfig, specs.hpp). Each update is one flat
// loop; the state buffers share the parameters' layout.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "steepest/specs.hpp"

namespace steepest {

template <class T>
class Optimizer {
 public:
  // ranges: (offset, length) pieces of the flat buffers this optimizer updates.
  Optimizer(const OptimizerConfig& config, std::vector<std::pair<int64_t, int64_t>> ranges);

  // One update of params from grads (both the network's flat buffers), in place.
  void step(T* params, const T* grads) {
    begin_step();
    update(params, grads, 0, INT64_MAX);
  }
  // The same step in pieces, for callers that produce the gradient piece by piece: begin_step()
  // once, then update() over disjoint flat index intervals [lo, hi) that together cover every
  // parameter once. The result is bitwise that of step().
  void begin_step();
  void update(T* params, const T* grads, int64_t lo, int64_t hi);

  OptimizerConfig config;
  int64_t steps = 0;  // updates done so far (torch's per-parameter "step")
  const std::vector<std::pair<int64_t, int64_t>>& ranges() const { return ranges_; }
  int64_t size() const { return size_; }
  // Named state buffers (each `size()` long, laid out as the concatenated ranges).
  std::vector<std::pair<std::string, std::vector<T>*>> state();

 private:
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  int64_t size_ = 0;
  // Adam's bias corrections for the current step: lr / (1 - beta1^t) and 1 / sqrt(1 - beta2^t).
  double step_size_ = 0, inv_bc2_sqrt_ = 0;
  // SGD: buf1 = momentum_buffer. Adam: buf1 = exp_avg, buf2 = exp_avg_sq, buf3 = max_exp_avg_sq.
  // RMSprop: buf1 = square_avg, buf2 = momentum_buffer, buf3 = grad_avg. Adagrad: buf1 = sum.
  std::vector<T> buf1_, buf2_, buf3_;
};

}  // namespace steepest
