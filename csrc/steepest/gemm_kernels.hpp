// steepest's own matrix-product kernels (BLIS style: register-blocked micro-kernels over
// blocks that stay in cache), AVX2 + FMA or AVX-512, chosen at run time from the CPU itself: the
// choice does not follow any BLAS library's own CPU selection (which the environment can pin).
// The core's gemm (gemm.hpp) runs on them wherever the CPU has AVX2 + FMA.
//
// C (M, N) = alpha * op(A) op(B) + beta * C, row-major, op(A) (M, K), op(B) (K, N), T float or
// double; one thread per call (gemm.hpp splits a product in tiles on the core's pool).
//
// Rounding contract: every element of C is the same function of its row of op(A), its column
// of op(B), K, alpha, beta and its old value, whatever M, N, the tile it lies in, the
// micro-kernel shape or the ISA that computes it. Two orders of the sums:
//   x W^T (trans_a false, trans_b true: a Dense layer's forward pass), "dot" kernels: K in
//     blocks of 256 from k = 0 (the last one shorter); in each block L = 32 / sizeof(T) lanes
//     (8 floats, 4 doubles), lane l summing a_k b_k for k = l, l + L, .. by fma from +0, then
//     the lanes added as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) (doubles:
//     (l0 + l1) + (l2 + l3));
//   every other transposition, "broadcast" kernels: K in nk = ceil(K / 256) blocks of
//     ceil(K / nk) (the last one shorter); in each block s = fma(a_k, b_k, s) for k in order
//     from +0;
//   then, both: first block C = alpha * s + beta * C (beta == 0: C = alpha * s, C not read),
//   later blocks C = alpha * s + C; each * and + rounded on its own (no contraction).
// So a result is bitwise the same on any number of threads, for any split of the product, on
// AVX2 and AVX-512 machines, and for any batch size: row i of C depends only on row i of
// op(A), so a row's output is the same computed alone (M == 1) or in any batch. Compile with
// -ffp-contract=off (as the core is): the epilogue's separate multiply and add must not fuse.
#pragma once

#include <cstdint>

namespace steepest {

// Which kernels this CPU runs: none (the caller uses BLAS), AVX2 + FMA, or AVX-512F.
enum class GemmIsa : int { none = 0, avx2 = 1, avx512 = 2 };

// The widest ISA this CPU (and its OS) supports, detected once.
GemmIsa gemm_isa();
// "avx512", "avx2" or "none".
const char* gemm_isa_name(GemmIsa isa);

// C (M, N) = alpha op(A) op(B) + beta C on this thread with the kernels of `isa` (the CPU must
// support it; not none). M, N, K >= 0 (K == 0 or alpha == 0: C = beta C). M == 1 runs
// matrix-vector kernels (no packing) with the same per-element order. Packing buffers are the
// thread's scratch memory (threads.hpp): a steady state allocates nothing.
void packed_gemm(GemmIsa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc);
void packed_gemm(GemmIsa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 double alpha, const double* A, int64_t lda, const double* B, int64_t ldb,
                 double beta, double* C, int64_t ldc);

// Tests and tuning: packed_gemm with an explicit micro-kernel of mr rows x nr columns of C, for
// the transposition it serves. Compiled in: broadcast kernels AVX-512 6x64 (float) / 6x32
// (double) and AVX2 6x16 / 6x8, dot kernels (any AVX2 CPU, isa avx2) 3x4 and 1x8; with
// -DSTEEPEST_GEMM_ALL_SHAPES also AVX-512 8x48 / 8x24 and 12x32 / 12x16, AVX2 4x24 / 4x12, dot
// 2x6. Returns false (and does nothing) for a shape that is not compiled in or does not serve
// this transposition.
bool packed_gemm_shape(GemmIsa isa, int mr, int nr, bool trans_a, bool trans_b, int64_t M,
                       int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
bool packed_gemm_shape(GemmIsa isa, int mr, int nr, bool trans_a, bool trans_b, int64_t M,
                       int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                       const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace steepest
