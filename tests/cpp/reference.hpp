// Naive reference kernels, written for clarity (plain loops, double precision where the
// optimized kernels round in T), to test the optimized kernels against. The optimizer updates
// are the exception: they repeat torch's formulas in T, in the kernels' order of operations, so
// that an optimized update must match them bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "steepest/specs.hpp"

namespace steepest::reference {

// n values ~ N(0, scale^2), reproducible from seed.
template <class T>
std::vector<T> randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(gen));
  return v;
}

// C (M, N) = op(A) op(B), row-major; A is (M, K) or, transposed, (K, M); B is (K, N) or (N, K).
template <class T>
std::vector<double> gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         const std::vector<T>& A, const std::vector<T>& B) {
  std::vector<double> C(size_t(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[size_t(k * M + i)] : A[size_t(i * K + k)];
        const double b = tb ? B[size_t(j * K + k)] : B[size_t(k * N + j)];
        s += a * b;
      }
      C[size_t(i * N + j)] = s;
    }
  return C;
}

inline double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// GELU's tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
inline double gelu_tanh_inner(double x) {
  return std::tanh(std::sqrt(2 / 3.141592653589793) * (x + 0.044715 * x * x * x));
}

// An activation at x; p is LeakyReLU's slope, ELU's alpha or Softplus's beta (threshold 20).
inline double activation(Activation kind, double x, double p) {
  switch (kind) {
    case Activation::ReLU: return x > 0 ? x : 0;
    case Activation::LeakyReLU: return x > 0 ? x : p * x;
    case Activation::ELU: return x > 0 ? x : p * (std::exp(x) - 1);
    case Activation::GELU: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::SiLU: return x * sigmoid(x);
    case Activation::Sigmoid: return sigmoid(x);
    case Activation::Tanh: return std::tanh(x);
    case Activation::Softplus: return p * x > 20 ? x : std::log1p(std::exp(p * x)) / p;
    case Activation::GELUTanh: return 0.5 * x * (1 + gelu_tanh_inner(x));
  }
  return 0;
}

// Its derivative at x (from the definitions above; 0 at ReLU's kink, as the kernels).
inline double activation_grad(Activation kind, double x, double p) {
  const double pi = 3.141592653589793;
  switch (kind) {
    case Activation::ReLU: return x > 0 ? 1 : 0;
    case Activation::LeakyReLU: return x > 0 ? 1 : p;
    case Activation::ELU: return x > 0 ? 1 : p * std::exp(x);
    case Activation::GELU:
      return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * pi);
    case Activation::SiLU: return sigmoid(x) * (1 + x * (1 - sigmoid(x)));
    case Activation::Sigmoid: return sigmoid(x) * (1 - sigmoid(x));
    case Activation::Tanh: return 1 - std::tanh(x) * std::tanh(x);
    case Activation::Softplus: return p * x > 20 ? 1 : sigmoid(p * x);
    case Activation::GELUTanh: {
      const double t = gelu_tanh_inner(x);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * std::sqrt(2 / 3.141592653589793) *
                                 (1 + 3 * 0.044715 * x * x);
    }
  }
  return 0;
}

// y (B, C) = softmax of each row of x (B, C)
inline std::vector<double> softmax(const std::vector<double>& x, int64_t B, int64_t C) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < B; ++r) {
    double mx = x[size_t(r * C)], sum = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, x[size_t(r * C + c)]);
    for (int64_t c = 0; c < C; ++c) sum += std::exp(x[size_t(r * C + c)] - mx);
    for (int64_t c = 0; c < C; ++c) y[size_t(r * C + c)] = std::exp(x[size_t(r * C + c)] - mx) / sum;
  }
  return y;
}

// A loss value and its gradient d(value)/d(out).
struct LossResult {
  double value = 0;
  std::vector<double> grad;
};

// Cross-entropy of logits out (B, C) with labels (B) and label smoothing eps, mean over rows:
// -sum_c q_c log softmax(out)_c with q = (1 - eps) onehot + eps / C.
inline LossResult cross_entropy(const std::vector<double>& out, const std::vector<int64_t>& labels,
                                int64_t B, int64_t C, double eps) {
  LossResult r;
  r.grad.assign(out.size(), 0.0);
  const std::vector<double> p = softmax(out, B, C);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == labels[size_t(i)] ? 1 - eps : 0) + eps / double(C);
      r.value -= q * std::log(p[size_t(i * C + c)]) / double(B);
      r.grad[size_t(i * C + c)] = (p[size_t(i * C + c)] - q) / double(B);
    }
  return r;
}

// MSE, L1, Huber, BinaryCrossEntropy (on logits) or PoissonNLL of out (n) against target (n),
// mean.
inline LossResult regression(const std::vector<double>& out, const std::vector<double>& target,
                             const LossSpec& spec) {
  LossResult r;
  const double n = double(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const double o = out[i], t = target[i], d = o - t, a = std::fabs(d);
    const double sign = d > 0 ? 1 : d < 0 ? -1 : 0;
    double v = 0, g = 0;
    switch (spec.kind) {
      case LossKind::MSE: v = d * d, g = 2 * d; break;
      case LossKind::L1: v = a, g = sign; break;
      case LossKind::Huber:
        v = a < spec.delta ? 0.5 * d * d : spec.delta * (a - 0.5 * spec.delta);
        g = a < spec.delta ? d : spec.delta * sign;
        break;
      case LossKind::PoissonNLL: v = std::exp(o) - t * o, g = std::exp(o) - t; break;
      default:  // BinaryCrossEntropy: -(t log s + (1 - t) log(1 - s)), s = sigmoid(o)
        v = -(t * std::log(sigmoid(o)) + (1 - t) * std::log(1 - sigmoid(o)));
        g = sigmoid(o) - t;
        break;
    }
    r.value += v / n;
    r.grad.push_back(g / n);
  }
  return r;
}

// d f / d x by central differences in double: the gradient of the option-laden losses below,
// derived independently of the kernels' closed forms.
template <class F>
std::vector<double> numeric_gradient(const F& f, std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + h;
    const double up = f(x);
    x[i] = xi - h;
    const double down = f(x);
    x[i] = xi;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// CrossEntropy with torch's options, as torch.nn.functional.cross_entropy defines it, of logits
// out (B, C) against class indices labels (B) or, when labels is empty, class probabilities
// probs (B, C): each counted row r loses -sum_c w_c q_c log softmax(out_r)_c, q = (1 - eps)
// target + eps / C, w the class weights (empty: all 1). Rows labelled ignore_index count for
// nothing. The mean divides by sum_r w[y_r] over the counted rows with labels, by B with
// probabilities; 0 when nothing counts.
inline double cross_entropy_with_options(const std::vector<double>& out,
                                         const std::vector<int64_t>& labels,
                                         const std::vector<double>& probs, int64_t B, int64_t C,
                                         double eps, const std::vector<double>& w,
                                         int64_t ignore_index) {
  const std::vector<double> p = softmax(out, B, C);
  auto weight = [&](int64_t c) { return w.empty() ? 1.0 : w[size_t(c)]; };
  double total = 0, norm = 0;
  for (int64_t r = 0; r < B; ++r) {
    if (!labels.empty() && labels[size_t(r)] == ignore_index) continue;
    norm += labels.empty() ? 1.0 : weight(labels[size_t(r)]);
    for (int64_t c = 0; c < C; ++c) {
      const double target = labels.empty() ? probs[size_t(r * C + c)]
                                           : double(c == labels[size_t(r)]);
      const double q = (1 - eps) * target + eps / double(C);
      total -= weight(c) * q * std::log(p[size_t(r * C + c)]);
    }
  }
  return norm > 0 ? total / norm : 0.0;
}

// BinaryCrossEntropy on logits out (B, C) with torch's per-output weight and pos_weight (empty:
// all 1), as nn.BCEWithLogitsLoss defines it: the mean over all B C entries of
// -weight_c (pos_weight_c t log sigmoid(o) + (1 - t) log(1 - sigmoid(o))).
inline double binary_cross_entropy_with_options(const std::vector<double>& out,
                                                const std::vector<double>& target, int64_t C,
                                                const std::vector<double>& weight,
                                                const std::vector<double>& pos_weight) {
  double total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const size_t c = i % size_t(C);
    const double s = sigmoid(out[i]), t = target[i];
    const double pw = pos_weight.empty() ? 1.0 : pos_weight[c];
    const double w = weight.empty() ? 1.0 : weight[c];
    total -= w * (pw * t * std::log(s) + (1 - t) * std::log(1 - s));
  }
  return total / double(out.size());
}

// The state of one optimizer over n parameters, and one update of p from g in T, as torch.optim
// computes it (step counts from 1).
template <class T>
struct OptimizerState {
  explicit OptimizerState(size_t n, const OptimizerConfig& c)
      : buf(n, T(0)), m(n, T(0)), v(n, T(0)), vmax(n, T(0)), gavg(n, T(0)),
        sum(n, T(c.initial_accumulator_value)) {}
  std::vector<T> buf, m, v, vmax, gavg, sum;
};

template <class T>
void optimizer_step(std::vector<T>& p, const std::vector<T>& g, OptimizerState<T>& s,
                    const OptimizerConfig& c, int64_t step) {
  const T lr = T(c.lr), wd = T(c.weight_decay), mom = T(c.momentum), eps = T(c.eps);
  for (size_t i = 0; i < p.size(); ++i) {
    const T grad = c.maximize ? -g[i] : g[i];  // torch's maximize: the update of -g
    switch (c.kind) {
      case OptimizerKind::SGD: {
        T d = grad + wd * p[i];
        if (c.momentum != 0) {
          s.buf[i] = step == 1 ? d : mom * s.buf[i] + T(1 - c.dampening) * d;
          d = c.nesterov ? d + mom * s.buf[i] : s.buf[i];
        }
        p[i] -= lr * d;
        break;
      }
      case OptimizerKind::Adam:
      case OptimizerKind::AdamW: {
        const bool decoupled = c.kind == OptimizerKind::AdamW;
        const T gi = decoupled ? grad : grad + wd * p[i];
        if (decoupled) p[i] *= T(1 - c.lr * c.weight_decay);
        s.m[i] += (T(1) - T(c.beta1)) * (gi - s.m[i]);
        s.v[i] = T(c.beta2) * s.v[i] + (T(1) - T(c.beta2)) * gi * gi;
        T vi = s.v[i];
        if (c.amsgrad) vi = s.vmax[i] = std::max(s.vmax[i], vi);
        const T step_size = T(c.lr / (1 - std::pow(c.beta1, double(step))));
        const T inv_bc2_sqrt = T(1 / std::sqrt(1 - std::pow(c.beta2, double(step))));
        p[i] -= step_size * s.m[i] / (std::sqrt(vi) * inv_bc2_sqrt + eps);
        break;
      }
      case OptimizerKind::RMSprop: {
        const T gi = grad + wd * p[i];
        const T alpha = T(c.alpha);
        s.v[i] = alpha * s.v[i] + (T(1) - alpha) * gi * gi;
        T var = s.v[i];
        if (c.centered) {
          s.gavg[i] += (T(1) - alpha) * (gi - s.gavg[i]);
          var -= s.gavg[i] * s.gavg[i];
        }
        const T avg = std::sqrt(var) + eps;
        if (c.momentum > 0) {
          s.buf[i] = mom * s.buf[i] + gi / avg;
          p[i] -= lr * s.buf[i];
        } else {
          p[i] -= lr * gi / avg;
        }
        break;
      }
      case OptimizerKind::Adagrad: {
        const T gi = grad + wd * p[i];
        const T clr = T(c.lr / (1 + double(step - 1) * c.lr_decay));
        s.sum[i] += gi * gi;
        p[i] -= clr * gi / (std::sqrt(s.sum[i]) + eps);
        break;
      }
    }
  }
}

// Normalization of x (B, C) in double, forward and backward written out with the chain rule
// through the mean and the variance (Ioffe and Szegedy's equations, not the kernels' simplified
// form): y = xhat w + b with xhat = (x - mean) / sqrt(var + eps), var biased. by_rows: the
// statistics of each row over its features (LayerNorm); otherwise of each feature over the
// batch (BatchNorm in training). dx, dw, db: the gradients for dy (B, C).
struct Normalized {
  std::vector<double> y, dx, dw, db, mean, var;  // mean, var: per group (row or feature)
};

inline Normalized normalize(const std::vector<double>& x, const std::vector<double>& w,
                            const std::vector<double>& b, const std::vector<double>& dy,
                            int64_t B, int64_t C, double eps, bool by_rows) {
  const int64_t groups = by_rows ? B : C, n = by_rows ? C : B;
  auto at = [&](int64_t g, int64_t i) { return size_t(by_rows ? g * C + i : i * C + g); };
  auto feature = [&](int64_t g, int64_t i) { return size_t(by_rows ? i : g); };
  Normalized r;
  r.y.assign(x.size(), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(size_t(C), 0.0);
  r.db.assign(size_t(C), 0.0);
  for (int64_t g = 0; g < groups; ++g) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += x[at(g, i)] / double(n);
    for (int64_t i = 0; i < n; ++i) var += (x[at(g, i)] - mean) * (x[at(g, i)] - mean) / double(n);
    r.mean.push_back(mean);
    r.var.push_back(var);
    const double sd = std::sqrt(var + eps);
    double dvar = 0, dmean = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double xhat = (x[at(g, i)] - mean) / sd, dxhat = dy[at(g, i)] * w[feature(g, i)];
      r.y[at(g, i)] = xhat * w[feature(g, i)] + b[feature(g, i)];
      r.dw[feature(g, i)] += dy[at(g, i)] * xhat;
      r.db[feature(g, i)] += dy[at(g, i)];
      dvar += dxhat * (x[at(g, i)] - mean) * -0.5 / (sd * sd * sd);
      dmean -= dxhat / sd;
    }
    for (int64_t i = 0; i < n; ++i) dmean += dvar * -2 * (x[at(g, i)] - mean) / double(n);
    for (int64_t i = 0; i < n; ++i)
      r.dx[at(g, i)] = dy[at(g, i)] * w[feature(g, i)] / sd +
                       dvar * 2 * (x[at(g, i)] - mean) / double(n) + dmean / double(n);
  }
  return r;
}

// Backpropagation through a stack of Dense, Activation, Softmax and Dropout layers, in double,
// one sample at a time: the loss (CrossEntropy with labels, else MSE against targets (B, OUT))
// and the gradient of every parameter, laid out as the network's flat buffer. masks[k] is
// Dropout layer k's mask (B, width) (no other layer uses masks).
struct Backprop {
  double loss = 0;
  std::vector<double> grads;
};

inline Backprop backprop(const std::vector<LayerSpec>& layers, const std::vector<double>& params,
                         const std::vector<double>& x, int64_t B, const std::vector<int64_t>& labels,
                         const std::vector<double>& targets,
                         const std::vector<std::vector<double>>& masks = {}) {
  Backprop out;
  out.grads.assign(params.size(), 0.0);
  const int64_t C = layers.back().out;
  for (int64_t r = 0; r < B; ++r) {
    // Forward, keeping every layer's input.
    std::vector<std::vector<double>> inputs;
    std::vector<double> a(x.begin() + r * layers.front().in, x.begin() + (r + 1) * layers.front().in);
    for (size_t k = 0; k < layers.size(); ++k) {
      const LayerSpec& l = layers[k];
      inputs.push_back(a);
      std::vector<double> y(size_t(l.out));
      if (l.kind == LayerKind::Dense) {
        for (int64_t o = 0; o < l.out; ++o) {
          double s = l.bias ? params[size_t(l.bias_offset + o)] : 0.0;
          for (int64_t i = 0; i < l.in; ++i) s += params[size_t(l.weight_offset + o * l.in + i)] * a[size_t(i)];
          y[size_t(o)] = s;
        }
      } else if (l.kind == LayerKind::Activation) {
        for (int64_t o = 0; o < l.out; ++o) y[size_t(o)] = activation(l.activation, a[size_t(o)], l.param);
      } else if (l.kind == LayerKind::Dropout) {
        for (int64_t o = 0; o < l.out; ++o) y[size_t(o)] = a[size_t(o)] * masks[k][size_t(r * l.out + o)];
      } else {  // Softmax
        y = softmax(a, 1, l.out);
      }
      a = y;
    }
    // The loss of this row, as a share of the batch mean, and its gradient.
    std::vector<double> d(static_cast<size_t>(C));
    if (!labels.empty()) {
      const LossResult ce = cross_entropy(a, {labels[size_t(r)]}, 1, C, 0.0);
      out.loss += ce.value / double(B);
      for (int64_t c = 0; c < C; ++c) d[size_t(c)] = ce.grad[size_t(c)] / double(B);
    } else {
      for (int64_t c = 0; c < C; ++c) {
        const double diff = a[size_t(c)] - targets[size_t(r * C + c)];
        out.loss += diff * diff / double(B * C);
        d[size_t(c)] = 2 * diff / double(B * C);
      }
    }
    // Backward.
    for (size_t k = layers.size(); k-- > 0;) {
      const LayerSpec& l = layers[k];
      const std::vector<double>& in = inputs[k];
      std::vector<double> dx(size_t(l.in), 0.0);
      if (l.kind == LayerKind::Dense) {
        for (int64_t o = 0; o < l.out; ++o) {
          if (l.bias) out.grads[size_t(l.bias_offset + o)] += d[size_t(o)];
          for (int64_t i = 0; i < l.in; ++i) {
            out.grads[size_t(l.weight_offset + o * l.in + i)] += d[size_t(o)] * in[size_t(i)];
            dx[size_t(i)] += d[size_t(o)] * params[size_t(l.weight_offset + o * l.in + i)];
          }
        }
      } else if (l.kind == LayerKind::Activation) {
        for (int64_t o = 0; o < l.out; ++o)
          dx[size_t(o)] = d[size_t(o)] * activation_grad(l.activation, in[size_t(o)], l.param);
      } else if (l.kind == LayerKind::Dropout) {
        for (int64_t o = 0; o < l.out; ++o) dx[size_t(o)] = d[size_t(o)] * masks[k][size_t(r * l.out + o)];
      } else {  // Softmax: dx = y (d - y.d)
        const std::vector<double> y = softmax(in, 1, l.out);
        double dot = 0;
        for (int64_t o = 0; o < l.out; ++o) dot += d[size_t(o)] * y[size_t(o)];
        for (int64_t o = 0; o < l.out; ++o) dx[size_t(o)] = y[size_t(o)] * (d[size_t(o)] - dot);
      }
      d = dx;
    }
  }
  return out;
}

// Test models: Dense-ReLU-...-Dense over sizes, with Dropout(p) after each ReLU when p > 0.
inline std::vector<LayerSpec> mlp(const std::vector<int64_t>& sizes, double dropout = 0.0) {
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    LayerSpec d;
    d.kind = LayerKind::Dense;
    d.in = sizes[i];
    d.out = sizes[i + 1];
    layers.push_back(d);
    if (i + 2 < sizes.size()) {
      LayerSpec a;
      a.kind = LayerKind::Activation;
      a.in = a.out = sizes[i + 1];
      layers.push_back(a);
      if (dropout > 0) {
        LayerSpec p = a;
        p.kind = LayerKind::Dropout;
        p.param = dropout;
        layers.push_back(p);
      }
    }
  }
  return layers;
}

}  // namespace steepest::reference
