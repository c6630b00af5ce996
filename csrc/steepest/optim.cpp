#include "steepest/optim.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "steepest/dispatch.hpp"
#include "steepest/threads.hpp"

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

// SGD and Adam, the common ones, are split in dispatched blocks (AVX2 or baseline, see
// STEEPEST_CLONES) with the branches hoisted out of the loops; for_chunks adds threads when the
// buffers are large. The arithmetic is exactly torch's, in the same order.

template <class T>
struct SgdCoef {
  T lr, wd, mom, damp;
  int mode;  // 0: no momentum, 1: first step (buf = d), 2: later steps; +3 with nesterov
  bool maximize;
};

// The gradient as the update uses it: negated when maximizing (torch's maximize=True).
template <bool Max, class T>
[[gnu::always_inline]] inline T signed_grad(T g) {
  return Max ? -g : g;
}

template <bool Max, class T>
[[gnu::always_inline]] inline void sgd_impl(T* p, const T* g, T* buf, int64_t n,
                                            const SgdCoef<T>& k) {
  const T lr = k.lr, wd = k.wd, mom = k.mom, damp = k.damp;
  switch (k.mode) {
    case 0:
      for (int64_t i = 0; i < n; ++i) p[i] -= lr * (signed_grad<Max>(g[i]) + wd * p[i]);
      break;
    case 1:
      for (int64_t i = 0; i < n; ++i) {
        const T d = signed_grad<Max>(g[i]) + wd * p[i];
        buf[i] = d;
        p[i] -= lr * d;
      }
      break;
    case 2:
      for (int64_t i = 0; i < n; ++i) {
        const T d = signed_grad<Max>(g[i]) + wd * p[i];
        const T b = mom * buf[i] + damp * d;
        buf[i] = b;
        p[i] -= lr * b;
      }
      break;
    case 4:
      for (int64_t i = 0; i < n; ++i) {
        const T d = signed_grad<Max>(g[i]) + wd * p[i];
        buf[i] = d;
        p[i] -= lr * (d + mom * d);
      }
      break;
    default:
      for (int64_t i = 0; i < n; ++i) {
        const T d = signed_grad<Max>(g[i]) + wd * p[i];
        const T b = mom * buf[i] + damp * d;
        buf[i] = b;
        p[i] -= lr * (d + mom * b);
      }
      break;
  }
}

STEEPEST_CLONES void sgd_block(float* p, const float* g, float* buf, int64_t n,
                               const SgdCoef<float>& k) {
  k.maximize ? sgd_impl<true>(p, g, buf, n, k) : sgd_impl<false>(p, g, buf, n, k);
}
STEEPEST_CLONES void sgd_block(double* p, const double* g, double* buf, int64_t n,
                               const SgdCoef<double>& k) {
  k.maximize ? sgd_impl<true>(p, g, buf, n, k) : sgd_impl<false>(p, g, buf, n, k);
}

template <class T>
void sgd_update(T* p, const T* g, T* buf, int64_t n, const OptimizerConfig& c, bool first) {
  SgdCoef<T> k{T(c.lr), T(c.weight_decay), T(c.momentum), T(1 - c.dampening), 0, c.maximize};
  if (buf) k.mode = (first ? 1 : 2) + (c.nesterov ? 3 : 0);
  for_chunks(n, 1, [&](int64_t lo, int64_t hi) {
    sgd_block(p + lo, g + lo, buf ? buf + lo : nullptr, hi - lo, k);
  });
}

template <class T>
struct AdamCoef {
  T decay, wd, b1, b2, eps, step_size, inv_bc2_sqrt;
  bool decoupled, maximize;
};

template <bool Max, class T>
[[gnu::always_inline]] inline void adam_impl(T* p, const T* g, T* m, T* v, T* vmax, int64_t n,
                                             const AdamCoef<T>& k) {
  const T decay = k.decay, wd = k.wd, b1 = k.b1, b2 = k.b2, eps = k.eps;
  const T step_size = k.step_size, inv_bc2_sqrt = k.inv_bc2_sqrt;
  if (!vmax && !k.decoupled) {  // Adam: the common case, no decay multiply, no max
    for (int64_t i = 0; i < n; ++i) {
      const T gi = signed_grad<Max>(g[i]) + wd * p[i];
      const T mi = m[i] + (T(1) - b1) * (gi - m[i]);
      const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] -= step_size * mi / (std::sqrt(vi) * inv_bc2_sqrt + eps);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T gi = signed_grad<Max>(g[i]) + wd * p[i];
    const T pi = p[i] * decay;
    const T mi = m[i] + (T(1) - b1) * (gi - m[i]);
    T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    if (vmax) vi = vmax[i] = vmax[i] > vi ? vmax[i] : vi;
    p[i] = pi - step_size * mi / (std::sqrt(vi) * inv_bc2_sqrt + eps);
  }
}

STEEPEST_CLONES void adam_block(float* p, const float* g, float* m, float* v, float* vmax,
                                int64_t n, const AdamCoef<float>& k) {
  k.maximize ? adam_impl<true>(p, g, m, v, vmax, n, k) : adam_impl<false>(p, g, m, v, vmax, n, k);
}
STEEPEST_CLONES void adam_block(double* p, const double* g, double* m, double* v, double* vmax,
                                int64_t n, const AdamCoef<double>& k) {
  k.maximize ? adam_impl<true>(p, g, m, v, vmax, n, k) : adam_impl<false>(p, g, m, v, vmax, n, k);
}

template <class T>
void adam_update(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const OptimizerConfig& c,
                 double step_size, double inv_bc2_sqrt) {
  const bool decoupled = c.kind == OptimizerKind::AdamW;
  AdamCoef<T> k;
  k.decoupled = decoupled;
  k.maximize = c.maximize;
  k.decay = decoupled ? T(1 - c.lr * c.weight_decay) : T(1);
  k.wd = decoupled ? T(0) : T(c.weight_decay);
  k.b1 = T(c.beta1);
  k.b2 = T(c.beta2);
  k.eps = T(c.eps);
  k.step_size = T(step_size);
  k.inv_bc2_sqrt = T(inv_bc2_sqrt);
  for_chunks(n, 4, [&](int64_t lo, int64_t hi) {
    adam_block(p + lo, g + lo, m + lo, v + lo, vmax ? vmax + lo : nullptr, hi - lo, k);
  });
}

template <class T>
void rmsprop_update(T* p, const T* g, T* sq, T* buf, T* gavg, int64_t n, const OptimizerConfig& c) {
  const T lr = T(c.lr), wd = T(c.weight_decay), alpha = T(c.alpha), eps = T(c.eps);
  const T mom = T(c.momentum), sign = c.maximize ? T(-1) : T(1);
  for_chunks(n, 4, [=](int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    const T gi = sign * g[i] + wd * p[i];
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
  });
}

template <class T>
void adagrad_update(T* p, const T* g, T* sum, int64_t n, const OptimizerConfig& c, int64_t step) {
  const T wd = T(c.weight_decay), eps = T(c.eps);
  const T clr = T(c.lr / (1 + double(step - 1) * c.lr_decay));
  const T sign = c.maximize ? T(-1) : T(1);
  for_chunks(n, 4, [=](int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    const T gi = sign * g[i] + wd * p[i];
    sum[i] += gi * gi;
    p[i] -= clr * gi / (std::sqrt(sum[i]) + eps);
  }
  });
}

template <class T>
T* at(std::vector<T>& b, int64_t offset) {
  return b.empty() ? nullptr : b.data() + offset;
}

}  // namespace

template <class T>
void Optimizer<T>::begin_step() {
  ++steps;
  if (config.kind == OptimizerKind::Adam || config.kind == OptimizerKind::AdamW) {
    step_size_ = config.lr / (1 - std::pow(config.beta1, double(steps)));
    inv_bc2_sqrt_ = 1 / std::sqrt(1 - std::pow(config.beta2, double(steps)));
  }
}

template <class T>
void Optimizer<T>::update(T* params, const T* grads, int64_t lo, int64_t hi) {
  int64_t s = 0;  // offset into the state buffers
  for (auto [offset, len] : ranges_) {
    // The part of this range inside [lo, hi), and where it sits in the state buffers.
    const int64_t a = std::max(offset, lo), b = std::min(offset + len, hi), n = b - a;
    if (n > 0) {
      T* p = params + a;
      const T* g = grads + a;
      const int64_t st = s + (a - offset);
      switch (config.kind) {
        case OptimizerKind::SGD: sgd_update(p, g, at(buf1_, st), n, config, steps == 1); break;
        case OptimizerKind::Adam:
        case OptimizerKind::AdamW:
          adam_update(p, g, at(buf1_, st), at(buf2_, st), at(buf3_, st), n, config, step_size_,
                      inv_bc2_sqrt_);
          break;
        case OptimizerKind::RMSprop:
          rmsprop_update(p, g, at(buf1_, st), at(buf2_, st), at(buf3_, st), n, config);
          break;
        case OptimizerKind::Adagrad: adagrad_update(p, g, at(buf1_, st), n, config, steps); break;
      }
    }
    s += len;
  }
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace steepest
