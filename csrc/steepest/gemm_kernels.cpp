// steepest's GEMM kernels (see gemm_kernels.hpp). The driver (gemm_kernels.inc) is compiled
// once per ISA and element type inside `#pragma GCC target` regions: the library itself needs
// no -march flag and runs on any x86-64; gemm_isa() tells the caller which kernels the CPU can
// run.
//
// Built with -DSTEEPEST_GEMM_SIMDE (tests only), the intrinsics come from SIMDe's portable
// implementations instead, so the AVX-512 code path can be checked on a CPU without AVX-512:
// with -mavx2 -mfma SIMDe runs each 512-bit FMA as two hardware 256-bit FMAs, the same
// rounding as AVX-512, so the results can be compared bit for bit.
#include "steepest/gemm_kernels.hpp"

#include "steepest/threads.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#if defined(STEEPEST_GEMM_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define STEEPEST_GEMM_KERNELS 1
#define STEEPEST_TARGET_PUSH(isa)
#define STEEPEST_TARGET_POP()
#elif defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define STEEPEST_GEMM_KERNELS 1
#define STEEPEST_PRAGMA(x) _Pragma(#x)
#define STEEPEST_TARGET_PUSH(isa) STEEPEST_PRAGMA(GCC push_options) STEEPEST_PRAGMA(GCC target(isa))
#define STEEPEST_TARGET_POP() STEEPEST_PRAGMA(GCC pop_options)
#endif

namespace steepest {

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512: return "avx512";
    case GemmIsa::avx2: return "avx2";
    case GemmIsa::none: break;
  }
  return "none";
}

#if defined(STEEPEST_GEMM_KERNELS)

namespace {

// Cut K in nk = ceil(K / 256) near-equal blocks: from K alone, the same for every ISA, element
// type, tile and thread count (the blocks fix the rounding; see the header).
constexpr int64_t kKcMax = 256;
inline int64_t k_block(int64_t K) {
  const int64_t nk = (K + kKcMax - 1) / kKcMax;
  return nk == 0 ? 0 : (K + nk - 1) / nk;
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rows of op(A) per block: a transposed A is packed kMc rows at a time (and kMc x kc values of
// op(A) stay in L2 next to the op(B) block while the micro-kernels sweep its panels).
constexpr int64_t kMc = 96;

// One element's epilogue, as the vector epilogue rounds it: t = alpha * s (alpha == 1: s),
// then C = t + beta * C in the first K block (beta == 0: t, C not read; beta == 1: t + C),
// C = t + C in later blocks.
template <class T>
inline void finish(T* c, T s, T alpha, T beta, bool first) {
  T t = alpha != T(1) ? alpha * s : s;
  if (!(first && beta == T(0))) t = t + (!first || beta == T(1) ? *c : beta * *c);
  *c = t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: 16 ymm registers (Haswell and later, Zen 1-4).
STEEPEST_TARGET_PUSH("avx2,fma")
namespace {
// Half of a transposed 256-bit block, in registers: rows 0 .. kTB - 1 (row i at row[i] + k),
// kTB / 2 values each, become kTB / 2 column vectors: col[c] lane i = row[i][k + c]. Each
// register gathers two half rows (128-bit loads), then in-lane shuffles finish the transpose.
[[gnu::always_inline]] inline void half_columns(const float* const row[8], int64_t k,
                                                __m256 col[4]) {
  auto pair = [&](int i) {  // rows i and i + 4, values k .. k + 3
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(row[i] + k)),
                                _mm_loadu_ps(row[i + 4] + k), 1);
  };
  const __m256 r0 = pair(0), r1 = pair(1), r2 = pair(2), r3 = pair(3);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpacklo_ps(r2, r3);
  const __m256 t2 = _mm256_unpackhi_ps(r0, r1), t3 = _mm256_unpackhi_ps(r2, r3);
  col[0] = _mm256_shuffle_ps(t0, t1, 0x44);
  col[1] = _mm256_shuffle_ps(t0, t1, 0xEE);
  col[2] = _mm256_shuffle_ps(t2, t3, 0x44);
  col[3] = _mm256_shuffle_ps(t2, t3, 0xEE);
}
[[gnu::always_inline]] inline void half_columns(const double* const row[4], int64_t k,
                                                __m256d col[2]) {
  auto pair = [&](int i) {  // rows i and i + 2, values k, k + 1
    return _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(row[i] + k)),
                                _mm_loadu_pd(row[i + 2] + k), 1);
  };
  const __m256d r0 = pair(0), r1 = pair(1);
  col[0] = _mm256_unpacklo_pd(r0, r1);
  col[1] = _mm256_unpackhi_pd(r0, r1);
}
}  // namespace

namespace avx2_f {
struct V {
  using T = float;
  using reg = __m256;
  static constexpr int kLanes = 8;
  static constexpr int64_t kNc = 192;  // kc x kNc values of op(B) = 192 KB at kc = 256
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg set1(T f) { return _mm256_set1_ps(f); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  // The first n < kLanes values at p, zeros after (nothing past them is read).
  static reg load_first(const T* p, int n) {
    return _mm256_maskload_ps(
        p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  // Lane j: the sum of x[j]'s lanes l0 .. l7 as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
  static reg lane_sums(const reg x[kLanes]) {
    const reg t0 = _mm256_hadd_ps(x[0], x[1]), t1 = _mm256_hadd_ps(x[2], x[3]);
    const reg t2 = _mm256_hadd_ps(x[4], x[5]), t3 = _mm256_hadd_ps(x[6], x[7]);
    const reg u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
  }
};
using Y = V;
#include "steepest/gemm_kernels.inc"
}  // namespace avx2_f

namespace avx2_d {
struct V {
  using T = double;
  using reg = __m256d;
  static constexpr int kLanes = 4;
  static constexpr int64_t kNc = 96;  // kc x kNc values of op(B) = 192 KB at kc = 256
  static reg zero() { return _mm256_setzero_pd(); }
  static reg load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, reg x) { _mm256_storeu_pd(p, x); }
  static reg set1(T f) { return _mm256_set1_pd(f); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static reg load_first(const T* p, int n) {
    return _mm256_maskload_pd(
        p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  // Lane j: the sum of x[j]'s lanes as (l0 + l1) + (l2 + l3).
  static reg lane_sums(const reg x[kLanes]) {
    const reg t0 = _mm256_hadd_pd(x[0], x[1]), t1 = _mm256_hadd_pd(x[2], x[3]);
    return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20), _mm256_permute2f128_pd(t0, t1, 0x31));
  }
};
using Y = V;
#include "steepest/gemm_kernels.inc"
}  // namespace avx2_d

// x W^T products (trans_a false, trans_b true: the forward pass of a Dense layer), lanes along
// k: both operands are read in place (rows of op(A) and of W are contiguous along k), no
// packing; 256-bit vectors on every CPU, so AVX2 and AVX-512 machines round alike.
//   for pc in K by kDotKc      (blocks of 256 values from k = 0, the last one shorter)
//     for ic in M by kMc       (op(A) block kMc x kc: stays in L2)
//       for jr in N by NC      (NC rows of W x kc: stay in L1)
//         for ir by MR         micro-kernel: MR x NC accumulators, each L lanes along k
namespace dot {

constexpr int64_t kDotKc = 256;

// C (m, n) tile = alpha * A (m rows at a, lda apart) W^T (n rows at w, ldw apart) over kb
// values, + beta C (first block) or + C: accumulator (r, j) lane l sums a_k w_k for k = l,
// l + L, .. in order (fma, from +0; a missing last lane adds +0 * +0), then Y::lane_sums.
template <class Y, int MR, int NC>
void kernel(int64_t kb, const typename Y::T* a, int64_t lda, const typename Y::T* w,
            int64_t ldw, typename Y::T* c, int64_t ldc, typename Y::T alpha,
            typename Y::T beta, bool first) {
  using T = typename Y::T;
  using reg = typename Y::reg;
  constexpr int L = Y::kLanes, kAcc = MR * NC, kGroups = (kAcc + L - 1) / L;
  reg acc[kGroups * L];
#pragma GCC unroll 32
  for (int i = 0; i < kGroups * L; ++i) acc[i] = Y::zero();
  auto step = [&](int64_t k, auto load) {
    reg x[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) x[r] = load(a + r * lda + k);
#pragma GCC unroll 8
    for (int j = 0; j < NC; ++j) {
      const reg wj = load(w + j * ldw + k);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r * NC + j] = Y::fmadd(x[r], wj, acc[r * NC + j]);
    }
  };
  int64_t k = 0;
  for (; k + L <= kb; k += L) step(k, [](const T* p) { return Y::load(p); });
  if (k < kb) step(k, [n = int(kb - k)](const T* p) { return Y::load_first(p, n); });
  alignas(32) T s[kGroups * L];
#pragma GCC unroll 4
  for (int g = 0; g < kGroups; ++g) Y::store(s + g * L, Y::lane_sums(acc + g * L));
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NC; ++j) finish(c + r * ldc + j, s[r * NC + j], alpha, beta, first);
}

template <class Y>
using Kernel = void (*)(int64_t, const typename Y::T*, int64_t, const typename Y::T*, int64_t,
                        typename Y::T*, int64_t, typename Y::T, typename Y::T, bool);

// kernels[m - 1][n - 1] = kernel<Y, m, n>: the last rows and columns of a product.
template <class Y, int NC, int... Ms>
constexpr std::array<Kernel<Y>, sizeof...(Ms)> column_of_kernels(std::integer_sequence<int, Ms...>) {
  return {{&kernel<Y, Ms + 1, NC>...}};
}
template <class Y, int MR, int... Ns>
constexpr std::array<std::array<Kernel<Y>, sizeof...(Ns)>, MR> kernel_grid(std::integer_sequence<int, Ns...>) {
  std::array<std::array<Kernel<Y>, sizeof...(Ns)>, MR> grid{};
  const std::array<std::array<Kernel<Y>, MR>, sizeof...(Ns)> by_n = {
      {column_of_kernels<Y, Ns + 1>(std::make_integer_sequence<int, MR>())...}};
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < int(sizeof...(Ns)); ++n) grid[size_t(m)][size_t(n)] = by_n[size_t(n)][size_t(m)];
  return grid;
}

// C (M, N) = alpha A W^T + beta C, A (M, K), W = B (N, K); K >= 1, alpha != 0, M, N >= 1.
template <class Y, int MR, int NC>
void gemm(bool, bool, int64_t M, int64_t N, int64_t K, typename Y::T alpha,
          const typename Y::T* A, int64_t lda, const typename Y::T* B, int64_t ldb,
          typename Y::T beta, typename Y::T* C, int64_t ldc) {
  static constexpr auto kernels = kernel_grid<Y, MR>(std::make_integer_sequence<int, NC>());
  for (int64_t pc = 0; pc < K; pc += kDotKc) {
    const int64_t kb = std::min(kDotKc, K - pc);
    for (int64_t ic = 0; ic < M; ic += kMc) {
      const int64_t mb = std::min(kMc, M - ic);
      for (int64_t jr = 0; jr < N; jr += NC) {
        const int n = int(std::min<int64_t>(NC, N - jr));
        for (int64_t ir = 0; ir < mb; ir += MR) {
          const int m = int(std::min<int64_t>(MR, mb - ir));
          kernels[size_t(m - 1)][size_t(n - 1)](kb, A + (ic + ir) * lda + pc, lda,
                                                B + jr * ldb + pc, ldb, C + (ic + ir) * ldc + jr,
                                                ldc, alpha, beta, pc == 0);
        }
      }
    }
  }
}

}  // namespace dot
STEEPEST_TARGET_POP()

// ---------------------------------------------------------------------------------------------
// AVX-512F: 32 zmm registers (Zen 4-5, Intel since Skylake-SP: 1 MB+ of L2).
STEEPEST_TARGET_PUSH("avx512f,avx2,fma")
namespace avx512_f {
struct V {
  using T = float;
  using reg = __m512;
  static constexpr int kLanes = 16;
  static constexpr int64_t kNc = 384;  // kc x kNc values of op(B) = 384 KB at kc = 256
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg set1(T f) { return _mm512_set1_ps(f); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
};
using Y = avx2_f::V;
#include "steepest/gemm_kernels.inc"
}  // namespace avx512_f

namespace avx512_d {
struct V {
  using T = double;
  using reg = __m512d;
  static constexpr int kLanes = 8;
  static constexpr int64_t kNc = 192;  // kc x kNc values of op(B) = 384 KB at kc = 256
  static reg zero() { return _mm512_setzero_pd(); }
  static reg load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, reg x) { _mm512_storeu_pd(p, x); }
  static reg set1(T f) { return _mm512_set1_pd(f); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
};
using Y = avx2_d::V;
#include "steepest/gemm_kernels.inc"
}  // namespace avx512_d
STEEPEST_TARGET_POP()

// ---------------------------------------------------------------------------------------------

GemmIsa gemm_isa() {
  static const GemmIsa isa = [] {
#if defined(__x86_64__)
    __builtin_cpu_init();  // the checks include the OS's support for the register state
    if (__builtin_cpu_supports("avx512f")) return GemmIsa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GemmIsa::avx2;
#endif
    return GemmIsa::none;
  }();
  return isa;
}

namespace {

template <class T>
using GemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
                        int64_t, T, T*, int64_t);

// The kernels compiled in; the first of each kind and ISA is the default. Broadcast kernels
// (every transposition but x W^T): 6 x 4 vectors on AVX-512, 24 zmm accumulators + 4 for the
// B row + 1 broadcast, and 6 row pointers of A fit the general registers; 6 x 2 vectors on
// AVX2, 12 ymm accumulators, measured ahead of 4 x 3 on Zen 3. Dot kernels (x W^T): 3 x 4
// (12 ymm accumulators + 3 rows of x + 1 of W), and 1 x 8 for a single row (8 independent
// chains). The others only with -DSTEEPEST_GEMM_ALL_SHAPES (tests and tuning).
template <class T>
struct Shape {
  GemmIsa isa;
  bool dot;     // for x W^T products (trans_a false, trans_b true) only, else for the others
  int mr, nr;   // rows x columns of C per micro-kernel
  GemmFn<T> fn;
};
constexpr Shape<float> kFloatShapes[] = {
    {GemmIsa::avx512, false, 6, 64, avx512_f::gemm_packed<6, 4>},
    {GemmIsa::avx2, false, 6, 16, avx2_f::gemm_packed<6, 2>},
    {GemmIsa::avx2, true, 3, 4, dot::gemm<avx2_f::V, 3, 4>},
    {GemmIsa::avx2, true, 1, 8, dot::gemm<avx2_f::V, 1, 8>},
#if defined(STEEPEST_GEMM_ALL_SHAPES)
    {GemmIsa::avx512, false, 8, 48, avx512_f::gemm_packed<8, 3>},
    {GemmIsa::avx512, false, 12, 32, avx512_f::gemm_packed<12, 2>},
    {GemmIsa::avx2, false, 4, 24, avx2_f::gemm_packed<4, 3>},
    {GemmIsa::avx2, true, 2, 6, dot::gemm<avx2_f::V, 2, 6>},
#endif
};
constexpr Shape<double> kDoubleShapes[] = {
    {GemmIsa::avx512, false, 6, 32, avx512_d::gemm_packed<6, 4>},
    {GemmIsa::avx2, false, 6, 8, avx2_d::gemm_packed<6, 2>},
    {GemmIsa::avx2, true, 3, 4, dot::gemm<avx2_d::V, 3, 4>},
    {GemmIsa::avx2, true, 1, 8, dot::gemm<avx2_d::V, 1, 8>},
#if defined(STEEPEST_GEMM_ALL_SHAPES)
    {GemmIsa::avx512, false, 8, 24, avx512_d::gemm_packed<8, 3>},
    {GemmIsa::avx512, false, 12, 16, avx512_d::gemm_packed<12, 2>},
    {GemmIsa::avx2, false, 4, 12, avx2_d::gemm_packed<4, 3>},
    {GemmIsa::avx2, true, 2, 6, dot::gemm<avx2_d::V, 2, 6>},
#endif
};
const auto& shapes(float) { return kFloatShapes; }
const auto& shapes(double) { return kDoubleShapes; }

// The matrix-vector kernels (M == 1, B not transposed) of each ISA.
GemmFn<float> gemv_fn(GemmIsa isa, float) {
  return isa == GemmIsa::avx512 ? avx512_f::gemv_packed : avx2_f::gemv_packed;
}
GemmFn<double> gemv_fn(GemmIsa isa, double) {
  return isa == GemmIsa::avx512 ? avx512_d::gemv_packed : avx2_d::gemv_packed;
}

// C (M, N) = beta * C: what GEMM does when K == 0 or alpha == 0 (C not read when beta == 0).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0)) std::memset(c, 0, size_t(N) * sizeof(T));
    else for (int64_t j = 0; j < N; ++j) c[j] = beta * c[j];
  }
}

// Runs fn (a kernel for K >= 1, alpha != 0, M, N >= 1) or the degenerate cases itself.
template <class T>
void run(GemmFn<T> fn, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
         int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) return scale_c(M, N, beta, C, ldc);
  fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The kernel packed_gemm runs: x W^T on the dot kernels (1 x 8 for a single row), a single row
// times B (K, N) on the matrix-vector kernels, the rest on the ISA's default broadcast kernel.
template <class T>
GemmFn<T> default_kernel(GemmIsa isa, bool ta, bool tb, int64_t M) {
  if (isa == GemmIsa::none) throw std::invalid_argument("packed_gemm: this ISA has no kernels");
  const bool dot = !ta && tb;
  if (M == 1 && !tb) return gemv_fn(isa, T());
  for (const Shape<T>& s : shapes(T()))
    if (s.dot == dot && (dot ? (M == 1) == (s.mr == 1) : s.isa == isa)) return s.fn;
  throw std::logic_error("packed_gemm: no default kernel");
}

}  // namespace

void packed_gemm(GemmIsa isa, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  run(default_kernel<float>(isa, ta, tb, M), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void packed_gemm(GemmIsa isa, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                 const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                 double* C, int64_t ldc) {
  run(default_kernel<double>(isa, ta, tb, M), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
      ldc);
}

namespace {
template <class T>
bool packed_gemm_shape_t(GemmIsa isa, int mr, int nr, bool ta, bool tb, int64_t M, int64_t N,
                         int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
                         T beta, T* C, int64_t ldc) {
  for (const Shape<T>& s : shapes(T()))
    if (s.isa == isa && s.mr == mr && s.nr == nr && s.dot == (!ta && tb)) {
      run(s.fn, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return true;
    }
  return false;
}
}  // namespace

bool packed_gemm_shape(GemmIsa isa, int mr, int nr, bool ta, bool tb, int64_t M, int64_t N,
                       int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                       int64_t ldb, float beta, float* C, int64_t ldc) {
  return packed_gemm_shape_t(isa, mr, nr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
bool packed_gemm_shape(GemmIsa isa, int mr, int nr, bool ta, bool tb, int64_t M, int64_t N,
                       int64_t K, double alpha, const double* A, int64_t lda, const double* B,
                       int64_t ldb, double beta, double* C, int64_t ldc) {
  return packed_gemm_shape_t(isa, mr, nr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#else  // no x86-64 SIMD kernels in this build: gemm.hpp uses BLAS (gemm_isa() is none)

GemmIsa gemm_isa() { return GemmIsa::none; }

namespace {
[[noreturn]] void no_kernels() {
  throw std::invalid_argument("this build has no SIMD GEMM kernels (gemm_isa() is none)");
}
}  // namespace

void packed_gemm(GemmIsa, bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                 const float*, int64_t, float, float*, int64_t) { no_kernels(); }
void packed_gemm(GemmIsa, bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                 const double*, int64_t, double, double*, int64_t) { no_kernels(); }
bool packed_gemm_shape(GemmIsa, int, int, bool, bool, int64_t, int64_t, int64_t, float,
                       const float*, int64_t, const float*, int64_t, float, float*, int64_t) {
  return false;
}
bool packed_gemm_shape(GemmIsa, int, int, bool, bool, int64_t, int64_t, int64_t, double,
                       const double*, int64_t, const double*, int64_t, double, double*,
                       int64_t) {
  return false;
}

#endif

}  // namespace steepest
