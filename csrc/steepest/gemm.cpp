#include "steepest/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <stdexcept>
#include <string>

#include "steepest/dispatch.hpp"
#include "steepest/gemm_kernels.hpp"
#include "steepest/interrupt.hpp"
#include "steepest/threads.hpp"

namespace steepest {

namespace {
// Products of at least this many multiply-adds (M * N * K) are split in tiles (see gemm).
constexpr int64_t kTileWork = int64_t(1) << 20;
constexpr int64_t kMaxTiles = 8;
// Pieces of larger products are cut until they are at most about this many multiply-adds
// (a few milliseconds), so that an interruption poll comes between them (interrupt.hpp).
constexpr int64_t kPieceWork = int64_t(1) << 28;
// The fewest rows of K a chunk keeps, and the multiple of K at which chunks start (the own dot
// kernels' K block: gemm_kernels.hpp).
constexpr int64_t kMinChunk = 256;
// Products other than x W^T of more multiply-adds than this run on OpenBLAS tiles: on the
// 1024-2048-2048-10 b1024 step's backward products the own broadcast kernels measured 1.32x
// OpenBLAS's time at 1 thread (1.17x at 2), on every smaller step's 0.90-0.95x
// (bench/gemm_paths.cpp). x W^T stays on the own kernels at every size: batch invariance.
constexpr int64_t kOwnBroadcastWork = int64_t(1) << 30;
// Batch-1 work over at least this many weights is split in row tiles (see row_tiles).
constexpr int64_t kRowTileWork = int64_t(1) << 15;
}  // namespace

int64_t gemm_tiles(int64_t M, int64_t N, int64_t K) {
  // A power of two from the work alone, never from the thread count; each tile keeps at least
  // 32 rows or columns. Up to kMaxTiles for the work to share; more only for products whose
  // tiles would exceed kPieceWork (beyond kMaxTiles * kPieceWork multiply-adds).
  // (work in double: M * N * K of three 32-bit dimensions can exceed int64)
  const double work = double(M) * double(N) * double(K);
  const int64_t dim = std::max(M, N);
  int64_t p = 1;
  while (p < kMaxTiles && work / double(2 * p) >= double(kTileWork) && dim / (2 * p) >= 32)
    p *= 2;
  while (work / double(p) > double(kPieceWork) && dim / (2 * p) >= 32) p *= 2;
  return p;
}

int64_t gemm_chunks(int64_t M, int64_t N, int64_t K) {
  // A power of two: tiles of more than kPieceWork (a narrow C over a long K, such as a weight
  // gradient over a full batch) are cut along K, keeping at least kMinChunk rows of K each.
  const double tile_work = double(M) * double(N) * double(K) / double(gemm_tiles(M, N, K));
  int64_t c = 1;
  while (tile_work / double(c) > double(kPieceWork) && K / (2 * c) >= kMinChunk) c *= 2;
  return c;
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

// A product split in gemm_tiles(M, N, K) tiles along the longer side of C, each computed by
// one_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) on one thread per chunk of K
// (gemm_chunks): the chunks of a tile run in order, the first with beta and the others adding
// to C (beta 1), and start at multiples of kMinChunk (256, the own dot kernels' K block, so that
// for x W^T products the chunks add exactly what one call would: gemm_kernels.hpp). The tiles
// run on the core's thread pool (threads.hpp). The split depends on the shape only, so the
// result is bitwise the same on any number of threads, and whether or not an interruption poll
// is installed. (OpenBLAS's own threading is not: its 1- and 2-thread sgemm differ in the last
// bits, and its pool of waiting threads fought any other pool for the cores.) Between pieces
// the calling thread polls for interruption (interrupt.hpp): once it is asked to stop, no piece
// starts, and gemm throws Interrupted when they are done.
template <class T, class OneTile>
void tiled(const OneTile& one_tile, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha,
           const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t tiles = gemm_tiles(M, N, K), chunks = gemm_chunks(M, N, K);
  if (tiles == 1 && chunks == 1) {
    one_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool split_rows = M >= N;
  const int64_t dim = split_rows ? M : N;
  const int64_t k_blocks = (K + kMinChunk - 1) / kMinChunk;  // >= chunks (see gemm_chunks)
  std::atomic<bool> stop{false};
  auto tile = [&](int64_t t) {
    int64_t lo, hi;
    tile_range(t, tiles, dim, &lo, &hi);
    const int64_t len = hi - lo;
    for (int64_t c = 0; c < chunks && len > 0; ++c) {
      if (stop.load(std::memory_order_relaxed)) return;
      if (interrupt_requested()) {  // asks the poll on the calling thread only
        stop.store(true, std::memory_order_relaxed);
        return;
      }
      int64_t b0, b1;
      tile_range(c, chunks, k_blocks, &b0, &b1);
      const int64_t k0 = b0 * kMinChunk, k1 = std::min(K, b1 * kMinChunk);
      // op(A) rows lo.. (or all) and columns k0..; op(B) rows k0.. and columns lo.. (or all).
      const T* a = ta ? A + k0 * lda : A + k0;
      const T* b = tb ? B + k0 : B + k0 * ldb;
      const T beta_c = c == 0 ? beta : T(1);
      if (split_rows) {
        one_tile(ta, tb, len, N, k1 - k0, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb,
                 beta_c, C + lo * ldc, ldc);
      } else {
        one_tile(ta, tb, M, len, k1 - k0, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb,
                 beta_c, C + lo, ldc);
      }
    }
  };
  if (get_num_threads() <= 1) {
    for (int64_t t = 0; t < tiles; ++t) tile(t);
  } else {
    run_tasks(tiles, tile);
  }
  if (stop.load()) throw Interrupted();
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
// how a product is split in tiles nor on its number of rows. On one thread a product of at most
// kPieceWork multiply-adds is one call (no tiles: each would pack its operands again); M == 1
// (batch 1) on more threads runs in row tiles of op(B)^T (each core keeps its slice of the
// weights from the forward pass to the update, see Network::fused_update); the rest in tiles
// and chunks (tiled). K == 1 is an outer product for every M.
template <class T>
void own_gemm(GemmIsa isa, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha,
              const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (K == 1) {
    outer(M, N, alpha, A, ta ? 1 : lda, B, tb ? ldb : 1, beta, C, ldc);
    return;
  }
  auto one_tile = [isa](auto... args) { packed_gemm(isa, args...); };
  const bool one_thread = get_num_threads() <= 1;
  if (one_thread && double(M) * double(N) * double(K) <= double(kPieceWork)) {
    one_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else if (M == 1) {  // c (N) = alpha a op(B) + beta c, a = op(A) (1, K)
    const int tiles = one_thread ? 1 : row_tiles(N, K);
    auto tile = [&](int64_t t) {
      int64_t lo, hi;
      tile_range(t, tiles, N, &lo, &hi);
      if (lo < hi)
        one_tile(ta, tb, int64_t(1), hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb,
                 beta, C + lo, ldc);
    };
    if (tiles == 1) tile(0);
    else run_tasks(tiles, tile);
  } else {
    tiled(one_tile, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

// On steepest's own kernels where the CPU has them (own) for every x W^T and the smaller other
// products, else on OpenBLAS.
template <class T>
void gemm_t(bool own, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
            int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t d : {M, N, K, lda, ldb, ldc}) blas_dim(d);
  if (M == 0 || N == 0) return;
  const GemmIsa isa = gemm_isa();
  const bool forward = !ta && tb;  // x W^T: a row's result must not depend on its batch
  if (own && isa != GemmIsa::none &&
      (forward || double(M) * double(N) * double(K) <= double(kOwnBroadcastWork))) {
    own_gemm(isa, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
  gemm_t(true, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  gemm_t(true, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm_openblas<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  gemm_t(false, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
template <>
void gemm_openblas<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                           const double* A, int64_t lda, const double* B, int64_t ldb,
                           double beta, double* C, int64_t ldc) {
  gemm_t(false, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace steepest
