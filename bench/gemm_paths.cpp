// The matrix products of a train step on each path of the core, side by side: steepest's own
// kernels (gemm, batch-invariant), the same tiles on one-thread OpenBLAS calls (gemm_openblas,
// the path before the own kernels and on CPUs without AVX2 + FMA) and one plain OpenBLAS call
// per product with OpenBLAS's own threading (the fastest non-invariant path, not deterministic
// across thread counts). Rounds interleave the paths (reversed every other round); times are
// medians over the rounds, ratios the medians of the per-round ratios. At 1 thread the times are
// the thread's CPU time (steadier on a shared machine), on more threads wall time.
//
//   gemm_paths [--threads 1,2] [--rounds 15] [--double]
//
// Prints one markdown table per thread count: per model, the forward products (x W^T, the ones
// that must be batch-invariant), the backward products (dW = dy^T x, dX = dy W), and all.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "steepest/gemm.hpp"
#include "steepest/gemm_kernels.hpp"
#include "steepest/threads.hpp"

using namespace steepest;

namespace {

struct Model {
  const char* name;
  std::vector<int64_t> sizes;
  int64_t batch;
};
// The models of bench/compare.py.
const Model kModels[] = {
    {"784-128-10 b1", {784, 128, 10}, 1},
    {"784-128-10 b32", {784, 128, 10}, 32},
    {"784-512-512-10 b32", {784, 512, 512, 10}, 32},
    {"784-512-512-10 b256", {784, 512, 512, 10}, 256},
    {"1024-2048-2048-10 b1024", {1024, 2048, 2048, 10}, 1024},
};

struct Product {
  bool forward, ta, tb;
  int64_t M, N, K;
};
// As the network issues them: x W^T per layer, then dW = dy^T x and dX = dy W (not for the
// first layer) from the last layer back.
std::vector<Product> step_products(const Model& m) {
  std::vector<Product> out;
  const size_t L = m.sizes.size() - 1;
  for (size_t i = 0; i < L; ++i) out.push_back({true, false, true, m.batch, m.sizes[i + 1], m.sizes[i]});
  for (size_t i = L; i-- > 0;) {
    out.push_back({false, true, false, m.sizes[i + 1], m.sizes[i], m.batch});
    if (i > 0) out.push_back({false, false, false, m.batch, m.sizes[i], m.sizes[i + 1]});
  }
  return out;
}

enum Path { kOwn, kTiles, kPlain, kPaths };
const char* kPathNames[] = {"own kernels", "OpenBLAS tiles", "OpenBLAS plain"};

template <class T>
void plain_blas(const Product& p, const T* A, const T* B, T* C) {
  const auto ta = p.ta ? CblasTrans : CblasNoTrans, tb = p.tb ? CblasTrans : CblasNoTrans;
  const blasint lda = blasint(p.ta ? p.M : p.K), ldb = blasint(p.tb ? p.K : p.N);
  if constexpr (sizeof(T) == 4)
    scipy_cblas_sgemm(CblasRowMajor, ta, tb, blasint(p.M), blasint(p.N), blasint(p.K), 1.f, A,
                      lda, B, ldb, 0.f, C, blasint(p.N));
  else
    scipy_cblas_dgemm(CblasRowMajor, ta, tb, blasint(p.M), blasint(p.N), blasint(p.K), 1.0, A,
                      lda, B, ldb, 0.0, C, blasint(p.N));
}

template <class T>
struct Operands {
  std::vector<T> A, B, C;
};

template <class T>
void run(Path path, const Product& p, Operands<T>& o) {
  const int64_t lda = p.ta ? p.M : p.K, ldb = p.tb ? p.K : p.N;
  if (path == kOwn)
    gemm<T>(p.ta, p.tb, p.M, p.N, p.K, T(1), o.A.data(), lda, o.B.data(), ldb, T(0), o.C.data(), p.N);
  else if (path == kTiles)
    gemm_openblas<T>(p.ta, p.tb, p.M, p.N, p.K, T(1), o.A.data(), lda, o.B.data(), ldb, T(0),
                     o.C.data(), p.N);
  else
    plain_blas<T>(p, o.A.data(), o.B.data(), o.C.data());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The thread's CPU time at 1 thread, else wall time, in seconds.
double now(bool cpu) {
  if (cpu) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds for `reps` passes over the products selected by `which` (0 forward, 1 backward).
template <class T>
double time_pass(Path path, const std::vector<Product>& ps, std::vector<Operands<T>>& ops,
                 int which, int reps) {
  const bool cpu = get_num_threads() == 1;
  const double t0 = now(cpu);
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < ps.size(); ++i)
      if (ps[i].forward == (which == 0)) run(path, ps[i], ops[i]);
  return (now(cpu) - t0) / reps;
}

template <class T>
void table(int threads, int rounds) {
  set_num_threads(threads);
  std::printf("\n### %d thread%s, %s (own kernels: %s; %s)\n\n", threads, threads > 1 ? "s" : "",
              sizeof(T) == 4 ? "float32" : "float64", gemm_isa_name(gemm_isa()),
              threads == 1 ? "thread CPU time" : "wall time");
  std::printf("| model | products | own kernels | OpenBLAS tiles | OpenBLAS plain | own / tiles | own / plain |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const Model& m : kModels) {
    const auto ps = step_products(m);
    std::vector<Operands<T>> ops(ps.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      ops[i].A.resize(size_t(ps[i].M * ps[i].K));
      ops[i].B.resize(size_t(ps[i].K * ps[i].N));
      ops[i].C.resize(size_t(ps[i].M * ps[i].N));
      for (T& x : ops[i].A) x = T(u(rng));
      for (T& x : ops[i].B) x = T(u(rng));
    }
    double macs = 0;
    for (const Product& p : ps) macs += double(p.M) * double(p.N) * double(p.K);
    const int reps = std::max(1, int(2e7 / macs));  // a few ms per pass
    for (int which : {0, 1, 2}) {
      std::vector<double> t[kPaths], own_tiles, own_plain;
      for (int r = 0; r < rounds + 1; ++r) {
        double s[kPaths];
        for (int k = 0; k < kPaths; ++k) {
          const Path path = Path(r % 2 ? kPaths - 1 - k : k);
          scipy_openblas_set_num_threads(path == kPlain ? threads : 1);
          s[path] = which == 2 ? time_pass<T>(path, ps, ops, 0, reps) + time_pass<T>(path, ps, ops, 1, reps)
                               : time_pass<T>(path, ps, ops, which, reps);
        }
        scipy_openblas_set_num_threads(1);
        if (r == 0) continue;  // warm-up
        for (int k = 0; k < kPaths; ++k) t[k].push_back(s[k]);
        own_tiles.push_back(s[kOwn] / s[kTiles]);
        own_plain.push_back(s[kOwn] / s[kPlain]);
      }
      std::printf("| %s | %s | %.1f us | %.1f us | %.1f us | %.3f | %.3f |\n", m.name,
                  which == 0 ? "forward" : which == 1 ? "backward" : "all",
                  1e6 * median(t[kOwn]), 1e6 * median(t[kTiles]), 1e6 * median(t[kPlain]),
                  median(own_tiles), median(own_plain));
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 2};
  int rounds = 15;
  bool dbl = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      for (const char* p = argv[++i]; *p;) {
        threads.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--double") {
      dbl = true;
    } else {
      std::fprintf(stderr, "usage: gemm_paths [--threads 1,2] [--rounds 15] [--double]\n");
      return 2;
    }
  }
  std::printf("Per pass over a train step's products; ratios < 1: the own kernels are faster.\n");
  for (int t : threads) dbl ? table<double>(t, rounds) : table<float>(t, rounds);
  return 0;
}
