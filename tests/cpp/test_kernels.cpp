// The kernels against the naive references: products (every transpose, batch 1, tiled sizes),
// the dense layer with its fused epilogues, activations, softmax, dropout, losses, reductions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "check.hpp"
#include "reference.hpp"
#include "steepest/kernels.hpp"

using namespace steepest;
namespace ref = steepest::reference;
using test::tolerance;

namespace {

// (M, N, K): a plain product, the batch-1 shapes (M, N or K of 1, served without GEMM, some in
// row tiles), and products large enough to be split in 2 and 8 tiles.
const int64_t kShapes[][3] = {{37, 29, 53}, {1, 29, 53}, {1, 300, 784}, {37, 1, 53},
                              {37, 29, 1},  {128, 128, 128}, {300, 64, 200}, {64, 512, 256}};

template <class T>
void check_gemm_shapes() {
  for (const auto& s : kShapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const auto A = ref::randn<T>(size_t(M * K), 1), B = ref::randn<T>(size_t(K * N), 2);
        const auto C0 = ref::randn<T>(size_t(M * N), 3);
        // C = 1.5 op(A) op(B) + 0.5 C0
        std::vector<double> want = ref::gemm(ta, tb, M, N, K, A, B);
        for (size_t i = 0; i < want.size(); ++i) want[i] = 1.5 * want[i] + 0.5 * double(C0[i]);
        std::vector<T> C1 = C0, C2 = C0;
        auto run = [&](std::vector<T>& C) {
          gemm<T>(ta, tb, M, N, K, T(1.5), A.data(), ta ? M : K, B.data(), tb ? K : N, T(0.5),
                  C.data(), N);
        };
        set_num_threads(1);
        run(C1);
        set_num_threads(2);
        run(C2);
        const std::string what = "gemm " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                                 std::to_string(K) + " ta=" + std::to_string(ta) +
                                 " tb=" + std::to_string(tb);
        CHECK_CLOSE(C1, want, tolerance<T>() * 10, tolerance<T>() * double(K), what);
        CHECK_BITWISE(C1, C2, what + " on 1 vs 2 threads");
      }
  }
}

}  // namespace

TEST(gemm_matches_reference_at_every_shape_and_thread_count) {
  check_gemm_shapes<float>();
  check_gemm_shapes<double>();
}

TEST(gemm_tiles_depend_on_the_shape_only) {
  CHECK(gemm_tiles(37, 29, 53) == 1);
  CHECK(gemm_tiles(128, 128, 128) == 2);
  CHECK(gemm_tiles(64, 512, 256) == 8);
  CHECK(row_tiles(300, 784) == 4);
  CHECK(row_tiles(10, 128) == 1);
  set_num_threads(2);
  CHECK(gemm_tiles(128, 128, 128) == 2);
}

TEST(outer_product_is_the_product_with_k_1) {
  const int64_t M = 45, N = 77;
  const auto a = ref::randn<float>(size_t(M), 4), b = ref::randn<float>(size_t(N), 5);
  std::vector<float> C(size_t(M * N)), G(size_t(M * N));
  outer_product(C.data(), a.data(), b.data(), M, N);
  gemm<float>(false, false, M, N, 1, 1.f, a.data(), 1, b.data(), N, 0.f, G.data(), N);
  CHECK_CLOSE(C, ref::gemm(false, false, M, N, 1, a, b), 1e-6, 0.0, "outer_product");
  CHECK_BITWISE(C, G, "outer_product vs gemm with K = 1");
}

namespace {

// Dense forward (plain and fused with ReLU/LeakyReLU) and backward (the fused mask + bias sum,
// dW accumulated or not, dX) against the references, at batch B.
template <class T>
void check_dense(int64_t B, bool bias) {
  const int64_t IN = 41, OUT = 23;
  const double tol = tolerance<T>() * 10;
  const auto x = ref::randn<T>(size_t(B * IN), 3), w = ref::randn<T>(size_t(OUT * IN), 4);
  const auto b = ref::randn<T>(size_t(OUT), 5), dy = ref::randn<T>(size_t(B * OUT), 6);
  const T* bp = bias ? b.data() : nullptr;
  std::vector<double> zr = ref::gemm(false, true, B, OUT, IN, x, w);
  for (int64_t i = 0; i < B * OUT; ++i) zr[size_t(i)] += bias ? double(b[size_t(i % OUT)]) : 0.0;
  const std::string what = " (batch " + std::to_string(B) + (bias ? ")" : ", no bias)");

  std::vector<T> y(size_t(B * OUT));
  dense_forward(y.data(), x.data(), w.data(), bp, B, IN, OUT);
  CHECK_CLOSE(y, zr, tol, tol, "dense_forward" + what);

  for (double slope : {0.0, 0.1}) {
    std::vector<T> z(size_t(B * OUT)), a(size_t(B * OUT)), inplace(size_t(B * OUT));
    dense_relu_forward(z.data(), a.data(), x.data(), w.data(), bp, B, IN, OUT, T(slope));
    dense_relu_forward(inplace.data(), inplace.data(), x.data(), w.data(), bp, B, IN, OUT, T(slope));
    std::vector<double> ar(zr.size());
    for (size_t i = 0; i < zr.size(); ++i) ar[i] = ref::activation(Activation::LeakyReLU, zr[i], slope);
    CHECK_CLOSE(z, zr, tol, tol, "dense_relu_forward pre-activation" + what);
    CHECK_CLOSE(a, ar, tol, tol, "dense_relu_forward activation" + what);
    CHECK_BITWISE(a, inplace, "dense_relu_forward in place" + what);

    // Backward through the activation and the layer; dW and db accumulate onto 1.
    std::vector<T> d(dy), db(size_t(OUT), T(1)), dw(size_t(OUT * IN), T(1)), dx(size_t(B * IN));
    act_backward_colsum(bias ? db.data() : nullptr, d.data(), z.data(), B, OUT, T(slope), true);
    dense_backward(dx.data(), dw.data(), static_cast<T*>(nullptr), d.data(), x.data(), w.data(),
                   B, IN, OUT, true);
    std::vector<T> masked(dy.size());
    std::vector<double> dbr(size_t(OUT), 1.0);
    for (size_t i = 0; i < dy.size(); ++i) {
      masked[i] = T(double(dy[i]) * ref::activation_grad(Activation::LeakyReLU, double(z[i]), slope));
      dbr[i % size_t(OUT)] += double(masked[i]);
    }
    std::vector<double> dwr = ref::gemm(true, false, OUT, IN, B, masked, x);
    for (double& v : dwr) v += 1.0;
    CHECK_CLOSE(d, masked, tol, tol, "act_backward_colsum mask" + what);
    if (bias) CHECK_CLOSE(db, dbr, tol, tol, "act_backward_colsum bias gradient" + what);
    CHECK_CLOSE(dw, dwr, tol, tol, "dense_backward dW" + what);
    CHECK_CLOSE(dx, ref::gemm(false, false, B, IN, OUT, masked, w), tol, tol, "dense_backward dX" + what);
  }
  // The bias gradient of dense_backward itself, overwriting.
  std::vector<T> db(size_t(OUT), T(7));
  std::vector<double> dbr(size_t(OUT), 0.0);
  for (size_t i = 0; i < dy.size(); ++i) dbr[i % size_t(OUT)] += double(dy[i]);
  dense_backward(static_cast<T*>(nullptr), static_cast<T*>(nullptr), db.data(), dy.data(), x.data(),
                 w.data(), B, IN, OUT, false);
  CHECK_CLOSE(db, dbr, tol, tol, "dense_backward db" + what);
}

}  // namespace

TEST(dense_layer_matches_reference) {
  for (int64_t B : {1, 19}) {
    for (bool bias : {true, false}) {
      check_dense<float>(B, bias);
      check_dense<double>(B, bias);
    }
  }
}

namespace {

template <class T>
void check_activations(int64_t n) {
  const auto x = ref::randn<T>(size_t(n), 7, 3.0), dy = ref::randn<T>(size_t(n), 8);
  const double tol = tolerance<T>() * 10;
  for (Activation kind : {Activation::ReLU, Activation::LeakyReLU, Activation::ELU,
                          Activation::GELU, Activation::SiLU, Activation::Sigmoid,
                          Activation::Tanh, Activation::Softplus, Activation::GELUTanh}) {
    const double p = kind == Activation::LeakyReLU ? 0.01 : 1.3;
    const std::string what = "activation " + std::to_string(int(kind)) + " n=" + std::to_string(n);
    std::vector<double> yr(static_cast<size_t>(n)), dr(static_cast<size_t>(n));
    for (size_t i = 0; i < size_t(n); ++i) {
      yr[i] = ref::activation(kind, double(x[i]), p);
      dr[i] = double(dy[i]) * ref::activation_grad(kind, double(x[i]), p);
    }
    std::vector<T> y1(static_cast<size_t>(n)), y2(static_cast<size_t>(n)), dx(static_cast<size_t>(n)), inplace(dy);
    set_num_threads(1);
    activation_forward(y1.data(), x.data(), n, kind, T(p));
    activation_backward(dx.data(), dy.data(), x.data(), y1.data(), n, kind, T(p));
    set_num_threads(2);
    activation_forward(y2.data(), x.data(), n, kind, T(p));
    activation_backward(inplace.data(), inplace.data(), x.data(), y2.data(), n, kind, T(p));
    CHECK_CLOSE(y1, yr, tol, tol, what + " forward");
    CHECK_CLOSE(dx, dr, tol, tol, what + " backward");
    CHECK_BITWISE(y1, y2, what + " forward on 1 vs 2 threads");
    CHECK_BITWISE(dx, inplace, what + " backward in place on 2 threads");
  }
}

}  // namespace

TEST(activations_match_reference) {
  for (int64_t n : {1000, 200003}) {
    check_activations<float>(n);
    check_activations<double>(n);
  }
}

TEST(elu_gradient_keeps_relative_accuracy_far_below_zero) {
  // alpha exp(x) is ~2.3e-16 at -36 and ~4e-44 at -100: y + alpha would give 0 or a few ulps
  // of 1 there. The gradient must keep full relative accuracy (double) at any depth.
  const std::vector<double> x = {-20.0, -36.0, -37.5, -40.0, -100.0, -700.0};
  const std::vector<double> dy(x.size(), 1.0);
  std::vector<double> y(x.size()), dx(x.size()), want(x.size());
  activation_forward(y.data(), x.data(), int64_t(x.size()), Activation::ELU, 1.5);
  activation_backward(dx.data(), dy.data(), x.data(), y.data(), int64_t(x.size()),
                      Activation::ELU, 1.5);
  for (size_t i = 0; i < x.size(); ++i) want[i] = 1.5 * std::exp(x[i]);
  CHECK_CLOSE(dx, want, 1e-15, 0.0, "ELU gradient");
  CHECK(dx.back() > 0);
}

TEST(softplus_beta_and_threshold_as_torch) {
  // beta 2, threshold 5: linear where 2 x > 5; no overflow with a threshold beyond exp's range.
  const std::vector<double> x = {-3.0, 0.0, 2.4, 2.6, 400.0};
  std::vector<double> y(x.size()), dx(x.size()), want_y(x.size()), want_dx(x.size());
  const std::vector<double> dy(x.size(), 1.0);
  activation_forward(y.data(), x.data(), int64_t(x.size()), Activation::Softplus, 2.0, 5.0);
  activation_backward(dx.data(), dy.data(), x.data(), y.data(), int64_t(x.size()),
                      Activation::Softplus, 2.0, 5.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const bool linear = 2 * x[i] > 5;
    want_y[i] = linear ? x[i] : std::log1p(std::exp(2 * x[i])) / 2;
    want_dx[i] = linear ? 1.0 : 1 / (1 + std::exp(-2 * x[i]));
  }
  CHECK_CLOSE(y, want_y, 1e-15, 1e-300, "Softplus(2, 5)");
  CHECK_CLOSE(dx, want_dx, 1e-15, 1e-300, "Softplus(2, 5) gradient");
  activation_forward(y.data(), x.data(), int64_t(x.size()), Activation::Softplus, 2.0, 1e9);
  CHECK(std::isfinite(y.back()) && std::fabs(y.back() - 400.0) < 1e-12);
}

TEST(softmax_matches_reference) {
  const int64_t B = 17, C = 10;
  const auto x = ref::randn<double>(size_t(B * C), 9, 4.0), dy = ref::randn<double>(size_t(B * C), 10);
  std::vector<double> y(size_t(B * C)), dx(size_t(B * C));
  softmax_forward(y.data(), x.data(), B, C);
  softmax_backward(dx.data(), dy.data(), y.data(), B, C);
  const std::vector<double> yr = ref::softmax(x, B, C);
  std::vector<double> dr(size_t(B * C));
  for (int64_t r = 0; r < B; ++r) {
    double dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += dy[size_t(r * C + c)] * yr[size_t(r * C + c)];
    for (int64_t c = 0; c < C; ++c)
      dr[size_t(r * C + c)] = yr[size_t(r * C + c)] * (dy[size_t(r * C + c)] - dot);
  }
  CHECK_CLOSE(y, yr, 1e-14, 1e-15, "softmax_forward");
  CHECK_CLOSE(dx, dr, 1e-13, 1e-15, "softmax_backward");
}

TEST(dropout_keeps_with_probability_1_minus_p_and_scales) {
  const int64_t n = 100001;
  const double p = 0.3;
  Rng rng(5);
  std::vector<float> mask(size_t(n), -1.f);
  dropout_mask(mask.data(), rng, n, p);
  int64_t kept = 0;
  bool values_ok = true;
  for (float m : mask) {
    kept += m != 0.f;
    values_ok = values_ok && (m == 0.f || m == float(1 / (1 - p)));
  }
  CHECK(values_ok);
  CHECK(std::fabs(double(kept) / double(n) - (1 - p)) < 0.01);  // ~7 standard deviations
  // The same seed draws the same mask; a mask with p = 0 keeps everything at scale 1.
  Rng again(5);
  std::vector<float> mask2(static_cast<size_t>(n));
  dropout_mask(mask2.data(), again, n, p);
  CHECK_BITWISE(mask, mask2, "dropout_mask from the same seed");
  dropout_mask(mask2.data(), again, n, 0.0);
  CHECK(std::all_of(mask2.begin(), mask2.end(), [](float m) { return m == 1.f; }));
  const auto x = ref::randn<float>(size_t(n), 11);
  std::vector<float> y(static_cast<size_t>(n));
  dropout_forward(y.data(), x.data(), mask.data(), n);
  std::vector<double> yr(static_cast<size_t>(n));
  for (size_t i = 0; i < size_t(n); ++i) yr[i] = double(x[i]) * double(mask[i]);
  CHECK_CLOSE(y, yr, 1e-7, 0.0, "dropout_forward");
}

namespace {

// CrossEntropy with label smoothing eps.
LossSpec smoothing(double eps) {
  LossSpec spec(LossKind::CrossEntropy);
  spec.label_smoothing = eps;
  return spec;
}

template <class T>
void check_losses() {
  const double tol = tolerance<T>() * 10;
  const int64_t B = 17, C = 10;
  const auto logits = ref::randn<T>(size_t(B * C), 9, 4.0);
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) labels[size_t(r)] = (r * 7) % C;
  const std::vector<double> logits_d(logits.begin(), logits.end());
  for (double eps : {0.0, 0.1}) {
    std::vector<T> d(size_t(B * C));
    const double value = cross_entropy_loss(d.data(), logits.data(), labels.data(), static_cast<const T*>(nullptr), B, C, smoothing(eps));
    const ref::LossResult want = ref::cross_entropy(logits_d, labels, B, C, eps);
    CHECK(std::fabs(value - want.value) <= tol * (1 + want.value));
    CHECK_CLOSE(d, want.grad, tol, tol, "cross_entropy_loss gradient, smoothing " + std::to_string(eps));
    CHECK(cross_entropy_loss(static_cast<T*>(nullptr), logits.data(), labels.data(), static_cast<const T*>(nullptr), B, C,
                             smoothing(eps)) == value);
  }
  const auto out = ref::randn<T>(size_t(B * C), 12), target = ref::randn<T>(size_t(B * C), 13);
  std::vector<T> prob(target.size());
  for (size_t i = 0; i < prob.size(); ++i) prob[i] = T(ref::sigmoid(double(target[i])));
  for (LossKind kind : {LossKind::MSE, LossKind::L1, LossKind::Huber, LossKind::BinaryCrossEntropy,
                        LossKind::PoissonNLL}) {
    LossSpec spec;
    spec.kind = kind;
    spec.delta = 0.5;  // both of Huber's branches
    // probabilities for BinaryCrossEntropy, and counts >= 0 for PoissonNLL
    const std::vector<T>& t = kind == LossKind::BinaryCrossEntropy || kind == LossKind::PoissonNLL
                                  ? prob : target;
    std::vector<T> d(out.size());
    const double value = regression_loss(d.data(), out.data(), t.data(), B, C, spec);
    const ref::LossResult want = ref::regression(std::vector<double>(out.begin(), out.end()),
                                                 std::vector<double>(t.begin(), t.end()), spec);
    CHECK(std::fabs(value - want.value) <= tol * (1 + want.value));
    CHECK_CLOSE(d, want.grad, tol, tol, "regression_loss gradient, kind " + std::to_string(int(kind)));
  }
}

}  // namespace

TEST(losses_match_reference) {
  check_losses<float>();
  check_losses<double>();
}

namespace {

// The kernel's value and gradient of `spec` against the naive reference `value_of` (a function of
// the logits in double): value, and the gradient against central differences of it.
template <class T, class Kernel, class Reference>
void check_loss_option(const std::vector<T>& out, const Kernel& kernel, const Reference& value_of,
                       const std::string& what) {
  const double tol = tolerance<T>() * 10, fd_tol = std::max(tol, 1e-7);
  const std::vector<double> out_d(out.begin(), out.end());
  std::vector<T> d(out.size());
  const double value = kernel(d.data());
  const double want = value_of(out_d);
  if (!(std::fabs(value - want) <= tol * (1 + std::fabs(want))))
    test::fail(__FILE__, __LINE__, what + ": value " + std::to_string(value) + ", reference " +
                                       std::to_string(want));
  CHECK_CLOSE(d, ref::numeric_gradient(value_of, out_d), fd_tol, fd_tol, what + ": gradient");
  CHECK(kernel(static_cast<T*>(nullptr)) == value);  // the value alone, the same bits
}

// CrossEntropy's class weights, ignore_index (the default -100 and a class index) and class-
// probability targets, each alone and together with label smoothing; a batch with every row
// ignored has loss 0 and no gradient.
template <class T>
void check_cross_entropy_options() {
  const int64_t B = 11, C = 5;
  const auto logits = ref::randn<T>(size_t(B * C), 21, 3.0);
  const std::vector<double> class_weight = {0.5, 2.0, 1.0, 0.25, 3.0};
  const std::vector<double> probs = ref::softmax(ref::randn<double>(size_t(B * C), 22, 2.0), B, C);
  const std::vector<T> probs_t(probs.begin(), probs.end());
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) labels[size_t(r)] = (r * 3) % C;
  for (double eps : {0.0, 0.2})
    for (bool weighted : {false, true})
      for (int64_t ignore_index : {int64_t(-100), int64_t(1)})  // 1: a class index ignored
        for (int targets = 0; targets < 3; ++targets) {  // labels, some ignored, probabilities
          std::vector<int64_t> some_ignored = labels;
          some_ignored[0] = some_ignored[5] = some_ignored[9] = ignore_index;
          LossSpec spec(LossKind::CrossEntropy);
          spec.label_smoothing = eps;
          spec.ignore_index = ignore_index;
          if (weighted) spec.weight = class_weight;
          const std::vector<int64_t> none, &lab = targets == 0 ? labels
                                                  : targets == 1 ? some_ignored : none;
          const std::string what = "cross_entropy_loss, eps " + std::to_string(eps) +
                                   (weighted ? ", class weights" : "") + ", ignore_index " +
                                   std::to_string(ignore_index) + ", targets " +
                                   std::to_string(targets);
          check_loss_option(
              logits,
              [&](T* d) {
                return cross_entropy_loss(d, logits.data(), lab.empty() ? nullptr : lab.data(),
                                          lab.empty() ? probs_t.data() : nullptr, B, C, spec);
              },
              [&](const std::vector<double>& o) {
                return ref::cross_entropy_with_options(o, lab, probs, B, C, eps, spec.weight,
                                                       ignore_index);
              },
              what);
        }
  LossSpec spec(LossKind::CrossEntropy);
  spec.weight = class_weight;
  const std::vector<int64_t> all_ignored(size_t(B), spec.ignore_index);
  std::vector<T> d(size_t(B * C), T(1));
  CHECK(cross_entropy_loss(d.data(), logits.data(), all_ignored.data(),
                           static_cast<const T*>(nullptr), B, C, spec) == 0.0);
  CHECK(d == std::vector<T>(size_t(B * C), T(0)));
}

// BinaryCrossEntropy's per-output weight and pos_weight, alone and together.
template <class T>
void check_binary_cross_entropy_options() {
  const int64_t B = 9, C = 5;
  const auto out = ref::randn<T>(size_t(B * C), 31, 3.0);
  std::vector<double> target = ref::randn<double>(size_t(B * C), 32);
  for (double& t : target) t = ref::sigmoid(2 * t);
  const std::vector<T> target_t(target.begin(), target.end());
  const std::vector<double> weight = {0.5, 2.0, 1.0, 0.25, 3.0}, pos_weight = {3.0, 0.5, 1.0,
                                                                               10.0, 0.1};
  for (int options = 1; options < 4; ++options) {  // bit 0: weight, bit 1: pos_weight
    LossSpec spec(LossKind::BinaryCrossEntropy);
    if (options & 1) spec.weight = weight;
    if (options & 2) spec.pos_weight = pos_weight;
    check_loss_option(
        out, [&](T* d) { return regression_loss(d, out.data(), target_t.data(), B, C, spec); },
        [&](const std::vector<double>& o) {
          return ref::binary_cross_entropy_with_options(o, target, C, spec.weight,
                                                        spec.pos_weight);
        },
        "binary cross entropy, options " + std::to_string(options));
  }
}

}  // namespace

TEST(cross_entropy_options_match_reference) {
  check_cross_entropy_options<float>();
  check_cross_entropy_options<double>();
}

TEST(binary_cross_entropy_options_match_reference) {
  check_binary_cross_entropy_options<float>();
  check_binary_cross_entropy_options<double>();
}

namespace {

// A row of integer weight k counts as k copies of it: value and gradient rows (each carrying its
// weight) match the unweighted loss of the repeated rows; scale multiplies both; without
// weigh_grad the rows are left unweighted (the float64 sums apply the weights).
template <class T>
void check_weighted_losses() {
  const double tol = tolerance<T>() * 10;
  const int64_t B = 9, C = 4;
  const std::vector<double> w = {0, 1, 2, 3, 1, 4, 0, 2, 1};
  const auto out = ref::randn<T>(size_t(B * C), 21), t0 = ref::randn<T>(size_t(B * C), 22);
  std::vector<T> t(t0.size());
  for (size_t i = 0; i < t.size(); ++i) t[i] = T(ref::sigmoid(double(t0[i])));
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) labels[size_t(r)] = (r * 3) % C;
  std::vector<T> out_rep, t_rep;
  std::vector<int64_t> labels_rep;
  for (int64_t r = 0; r < B; ++r)
    for (int k = 0; k < int(w[size_t(r)]); ++k) {
      out_rep.insert(out_rep.end(), out.begin() + r * C, out.begin() + (r + 1) * C);
      t_rep.insert(t_rep.end(), t.begin() + r * C, t.begin() + (r + 1) * C);
      labels_rep.push_back(labels[size_t(r)]);
    }
  const int64_t R = int64_t(labels_rep.size());
  const RowWeights rw = RowWeights::over(w.data(), B);
  for (LossKind kind : {LossKind::CrossEntropy, LossKind::MSE, LossKind::BinaryCrossEntropy,
                        LossKind::PoissonNLL}) {
    LossSpec spec;
    spec.kind = kind;
    spec.scale = 2.5;
    auto run = [&](T* d, const std::vector<T>& o, const std::vector<T>& tt,
                   const std::vector<int64_t>& lab, int64_t rows, RowWeights weights) {
      return kind == LossKind::CrossEntropy
                 ? cross_entropy_loss(d, o.data(), lab.data(), static_cast<const T*>(nullptr), rows, C, spec, weights)
                 : regression_loss(d, o.data(), tt.data(), rows, C, spec, weights);
    };
    std::vector<T> d(size_t(B * C)), d_rep(size_t(R * C)), d_rows(size_t(B * C));
    const double value = run(d.data(), out, t, labels, B, rw);
    const double value_rep = run(d_rep.data(), out_rep, t_rep, labels_rep, R, {});
    const std::string what = "weighted loss, kind " + std::to_string(int(kind));
    CHECK(std::fabs(value - value_rep) <= tol * (1 + std::fabs(value_rep)));
    RowWeights unweighted_rows = rw;
    unweighted_rows.weigh_grad = false;
    CHECK(run(d_rows.data(), out, t, labels, B, unweighted_rows) == value);
    std::vector<double> summed(size_t(B * C), 0.0), rows_times_w(size_t(B * C));
    for (int64_t r = 0, q = 0; r < B; ++r)
      for (int k = 0; k < int(w[size_t(r)]); ++k, ++q)
        for (int64_t c = 0; c < C; ++c) summed[size_t(r * C + c)] += double(d_rep[size_t(q * C + c)]);
    for (size_t i = 0; i < d_rows.size(); ++i) rows_times_w[i] = double(d_rows[i]) * w[i / size_t(C)];
    CHECK_CLOSE(d, summed, tol, tol, what + ": gradient rows");
    CHECK_CLOSE(rows_times_w, summed, tol, tol, what + ": unweighted gradient rows");
    LossSpec plain = spec;
    plain.scale = 1.0;
    std::vector<T> d1(size_t(B * C));
    const double value1 = kind == LossKind::CrossEntropy
                              ? cross_entropy_loss(d1.data(), out.data(), labels.data(), static_cast<const T*>(nullptr), B, C, plain)
                              : regression_loss(d1.data(), out.data(), t.data(), B, C, plain);
    std::vector<T> d1_scaled(d1);
    for (T& v : d1_scaled) v *= T(spec.scale);
    std::vector<T> d_scaled(size_t(B * C));
    CHECK(std::fabs(run(d_scaled.data(), out, t, labels, B, {}) - 2.5 * value1) <=
          tol * (1 + std::fabs(value1)));
    CHECK_CLOSE(d_scaled, d1_scaled, tol, tol, what + ": scale");
  }
}

// The float64 sums against a double reference, and bit for bit the same whatever the order of
// the rows or a row of weight k standing for k copies of itself.
template <class T>
void check_weight_grads_f64() {
  const int64_t B = 11, IN = 37, OUT = 13;
  const auto dy = ref::randn<T>(size_t(B * OUT), 31), x = ref::randn<T>(size_t(B * IN), 32);
  const std::vector<double> w = {1, 0, 3, 2, 1, 4, 1, 0, 2, 3, 1};
  std::vector<double> dy64(size_t(30 * OUT)), x64(size_t(30 * IN)), dw64(size_t(OUT * IN));
  std::vector<T> dw(static_cast<size_t>(OUT * IN)), db(static_cast<size_t>(OUT));
  dense_weight_grads_f64(dw.data(), db.data(), dy.data(), x.data(), w.data(), B, IN, OUT, false,
                         dy64.data(), x64.data(), dw64.data());
  std::vector<double> want_w(size_t(OUT * IN), 0.0), want_b(size_t(OUT), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < OUT; ++o) {
      want_b[size_t(o)] += w[size_t(b)] * double(dy[size_t(b * OUT + o)]);
      for (int64_t i = 0; i < IN; ++i)
        want_w[size_t(o * IN + i)] +=
            w[size_t(b)] * double(dy[size_t(b * OUT + o)]) * double(x[size_t(b * IN + i)]);
    }
  CHECK_CLOSE(dw, want_w, tolerance<T>(), tolerance<T>(), "float64 sums: dW");
  CHECK_CLOSE(db, want_b, tolerance<T>(), tolerance<T>(), "float64 sums: db");
  // the same rows repeated by their weight, in reverse order
  std::vector<T> dy_rep, x_rep;
  for (int64_t b = B; b-- > 0;)
    for (int k = 0; k < int(w[size_t(b)]); ++k) {
      dy_rep.insert(dy_rep.end(), dy.begin() + b * OUT, dy.begin() + (b + 1) * OUT);
      x_rep.insert(x_rep.end(), x.begin() + b * IN, x.begin() + (b + 1) * IN);
    }
  std::vector<T> dw_rep(dw.size()), db_rep(db.size());
  dense_weight_grads_f64(dw_rep.data(), db_rep.data(), dy_rep.data(), x_rep.data(),
                         static_cast<const double*>(nullptr), int64_t(dy_rep.size()) / OUT, IN,
                         OUT, false, dy64.data(), x64.data(), dw64.data());
  if (sizeof(T) == 4) {  // float32: rounded once from double sums, whatever their order
    CHECK_BITWISE(dw_rep, dw, "float64 sums: dW of repeated, reordered rows");
    CHECK_BITWISE(db_rep, db, "float64 sums: db of repeated, reordered rows");
  }
  CHECK_CLOSE(dw_rep, std::vector<double>(dw.begin(), dw.end()), 1e-14, 1e-14,
              "float64 sums: dW of repeated rows");
  // accumulate adds to what is there
  std::vector<T> dw2(dw), db2(db);
  dense_weight_grads_f64(dw2.data(), db2.data(), dy.data(), x.data(), w.data(), B, IN, OUT, true,
                         dy64.data(), x64.data(), dw64.data());
  for (double& v : want_w) v *= 2;
  CHECK_CLOSE(dw2, want_w, tolerance<T>(), tolerance<T>(), "float64 sums: accumulate");
}

}  // namespace

TEST(weighted_and_scaled_losses) {
  check_weighted_losses<float>();
  check_weighted_losses<double>();
}

TEST(float64_sums_do_not_depend_on_row_order_or_repetition) {
  check_weight_grads_f64<float>();
  check_weight_grads_f64<double>();
}

TEST(reductions_are_exact_and_independent_of_threads) {
  for (int64_t n : {0, 1, 33, 100003, 3000017}) {
    const auto v = ref::randn<float>(size_t(n), 10);
    double want = 0;
    for (float e : v) want += double(e) * double(e);
    set_num_threads(1);
    const double s1 = sum_squares(v.data(), n);
    std::vector<float> scaled1(v);
    scale(scaled1.data(), 0.37f, n);
    set_num_threads(2);
    const double s2 = sum_squares(v.data(), n);
    std::vector<float> scaled2(v);
    scale(scaled2.data(), 0.37f, n);
    CHECK(std::fabs(s1 - want) <= 1e-12 * (1 + want));
    CHECK(s1 == s2);
    std::vector<double> scaled_ref(v.size());
    for (size_t i = 0; i < v.size(); ++i) scaled_ref[i] = double(v[i] * 0.37f);
    CHECK_CLOSE(scaled1, scaled_ref, 0.0, 0.0, "scale");
    CHECK_BITWISE(scaled1, scaled2, "scale on 1 vs 2 threads");
  }
}

TEST(all_finite_finds_any_nan_or_infinity) {
  const int64_t n = 1000;
  auto v = ref::randn<double>(size_t(n), 14);
  CHECK(all_finite(v.data(), n));
  CHECK(all_finite(v.data(), 0));
  for (int64_t at : {0, 15, 16, 500, 998, 999}) {
    for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(),
                       -std::numeric_limits<double>::infinity()}) {
      auto w = v;
      w[size_t(at)] = bad;
      CHECK(!all_finite(w.data(), n));
      std::vector<float> f(w.begin(), w.end());
      CHECK(!all_finite(f.data(), n));
    }
  }
  std::vector<float> big(size_t(n), std::numeric_limits<float>::max());
  CHECK(all_finite(big.data(), n));
}
