// What the network tests share: a cross-entropy loss spec, an SGD config, labels for a batch
// and a copy of a network's parameters.
#pragma once

#include <cstdint>
#include <vector>

#include "steepest/network.hpp"

namespace steepest::test {

inline LossSpec cross_entropy() {
  LossSpec s;
  s.kind = LossKind::CrossEntropy;
  return s;
}

inline OptimizerConfig sgd(double lr, double momentum = 0.0) {
  OptimizerConfig c;
  c.kind = OptimizerKind::SGD;
  c.lr = lr;
  c.momentum = momentum;
  return c;
}

// B labels in [0, C), all classes present when B >= C.
inline std::vector<int64_t> labels_for(int64_t B, int64_t C) {
  std::vector<int64_t> y(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) y[size_t(r)] = (r * 7 + 3) % C;
  return y;
}

template <class T>
std::vector<T> params_of(Network<T>& net) {
  return std::vector<T>(net.params(), net.params() + net.num_params());
}

}  // namespace steepest::test
