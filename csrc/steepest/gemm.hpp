// Matrix products. steepest's own kernels (gemm_kernels.hpp) do the arithmetic where the CPU has
// AVX2 + FMA (every x W^T product, the others up to 2^30 multiply-adds), OpenBLAS elsewhere,
// always on one thread per call; large products are split in
// tiles chosen from the shape alone and run on the core's pool (threads.hpp), so the result is
// bitwise the same on any number of threads. On the own kernels a row of C depends only on its
// row of op(A) (and op(B), K, alpha, beta): a layer's forward product x W^T gives a row the
// same bits whatever batch it is computed in, batch 1 included. On OpenBLAS, products with a
// dimension of 1 (batch 1) are matrix-vector and outer products (another order of the sums).
#pragma once

#include <cstdint>

namespace steepest {

// C (M, N) = alpha * op(A) op(B) + beta * C, row-major. op(A) is (M, K), op(B) is (K, N).
// Large products run as tiles on the thread pool (see gemm_tiles); bitwise the same result on
// any number of threads. Throws std::length_error when a dimension does not fit BLAS's 32-bit
// integers, and Interrupted (interrupt.hpp) when a product of several pieces is interrupted
// (C is then partly written).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The same on OpenBLAS on every CPU (what gemm runs without AVX2 + FMA): the same tiles and
// chunks, bitwise the same on any number of threads, but a row's result depends on the batch
// (OpenBLAS picks its kernels by shape). For benchmarks (bench/gemm_paths.cpp) and tests.
template <class T>
void gemm_openblas(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                   const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The number of tiles gemm splits a product of M x N x K multiply-adds into, along the longer
// side of C: 1 for small products, up to 8 for large ones, and more for products beyond 2^31
// multiply-adds, whose tiles would otherwise take more than a few milliseconds (an
// interruption is polled between pieces); from the shape alone, never from the thread count.
int64_t gemm_tiles(int64_t M, int64_t N, int64_t K);
// The number of chunks of K each tile is computed in, in order (1 unless a tile is still that
// large: a narrow C over a long K, such as a weight gradient over a full batch).
int64_t gemm_chunks(int64_t M, int64_t N, int64_t K);

// The same for work over the rows of a (rows, cols) matrix at batch 1 (a matrix-vector product,
// an outer product and the update that consumes it): up to 8 tiles of multiples of 16 rows, so
// that a tile's slice of the weights stays in one core's cache from the forward pass to the
// update.
int row_tiles(int64_t rows, int64_t cols);

// C (M, N) <- a (M) b (N)^T: a batch-1 weight gradient, bitwise as gemm writes it (K = 1).
void outer_product(float* C, const float* a, const float* b, int64_t M, int64_t N);
void outer_product(double* C, const double* a, const double* b, int64_t M, int64_t N);

}  // namespace steepest
