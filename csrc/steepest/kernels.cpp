#include "steepest/kernels.hpp"

#include <algorithm>
#include <cstring>

#include "steepest/dispatch.hpp"

namespace steepest {

// ---------------------------------------------------------------------------------------------
// Elementwise kernels with runtime dispatch. Each *_impl is inlined into a STEEPEST_CLONES
// wrapper (one per type), which is what gets an AVX2 and a baseline version; the pool, when the
// work is large enough, splits the range outside the wrapper.

namespace {

template <class T>
[[gnu::always_inline]] inline void bias_act_impl(T* act, T* z, const T* b, int64_t rows,
                                                 int64_t OUT, T slope) {
  for (int64_t r = 0; r < rows; ++r) {
    T* zr = z + r * OUT;
    if (b) {
      for (int64_t o = 0; o < OUT; ++o) zr[o] += b[o];
    }
    if (act) {
      T* ar = act + r * OUT;
      if (slope == T(0)) {
        for (int64_t o = 0; o < OUT; ++o) ar[o] = zr[o] > T(0) ? zr[o] : T(0);
      } else {
        for (int64_t o = 0; o < OUT; ++o) ar[o] = zr[o] > T(0) ? zr[o] : slope * zr[o];
      }
    }
  }
}

STEEPEST_CLONES void bias_act_rows(float* act, float* z, const float* b, int64_t rows,
                                   int64_t OUT, float slope) {
  bias_act_impl(act, z, b, rows, OUT, slope);
}
STEEPEST_CLONES void bias_act_rows(double* act, double* z, const double* b, int64_t rows,
                                   int64_t OUT, double slope) {
  bias_act_impl(act, z, b, rows, OUT, slope);
}

template <class T>
void bias_act_forward_t(T* act, T* z, const T* b, int64_t B, int64_t OUT, T slope) {
  // Whole rows per thread (for_chunks splits in multiples of 16 rows).
  for_chunks(B, OUT, [&](int64_t lo, int64_t hi) {
    bias_act_rows(act ? act + lo * OUT : nullptr, z + lo * OUT, b, hi - lo, OUT, slope);
  });
}

template <class T>
[[gnu::always_inline]] inline void act_colsum_impl(T* db, T* dy, const T* x, int64_t B,
                                                   int64_t OUT, T slope, bool accumulate) {
  if (db && !accumulate) std::memset(db, 0, sizeof(T) * OUT);
  for (int64_t r = 0; r < B; ++r) {
    T* d = dy + r * OUT;
    if (x) {
      const T* xr = x + r * OUT;
      if (slope == T(0)) {
        for (int64_t o = 0; o < OUT; ++o) d[o] = xr[o] > T(0) ? d[o] : T(0);
      } else {
        for (int64_t o = 0; o < OUT; ++o) d[o] = xr[o] > T(0) ? d[o] : slope * d[o];
      }
    }
    if (db) {
      for (int64_t o = 0; o < OUT; ++o) db[o] += d[o];
    }
  }
}

STEEPEST_CLONES void act_colsum(float* db, float* dy, const float* x, int64_t B, int64_t OUT,
                                float slope, bool accumulate) {
  act_colsum_impl(db, dy, x, B, OUT, slope, accumulate);
}
STEEPEST_CLONES void act_colsum(double* db, double* dy, const double* x, int64_t B,
                                int64_t OUT, double slope, bool accumulate) {
  act_colsum_impl(db, dy, x, B, OUT, slope, accumulate);
}

// 32 interleaved double accumulators, combined in a fixed order: vectorizes (4 or 8 lanes of
// each register hold independent sums) without changing the result.
template <class T>
[[gnu::always_inline]] inline double sumsq_impl(const T* x, int64_t n) {
  constexpr int kLanes = 32;
  double acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += double(x[i + j]) * double(x[i + j]);
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += double(x[i]) * double(x[i]);
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0];
}

STEEPEST_CLONES double sumsq_block(const float* x, int64_t n) { return sumsq_impl(x, n); }
STEEPEST_CLONES double sumsq_block(const double* x, int64_t n) { return sumsq_impl(x, n); }

template <class T>
double sum_squares_t(const T* x, int64_t n) {
  // 16 fixed chunks: the same partial sums whichever thread computes them.
  constexpr int64_t kChunks = 16;
  double partial[kChunks] = {0};
  const int64_t step = ((n + kChunks - 1) / kChunks + 31) / 32 * 32;
  auto chunk = [&](int64_t c) {
    const int64_t lo = std::min(n, c * step), hi = std::min(n, lo + step);
    partial[c] = sumsq_block(x + lo, hi - lo);
  };
  if (chunks_for(n, 1) > 1) {
    run_tasks(kChunks, chunk);
  } else {
    for (int64_t c = 0; c < kChunks; ++c) chunk(c);
  }
  double s = 0;
  for (int64_t c = 0; c < kChunks; ++c) s += partial[c];
  return s;
}

template <class T>
[[gnu::always_inline]] inline void scale_impl(T* x, T a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}
STEEPEST_CLONES void scale_block(float* x, float a, int64_t n) { scale_impl(x, a, n); }
STEEPEST_CLONES void scale_block(double* x, double a, int64_t n) { scale_impl(x, a, n); }

}  // namespace

void bias_act_forward(float* act, float* z, const float* b, int64_t B, int64_t OUT, float slope) {
  bias_act_forward_t(act, z, b, B, OUT, slope);
}
void bias_act_forward(double* act, double* z, const double* b, int64_t B, int64_t OUT,
                      double slope) {
  bias_act_forward_t(act, z, b, B, OUT, slope);
}

// Column sums must add rows in order, so this pass stays on one thread (it is O(B * OUT),
// small next to the products around it).
void act_backward_colsum(float* db, float* dy, const float* x, int64_t B, int64_t OUT,
                         float slope, bool accumulate) {
  act_colsum(db, dy, x, B, OUT, slope, accumulate);
}
void act_backward_colsum(double* db, double* dy, const double* x, int64_t B, int64_t OUT,
                         double slope, bool accumulate) {
  act_colsum(db, dy, x, B, OUT, slope, accumulate);
}

namespace {
template <class T>
[[gnu::always_inline]] inline bool finite_impl(const T* x, int64_t n) {
  constexpr int kLanes = 16;
  T acc[kLanes] = {0};  // x * 0 is 0 for finite x, NaN for NaN or infinity
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] * T(0);
  }
  for (; i < n; ++i) acc[0] += x[i] * T(0);
  T s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s == T(0);
}
STEEPEST_CLONES bool finite_block(const float* x, int64_t n) { return finite_impl(x, n); }
STEEPEST_CLONES bool finite_block(const double* x, int64_t n) { return finite_impl(x, n); }
}  // namespace

bool all_finite(const float* x, int64_t n) { return finite_block(x, n); }
bool all_finite(const double* x, int64_t n) { return finite_block(x, n); }

double sum_squares(const float* x, int64_t n) { return sum_squares_t(x, n); }
double sum_squares(const double* x, int64_t n) { return sum_squares_t(x, n); }

void scale(float* x, float a, int64_t n) {
  for_chunks(n, 1, [&](int64_t lo, int64_t hi) { scale_block(x + lo, a, hi - lo); });
}
void scale(double* x, double a, int64_t n) {
  for_chunks(n, 1, [&](int64_t lo, int64_t hi) { scale_block(x + lo, a, hi - lo); });
}

}  // namespace steepest
