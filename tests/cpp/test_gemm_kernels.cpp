// steepest's GEMM kernels (gemm_kernels.hpp) on their own: every compiled micro-kernel of every
// ISA this build can run against a naive double-precision reference, and the rounding
// contract: bitwise the same result for every micro-kernel shape and ISA, for row and column
// splits, and for one row alone (the matrix-vector kernels). Built a second time with the
// AVX-512 kernels emulated through SIMDe (-DSTEEPEST_GEMM_SIMDE, see CMakeLists.txt), where every
// shape of both ISAs runs and must give the same bits.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "steepest/gemm_kernels.hpp"
#if !defined(STEEPEST_GEMM_SIMDE)
#include "steepest/gemm.hpp"
#include "steepest/threads.hpp"
#endif

using namespace steepest;

namespace {

struct Kernel {
  GemmIsa isa;
  int mr, nr;  // micro-kernel rows x columns
};

// The micro-kernels this binary has (packed_gemm_shape accepts them) and this CPU can run for
// the transposition (ta, tb): dot kernels for x W^T (ta false, tb true), broadcast kernels for
// the others.
template <class T>
std::vector<Kernel> kernels_to_test(bool ta, bool tb) {
#if defined(STEEPEST_GEMM_SIMDE)
  const GemmIsa top = GemmIsa::avx512;  // portable intrinsics: every path runs
#else
  const GemmIsa top = gemm_isa();
#endif
  const bool f = sizeof(T) == 4;
  const Kernel all[] = {{GemmIsa::avx512, 6, f ? 64 : 32}, {GemmIsa::avx512, 8, f ? 48 : 24},
                        {GemmIsa::avx512, 12, f ? 32 : 16}, {GemmIsa::avx2, 6, f ? 16 : 8},
                        {GemmIsa::avx2, 4, f ? 24 : 12},    {GemmIsa::avx2, 3, 4},
                        {GemmIsa::avx2, 1, 8},              {GemmIsa::avx2, 2, 6}};
  std::vector<Kernel> out;
  T one = 1;
  for (const Kernel& k : all)
    if (int(k.isa) <= int(top) &&
        packed_gemm_shape(k.isa, k.mr, k.nr, ta, tb, 1, 1, 1, T(1), &one, 1, &one, 1, T(0),
                          &one, 1))
      out.push_back(k);
  return out;
}

// Stored operands of op(A) (M, K) and op(B) (K, N), with padded leading dimensions.
template <class T>
struct Problem {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  T alpha, beta;
  std::vector<T> A, B, C0;

  T a_at(int64_t i, int64_t k) const { return ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)]; }
  T b_at(int64_t k, int64_t j) const { return tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)]; }
  std::string name() const {
    return "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " M=" + std::to_string(M) +
           " N=" + std::to_string(N) + " K=" + std::to_string(K) +
           " alpha=" + std::to_string(double(alpha)) + " beta=" + std::to_string(double(beta));
  }
};

template <class T>
Problem<T> make(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, T beta, int pad,
                std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Problem<T> p{ta, tb, M, N, K, 0, 0, N + pad, alpha, beta, {}, {}, {}};
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  p.lda = a_cols + pad;
  p.ldb = b_cols + pad;
  p.A.resize(size_t(std::max<int64_t>(1, a_rows * p.lda)));
  p.B.resize(size_t(std::max<int64_t>(1, b_rows * p.ldb)));
  p.C0.resize(size_t(std::max<int64_t>(1, M * p.ldc)));
  for (auto* v : {&p.A, &p.B, &p.C0})
    for (T& x : *v) x = T(u(rng));
  return p;
}

// C = alpha op(A) op(B) + beta C0 on one kernel, optionally only for rows [i0, i0 + m) and
// columns [j0, j0 + n) (a tile, as gemm.hpp splits products).
template <class T>
void run_tile(const Problem<T>& p, const Kernel& k, std::vector<T>& C, int64_t i0, int64_t m,
              int64_t j0, int64_t n) {
  const T* A = p.A.data() + (p.ta ? i0 : i0 * p.lda);
  const T* B = p.B.data() + (p.tb ? j0 * p.ldb : j0);
  const bool ran = packed_gemm_shape(k.isa, k.mr, k.nr, p.ta, p.tb, m, n, p.K, p.alpha, A, p.lda,
                                     B, p.ldb, p.beta, C.data() + i0 * p.ldc + j0, p.ldc);
  CHECK(ran);
}

template <class T>
std::vector<T> run(const Problem<T>& p, const Kernel& k) {
  std::vector<T> C = p.C0;
  run_tile(p, k, C, 0, p.M, 0, p.N);
  return C;
}

// The exact result (in long double) of each element and its rounding bound.
struct Reference {
  std::vector<double> want, bound;
};
template <class T>
Reference reference(const Problem<T>& p) {
  const double u = std::ldexp(1.0, sizeof(T) == 4 ? -24 : -53);
  Reference r;
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      long double s = 0, mag = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const long double t = (long double)p.a_at(i, k) * p.b_at(k, j);
        s += t;
        mag += std::fabs(t);
      }
      const double c0 = double(p.C0[size_t(i * p.ldc + j)]);
      const double beta_c = p.beta == T(0) ? 0.0 : double(p.beta) * c0;
      r.want.push_back(double(p.alpha) * double(s) + beta_c);
      r.bound.push_back(2.0 * double(p.K + 4) * u *
                            (std::fabs(double(p.alpha)) * double(mag) + std::fabs(beta_c)) +
                        1e-300);
    }
  return r;
}

// Every element within its bound of the reference; the padding columns of C (beyond N)
// untouched.
template <class T>
bool matches(const Problem<T>& p, const Reference& r, const std::vector<T>& C) {
  for (int64_t i = 0; i < p.M; ++i) {
    for (int64_t j = 0; j < p.N; ++j) {
      const size_t e = size_t(i * p.N + j);
      if (!(std::fabs(double(C[size_t(i * p.ldc + j)]) - r.want[e]) <= r.bound[e])) return false;
    }
    for (int64_t j = p.N; j < p.ldc; ++j)
      if (std::memcmp(&C[size_t(i * p.ldc + j)], &p.C0[size_t(i * p.ldc + j)], sizeof(T)) != 0)
        return false;
  }
  return true;
}

#define CHECK_PROBLEM(cond, what, p, k)                                                        \
  do {                                                                                         \
    if (!(cond))                                                                               \
      ::steepest::test::fail(__FILE__, __LINE__,                                               \
                             std::string(what) + ": " + gemm_isa_name((k).isa) + " " +         \
                                 std::to_string((k).mr) + "x" + std::to_string((k).nr) + " " + \
                                 (p).name());                                                  \
  } while (0)

// Random problems: sizes 1..70 around every panel width and block, and a few past the K block
// (256), the row block (96) and the column blocks (96 .. 384), every transposition, alpha
// 1 / -0.75 / 2.5, beta 0 / 1 / 0.5, padded leading dimensions.
template <class T>
void check_random_problems(int trials) {
  if (kernels_to_test<T>(false, false).empty()) {
    std::printf("  (no SIMD kernels on this CPU)\n");
    return;
  }
  std::mt19937 rng(42);
  const int64_t big[] = {97, 191, 193, 255, 257, 385, 513, 800};
  std::uniform_int_distribution<int64_t> small(1, 70);
  std::uniform_int_distribution<int> pick_big(0, 7), coin(0, 1), pad(0, 5);
  const T alphas[] = {T(1), T(-0.75), T(2.5)}, betas[] = {T(0), T(1), T(0.5)};
  for (int trial = 0; trial < trials; ++trial) {
    const bool ta = trial & 1, tb = (trial >> 1) & 1;
    // one dimension past the blocks at a time (the reference costs M N K)
    const int which_big = trial % 4 == 3 ? (trial / 4) % 3 : -1;
    auto dim = [&](int d) { return d == which_big ? big[pick_big(rng)] : small(rng); };
    const int64_t M = dim(0), N = dim(1), K = dim(2);
    const Problem<T> p = make(ta, tb, M, N, K, alphas[trial % 3], betas[(trial / 3) % 3],
                              coin(rng) ? pad(rng) : 0, rng);
    const Reference r = reference(p);
    std::vector<T> first;
    for (const Kernel& k : kernels_to_test<T>(ta, tb)) {
      const std::vector<T> C = run(p, k);
      CHECK_PROBLEM(matches(p, r, C), "reference", p, k);
      if (first.empty()) first = C;
      else CHECK_PROBLEM(test::same_bits(first, C), "the same bits as the first kernel", p, k);
      if (M >= 2) {  // rows [0, m1) and [m1, M) as two tiles
        std::vector<T> S = p.C0;
        const int64_t m1 = 1 + M / 3;
        run_tile(p, k, S, 0, m1, 0, N);
        run_tile(p, k, S, m1, M - m1, 0, N);
        CHECK_PROBLEM(test::same_bits(C, S), "row split", p, k);
      }
      if (N >= 2) {
        std::vector<T> S = p.C0;
        const int64_t n1 = 1 + N / 3;
        run_tile(p, k, S, 0, M, 0, n1);
        run_tile(p, k, S, 0, M, n1, N - n1);
        CHECK_PROBLEM(test::same_bits(C, S), "column split", p, k);
      }
    }
  }
}

}  // namespace

TEST(gemm_kernels_match_reference_and_agree_bitwise) {
  check_random_problems<float>(300);
  check_random_problems<double>(150);
}

namespace {
template <class T>
void check_special_values() {
  std::mt19937 rng(7);
  for (const bool ta : {false, true}) {  // the dot kernels (x W^T), then the broadcast ones
    const bool tb = !ta;
    for (const Kernel& k : kernels_to_test<T>(ta, tb)) {
      const Problem<T> p = make(ta, tb, 5, 7, 0, T(1), T(0.5), 0, rng);  // K == 0: beta C
      const std::vector<T> C = run(p, k);
      bool ok = true;
      for (size_t i = 0; i < C.size(); ++i) ok &= C[i] == T(0.5) * p.C0[i];
      CHECK_PROBLEM(ok, "K == 0 scales C", p, k);
      const Problem<T> z = make(ta, tb, 9, 33, 17, T(0), T(-2), 0, rng);  // alpha == 0
      const std::vector<T> D = run(z, k);
      ok = true;
      for (size_t i = 0; i < D.size(); ++i) ok &= D[i] == T(-2) * z.C0[i];
      CHECK_PROBLEM(ok, "alpha == 0 scales C", z, k);
      Problem<T> q = make(ta, tb, 9, 33, 17, T(1), T(0), 0, rng);  // beta == 0: C not read
      for (T& x : q.C0) x = std::numeric_limits<T>::quiet_NaN();
      CHECK_PROBLEM(matches(q, reference(q), run(q, k)), "beta == 0 ignores NaN in C", q, k);
    }
  }
}
}  // namespace

TEST(gemm_kernels_handle_k_0_alpha_0_and_nan_in_c) {
  check_special_values<float>();
  check_special_values<double>();
}

namespace {
// Every row of a product, computed alone by packed_gemm with M == 1 (op(A)'s row: a row of A,
// or a column when A is transposed), has the bits of that row of every kernel's product: a
// row's result does not depend on the batch it is in. K past several K blocks, N past the
// matrix-vector kernels' column groups and with every remainder.
template <class T>
void check_rows_alone() {
  std::mt19937 rng(11);
  const int64_t Ks[] = {1, 2, 7, 8, 9, 33, 256, 257, 600, 784};
  const int64_t Ns[] = {1, 3, 8, 10, 17, 31, 32, 33, 64, 100, 130};
  const T alphas[] = {T(1), T(-0.75)}, betas[] = {T(0), T(1), T(0.5)};
  int trial = 0;
  for (int64_t K : Ks)
    for (int64_t N : Ns) {
      ++trial;
      const bool ta = trial & 1, tb = (trial >> 1) & 1;
      const Problem<T> p = make(ta, tb, 5, N, K, alphas[trial % 2], betas[trial % 3], trial % 3, rng);
      for (const Kernel& k : kernels_to_test<T>(ta, tb)) {
        const std::vector<T> C = run(p, k);
        std::vector<T> R = p.C0;
        for (int64_t i = 0; i < p.M; ++i)
          packed_gemm(k.isa, ta, tb, 1, N, K, p.alpha, p.A.data() + (ta ? i : i * p.lda), p.lda,
                      p.B.data(), p.ldb, p.beta, R.data() + i * p.ldc, p.ldc);
        CHECK_PROBLEM(test::same_bits(C, R), "rows alone (M == 1) vs the product", p, k);
      }
    }
}
}  // namespace

TEST(one_row_alone_gives_the_bits_of_the_packed_product) {
  check_rows_alone<float>();
  check_rows_alone<double>();
}

#if !defined(STEEPEST_GEMM_SIMDE)  // the core's gemm: only in the native test binary
namespace {
// A forward product x W^T over a K long enough to be cut in chunks (gemm_chunks), on 1 and 2
// threads, and each row alone: the bits of one kernel call over the whole K, because chunks
// start at multiples of the dot kernels' K block and add to C as later blocks do.
template <class T>
std::vector<T> test_data(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> v(n);
  for (T& x : v) x = T(u(rng));
  return v;
}

template <class T>
void check_chunked_forward() {
  if (gemm_isa() == GemmIsa::none) return;
  const int64_t M = 64, N = 64, K = 140000;
  CHECK(gemm_chunks(M, N, K) > 1);
  const auto A = test_data<T>(size_t(M * K), 1), W = test_data<T>(size_t(N * K), 2);
  std::vector<T> one_call(size_t(M * N));
  packed_gemm(gemm_isa(), false, true, M, N, K, T(1), A.data(), K, W.data(), K, T(0),
              one_call.data(), N);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<T> C(size_t(M * N));
    gemm<T>(false, true, M, N, K, T(1), A.data(), K, W.data(), K, T(0), C.data(), N);
    CHECK(test::same_bits(C, one_call));
    std::vector<T> alone(static_cast<size_t>(N));
    gemm<T>(false, true, 1, N, K, T(1), A.data() + 5 * K, K, W.data(), K, T(0), alone.data(), N);
    CHECK(test::same_bits(alone, std::vector<T>(one_call.begin() + 5 * N, one_call.begin() + 6 * N)));
  }
  set_num_threads(1);
}
}  // namespace

TEST(a_forward_product_cut_in_k_chunks_has_the_bits_of_one_call) {
  check_chunked_forward<float>();
  check_chunked_forward<double>();
}
#endif
