// Microbenchmarks of the core's kernels, next to plain sgemm on the same shapes.
//
// Timing only: the kernels' correctness is the C++ tests' job (tests/cpp, run by ctest); a
// quick sanity check against the naive reference runs first and aborts on a wrong result. Then
// it times the GEMMs of each benchmarked model (BLAS alone), dense forward/backward,
// activations, softmax + cross-entropy, the optimizer updates and a whole Network::train_step,
// each at 1 and 2 threads. Counters: GFLOP/s for products, GB/s for memory-bound loops, and
// allocs_per_step for the train step (a counting malloc/operator new; it must be 0).
//
//   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   ninja -C build-bench steepest_bench
//   build-bench/steepest_bench --benchmark_filter=step
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <cblas.h>
#include <unistd.h>

#include "count_allocs.hpp"
#include "reference.hpp"
#include "steepest/network.hpp"

using namespace steepest;
using steepest::reference::mlp;
using steepest::reference::randn;

namespace {

// A product and a train step against the references: a benchmark of a broken build is
// meaningless.
void sanity_check() {
  const int64_t M = 64, N = 48, K = 80;
  const auto A = randn<float>(size_t(M * K), 1), B = randn<float>(size_t(K * N), 2);
  std::vector<float> C(size_t(M * N));
  gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
  const std::vector<double> want = reference::gemm(false, false, M, N, K, A, B);
  for (size_t i = 0; i < C.size(); ++i) {
    if (!(std::fabs(double(C[i]) - want[i]) <= 1e-3)) {
      std::fprintf(stderr, "SANITY CHECK FAILED: gemm element %zu is %g, reference %g\n", i,
                   double(C[i]), want[i]);
      std::abort();
    }
  }
  Network<double> net(mlp({5, 7, 3}), 0);
  const auto x = randn<double>(4 * 5, 3);
  const std::vector<int64_t> y = {0, 1, 2, 1};
  const std::vector<double> p(net.params(), net.params() + net.num_params());
  const reference::Backprop bp = reference::backprop(net.layers(), p, x, 4, y, {});
  OptimizerConfig sgd;
  sgd.lr = 1.0;
  Optimizer<double> opt(sgd, {{0, net.num_params()}});
  LossSpec ce;
  ce.kind = LossKind::CrossEntropy;
  double loss = 0;
  net.train_step(x.data(), {y.data(), nullptr}, 4, ce, opt, 0.0, &loss);
  for (size_t i = 0; i < p.size(); ++i) {
    if (!(std::fabs(net.params()[i] - (p[i] - bp.grads[i])) <= 1e-12)) {
      std::fprintf(stderr, "SANITY CHECK FAILED: train_step parameter %zu\n", i);
      std::abort();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The models of the comparison (bench/compare.py): sizes, batch, optimizer.

struct Config {
  const char* name;
  std::vector<int64_t> sizes;
  int64_t batch;
  bool adam;
};
const std::vector<Config> kConfigs = {
    {"784-128-10/b1/sgd", {784, 128, 10}, 1, false},
    {"784-128-10/b32/adam", {784, 128, 10}, 32, true},
    {"784-512-512-10/b32/sgd", {784, 512, 512, 10}, 32, false},
    {"784-512-512-10/b256/adam", {784, 512, 512, 10}, 256, true},
    {"1024-2048-2048-10/b1024/sgd", {1024, 2048, 2048, 10}, 1024, false},
};

// Multiply-adds of one train step: forward, dW of every layer, dX of all but the first.
double step_flops(const Config& c) {
  double macs = 0;
  for (size_t i = 0; i + 1 < c.sizes.size(); ++i) {
    const double m = double(c.batch) * double(c.sizes[i]) * double(c.sizes[i + 1]);
    macs += (i == 0 ? 2 : 3) * m;
  }
  return 2 * macs;
}

struct Shape {
  int64_t M, N, K;
  bool ta, tb;
};
// The products of one train step, as the network issues them.
std::vector<Shape> step_gemms(const Config& c) {
  std::vector<Shape> out;
  for (size_t i = 0; i + 1 < c.sizes.size(); ++i) out.push_back({c.batch, c.sizes[i + 1], c.sizes[i], false, true});
  for (size_t i = c.sizes.size() - 1; i-- > 0;) {
    out.push_back({c.sizes[i + 1], c.sizes[i], c.batch, true, false});
    if (i > 0) out.push_back({c.batch, c.sizes[i], c.sizes[i + 1], false, false});
  }
  return out;
}

void set_threads(benchmark::State& state, int arg) { set_num_threads(int(state.range(arg))); }

// OpenBLAS's own threading, for the plain-sgemm references; steepest keeps it at 1.
struct PlainBlasThreads {
  explicit PlainBlasThreads(int n) { scipy_openblas_set_num_threads(n); }
  ~PlainBlasThreads() { scipy_openblas_set_num_threads(1); }
};

// Plain sgemm of every product of a train step, straight to OpenBLAS with its thread count
// left at the benchmark's: the reference for the step's effective GEMM throughput.
void BM_step_sgemm_only(benchmark::State& state) {
  const Config& c = kConfigs[size_t(state.range(0))];
  PlainBlasThreads blas_threads(int(state.range(1)));
  const auto shapes = step_gemms(c);
  std::vector<std::vector<float>> A, B, C;
  for (auto& s : shapes) {
    A.push_back(randn<float>(static_cast<size_t>(s.M * s.K), 1, 0.1));
    B.push_back(randn<float>(static_cast<size_t>(s.K * s.N), 2, 0.1));
    C.emplace_back(static_cast<size_t>(s.M * s.N));
  }
  for (auto _ : state) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      scipy_cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                        s.tb ? CblasTrans : CblasNoTrans, blasint(s.M), blasint(s.N),
                        blasint(s.K), 1.f, A[i].data(), blasint(s.ta ? s.M : s.K), B[i].data(),
                        blasint(s.tb ? s.K : s.N), 0.f, C[i].data(), blasint(s.N));
    }
    benchmark::ClobberMemory();
  }
  state.SetLabel(c.name);
  state.counters["GFLOP/s"] = benchmark::Counter(step_flops(c), benchmark::Counter::kIsIterationInvariantRate);
}

// One whole Network::train_step (zero_grad + forward + softmax/CE + backward + update).
void BM_train_step(benchmark::State& state) {
  const Config& c = kConfigs[size_t(state.range(0))];
  set_threads(state, 1);
  Network<float> net(mlp(c.sizes), 0);
  OptimizerConfig oc;
  oc.kind = c.adam ? OptimizerKind::Adam : OptimizerKind::SGD;
  oc.lr = c.adam ? 1e-3 : 0.01;
  oc.momentum = c.adam ? 0.0 : 0.9;
  Optimizer<float> opt(oc, {{0, net.num_params()}});
  auto x = randn<float>(static_cast<size_t>(c.batch * c.sizes[0]), 3);
  std::vector<int64_t> y(static_cast<size_t>(c.batch));
  for (int64_t i = 0; i < c.batch; ++i) y[i] = i % c.sizes.back();
  LossSpec ce;
  ce.kind = LossKind::CrossEntropy;
  double loss = 0;
  for (int i = 0; i < 2; ++i) net.train_step(x.data(), {y.data(), nullptr}, c.batch, ce, opt, 0.0, &loss);
  int64_t allocs = 0, steps = 0;
  for (auto _ : state) {
    test::allocs::start();
    net.train_step(x.data(), {y.data(), nullptr}, c.batch, ce, opt, 0.0, &loss);
    allocs += test::allocs::stop();
    ++steps;
  }
  if (!std::isfinite(loss)) state.SkipWithError("non-finite loss");
  state.SetLabel(c.name);
  state.counters["GFLOP/s"] = benchmark::Counter(step_flops(c), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["allocs_per_step"] =
      test::allocs::kCounting ? double(allocs) / double(std::max<int64_t>(steps, 1)) : -1.0;
}

// Dense layer forward (GEMM + fused bias + ReLU) and backward (mask + bias sum, dW, dX).
void BM_dense_forward(benchmark::State& state) {
  const int64_t B = state.range(0), IN = state.range(1), OUT = state.range(2);
  set_threads(state, 3);
  auto x = randn<float>(static_cast<size_t>(B * IN), 1), w = randn<float>(static_cast<size_t>(OUT * IN), 2, 0.05),
       b = randn<float>(static_cast<size_t>(OUT), 3);
  std::vector<float> z(static_cast<size_t>(B * OUT)), a(static_cast<size_t>(B * OUT));
  for (auto _ : state) {
    dense_relu_forward(z.data(), a.data(), x.data(), w.data(), b.data(), B, IN, OUT, 0.f);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * B * IN * OUT, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_dense_backward(benchmark::State& state) {
  const int64_t B = state.range(0), IN = state.range(1), OUT = state.range(2);
  set_threads(state, 3);
  auto x = randn<float>(static_cast<size_t>(B * IN), 1), w = randn<float>(static_cast<size_t>(OUT * IN), 2, 0.05),
       dy = randn<float>(static_cast<size_t>(B * OUT), 3), z = randn<float>(static_cast<size_t>(B * OUT), 4);
  std::vector<float> dw(static_cast<size_t>(OUT * IN)), db(static_cast<size_t>(OUT)), dx(static_cast<size_t>(B * IN)), d(dy);
  for (auto _ : state) {
    act_backward_colsum(db.data(), d.data(), z.data(), B, OUT, 0.f, false);
    dense_backward(dx.data(), dw.data(), static_cast<float*>(nullptr), d.data(), x.data(),
                   w.data(), B, IN, OUT, false);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * B * IN * OUT, benchmark::Counter::kIsIterationInvariantRate);
}

// Plain sgemm on one shape, at the given BLAS thread count (no size-based choice).
void BM_sgemm(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const bool ta = state.range(3) & 1, tb = state.range(3) & 2;
  PlainBlasThreads blas_threads(int(state.range(4)));
  auto A = randn<float>(static_cast<size_t>(M * K), 1), B = randn<float>(static_cast<size_t>(K * N), 2);
  std::vector<float> C(static_cast<size_t>(M * N));
  for (auto _ : state) {
    scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      blasint(M), blasint(N), blasint(K), 1.f, A.data(), blasint(ta ? M : K),
                      B.data(), blasint(tb ? K : N), 0.f, C.data(), blasint(N));
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_activation(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto kind = Activation(state.range(1));
  set_threads(state, 2);
  auto x = randn<float>(static_cast<size_t>(n), 1);
  std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  for (auto _ : state) {
    activation_forward(y.data(), x.data(), n, kind, 0.01f);
    activation_backward(dx.data(), x.data(), x.data(), y.data(), n, kind, 0.01f);
    benchmark::ClobberMemory();
  }
  // forward reads x, writes y; backward reads dy, x, y, writes dx
  state.counters["GB/s"] = benchmark::Counter(6.0 * n * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_softmax_cross_entropy(benchmark::State& state) {
  const int64_t B = state.range(0), C = state.range(1);
  auto out = randn<float>(static_cast<size_t>(B * C), 1);
  std::vector<int64_t> y(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) y[i] = i % C;
  std::vector<float> d(static_cast<size_t>(B * C));
  for (auto _ : state) {
    benchmark::DoNotOptimize(cross_entropy_loss(d.data(), out.data(), y.data(), static_cast<const float*>(nullptr), B, C,
                                                LossSpec(LossKind::CrossEntropy)));
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * B * C * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}

// Optimizer update over n parameters: SGD momentum moves p, g, buf (3 reads, 2 writes), Adam
// p, g, m, v (4 reads, 3 writes); plus the gradient norm pass of train_step (1 read).
void BM_optimizer(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool adam = state.range(1);
  set_threads(state, 2);
  OptimizerConfig c;
  c.kind = adam ? OptimizerKind::Adam : OptimizerKind::SGD;
  c.momentum = adam ? 0.0 : 0.9;
  Optimizer<float> opt(c, {{0, n}});
  auto p = randn<float>(static_cast<size_t>(n), 1), g = randn<float>(static_cast<size_t>(n), 2);
  for (auto _ : state) {
    opt.step(p.data(), g.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter((adam ? 7.0 : 5.0) * n * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_grad_norm(benchmark::State& state) {
  const int64_t n = state.range(0);
  set_threads(state, 1);
  auto g = randn<float>(static_cast<size_t>(n), 2);
  for (auto _ : state) benchmark::DoNotOptimize(sum_squares(g.data(), n));
  state.counters["GB/s"] = benchmark::Counter(double(n) * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  for (int64_t t : {1, 2}) {
    for (int64_t c = 0; c < int64_t(kConfigs.size()); ++c) {
      const double min_time = c == 4 ? 2.0 : 0.3;
      benchmark::RegisterBenchmark("step/train_step", BM_train_step)->Args({c, t})->UseRealTime()->MinTime(min_time)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("step/sgemm_only", BM_step_sgemm_only)->Args({c, t})->UseRealTime()->MinTime(min_time)->Unit(benchmark::kMicrosecond);
    }
  }
  // Layer shapes of the benchmarked models: (batch, in, out).
  const std::vector<std::vector<int64_t>> layers = {
      {1, 784, 128}, {32, 784, 128}, {32, 784, 512}, {32, 512, 512}, {256, 784, 512},
      {256, 512, 512}, {1024, 1024, 2048}, {1024, 2048, 2048}};
  for (int64_t t : {1, 2})
    for (auto& l : layers) {
      const double mt = l[0] == 1024 ? 1.0 : 0.2;
      benchmark::RegisterBenchmark("dense/forward", BM_dense_forward)->Args({l[0], l[1], l[2], t})->UseRealTime()->MinTime(mt)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("dense/backward", BM_dense_backward)->Args({l[0], l[1], l[2], t})->UseRealTime()->MinTime(mt)->Unit(benchmark::kMicrosecond);
      // The same products with plain sgemm: forward x W^T, then dW = dy^T x and dX = dy W.
      benchmark::RegisterBenchmark("sgemm/forward", BM_sgemm)->Args({l[0], l[2], l[1], 2, t})->UseRealTime()->MinTime(mt)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("sgemm/backward_dW", BM_sgemm)->Args({l[2], l[1], l[0], 1, t})->UseRealTime()->MinTime(mt)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark("sgemm/backward_dX", BM_sgemm)->Args({l[0], l[1], l[2], 0, t})->UseRealTime()->MinTime(mt)->Unit(benchmark::kMicrosecond);
    }
  for (int64_t t : {1, 2})
    for (int64_t n : {int64_t(4096), int64_t(1) << 16, int64_t(1) << 21})
      for (int64_t kind : {int64_t(Activation::ReLU), int64_t(Activation::GELU), int64_t(Activation::Tanh)})
        benchmark::RegisterBenchmark("activation/fwd+bwd", BM_activation)->Args({n, kind, t})->UseRealTime()->MinTime(0.1);
  for (int64_t B : {1, 32, 256, 1024})
    benchmark::RegisterBenchmark("loss/softmax_cross_entropy", BM_softmax_cross_entropy)->Args({B, 10})->MinTime(0.1);
  // Parameter counts of the benchmarked models.
  for (int64_t t : {1, 2})
    for (int64_t n : {int64_t(101770), int64_t(669706), int64_t(6320138)})
      for (int64_t adam : {0, 1})
        benchmark::RegisterBenchmark("optimizer/update", BM_optimizer)->Args({n, adam, t})->UseRealTime()->MinTime(0.2);
  for (int64_t n : {int64_t(101770), int64_t(669706), int64_t(6320138)})
    benchmark::RegisterBenchmark("optimizer/grad_norm", BM_grad_norm)->Args({n, 1})->UseRealTime()->MinTime(0.1);
}

}  // namespace

int main(int argc, char** argv) {
  // As steepest's __init__ does; OpenBLAS reads it when it loads, so re-run with it set.
  if (!getenv("OPENBLAS_THREAD_TIMEOUT")) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
  }
  sanity_check();
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
