// Kernels: forward/backward of one layer, activation or loss, and the reductions over the flat
// buffers. No allocation, no Python. Signatures follow llm.c: outputs first, const inputs next,
// sizes last; each states its shapes. B = batch rows, IN/OUT = feature widths, C = classes or
// outputs, n = element count. Large loops run on the core's pool (threads.hpp) in splits that
// do not change the result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "steepest/gemm.hpp"
#include "steepest/rng.hpp"
#include "steepest/specs.hpp"
#include "steepest/threads.hpp"

namespace steepest {

// ---------------------------------------------------------------------------------------------
// Dense layer: y = x W^T + b, W (OUT, IN) like torch.nn.Linear.

// Fused epilogue of a Dense layer: z (B, OUT) += b (OUT) (b may be nullptr), then, when act
// is not nullptr, act (B, OUT) <- max(z, 0) + slope * min(z, 0) (ReLU when slope is 0,
// LeakyReLU otherwise). One pass over z instead of two or three. act may be z.
void bias_act_forward(float* act, float* z, const float* b, int64_t B, int64_t OUT, float slope);
void bias_act_forward(double* act, double* z, const double* b, int64_t B, int64_t OUT,
                      double slope);

// y (B, OUT) <- x (B, IN), w (OUT, IN), b (OUT) or nullptr
template <class T>
void dense_forward(T* y, const T* x, const T* w, const T* b, int64_t B, int64_t IN, int64_t OUT) {
  gemm<T>(false, true, B, OUT, IN, T(1), x, IN, w, IN, T(0), y, OUT);
  if (b) bias_act_forward(static_cast<T*>(nullptr), y, b, B, OUT, T(0));
}

// Dense then ReLU/LeakyReLU (slope), the activation in the same pass as the bias:
// z (B, OUT) <- x (B, IN), w (OUT, IN), b (OUT) or nullptr; act (B, OUT) <- ReLU/LeakyReLU(z).
// act may be z (in place, when z is not needed afterwards).
template <class T>
void dense_relu_forward(T* z, T* act, const T* x, const T* w, const T* b, int64_t B, int64_t IN,
                        int64_t OUT, T slope) {
  gemm<T>(false, true, B, OUT, IN, T(1), x, IN, w, IN, T(0), z, OUT);
  bias_act_forward(act, z, b, B, OUT, slope);
}

// db (OUT) (+)= column sums of dy (B, OUT), rows added in order 0..B-1 whatever the thread
// count. With x (B, OUT) not nullptr, first dy <- dy * (x > 0 ? 1 : slope) in place (the
// backward of ReLU/LeakyReLU whose input was x) in the same pass; db may then be nullptr.
void act_backward_colsum(float* db, float* dy, const float* x, int64_t B, int64_t OUT,
                         float slope, bool accumulate);
void act_backward_colsum(double* db, double* dy, const double* x, int64_t B, int64_t OUT,
                         double slope, bool accumulate);

// dw (OUT, IN), db (OUT) <- dy (B, OUT), x (B, IN); added to (accumulate) or overwriting the
// old values. dx (B, IN) <- dy W, w (OUT, IN). Each output is skipped when its pointer is nullptr.
template <class T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t B,
                    int64_t IN, int64_t OUT, bool accumulate) {
  if (dw) gemm<T>(true, false, OUT, IN, B, T(1), dy, OUT, x, IN, accumulate ? T(1) : T(0), dw, IN);
  // Column sums of dy in a fixed row order: the result does not depend on the thread count.
  if (db) act_backward_colsum(db, const_cast<T*>(dy), static_cast<const T*>(nullptr), B, OUT,
                              T(0), accumulate);
  if (dx) gemm<T>(false, false, B, IN, OUT, T(1), dy, OUT, w, IN, T(0), dx, IN);
}

// ---------------------------------------------------------------------------------------------
// Activations. Elementwise ones act on n values; `param` is LeakyReLU's negative slope, ELU's
// alpha or Softplus's beta, `threshold` Softplus's (torch's defaults: beta 1, threshold 20).
// Backward may run in place (dx == dy); it reads the saved input x and/or output y.

template <class T>
inline T sigmoid(T x) {
  // Stable on both tails: exp of a non-positive number only.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

// GELU's tanh approximation: tanh(sqrt(2 / pi) (x + 0.044715 x^3)), torch's constants.
constexpr double kGeluBeta = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluKappa = 0.044715;

template <class T>
inline T gelu_tanh_inner(T x) {
  return std::tanh(T(kGeluBeta) * (x + T(kGeluKappa) * x * x * x));
}

// y (n) <- x (n)
template <class T>
void activation_forward(T* y, const T* x, int64_t n, Activation kind, T param,
                        T threshold = T(20)) {
  const int64_t cost = kind == Activation::ReLU || kind == Activation::LeakyReLU ? 1 : 8;
  for_chunks(n, cost, [=](int64_t lo, int64_t hi) {
    switch (kind) {
      case Activation::ReLU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
        break;
      case Activation::LeakyReLU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > T(0) ? x[i] : param * x[i];
        break;
      case Activation::ELU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > T(0) ? x[i] : param * std::expm1(x[i]);
        break;
      case Activation::GELU:
        for (int64_t i = lo; i < hi; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
        break;
      case Activation::GELUTanh:
        for (int64_t i = lo; i < hi; ++i) y[i] = T(0.5) * x[i] * (T(1) + gelu_tanh_inner(x[i]));
        break;
      case Activation::SiLU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * sigmoid(x[i]);
        break;
      case Activation::Sigmoid:
        for (int64_t i = lo; i < hi; ++i) y[i] = sigmoid(x[i]);
        break;
      case Activation::Tanh:
        for (int64_t i = lo; i < hi; ++i) y[i] = std::tanh(x[i]);
        break;
      case Activation::Softplus:
        // log(1 + exp(beta x)) / beta, linear above the threshold as torch.nn.Softplus; in the
        // form max(z, 0) + log1p(exp(-|z|)), which cannot overflow for any threshold.
        for (int64_t i = lo; i < hi; ++i) {
          const T z = param * x[i];
          y[i] = z > threshold ? x[i]
                               : (std::fmax(z, T(0)) + std::log1p(std::exp(-std::fabs(z)))) / param;
        }
        break;
    }
  });
}

// dx (n) <- dy (n), x (n) input, y (n) output of the forward pass
template <class T>
void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Activation kind,
                         T param, T threshold = T(20)) {
  const int64_t cost = kind == Activation::ReLU || kind == Activation::LeakyReLU ? 1 : 8;
  for_chunks(n, cost, [=](int64_t lo, int64_t hi) {
    switch (kind) {
      case Activation::ReLU:
        for (int64_t i = lo; i < hi; ++i) {
          const T g = dy[i];  // loaded unconditionally: a select, not a branch
          dx[i] = x[i] > T(0) ? g : T(0);
        }
        break;
      case Activation::LeakyReLU:
        for (int64_t i = lo; i < hi; ++i) {
          const T g = dy[i];
          dx[i] = x[i] > T(0) ? g : param * g;
        }
        break;
      case Activation::ELU:
        // alpha exp(x) from x, not y + alpha: that sum cancels to 0 below x = -37.5 in double
        // (and loses all relative accuracy well before), where exp(x) keeps it.
        for (int64_t i = lo; i < hi; ++i) {
          const T g = dy[i];
          dx[i] = x[i] > T(0) ? g : g * param * std::exp(x[i]);
        }
        break;
      case Activation::GELU: {
        const T inv_sqrt_2pi = T(0.3989422804014327);
        for (int64_t i = lo; i < hi; ++i) {
          T cdf = T(0.5) * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
          T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * x[i] * x[i]);
          dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
      }
      case Activation::GELUTanh:
        // d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) beta (1 + 3 kappa x^2)
        for (int64_t i = lo; i < hi; ++i) {
          const T t = gelu_tanh_inner(x[i]);
          const T inner = T(kGeluBeta) * (T(1) + T(3 * kGeluKappa) * x[i] * x[i]);
          dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * x[i] * (T(1) - t * t) * inner);
        }
        break;
      case Activation::SiLU:
        for (int64_t i = lo; i < hi; ++i) {
          T s = sigmoid(x[i]);
          dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
        }
        break;
      case Activation::Sigmoid:
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
        break;
      case Activation::Tanh:
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
        break;
      case Activation::Softplus:
        for (int64_t i = lo; i < hi; ++i) {
          const T z = param * x[i];
          dx[i] = z > threshold ? dy[i] : dy[i] * sigmoid(z);
        }
        break;
    }
  });
}

// Softmax over the last axis. y (B, C) <- x (B, C)
template <class T>
void softmax_forward(T* y, const T* x, int64_t B, int64_t C) {
  for_chunks(B, 8 * C, [=](int64_t lo, int64_t hi) {
  for (int64_t r = lo; r < hi; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    T mx = xr[0];
    for (int64_t c = 1; c < C; ++c) mx = xr[c] > mx ? xr[c] : mx;
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += (yr[c] = std::exp(xr[c] - mx));
    for (int64_t c = 0; c < C; ++c) yr[c] /= sum;
  }
  });
}

// dx (B, C) <- dy (B, C), y (B, C): dx_i = y_i (dy_i - sum_j dy_j y_j). May run in place.
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C) {
  for_chunks(B, 4 * C, [=](int64_t lo, int64_t hi) {
  for (int64_t r = lo; r < hi; ++r) {
    const T* dyr = dy + r * C;
    const T* yr = y + r * C;
    T dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += dyr[c] * yr[c];
    for (int64_t c = 0; c < C; ++c) dx[r * C + c] = yr[c] * (dyr[c] - dot);
  }
  });
}

// Dropout with inverted scaling. mask (n) <- 0 with probability p, else 1 / (1 - p), from rng:
// 32 random bits per element, two elements per draw.
// dropout_mask_part: elements [first, first + n) of the mask of `total` elements that
// dropout_mask would draw, with rng advanced past all of it (data-parallel processes that share
// one rng state and split one batch draw the masks one process would).
template <class T>
void dropout_mask_part(T* mask, Rng& rng, int64_t first, int64_t n, int64_t total, double p) {
  const auto threshold = uint64_t(p * 4294967296.0);
  const T keep = T(1.0 / (1.0 - p));
  const int64_t end = first + n;
  for (int64_t i = 0; i < total; i += 2) {
    const uint64_t r = rng.next();
    if (i + 1 < first || i >= end) continue;
    if (i >= first) mask[i - first] = (r & 0xFFFFFFFFull) >= threshold ? keep : T(0);
    if (i + 1 >= first && i + 1 < end) mask[i + 1 - first] = (r >> 32) >= threshold ? keep : T(0);
  }
}

template <class T>
void dropout_mask(T* mask, Rng& rng, int64_t n, double p) {
  dropout_mask_part(mask, rng, 0, n, n, p);
}

// y (n) <- x (n) * mask (n). Also the backward pass (dx = dy * mask), in place.
template <class T>
void dropout_forward(T* y, const T* x, const T* mask, int64_t n) {
  for_chunks(n, 1, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * mask[i];
  });
}

// ---------------------------------------------------------------------------------------------
// Losses with mean reduction, as torch.nn with reduction="mean", times spec.scale. Each returns
// the loss value (accumulated in double, fixed order) and writes d(loss)/d(out) into dout; dout
// may be nullptr when only the value is wanted.
//
// Sample weights: w (B) or nullptr (each row 1), w_total their sum (or B). The mean is then
// sum_r w_r loss_r / w_total. Each gradient row carries its w_r unless !weigh_grad: then the
// backward applies the weights in its float64 sums (see dense_weight_grads_f64), and a row of
// weight k gives the very gradient rows of k copies of it.

struct RowWeights {
  const double* w = nullptr;
  double total = 0.0;      // sum of w (unused when w is nullptr)
  bool weigh_grad = true;  // each gradient row times its weight
  double at(int64_t r) const { return w ? w[r] : 1.0; }
  double sum(int64_t B) const { return w ? total : double(B); }
  // w (B) or nullptr, its total summed in row order from 0: the one order of every normalizer.
  static RowWeights over(const double* w, int64_t B) {
    RowWeights rw;
    rw.w = w;
    for (int64_t r = 0; w && r < B; ++r) rw.total += w[r];
    return rw;
  }
};

// out (B, C), target (B, C): MSE, L1, Huber, BinaryCrossEntropy (on logits, with torch's
// per-output weight and pos_weight), PoissonNLL. Each row's loss is the mean over its outputs.
template <class T>
double regression_loss(T* dout, const T* out, const T* target, int64_t B, int64_t C,
                       const LossSpec& spec, RowWeights rw = {}) {
  const double rows = rw.sum(B);
  const double inv = rows > 0 ? spec.scale / (double(C) * rows) : 0.0;
  const T g = T(inv);
  const double* cw = spec.weight.empty() ? nullptr : spec.weight.data();
  const double* pw = spec.pos_weight.empty() ? nullptr : spec.pos_weight.data();
  const T delta = T(spec.delta);
  double total = 0;
  for (int64_t r = 0; r < B; ++r) {
    double row = 0;  // without weights the rows go straight into total (the order of old)
    double& acc = rw.w ? row : total;
    const T gr = rw.w && rw.weigh_grad ? T(rw.w[r] * inv) : g;
    for (int64_t i = r * C; i < (r + 1) * C; ++i) {
      const T o = out[i], t = target[i], d = o - t;
      T grad;
      switch (spec.kind) {
        case LossKind::MSE:
          acc += double(d) * double(d);
          grad = T(2) * d;
          break;
        case LossKind::L1:
          acc += std::fabs(double(d));
          grad = T((d > T(0)) - (d < T(0)));
          break;
        case LossKind::Huber: {
          const T a = std::fabs(d);
          acc += a < delta ? 0.5 * double(d) * double(d)
                           : double(delta) * (double(a) - 0.5 * double(delta));
          grad = a < delta ? d : delta * T((d > T(0)) - (d < T(0)));
          break;
        }
        case LossKind::PoissonNLL: {
          const T rate = std::exp(o);
          acc += double(rate) - double(t) * double(o);
          grad = rate - t;
          break;
        }
        default: {  // BinaryCrossEntropy on logits: max(o, 0) - o t + log(1 + exp(-|o|))
          const double od = o, softplus_neg = std::log1p(std::exp(-std::fabs(od)));
          const int64_t c = i - r * C;
          double value;
          if (pw) {  // torch: (1 - t) o + (1 + (pos_weight - 1) t) log(1 + exp(-o))
            const double lw = 1.0 + (pw[c] - 1.0) * double(t);
            value = (1.0 - double(t)) * od + lw * (softplus_neg + (od < 0 ? -od : 0.0));
            grad = (T(1) - t) - T(lw) * sigmoid(-o);
          } else {
            value = (od > 0 ? od : 0.0) - od * double(t) + softplus_neg;
            grad = sigmoid(o) - t;
          }
          if (cw) {  // torch's weight: each output's loss and gradient times its weight
            value *= cw[c];
            grad *= T(cw[c]);
          }
          acc += value;
          break;
        }
      }
      if (dout) dout[i] = grad * gr;
    }
    if (rw.w) total += rw.w[r] * row;
  }
  return total * inv;
}

// The normalizer of a batch's loss: sum_r w_r n_r (LossSpec): rw.sum(B), or with class indices
// (labels, CrossEntropy) and class weights or ignored rows, the sum of the rows' w_r weight[y_r].
inline double loss_normalizer(const int64_t* labels, int64_t B, const LossSpec& spec,
                              RowWeights rw) {
  if (!labels || spec.kind != LossKind::CrossEntropy) return rw.sum(B);
  const double* cw = spec.weight.empty() ? nullptr : spec.weight.data();
  double norm = 0;
  bool plain = !cw;
  for (int64_t r = 0; r < B; ++r) {
    if (labels[r] == spec.ignore_index) {
      plain = false;
      continue;
    }
    norm += rw.at(r) * (cw ? cw[labels[r]] : 1.0);
  }
  return plain ? rw.sum(B) : norm;
}

// CrossEntropy on logits out (B, C) (log-sum-exp: no overflow) against class indices labels
// (B) or, when labels is nullptr, class probabilities probs (B, C), with torch's label
// smoothing eps (the target distribution q = (1 - eps) target + eps / C), class weights w_c
// (spec.weight) and ignore_index. A row's loss is sum_c w_c q_c (lse - o_c); its gradient
// (softmax(o) sum_c w_c q_c - w q), times spec.scale and the row's sample weight over the
// normalizer (loss_normalizer; weights: see above).
// *normalizer (when not nullptr) <- that normalizer.
template <class T>
double cross_entropy_loss(T* dout, const T* out, const int64_t* labels, const T* probs,
                          int64_t B, int64_t C, const LossSpec& spec, RowWeights rw = {},
                          double* normalizer = nullptr) {
  const double eps = spec.label_smoothing, scale = spec.scale;
  const double* cw = spec.weight.empty() ? nullptr : spec.weight.data();
  double cw_sum = 0;
  for (int64_t c = 0; cw && c < C; ++c) cw_sum += cw[c];
  const double weight = loss_normalizer(labels, B, spec, rw);
  if (normalizer) *normalizer = weight;
  if (!(weight > 0)) {  // nothing counts: no loss, no gradient
    if (dout) std::fill(dout, dout + B * C, T(0));
    return 0.0;
  }
  double total = 0;
  const T inv_b = T(scale / weight);
  const T smooth = T(eps / double(C));
  for (int64_t r = 0; r < B; ++r) {
    const T* o = out + r * C;
    T* d = dout ? dout + r * C : nullptr;
    if (labels && labels[r] == spec.ignore_index) {  // no loss, no gradient
      if (d) std::fill(d, d + C, T(0));
      continue;
    }
    T mx = o[0];
    for (int64_t c = 1; c < C; ++c) mx = o[c] > mx ? o[c] : mx;
    double sum = 0, sum_logits = 0;
    for (int64_t c = 0; c < C; ++c) {
      sum += std::exp(double(o[c] - mx));
      sum_logits += double(o[c]) * (cw ? cw[c] : 1.0);
    }
    const double lse = double(mx) + std::log(sum);
    const T inv_sum = T(1.0 / sum);
    const T f = rw.w && rw.weigh_grad ? T(rw.w[r] * scale / weight) : inv_b;
    if (labels) {
      const int64_t y = labels[r];
      const double wy = cw ? cw[y] : 1.0;
      // -sum_c w_c q_c log p_c with log p_c = o_c - lse: (1 - eps) w_y (lse - o_y) plus eps
      // times the mean over the classes of w_c (lse - o_c).
      const double smoothed = cw ? (cw_sum * lse - sum_logits) / double(C)
                                 : lse - sum_logits / double(C);
      total += rw.at(r) * ((1.0 - eps) * wy * (lse - double(o[y])) + eps * smoothed);
      if (d) {
        if (cw) {
          const T q_sum = T((1.0 - eps) * wy + eps * cw_sum / double(C));  // sum_c w_c q_c
          for (int64_t c = 0; c < C; ++c)
            d[c] = (std::exp(o[c] - mx) * inv_sum * q_sum - T(cw[c]) * smooth) * f;
        } else {
          for (int64_t c = 0; c < C; ++c) d[c] = (std::exp(o[c] - mx) * inv_sum - smooth) * f;
        }
        d[y] -= T((1.0 - eps) * wy) * f;
      }
    } else {
      const T* t = probs + r * C;
      auto wq = [&](int64_t c) {  // w_c q_c
        return (cw ? cw[c] : 1.0) * ((1.0 - eps) * double(t[c]) + eps / double(C));
      };
      double q_sum = 0, row = 0;
      for (int64_t c = 0; c < C; ++c) {
        q_sum += wq(c);
        row += wq(c) * (lse - double(o[c]));
      }
      total += rw.at(r) * row;
      for (int64_t c = 0; d && c < C; ++c)
        d[c] = (std::exp(o[c] - mx) * inv_sum * T(q_sum) - T(wq(c))) * f;
    }
  }
  return total / weight * scale;
}

// A batch's loss for spec (CrossEntropy on labels or probabilities, else regression_loss on
// values) and d(loss)/d(out) into dout; normalizer <- its loss_normalizer.
template <class T>
double batch_loss(T* dout, const T* out, const int64_t* labels, const T* values, int64_t B,
                  int64_t C, const LossSpec& spec, RowWeights rw, double& normalizer) {
  if (spec.kind == LossKind::CrossEntropy)
    return cross_entropy_loss(dout, out, labels, values, B, C, spec, rw, &normalizer);
  normalizer = rw.sum(B);
  return regression_loss(dout, out, values, B, C, spec, rw);
}

// Float64 sums (Network::set_float64_sums): dw (OUT, IN) and db (OUT) (+)= the weighted sums
// over the rows, sum_b w_b dy_b x_b^T and sum_b w_b dy_b, accumulated in double and rounded once
// to T. A product of two floats is exact in double, so (short of double rounding) the result
// depends neither on the order of the rows nor on whether a row stands for k copies of itself
// (weight k). dy (B, OUT), x (B, IN), w (B) or nullptr; dy64 (B, OUT), x64 (B, IN) and dw64
// (OUT, IN) are scratch; db may be nullptr.
template <class T>
void dense_weight_grads_f64(T* dw, T* db, const T* dy, const T* x, const double* w, int64_t B,
                            int64_t IN, int64_t OUT, bool accumulate, double* dy64, double* x64,
                            double* dw64) {
  for (int64_t b = 0; b < B; ++b) {
    const double wb = w ? w[b] : 1.0;
    for (int64_t o = 0; o < OUT; ++o) dy64[b * OUT + o] = wb * double(dy[b * OUT + o]);
  }
  std::copy(x, x + B * IN, x64);
  gemm<double>(true, false, OUT, IN, B, 1.0, dy64, OUT, x64, IN, 0.0, dw64, IN);
  for (int64_t i = 0; i < OUT * IN; ++i) dw[i] = T(accumulate ? double(dw[i]) + dw64[i] : dw64[i]);
  if (!db) return;
  for (int64_t o = 0; o < OUT; ++o) {
    double sum = accumulate ? double(db[o]) : 0.0;
    for (int64_t b = 0; b < B; ++b) sum += dy64[b * OUT + o];
    db[o] = T(sum);
  }
}

// ---------------------------------------------------------------------------------------------
// Reductions over the flat buffers.

// Sum of squares of x (n), in double, in a fixed order (16 fixed chunks, each summed in 32
// interleaved lanes), so the result does not depend on the thread count or the SIMD width.
double sum_squares(const float* x, int64_t n);
double sum_squares(const double* x, int64_t n);

// x (n) *= a
void scale(float* x, float a, int64_t n);
void scale(double* x, double a, int64_t n);

// True when every value of x (n) is finite (vectorized, lane-wise x * 0 sums).
bool all_finite(const float* x, int64_t n);
bool all_finite(const double* x, int64_t n);

}  // namespace steepest
