#include "steepest/optim.hpp"

#include <cmath>
#include <stdexcept>

#include "steepest/kernels.hpp"

namespace steepest {

template <class T>
Optimizer<T>::Optimizer(const OptimizerConfig& cfg, std::vector<std::pair<int64_t, int64_t>> ranges)
    : config(cfg), ranges_(std::move(ranges)) {
  for (auto& r : ranges_) size_ += r.second;
  const auto n = size_t(size_);
  switch (config.kind) {
    case OptimizerKind::SGD:
      if (config.momentum != 0) buf1_.assign(n, T(0));
      break;
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW:
      buf1_.assign(n, T(0));
      buf2_.assign(n, T(0));
      if (config.amsgrad) buf3_.assign(n, T(0));
      break;
    case OptimizerKind::RMSprop:
      buf1_.assign(n, T(0));
      if (config.momentum > 0) buf2_.assign(n, T(0));
      if (config.centered) buf3_.assign(n, T(0));
      break;
    case OptimizerKind::Adagrad:
      buf1_.assign(n, T(config.initial_accumulator_value));
      break;
  }
}

template <class T>
std::vector<std::pair<std::string, std::vector<T>*>> Optimizer<T>::state() {
  std::vector<std::pair<std::string, std::vector<T>*>> out;
  auto add = [&](const char* name, std::vector<T>& b) {
    if (!b.empty()) out.emplace_back(name, &b);
  };
  switch (config.kind) {
    case OptimizerKind::SGD: add("momentum_buffer", buf1_); break;
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW:
      add("exp_avg", buf1_);
      add("exp_avg_sq", buf2_);
      add("max_exp_avg_sq", buf3_);
      break;
    case OptimizerKind::RMSprop:
      add("square_avg", buf1_);
      add("momentum_buffer", buf2_);
      add("grad_avg", buf3_);
      break;
    case OptimizerKind::Adagrad: add("sum", buf1_); break;
  }
  return out;
}

namespace {

// Each update below is one flat loop over p (n), g (n) and the state buffers (n), in place.
// Coefficients are computed once per step in double, as torch does in Python floats.

template <class T>
void sgd_update(T* p, const T* g, T* buf, int64_t n, const OptimizerConfig& c, bool first) {
  const T lr = T(c.lr), wd = T(c.weight_decay), mom = T(c.momentum), damp = T(1 - c.dampening);
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i] + wd * p[i];
    if (buf) {
      buf[i] = first ? d : mom * buf[i] + damp * d;
      d = c.nesterov ? d + mom * buf[i] : buf[i];
    }
    p[i] -= lr * d;
  }
}

template <class T>
void adam_update(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const OptimizerConfig& c,
                 int64_t step) {
  const bool decoupled = c.kind == OptimizerKind::AdamW;
  const T decay = decoupled ? T(1 - c.lr * c.weight_decay) : T(1);
  const T wd = decoupled ? T(0) : T(c.weight_decay);
  const T b1 = T(c.beta1), b2 = T(c.beta2), eps = T(c.eps);
  const T step_size = T(c.lr / (1 - std::pow(c.beta1, double(step))));
  const T inv_bc2_sqrt = T(1 / std::sqrt(1 - std::pow(c.beta2, double(step))));
#pragma omp parallel for simd num_threads(threads_for(4 * n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] + wd * p[i];
    p[i] *= decay;
    m[i] += (T(1) - b1) * (gi - m[i]);
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    T vi = v[i];
    if (vmax) vi = vmax[i] = vmax[i] > vi ? vmax[i] : vi;
    p[i] -= step_size * m[i] / (std::sqrt(vi) * inv_bc2_sqrt + eps);
  }
}

template <class T>
void rmsprop_update(T* p, const T* g, T* sq, T* buf, T* gavg, int64_t n, const OptimizerConfig& c) {
  const T lr = T(c.lr), wd = T(c.weight_decay), alpha = T(c.alpha), eps = T(c.eps);
  const T mom = T(c.momentum);
#pragma omp parallel for simd num_threads(threads_for(4 * n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] + wd * p[i];
    sq[i] = alpha * sq[i] + (T(1) - alpha) * gi * gi;
    T var = sq[i];
    if (gavg) {
      gavg[i] += (T(1) - alpha) * (gi - gavg[i]);
      var -= gavg[i] * gavg[i];
    }
    const T avg = std::sqrt(var) + eps;
    if (buf) {
      buf[i] = mom * buf[i] + gi / avg;
      p[i] -= lr * buf[i];
    } else {
      p[i] -= lr * gi / avg;
    }
  }
}

template <class T>
void adagrad_update(T* p, const T* g, T* sum, int64_t n, const OptimizerConfig& c, int64_t step) {
  const T wd = T(c.weight_decay), eps = T(c.eps);
  const T clr = T(c.lr / (1 + double(step - 1) * c.lr_decay));
#pragma omp parallel for simd num_threads(threads_for(4 * n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] + wd * p[i];
    sum[i] += gi * gi;
    p[i] -= clr * gi / (std::sqrt(sum[i]) + eps);
  }
}

template <class T>
T* at(std::vector<T>& b, int64_t offset) {
  return b.empty() ? nullptr : b.data() + offset;
}

}  // namespace

template <class T>
void Optimizer<T>::step(T* params, const T* grads) {
  ++steps;
  int64_t s = 0;  // offset into the state buffers
  for (auto [offset, n] : ranges_) {
    T* p = params + offset;
    const T* g = grads + offset;
    switch (config.kind) {
      case OptimizerKind::SGD: sgd_update(p, g, at(buf1_, s), n, config, steps == 1); break;
      case OptimizerKind::Adam:
      case OptimizerKind::AdamW:
        adam_update(p, g, at(buf1_, s), at(buf2_, s), at(buf3_, s), n, config, steps);
        break;
      case OptimizerKind::RMSprop:
        rmsprop_update(p, g, at(buf1_, s), at(buf2_, s), at(buf3_, s), n, config);
        break;
      case OptimizerKind::Adagrad: adagrad_update(p, g, at(buf1_, s), n, config, steps); break;
    }
    s += n;
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace steepest
