// Microbenchmarks of the core's kernels, next to plain sgemm on the same shapes.
//
// First checks every kernel against a naive reference (and aborts with a message when one is
// wrong), then times: the GEMMs of each benchmarked model (BLAS alone), dense forward/backward,
// activations, softmax + cross-entropy, the optimizer updates and a whole Network::train_step,
// each at 1 and 2 threads. Counters: GFLOP/s for products, GB/s for memory-bound loops, and
// allocs_per_step for the train step (a counting malloc/operator new; it must be 0).
//
//   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   ninja -C build-bench steepest_bench
//   OPENBLAS_THREAD_TIMEOUT=4 build-bench/steepest_bench --benchmark_filter=step
#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>
#include <unistd.h>

#include "steepest/network.hpp"

using namespace steepest;

// ---------------------------------------------------------------------------------------------
// Counting allocator: every malloc/calloc/realloc/aligned allocation and operator new of the
// process goes through here while g_counting is set.

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocs{0};
inline void note_alloc() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// Sanitizers bring their own malloc: the counting hooks are left out of such builds (and
// allocs_per_step is reported as -1).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STEEPEST_COUNT_ALLOCS 0
#else
#define STEEPEST_COUNT_ALLOCS 1
#endif

#if STEEPEST_COUNT_ALLOCS
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);

void* malloc(size_t n) {
  note_alloc();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  note_alloc();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  note_alloc();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
int posix_memalign(void** out, size_t align, size_t n) {
  note_alloc();
  void* p = __libc_memalign(align, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
void* aligned_alloc(size_t align, size_t n) {
  note_alloc();
  return __libc_memalign(align, n);
}
}

void* operator new(size_t n) {
  note_alloc();
  if (void* p = __libc_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t) noexcept { __libc_free(p); }
#endif  // STEEPEST_COUNT_ALLOCS

// ---------------------------------------------------------------------------------------------
// Helpers

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "KERNEL CHECK FAILED: %s\n", what.c_str());
  std::abort();
}

template <class T>
std::vector<T> randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(gen));
  return v;
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double rtol,
                  double atol, const std::string& what) {
  if (got.size() != want.size()) fail(what + ": size mismatch");
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = want[i];
    if (!(std::fabs(g - w) <= atol + rtol * std::fabs(w)))
      fail(what + ": element " + std::to_string(i) + " is " + std::to_string(g) +
           ", reference " + std::to_string(w));
  }
}

template <class T>
void expect_equal(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  if (a != b) fail(what + ": not bitwise identical");
}

// Naive references, in double.
// C (M, N) = op(A) op(B), row-major
template <class T>
std::vector<double> ref_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                             const std::vector<T>& A, const std::vector<T>& B) {
  std::vector<double> C(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * M + i] : A[i * K + k];
        const double b = tb ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      C[i * N + j] = s;
    }
  return C;
}

double ref_act(Activation kind, double x, double p) {
  switch (kind) {
    case Activation::ReLU: return x > 0 ? x : 0;
    case Activation::LeakyReLU: return x > 0 ? x : p * x;
    case Activation::ELU: return x > 0 ? x : p * (std::exp(x) - 1);
    case Activation::GELU: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::SiLU: return x / (1 + std::exp(-x));
    case Activation::Sigmoid: return 1 / (1 + std::exp(-x));
    case Activation::Tanh: return std::tanh(x);
    case Activation::Softplus: return x > 20 ? x : std::log1p(std::exp(x));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Checks against the references: run once, before any timing.

template <class T>
void check_gemm_and_dense(double tol) {
  const int64_t M = 37, N = 29, K = 53;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto A = randn<T>(static_cast<size_t>(M * K), 1), B = randn<T>(static_cast<size_t>(K * N), 2);
      std::vector<T> C(static_cast<size_t>(M * N), T(0));
      gemm<T>(ta, tb, M, N, K, T(1), A.data(), ta ? M : K, B.data(), tb ? K : N, T(0), C.data(),
              N);
      expect_close(C, ref_gemm(ta, tb, M, N, K, A, B), tol, tol, "gemm");
    }
  // Dense forward with the fused bias + ReLU/LeakyReLU, backward with the fused mask + colsum.
  const int64_t Bt = 19, IN = 41, OUT = 23;
  auto x = randn<T>(static_cast<size_t>(Bt * IN), 3), w = randn<T>(static_cast<size_t>(OUT * IN), 4),
       b = randn<T>(static_cast<size_t>(OUT), 5), dy = randn<T>(static_cast<size_t>(Bt * OUT), 6);
  auto xw = ref_gemm(false, true, Bt, OUT, IN, x, w);
  for (double slope : {0.0, 0.1}) {
    std::vector<T> z(static_cast<size_t>(Bt * OUT)), a(static_cast<size_t>(Bt * OUT));
    dense_relu_forward(z.data(), a.data(), x.data(), w.data(), b.data(), Bt, IN, OUT, T(slope));
    std::vector<double> zr(xw), ar(xw.size());
    for (int64_t r = 0; r < Bt; ++r)
      for (int64_t o = 0; o < OUT; ++o) {
        zr[r * OUT + o] += double(b[o]);
        ar[r * OUT + o] = ref_act(Activation::LeakyReLU, zr[r * OUT + o], slope);
      }
    expect_close(z, zr, tol, tol, "dense_forward (pre-activation)");
    expect_close(a, ar, tol, tol, "dense_forward (fused activation)");
    // backward through the activation, then the layer
    std::vector<T> d(dy), db(static_cast<size_t>(OUT)), dw(static_cast<size_t>(OUT * IN)), dx(static_cast<size_t>(Bt * IN));
    act_backward_colsum(db.data(), d.data(), z.data(), Bt, OUT, T(slope), false);
    dense_backward(dx.data(), dw.data(), static_cast<T*>(nullptr), d.data(), x.data(), w.data(),
                   Bt, IN, OUT, false);
    std::vector<T> dmask(dy.size());
    std::vector<double> dbr(static_cast<size_t>(OUT), 0.0);
    for (int64_t i = 0; i < Bt * OUT; ++i) {
      dmask[i] = z[i] > T(0) ? dy[i] : T(slope) * dy[i];
      dbr[size_t(i % OUT)] += double(dmask[i]);
    }
    expect_close(db, dbr, tol, tol, "act_backward_colsum (bias gradient)");
    expect_close(dw, ref_gemm(true, false, OUT, IN, Bt, dmask, x), tol, tol, "dense_backward dW");
    expect_close(dx, ref_gemm(false, false, Bt, IN, OUT, dmask, w), tol, tol, "dense_backward dX");
  }
}

template <class T>
void check_elementwise(double tol) {
  const int64_t n = 1000;
  auto x = randn<T>(static_cast<size_t>(n), 7, 3.0), dy = randn<T>(static_cast<size_t>(n), 8);
  for (Activation kind : {Activation::ReLU, Activation::LeakyReLU, Activation::ELU,
                          Activation::GELU, Activation::SiLU, Activation::Sigmoid,
                          Activation::Tanh, Activation::Softplus}) {
    const double p = kind == Activation::LeakyReLU ? 0.01 : 1.0;
    std::vector<T> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
    activation_forward(y.data(), x.data(), n, kind, T(p));
    std::vector<double> yr(static_cast<size_t>(n)), dr(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      yr[i] = ref_act(kind, double(x[i]), p);
      const double h = 1e-6 * std::max(1.0, std::fabs(double(x[i])));  // central difference
      dr[i] = double(dy[i]) * (ref_act(kind, double(x[i]) + h, p) -
                               ref_act(kind, double(x[i]) - h, p)) / (2 * h);
    }
    expect_close(y, yr, tol, tol, "activation_forward " + std::to_string(int(kind)));
    activation_backward(dx.data(), dy.data(), x.data(), y.data(), n, kind, T(p));
    // ReLU-like kinks: the difference quotient is wrong within h of 0; x has none that close.
    expect_close(dx, dr, 1e-4 + tol, 1e-4 + tol, "activation_backward " + std::to_string(int(kind)));
  }
  // softmax + cross-entropy (fused) against the definitions
  const int64_t B = 17, C = 10;
  auto logits = randn<T>(static_cast<size_t>(B * C), 9, 4.0);
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) labels[r] = (r * 7) % C;
  std::vector<T> dout(static_cast<size_t>(B * C));
  const double loss = cross_entropy_loss(dout.data(), logits.data(), labels.data(), B, C, 0.0);
  double ref_loss = 0;
  std::vector<double> dref(static_cast<size_t>(B * C));
  for (int64_t r = 0; r < B; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(double(logits[r * C + c]));
    ref_loss += -(double(logits[r * C + labels[r]]) - std::log(sum)) / double(B);
    for (int64_t c = 0; c < C; ++c)
      dref[r * C + c] = (std::exp(double(logits[r * C + c])) / sum - (c == labels[r])) / double(B);
  }
  if (std::fabs(loss - ref_loss) > tol * (1 + std::fabs(ref_loss))) fail("cross_entropy_loss value");
  expect_close(dout, dref, tol, tol, "cross_entropy_loss gradient");
  std::vector<T> sm(static_cast<size_t>(B * C));
  softmax_forward(sm.data(), logits.data(), B, C);
  std::vector<double> smr(static_cast<size_t>(B * C));
  for (int64_t r = 0; r < B; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(double(logits[r * C + c]));
    for (int64_t c = 0; c < C; ++c) smr[r * C + c] = std::exp(double(logits[r * C + c])) / sum;
  }
  expect_close(sm, smr, tol, tol, "softmax_forward");

  // sum of squares: close to the double reference, bitwise the same on 1 and 2 threads
  for (int64_t len : {int64_t(0), int64_t(1), int64_t(33), int64_t(100003), int64_t(3000017)}) {
    auto v = randn<T>(static_cast<size_t>(len), 10);
    double ref = 0;
    for (auto e : v) ref += double(e) * double(e);
    set_num_threads(1);
    const double s1 = sum_squares(v.data(), len);
    set_num_threads(2);
    const double s2 = sum_squares(v.data(), len);
    if (std::fabs(s1 - ref) > 1e-12 * (1 + ref)) fail("sum_squares value");
    if (s1 != s2) fail("sum_squares differs between 1 and 2 threads");
  }
}

// The optimizer updates against the plain loops of torch's formulas (bitwise: same arithmetic).
template <class T>
void check_optimizers() {
  const int64_t n = 5003;
  for (int kind = 0; kind < 2; ++kind)
    for (int variant = 0; variant < 2; ++variant) {
      OptimizerConfig c;
      c.kind = kind == 0 ? OptimizerKind::SGD : OptimizerKind::Adam;
      c.lr = 0.01;
      c.weight_decay = 1e-3;
      c.momentum = 0.9;
      c.nesterov = kind == 0 && variant == 1;
      c.amsgrad = kind == 1 && variant == 1;
      Optimizer<T> opt(c, {{0, n}});
      auto p = randn<T>(static_cast<size_t>(n), 11), pr = p;
      std::vector<T> buf(static_cast<size_t>(n)), m(static_cast<size_t>(n)), v(static_cast<size_t>(n)), vmax(static_cast<size_t>(n));
      for (int step = 1; step <= 3; ++step) {
        auto g = randn<T>(static_cast<size_t>(n), uint64_t(20 + step));
        opt.step(p.data(), g.data());
        const T lr = T(c.lr), wd = T(c.weight_decay), mom = T(c.momentum);
        for (int64_t i = 0; i < n; ++i) {
          if (kind == 0) {
            T d = g[i] + wd * pr[i];
            buf[i] = step == 1 ? d : mom * buf[i] + T(1 - c.dampening) * d;
            d = c.nesterov ? d + mom * buf[i] : buf[i];
            pr[i] -= lr * d;
          } else {
            const T gi = g[i] + wd * pr[i];
            m[i] += (T(1) - T(c.beta1)) * (gi - m[i]);
            v[i] = T(c.beta2) * v[i] + (T(1) - T(c.beta2)) * gi * gi;
            T vi = v[i];
            if (c.amsgrad) vi = vmax[i] = vmax[i] > vi ? vmax[i] : vi;
            const T ss = T(c.lr / (1 - std::pow(c.beta1, double(step))));
            const T ib = T(1 / std::sqrt(1 - std::pow(c.beta2, double(step))));
            pr[i] -= ss * m[i] / (std::sqrt(vi) * ib + T(c.eps));
          }
        }
      }
      expect_equal(p, pr, std::string(kind == 0 ? "SGD" : "Adam") + " update");
    }
}

std::vector<LayerSpec> mlp(const std::vector<int64_t>& sizes, double dropout = 0.0) {
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    LayerSpec d;
    d.kind = LayerKind::Dense;
    d.in = sizes[i];
    d.out = sizes[i + 1];
    layers.push_back(d);
    if (i + 2 < sizes.size()) {
      LayerSpec a;
      a.kind = LayerKind::Activation;
      a.in = a.out = sizes[i + 1];
      layers.push_back(a);
      if (dropout > 0) {
        LayerSpec p;
        p.kind = LayerKind::Dropout;
        p.in = p.out = sizes[i + 1];
        p.param = dropout;
        layers.push_back(p);
      }
    }
  }
  return layers;
}

// A whole train step (SGD, no momentum) against naive backpropagation of Dense-ReLU-Dense in
// double; then the same seed on 1 and 2 threads must give bitwise-identical weights.
// One SGD train_step against naive float64 backpropagation; batch 1 takes the fused
// outer-product update path.
void check_train_step(int64_t B) {
  const int64_t IN = 31, H = 300, C = 7;
  Network<float> net(mlp({IN, H, C}), 42);
  auto x = randn<float>(static_cast<size_t>(B * IN), 12);
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) labels[r] = r % C;
  std::vector<float> p0(net.params(), net.params() + net.num_params());
  const LayerSpec &l1 = net.layers()[0], &l2 = net.layers()[2];
  auto W = [&](const LayerSpec& l, int64_t o, int64_t i) { return double(p0[l.weight_offset + o * l.in + i]); };
  auto Bv = [&](const LayerSpec& l, int64_t o) { return double(p0[l.bias_offset + o]); };
  std::vector<double> grads(p0.size(), 0.0), z(static_cast<size_t>(B * H)), logits(static_cast<size_t>(B * C));
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t h = 0; h < H; ++h) {
      double s = Bv(l1, h);
      for (int64_t i = 0; i < IN; ++i) s += W(l1, h, i) * double(x[r * IN + i]);
      z[r * H + h] = s;
    }
    for (int64_t c = 0; c < C; ++c) {
      double s = Bv(l2, c);
      for (int64_t h = 0; h < H; ++h) s += W(l2, c, h) * std::max(z[r * H + h], 0.0);
      logits[r * C + c] = s;
    }
    double mx = logits[r * C], sum = 0;
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, logits[r * C + c]);
    for (int64_t c = 0; c < C; ++c) sum += std::exp(logits[r * C + c] - mx);
    std::vector<double> dl(static_cast<size_t>(C)), dh(static_cast<size_t>(H), 0.0);
    for (int64_t c = 0; c < C; ++c)
      dl[c] = (std::exp(logits[r * C + c] - mx) / sum - (c == labels[r])) / double(B);
    for (int64_t c = 0; c < C; ++c) {
      grads[l2.bias_offset + c] += dl[c];
      for (int64_t h = 0; h < H; ++h) {
        grads[l2.weight_offset + c * H + h] += dl[c] * std::max(z[r * H + h], 0.0);
        dh[h] += dl[c] * W(l2, c, h);
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      if (z[r * H + h] <= 0) continue;
      grads[l1.bias_offset + h] += dh[h];
      for (int64_t i = 0; i < IN; ++i) grads[l1.weight_offset + h * IN + i] += dh[h] * double(x[r * IN + i]);
    }
  }
  OptimizerConfig c;
  c.kind = OptimizerKind::SGD;
  c.lr = 0.5;
  Optimizer<float> opt(c, {{0, net.num_params()}});
  LossSpec ce;
  ce.kind = LossKind::CrossEntropy;
  double loss = 0;
  if (net.train_step(x.data(), {labels.data(), nullptr}, B, ce, opt, 0.0, &loss) != StepStatus::Ok)
    fail("train_step status");
  std::vector<float> p1(net.params(), net.params() + net.num_params());
  std::vector<double> want(p0.size());
  for (size_t i = 0; i < p0.size(); ++i) want[i] = double(p0[i]) - 0.5 * grads[i];
  expect_close(p1, want, 1e-4, 1e-5,
               "Network::train_step (weights after one SGD step), batch " + std::to_string(B));
}

void check_network() {
  check_train_step(13);
  check_train_step(1);
  LossSpec ce;
  ce.kind = LossKind::CrossEntropy;
  double loss = 0;
  // Thread-count independence: 3 steps of Adam with dropout, wide enough to use 2 threads.
  auto run = [&](int threads) {
    set_num_threads(threads);
    Network<float> n2(mlp({256, 2048, 512, 10}, 0.2), 7);
    OptimizerConfig a;
    a.kind = OptimizerKind::Adam;
    Optimizer<float> o2(a, {{0, n2.num_params()}});
    auto xb = randn<float>(static_cast<size_t>(512 * 256), 13);
    std::vector<int64_t> yb(512);
    for (int i = 0; i < 512; ++i) yb[i] = i % 10;
    for (int s = 0; s < 3; ++s) n2.train_step(xb.data(), {yb.data(), nullptr}, 512, ce, o2, 1.0, &loss);
    return std::vector<float>(n2.params(), n2.params() + n2.num_params());
  };
  expect_equal(run(1), run(2), "weights after 3 steps on 1 vs 2 threads");
}

void check_all() {
  check_gemm_and_dense<float>(2e-4);
  check_gemm_and_dense<double>(1e-10);
  check_elementwise<float>(2e-5);
  check_elementwise<double>(1e-9);
  check_optimizers<float>();
  check_optimizers<double>();
  check_network();
  std::fprintf(stderr, "kernel checks passed\n");
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
    g_allocs = 0;
    g_counting = true;
    net.train_step(x.data(), {y.data(), nullptr}, c.batch, ce, opt, 0.0, &loss);
    g_counting = false;
    allocs += g_allocs;
    ++steps;
  }
  if (!std::isfinite(loss)) state.SkipWithError("non-finite loss");
  state.SetLabel(c.name);
  state.counters["GFLOP/s"] = benchmark::Counter(step_flops(c), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["allocs_per_step"] =
      STEEPEST_COUNT_ALLOCS ? double(allocs) / double(std::max<int64_t>(steps, 1)) : -1.0;
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
    benchmark::DoNotOptimize(cross_entropy_loss(d.data(), out.data(), y.data(), B, C, 0.0));
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
  check_all();
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
