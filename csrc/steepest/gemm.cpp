#include "steepest/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "steepest/dispatch.hpp"
#include "steepest/gemm_kernels.hpp"
#include "steepest/threads.hpp"

namespace steepest {

namespace {
// Products of at least this many multiply-adds (M * N * K) are split in tiles (see gemm).
constexpr int64_t kTileWork = int64_t(1) << 20;
constexpr int64_t kMaxTiles = 8;
// Batch-1 work over at least this many weights is split in row tiles (see row_tiles).
constexpr int64_t kRowTileWork = int64_t(1) << 15;
}  // namespace

int gemm_tiles(int64_t M, int64_t N, int64_t K) {
  // A power of two from the work alone, never from the thread count; each tile keeps at least
  // 32 rows or columns.
  // (work in double: M * N * K of three 32-bit dimensions can exceed int64)
  const double work = double(M) * double(N) * double(K);
  const int64_t dim = std::max(M, N);
  int64_t p = 1;
  while (p < kMaxTiles && work / double(2 * p) >= double(kTileWork) && dim / (2 * p) >= 32)
    p *= 2;
  return int(p);
}

int row_tiles(int64_t rows, int64_t cols) {
  const double work = double(rows) * double(cols);
  int64_t p = 1;
  while (p < kMaxTiles && work / double(2 * p) >= double(kRowTileWork) && rows / (2 * p) >= 16)
    p *= 2;
  return int(p);
}

namespace {
blasint blas_dim(int64_t d) {
  if (d > INT_MAX)
    throw std::length_error("matrix dimension " + std::to_string(d) +
                            " exceeds the 32-bit limit of the BLAS library");
  return blasint(d);
}

void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blasint(M), blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb),
                    beta, C, blasint(ldc));
}
void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blasint(M), blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb),
                    beta, C, blasint(ldc));
}

void gemv(bool trans, int64_t rows, int64_t cols, float alpha, const float* A, int64_t lda,
          const float* x, int64_t incx, float beta, float* y, int64_t incy) {
  scipy_cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(rows),
                    blasint(cols), alpha, A, blasint(lda), x, blasint(incx), beta, y,
                    blasint(incy));
}
void gemv(bool trans, int64_t rows, int64_t cols, double alpha, const double* A, int64_t lda,
          const double* x, int64_t incx, double beta, double* y, int64_t incy) {
  scipy_cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(rows),
                    blasint(cols), alpha, A, blasint(lda), x, blasint(incx), beta, y,
                    blasint(incy));
}

template <class T>
[[gnu::always_inline]] inline void outer_impl(int64_t M, int64_t N, T alpha, const T* a,
                                              int64_t inca, const T* b, T beta, T* C,
                                              int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    const T ai = alpha * a[i * inca];
    if (beta == T(0)) {
      for (int64_t j = 0; j < N; ++j) c[j] = ai * b[j];
    } else {
      for (int64_t j = 0; j < N; ++j) c[j] = ai * b[j] + beta * c[j];
    }
  }
}
STEEPEST_CLONES void outer_block(int64_t M, int64_t N, float alpha, const float* a, int64_t inca,
                                 const float* b, float beta, float* C, int64_t ldc) {
  outer_impl(M, N, alpha, a, inca, b, beta, C, ldc);
}
STEEPEST_CLONES void outer_block(int64_t M, int64_t N, double alpha, const double* a,
                                 int64_t inca, const double* b, double beta, double* C,
                                 int64_t ldc) {
  outer_impl(M, N, alpha, a, inca, b, beta, C, ldc);
}

// C (M, N) = alpha a b^T + beta C, a (M) with stride inca, b (N) with stride incb.
template <class T>
void outer(int64_t M, int64_t N, T alpha, const T* a, int64_t inca, const T* b, int64_t incb,
           T beta, T* C, int64_t ldc) {
  if (incb == 1) {
    outer_block(M, N, alpha, a, inca, b, beta, C, ldc);
    return;
  }
  for (int64_t i = 0; i < M; ++i) {  // b strided: rare (a transposed row vector)
    T* c = C + i * ldc;
    const T ai = alpha * a[i * inca];
    for (int64_t j = 0; j < N; ++j) c[j] = beta == T(0) ? ai * b[j * incb] : ai * b[j * incb] + beta * c[j];
  }
}

// Products with a dimension of 1, which sgemm serves slowly (it packs panels for nothing):
// M == 1 or N == 1 is a matrix-vector product, K == 1 an outer product.
template <class T>
void small_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 1) {  // c (N) = alpha op(B)^T a + beta c, a = op(A) (1, K)
    const int64_t inca = ta ? lda : 1;
    if (tb) {  // B (N, K): rows of B in row tiles (each c_j is one dot product whatever the split)
      const int tiles = row_tiles(N, K);
      auto tile = [&](int64_t t) {
        int64_t lo, hi;
        tile_range(t, tiles, N, &lo, &hi);
        if (lo < hi) gemv(false, hi - lo, K, alpha, B + lo * ldb, ldb, A, inca, beta, C + lo, 1);
      };
      run_tasks(tiles, tile);
    } else {  // B (K, N)
      gemv(true, K, N, alpha, B, ldb, A, inca, beta, C, 1);
    }
  } else if (N == 1) {  // c (M) = alpha op(A) b + beta c, b = op(B) (K, 1), c strided
    const int64_t incb = tb ? 1 : ldb;
    if (ta) gemv(true, K, M, alpha, A, lda, B, incb, beta, C, ldc);  // A (K, M)
    else gemv(false, M, K, alpha, A, lda, B, incb, beta, C, ldc);    // A (M, K)
  } else {  // K == 1: C (M, N) = alpha a b^T + beta C
    outer(M, N, alpha, A, ta ? 1 : lda, B, tb ? ldb : 1, beta, C, ldc);
  }
}

// A product split in gemm_tiles(M, N, K) tiles along the longer side of C (never along K: each
// element of C is one whole dot product in the tile kernel's order), run on the core's pool;
// one_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) computes a tile on one
// thread. The split depends on the shape only, so the result is bitwise the same on any number
// of threads. (OpenBLAS's own threading is not deterministic: its 1- and 2-thread sgemm differ
// in the last bits, and its pool of waiting threads fought any other pool for the cores.)
template <class T, class OneTile>
void tiled(const OneTile& one_tile, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha,
           const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t tiles = gemm_tiles(M, N, K);
  const bool split_rows = M >= N;
  const int64_t dim = split_rows ? M : N;
  auto tile = [&](int64_t t) {
    int64_t lo, hi;
    tile_range(t, tiles, dim, &lo, &hi);
    const int64_t len = hi - lo;
    if (len <= 0) return;
    if (split_rows) {  // rows lo.. of op(A) and C
      one_tile(ta, tb, len, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta,
               C + lo * ldc, ldc);
    } else {  // columns lo.. of op(B) and C
      one_tile(ta, tb, M, len, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo,
               ldc);
    }
  };
  if (tiles == 1 || get_num_threads() <= 1) {
    for (int64_t t = 0; t < tiles; ++t) tile(t);
  } else {
    run_tasks(tiles, tile);
  }
}

// The products on OpenBLAS, for CPUs without AVX2 + FMA: batch-1 shapes as matrix-vector or
// outer products, the rest in tiles of one-thread sgemm/dgemm calls.
template <class T>
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
               int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 1 || N == 1 || K == 1) {  // batch 1: matrix-vector products skip GEMM's packing
    small_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  auto one_tile = [](auto... args) { blas(args...); };
  tiled(one_tile, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The products on steepest's own kernels (gemm_kernels.hpp), whose rounding does not depend on
// how a product is split nor on its number of rows: one call on one thread, tiles on more;
// M == 1 (batch 1) in row tiles of op(B)^T (each core keeps its slice of the weights from the
// forward pass to the update, see Network::fused_update). K == 1 is an outer product for every
// M.
template <class T>
void own_gemm(GemmIsa isa, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha,
              const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (K == 1) {
    outer(M, N, alpha, A, ta ? 1 : lda, B, tb ? ldb : 1, beta, C, ldc);
    return;
  }
  auto one_tile = [isa](auto... args) { packed_gemm(isa, args...); };
  if (get_num_threads() <= 1) {
    one_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else if (M == 1) {  // c (N) = alpha a op(B) + beta c, a = op(A) (1, K)
    const int tiles = row_tiles(N, K);
    auto tile = [&](int64_t t) {
      int64_t lo, hi;
      tile_range(t, tiles, N, &lo, &hi);
      if (lo < hi)
        one_tile(ta, tb, int64_t(1), hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb,
                 beta, C + lo, ldc);
    };
    run_tasks(tiles, tile);
  } else {
    tiled(one_tile, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template <class T>
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
            const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t d : {M, N, K, lda, ldb, ldc}) blas_dim(d);
  if (M == 0 || N == 0) return;
  const GemmIsa isa = gemm_isa();
  if (isa == GemmIsa::none) {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    own_gemm(isa, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}
}  // namespace

void outer_product(float* C, const float* a, const float* b, int64_t M, int64_t N) {
  outer_block(M, N, 1.f, a, 1, b, 0.f, C, N);
}
void outer_product(double* C, const double* a, const double* b, int64_t M, int64_t N) {
  outer_block(M, N, 1.0, a, 1, b, 0.0, C, N);
}

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  gemm_t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace steepest
