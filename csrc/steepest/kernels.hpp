// Kernels: forward/backward of one layer, activation or loss. No allocation, no Python.
// Signatures follow llm.c: outputs first, const inputs next, sizes last.
// B = batch rows, IN/OUT = feature widths, C = classes/outputs, n = element count.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace steepest {

// ---------------------------------------------------------------------------------------------
// Threads and BLAS. One setting governs OpenBLAS and the core's own OpenMP loops.
void set_num_threads(int n);
int get_num_threads();
// The number of threads for a loop of `work` cheap operations: 1 below a threshold, so small
// loops never pay for a thread fork.
int threads_for(int64_t work);

// C (M, N) = alpha * op(A) op(B) + beta * C, row-major. op(A) is (M, K), op(B) is (K, N).
// Throws std::length_error when a dimension does not fit BLAS's 32-bit integers.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// ---------------------------------------------------------------------------------------------
// Dense layer: y = x W^T + b, W (OUT, IN) like torch.nn.Linear.

// y (B, OUT) <- x (B, IN), w (OUT, IN), b (OUT) or nullptr
template <class T>
void dense_forward(T* y, const T* x, const T* w, const T* b, int64_t B, int64_t IN, int64_t OUT) {
  if (b) {
    for (int64_t r = 0; r < B; ++r) std::memcpy(y + r * OUT, b, sizeof(T) * OUT);
  }
  gemm<T>(false, true, B, OUT, IN, T(1), x, IN, w, IN, b ? T(1) : T(0), y, OUT);
}

// dw (OUT, IN), db (OUT) <- dy (B, OUT), x (B, IN); added to (accumulate) or overwriting the
// old values. dx (B, IN) <- dy W, skipped when dx is nullptr (nobody needs it).
template <class T>
void dense_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t B,
                    int64_t IN, int64_t OUT, bool accumulate) {
  gemm<T>(true, false, OUT, IN, B, T(1), dy, OUT, x, IN, accumulate ? T(1) : T(0), dw, IN);
  if (db) {
    // Column sums of dy in a fixed row order: the result does not depend on the thread count.
    if (!accumulate) std::memset(db, 0, sizeof(T) * OUT);
    for (int64_t r = 0; r < B; ++r) {
      const T* row = dy + r * OUT;
      for (int64_t o = 0; o < OUT; ++o) db[o] += row[o];
    }
  }
  if (dx) gemm<T>(false, false, B, IN, OUT, T(1), dy, OUT, w, IN, T(0), dx, IN);
}

// ---------------------------------------------------------------------------------------------
// Activations. Elementwise ones act on n values; `param` is LeakyReLU's negative slope or ELU's
// alpha. Backward may run in place (dx == dy); it reads the saved input x and/or output y.

enum class Activation : int32_t { ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Softplus };

template <class T>
inline T sigmoid(T x) {
  // Stable on both tails: exp of a non-positive number only.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

// y (n) <- x (n)
template <class T>
void activation_forward(T* y, const T* x, int64_t n, Activation kind, T param) {
  switch (kind) {
    case Activation::ReLU:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      break;
    case Activation::LeakyReLU:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : param * x[i];
      break;
    case Activation::ELU:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : param * std::expm1(x[i]);
      break;
    case Activation::GELU:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
      break;
    case Activation::SiLU:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
      break;
    case Activation::Sigmoid:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
      break;
    case Activation::Tanh:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case Activation::Softplus:  // beta = 1, threshold = 20, as torch.nn.Softplus
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(20) ? x[i] : std::log1p(std::exp(x[i]));
      break;
  }
}

// dx (n) <- dy (n), x (n) input, y (n) output of the forward pass
template <class T>
void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Activation kind,
                         T param) {
  switch (kind) {
    case Activation::ReLU:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
      break;
    case Activation::LeakyReLU:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : param * dy[i];
      break;
    case Activation::ELU:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : dy[i] * (y[i] + param);
      break;
    case Activation::GELU: {
      const T inv_sqrt_2pi = T(0.3989422804014327);
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        T cdf = T(0.5) * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
        T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
      }
      break;
    }
    case Activation::SiLU:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        T s = sigmoid(x[i]);
        dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
      }
      break;
    case Activation::Sigmoid:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      break;
    case Activation::Tanh:
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
      break;
    case Activation::Softplus:
#pragma omp parallel for num_threads(threads_for(8 * n)) schedule(static)
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(20) ? dy[i] : dy[i] * sigmoid(x[i]);
      break;
  }
}

// Softmax over the last axis. y (B, C) <- x (B, C)
template <class T>
void softmax_forward(T* y, const T* x, int64_t B, int64_t C) {
#pragma omp parallel for num_threads(threads_for(8 * B * C)) schedule(static)
  for (int64_t r = 0; r < B; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    T mx = xr[0];
    for (int64_t c = 1; c < C; ++c) mx = xr[c] > mx ? xr[c] : mx;
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += (yr[c] = std::exp(xr[c] - mx));
    for (int64_t c = 0; c < C; ++c) yr[c] /= sum;
  }
}

// dx (B, C) <- dy (B, C), y (B, C): dx_i = y_i (dy_i - sum_j dy_j y_j). May run in place.
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t B, int64_t C) {
#pragma omp parallel for num_threads(threads_for(4 * B * C)) schedule(static)
  for (int64_t r = 0; r < B; ++r) {
    const T* dyr = dy + r * C;
    const T* yr = y + r * C;
    T dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += dyr[c] * yr[c];
    for (int64_t c = 0; c < C; ++c) dx[r * C + c] = yr[c] * (dyr[c] - dot);
  }
}

// Dropout with inverted scaling: y = x * mask, mask (n) holds 0 or 1/(1-p), drawn by the caller.
template <class T>
void dropout_forward(T* y, const T* x, const T* mask, int64_t n) {
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * mask[i];
}

// ---------------------------------------------------------------------------------------------
// Losses with mean reduction, as torch.nn with reduction="mean". Each returns the loss value
// (accumulated in double, fixed order) and writes d(loss)/d(out) into dout; dout may be
// nullptr when only the value is wanted.

enum class LossKind : int32_t { MSE, L1, Huber, BinaryCrossEntropy, CrossEntropy };

struct LossSpec {
  LossKind kind = LossKind::MSE;
  double delta = 1.0;            // Huber
  double label_smoothing = 0.0;  // CrossEntropy
};

// out (B, C), target (B, C): MSE, L1, Huber, BinaryCrossEntropy (on logits)
template <class T>
double regression_loss(T* dout, const T* out, const T* target, int64_t B, int64_t C,
                       const LossSpec& spec) {
  const int64_t n = B * C;
  const double inv_n = 1.0 / double(n);
  const T g = T(inv_n);
  const T delta = T(spec.delta);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T o = out[i], t = target[i], d = o - t;
    T grad;
    switch (spec.kind) {
      case LossKind::MSE:
        total += double(d) * double(d);
        grad = T(2) * d;
        break;
      case LossKind::L1:
        total += std::fabs(double(d));
        grad = T((d > T(0)) - (d < T(0)));
        break;
      case LossKind::Huber: {
        const T a = std::fabs(d);
        total += a < delta ? 0.5 * double(d) * double(d) : double(delta) * (double(a) - 0.5 * double(delta));
        grad = a < delta ? d : delta * T((d > T(0)) - (d < T(0)));
        break;
      }
      default: {  // BinaryCrossEntropy on logits: max(o, 0) - o t + log(1 + exp(-|o|))
        const double od = o;
        total += (od > 0 ? od : 0.0) - od * double(t) + std::log1p(std::exp(-std::fabs(od)));
        grad = sigmoid(o) - t;
        break;
      }
    }
    if (dout) dout[i] = grad * g;
  }
  return total * inv_n;
}

// CrossEntropy on logits out (B, C) with integer labels (B) in [0, C), optional label
// smoothing eps: target distribution q = (1 - eps) onehot + eps / C. Log-sum-exp, no overflow.
// dout (B, C) = (softmax(out) - q) / B.
template <class T>
double cross_entropy_loss(T* dout, const T* out, const int64_t* labels, int64_t B, int64_t C,
                          double label_smoothing) {
  const double eps = label_smoothing;
  double total = 0;
  const T inv_b = T(1.0 / double(B));
  for (int64_t r = 0; r < B; ++r) {
    const T* o = out + r * C;
    T mx = o[0];
    for (int64_t c = 1; c < C; ++c) mx = o[c] > mx ? o[c] : mx;
    double sum = 0, sum_logits = 0;
    for (int64_t c = 0; c < C; ++c) {
      sum += std::exp(double(o[c] - mx));
      sum_logits += double(o[c]);
    }
    const double lse = double(mx) + std::log(sum);
    const int64_t y = labels[r];
    // -sum_c q_c log p_c with log p_c = o_c - lse
    total += (1.0 - eps) * (lse - double(o[y])) + eps * (lse - sum_logits / double(C));
    if (dout) {
      T* d = dout + r * C;
      const T inv_sum = T(1.0 / sum);
      const T smooth = T(eps / double(C));
      for (int64_t c = 0; c < C; ++c) d[c] = (std::exp(o[c] - mx) * inv_sum - smooth) * inv_b;
      d[y] -= T(1.0 - eps) * inv_b;
    }
  }
  return total / double(B);
}

// ---------------------------------------------------------------------------------------------
// Reductions over the flat buffers.

// Sum of squares of x (n), in double, in a fixed order (chunked partial sums in a fixed number
// of chunks), so the result does not depend on the thread count.
template <class T>
double sum_squares(const T* x, int64_t n) {
  constexpr int64_t kChunks = 16;
  double partial[kChunks] = {0};
  const int64_t step = (n + kChunks - 1) / kChunks;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t c = 0; c < kChunks; ++c) {
    const int64_t lo = c * step, hi = lo + step < n ? lo + step : n;
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += double(x[i]) * double(x[i]);
    partial[c] = s;
  }
  double s = 0;
  for (int64_t c = 0; c < kChunks; ++c) s += partial[c];
  return s;
}

// x (n) *= a
template <class T>
void scale(T* x, T a, int64_t n) {
#pragma omp parallel for simd num_threads(threads_for(n)) schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// True when every value of x (n) is finite.
template <class T>
bool all_finite(const T* x, int64_t n) {
  T acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += x[i] * T(0);  // NaN if any value is NaN or infinite
  return acc == T(0);
}

}  // namespace steepest
