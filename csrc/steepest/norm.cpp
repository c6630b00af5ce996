#include "steepest/norm.hpp"

#include <algorithm>
#include <cmath>

#include "steepest/dispatch.hpp"
#include "steepest/threads.hpp"

namespace steepest {

namespace {

// Column sums over the rows run in blocks of this many columns, one double accumulator each
// (the rows added in order): the same sums on any thread count and any SIMD width.
constexpr int64_t kBlock = 64;
// Sums along a row run in this many interleaved double lanes, combined in a fixed order.
constexpr int kLanes = 8;

// sum of f(i) for i in [0, n), in kLanes lanes.
template <class F>
[[gnu::always_inline]] inline double lane_sum(int64_t n, F f) {
  double acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += f(i + j);
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += f(i);
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0];
}

// y (rows, C) <- y * w + b, the affine part (each may be nullptr).
template <class T>
[[gnu::always_inline]] inline void affine_row(T* y, const T* w, const T* b, int64_t C) {
  if (w) {
    for (int64_t c = 0; c < C; ++c) y[c] *= w[c];
  }
  if (b) {
    for (int64_t c = 0; c < C; ++c) y[c] += b[c];
  }
}

// -- BatchNorm, over the columns [c0, c0 + n) of (B, C) arrays -----------------------------------

template <class T>
[[gnu::always_inline]] inline void bn_statistics_impl(T* mean, T* rstd, T* var, const T* x,
                                                      int64_t B, int64_t C, int64_t c0,
                                                      int64_t n, double eps) {
  for (; n > 0; c0 += kBlock, n -= kBlock) {
    const int64_t w = std::min(n, kBlock);
    double m[kBlock], sq[kBlock];
    for (int64_t j = 0; j < w; ++j) m[j] = sq[j] = 0;
    for (int64_t r = 0; r < B; ++r) {
      const T* xr = x + r * C + c0;
      for (int64_t j = 0; j < w; ++j) m[j] += double(xr[j]);
    }
    for (int64_t j = 0; j < w; ++j) m[j] /= double(B);
    for (int64_t r = 0; r < B; ++r) {  // two passes: no cancellation in the variance
      const T* xr = x + r * C + c0;
      for (int64_t j = 0; j < w; ++j) {
        const double d = double(xr[j]) - m[j];
        sq[j] += d * d;
      }
    }
    for (int64_t j = 0; j < w; ++j) {
      mean[c0 + j] = T(m[j]);
      rstd[c0 + j] = T(1.0 / std::sqrt(sq[j] / double(B) + eps));
      var[c0 + j] = T(sq[j] / double(B - 1));
    }
  }
}

STEEPEST_CLONES void bn_statistics_cols(float* mean, float* rstd, float* var, const float* x,
                                        int64_t B, int64_t C, int64_t c0, int64_t n,
                                        double eps) {
  bn_statistics_impl(mean, rstd, var, x, B, C, c0, n, eps);
}
STEEPEST_CLONES void bn_statistics_cols(double* mean, double* rstd, double* var, const double* x,
                                        int64_t B, int64_t C, int64_t c0, int64_t n,
                                        double eps) {
  bn_statistics_impl(mean, rstd, var, x, B, C, c0, n, eps);
}

template <class T>
[[gnu::always_inline]] inline void bn_forward_impl(T* y, const T* x, const T* mean,
                                                   const T* rstd, const T* w, const T* b,
                                                   int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * rstd[c];
    affine_row(yr, w, b, C);
  }
}

STEEPEST_CLONES void bn_forward_rows(float* y, const float* x, const float* mean,
                                     const float* rstd, const float* w, const float* b,
                                     int64_t rows, int64_t C) {
  bn_forward_impl(y, x, mean, rstd, w, b, rows, C);
}
STEEPEST_CLONES void bn_forward_rows(double* y, const double* x, const double* mean,
                                     const double* rstd, const double* w, const double* b,
                                     int64_t rows, int64_t C) {
  bn_forward_impl(y, x, mean, rstd, w, b, rows, C);
}

template <class T>
[[gnu::always_inline]] inline void bn_backward_impl(T* dx, T* dw, T* db, const T* dy,
                                                    const T* x, const T* mean, const T* rstd,
                                                    const T* w, int64_t B, int64_t C,
                                                    int64_t c0, int64_t n, bool batch_stats,
                                                    bool accumulate) {
  for (; n > 0; c0 += kBlock, n -= kBlock) {
    const int64_t cols = std::min(n, kBlock);
    const T* mu = mean + c0;
    const T* rs = rstd + c0;
    double sum_dy[kBlock], sum_dy_xhat[kBlock];
    for (int64_t j = 0; j < cols; ++j) sum_dy[j] = sum_dy_xhat[j] = 0;
    for (int64_t r = 0; r < B; ++r) {
      const T* g = dy + r * C + c0;
      const T* xr = x + r * C + c0;
      for (int64_t j = 0; j < cols; ++j) {
        const T xhat = (xr[j] - mu[j]) * rs[j];
        sum_dy[j] += double(g[j]);
        sum_dy_xhat[j] += double(g[j]) * double(xhat);
      }
    }
    if (db) {
      for (int64_t j = 0; j < cols; ++j) db[c0 + j] = (accumulate ? db[c0 + j] : T(0)) + T(sum_dy[j]);
    }
    if (dw) {
      for (int64_t j = 0; j < cols; ++j)
        dw[c0 + j] = (accumulate ? dw[c0 + j] : T(0)) + T(sum_dy_xhat[j]);
    }
    if (!dx) continue;
    // dx = k (dy - m1 - xhat m2), k = rstd w; m1, m2 the batch means of dy and dy xhat (0 for
    // constant statistics)
    T k[kBlock], m1[kBlock], m2[kBlock];
    for (int64_t j = 0; j < cols; ++j) {
      k[j] = w ? rs[j] * w[c0 + j] : rs[j];
      m1[j] = batch_stats ? T(sum_dy[j] / double(B)) : T(0);
      m2[j] = batch_stats ? T(sum_dy_xhat[j] / double(B)) : T(0);
    }
    for (int64_t r = 0; r < B; ++r) {
      const T* g = dy + r * C + c0;
      const T* xr = x + r * C + c0;
      T* d = dx + r * C + c0;
      for (int64_t j = 0; j < cols; ++j) {
        const T xhat = (xr[j] - mu[j]) * rs[j];
        d[j] = k[j] * (g[j] - m1[j] - xhat * m2[j]);
      }
    }
  }
}

STEEPEST_CLONES void bn_backward_cols(float* dx, float* dw, float* db, const float* dy,
                                      const float* x, const float* mean, const float* rstd,
                                      const float* w, int64_t B, int64_t C, int64_t c0,
                                      int64_t n, bool batch_stats, bool accumulate) {
  bn_backward_impl(dx, dw, db, dy, x, mean, rstd, w, B, C, c0, n, batch_stats, accumulate);
}
STEEPEST_CLONES void bn_backward_cols(double* dx, double* dw, double* db, const double* dy,
                                      const double* x, const double* mean, const double* rstd,
                                      const double* w, int64_t B, int64_t C, int64_t c0,
                                      int64_t n, bool batch_stats, bool accumulate) {
  bn_backward_impl(dx, dw, db, dy, x, mean, rstd, w, B, C, c0, n, batch_stats, accumulate);
}

// -- LayerNorm ----------------------------------------------------------------------------------

template <class T>
[[gnu::always_inline]] inline void ln_forward_impl(T* y, T* mean, T* rstd, const T* x,
                                                   const T* w, const T* b, int64_t rows,
                                                   int64_t C, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    const double m = lane_sum(C, [&](int64_t c) { return double(xr[c]); }) / double(C);
    const double var = lane_sum(C, [&](int64_t c) {
      const double d = double(xr[c]) - m;
      return d * d;
    }) / double(C);
    const T mt = T(m), st = T(1.0 / std::sqrt(var + eps));
    mean[r] = mt;
    rstd[r] = st;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mt) * st;
    affine_row(yr, w, b, C);
  }
}

STEEPEST_CLONES void ln_forward_rows(float* y, float* mean, float* rstd, const float* x,
                                     const float* w, const float* b, int64_t rows, int64_t C,
                                     double eps) {
  ln_forward_impl(y, mean, rstd, x, w, b, rows, C, eps);
}
STEEPEST_CLONES void ln_forward_rows(double* y, double* mean, double* rstd, const double* x,
                                     const double* w, const double* b, int64_t rows, int64_t C,
                                     double eps) {
  ln_forward_impl(y, mean, rstd, x, w, b, rows, C, eps);
}

// dw, db of the columns [c0, c0 + n): sums over rows of dy xhat and dy.
template <class T>
[[gnu::always_inline]] inline void ln_param_grads_impl(T* dw, T* db, const T* dy, const T* x,
                                                       const T* mean, const T* rstd, int64_t B,
                                                       int64_t C, int64_t c0, int64_t n,
                                                       bool accumulate) {
  for (; n > 0; c0 += kBlock, n -= kBlock) {
    const int64_t cols = std::min(n, kBlock);
    double sum_dy[kBlock], sum_dy_xhat[kBlock];
    for (int64_t j = 0; j < cols; ++j) sum_dy[j] = sum_dy_xhat[j] = 0;
    for (int64_t r = 0; r < B; ++r) {
      const T* g = dy + r * C + c0;
      const T* xr = x + r * C + c0;
      const T m = mean[r], s = rstd[r];
      for (int64_t j = 0; j < cols; ++j) {
        sum_dy[j] += double(g[j]);
        sum_dy_xhat[j] += double(g[j]) * double((xr[j] - m) * s);
      }
    }
    if (db) {
      for (int64_t j = 0; j < cols; ++j) db[c0 + j] = (accumulate ? db[c0 + j] : T(0)) + T(sum_dy[j]);
    }
    if (dw) {
      for (int64_t j = 0; j < cols; ++j)
        dw[c0 + j] = (accumulate ? dw[c0 + j] : T(0)) + T(sum_dy_xhat[j]);
    }
  }
}

STEEPEST_CLONES void ln_param_grads_cols(float* dw, float* db, const float* dy, const float* x,
                                         const float* mean, const float* rstd, int64_t B,
                                         int64_t C, int64_t c0, int64_t n, bool accumulate) {
  ln_param_grads_impl(dw, db, dy, x, mean, rstd, B, C, c0, n, accumulate);
}
STEEPEST_CLONES void ln_param_grads_cols(double* dw, double* db, const double* dy,
                                         const double* x, const double* mean, const double* rstd,
                                         int64_t B, int64_t C, int64_t c0, int64_t n,
                                         bool accumulate) {
  ln_param_grads_impl(dw, db, dy, x, mean, rstd, B, C, c0, n, accumulate);
}

template <class T>
[[gnu::always_inline]] inline void ln_input_grad_impl(T* dx, const T* dy, const T* x,
                                                      const T* mean, const T* rstd, const T* w,
                                                      int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = dy + r * C;
    const T* xr = x + r * C;
    T* d = dx + r * C;
    const T m = mean[r], s = rstd[r];
    auto dnorm = [&](int64_t c) { return w ? g[c] * w[c] : g[c]; };
    const T m1 = T(lane_sum(C, [&](int64_t c) { return double(dnorm(c)); }) / double(C));
    const T m2 = T(lane_sum(C, [&](int64_t c) {
                     return double(dnorm(c)) * double((xr[c] - m) * s);
                   }) / double(C));
    for (int64_t c = 0; c < C; ++c) d[c] = (dnorm(c) - m1 - (xr[c] - m) * s * m2) * s;
  }
}

STEEPEST_CLONES void ln_input_grad_rows(float* dx, const float* dy, const float* x,
                                        const float* mean, const float* rstd, const float* w,
                                        int64_t rows, int64_t C) {
  ln_input_grad_impl(dx, dy, x, mean, rstd, w, rows, C);
}
STEEPEST_CLONES void ln_input_grad_rows(double* dx, const double* dy, const double* x,
                                        const double* mean, const double* rstd, const double* w,
                                        int64_t rows, int64_t C) {
  ln_input_grad_impl(dx, dy, x, mean, rstd, w, rows, C);
}

// -- Rescale ------------------------------------------------------------------------------------

template <class T>
[[gnu::always_inline]] inline void rescale_impl(T* y, const T* x, const T* shift,
                                                const T* scale, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    if (shift) {
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - shift[c]) / scale[c];
    } else {
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] / scale[c];
    }
  }
}

STEEPEST_CLONES void rescale_rows(float* y, const float* x, const float* shift,
                                  const float* scale, int64_t rows, int64_t C) {
  rescale_impl(y, x, shift, scale, rows, C);
}
STEEPEST_CLONES void rescale_rows(double* y, const double* x, const double* shift,
                                  const double* scale, int64_t rows, int64_t C) {
  rescale_impl(y, x, shift, scale, rows, C);
}

}  // namespace

template <class T>
void batchnorm_statistics(T* mean, T* rstd, T* var, const T* x, int64_t B, int64_t C,
                          double eps) {
  for_chunks(C, 3 * B, [&](int64_t lo, int64_t hi) {
    bn_statistics_cols(mean, rstd, var, x, B, C, lo, hi - lo, eps);
  });
}

template <class T>
void batchnorm_running_rstd(T* rstd, const T* running_var, int64_t C, double eps) {
  for (int64_t c = 0; c < C; ++c) rstd[c] = T(1.0 / std::sqrt(double(running_var[c]) + eps));
}

template <class T>
void batchnorm_update_running(T* running_mean, T* running_var, const T* mean, const T* var,
                              int64_t C, double factor) {
  for (int64_t c = 0; c < C; ++c) {
    running_mean[c] = T(factor * double(mean[c]) + (1 - factor) * double(running_mean[c]));
    running_var[c] = T(factor * double(var[c]) + (1 - factor) * double(running_var[c]));
  }
}

template <class T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* rstd, const T* w, const T* b,
                       int64_t B, int64_t C) {
  for_chunks(B, C, [&](int64_t lo, int64_t hi) {
    bn_forward_rows(y + lo * C, x + lo * C, mean, rstd, w, b, hi - lo, C);
  });
}

template <class T>
void batchnorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                        const T* rstd, const T* w, int64_t B, int64_t C, bool batch_stats,
                        bool accumulate) {
  for_chunks(C, 4 * B, [&](int64_t lo, int64_t hi) {
    bn_backward_cols(dx, dw, db, dy, x, mean, rstd, w, B, C, lo, hi - lo, batch_stats,
                     accumulate);
  });
}

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t B,
                       int64_t C, double eps) {
  for_chunks(B, 4 * C, [&](int64_t lo, int64_t hi) {
    ln_forward_rows(y + lo * C, mean + lo, rstd + lo, x + lo * C, w, b, hi - lo, C, eps);
  });
}

template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                        const T* rstd, const T* w, int64_t B, int64_t C, bool accumulate) {
  // The parameter gradients first: dx may overwrite dy.
  if (dw || db) {
    for_chunks(C, 3 * B, [&](int64_t lo, int64_t hi) {
      ln_param_grads_cols(dw, db, dy, x, mean, rstd, B, C, lo, hi - lo, accumulate);
    });
  }
  if (dx) {
    for_chunks(B, 6 * C, [&](int64_t lo, int64_t hi) {
      ln_input_grad_rows(dx + lo * C, dy + lo * C, x + lo * C, mean + lo, rstd + lo, w, hi - lo,
                         C);
    });
  }
}

template <class T>
void rescale_forward(T* y, const T* x, const T* shift, const T* scale, int64_t B, int64_t C) {
  for_chunks(B, 2 * C, [&](int64_t lo, int64_t hi) {
    rescale_rows(y + lo * C, x + lo * C, shift, scale, hi - lo, C);
  });
}

template <class T>
void rescale_backward(T* dx, const T* dy, const T* scale, int64_t B, int64_t C) {
  for_chunks(B, 2 * C, [&](int64_t lo, int64_t hi) {
    rescale_rows(dx + lo * C, dy + lo * C, static_cast<const T*>(nullptr), scale, hi - lo, C);
  });
}

#define STEEPEST_NORM_INSTANTIATE(T)                                                           \
  template void batchnorm_statistics<T>(T*, T*, T*, const T*, int64_t, int64_t, double);       \
  template void batchnorm_running_rstd<T>(T*, const T*, int64_t, double);                      \
  template void batchnorm_update_running<T>(T*, T*, const T*, const T*, int64_t, double);      \
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*,     \
                                     int64_t, int64_t);                                        \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                      const T*, int64_t, int64_t, bool, bool);                 \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,        \
                                     int64_t, double);                                         \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                      const T*, int64_t, int64_t, bool);                       \
  template void rescale_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t);        \
  template void rescale_backward<T>(T*, const T*, const T*, int64_t, int64_t);
STEEPEST_NORM_INSTANTIATE(float)
STEEPEST_NORM_INSTANTIATE(double)
#undef STEEPEST_NORM_INSTANTIATE

}  // namespace steepest
