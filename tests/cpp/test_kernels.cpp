// The kernels against the naive references: products (every transpose, batch 1, tiled sizes),
// the dense layer with its fused epilogues, activations, softmax, dropout, losses, reductions.
#include <algorithm>
#include <cmath>
#include <limits>

#include "check.hpp"
#include "reference.hpp"
#include "steepest/kernels.hpp"

using namespace steepest;
namespace ref = steepest::reference;

namespace {

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

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
                          Activation::Tanh, Activation::Softplus}) {
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
    LossSpec spec;
    spec.kind = LossKind::CrossEntropy;
    spec.label_smoothing = eps;
    Target<T> y;
    y.labels = labels.data();
    const LossTotal total = cross_entropy_loss(d.data(), logits.data(), y, B, C, spec);
    const ref::LossResult want = ref::cross_entropy(logits_d, labels, B, C, eps);
    CHECK(std::fabs(total.value - want.value) <= tol * (1 + want.value));
    CHECK(total.weight == double(B));
    CHECK_CLOSE(d, want.grad, tol, tol, "cross_entropy_loss gradient, smoothing " + std::to_string(eps));
    CHECK(cross_entropy_loss(static_cast<T*>(nullptr), logits.data(), y, B, C, spec).value ==
          total.value);
  }
  const auto out = ref::randn<T>(size_t(B * C), 12), target = ref::randn<T>(size_t(B * C), 13);
  std::vector<T> prob(target.size());
  for (size_t i = 0; i < prob.size(); ++i) prob[i] = T(ref::sigmoid(double(target[i])));
  for (LossKind kind : {LossKind::MSE, LossKind::L1, LossKind::Huber, LossKind::BinaryCrossEntropy}) {
    LossSpec spec;
    spec.kind = kind;
    spec.delta = 0.5;  // both of Huber's branches
    const std::vector<T>& t = kind == LossKind::BinaryCrossEntropy ? prob : target;
    std::vector<T> d(out.size());
    Target<T> y;
    y.values = t.data();
    const double value = regression_loss(d.data(), out.data(), y, B, C, spec).value;
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

// A batch's loss and its gradient summed over the batch's rows, scaled by the normalizer:
// what a weighted batch and the same batch with each row repeated weight times agree on.
struct Summed {
  double value = 0, weight = 0;
  std::vector<double> grad_sum;  // (C): sum over rows of weight * d(loss)/d(out)
};

template <class T>
Summed summed(const std::vector<T>& out, Target<T> y, int64_t B, int64_t C, const LossSpec& spec) {
  std::vector<T> d(size_t(B * C));
  const LossTotal total = batch_loss(d.data(), out.data(), y, B, C, spec);
  Summed s{total.value, total.weight, std::vector<double>(size_t(C), 0.0)};
  for (int64_t i = 0; i < B * C; ++i) s.grad_sum[size_t(i % C)] += double(d[size_t(i)]) * total.weight;
  return s;
}

// rows of v (B, width), each repeated times[r] times
template <class V>
std::vector<V> repeat_rows(const std::vector<V>& v, const std::vector<int>& times, int64_t width) {
  std::vector<V> out;
  for (size_t r = 0; r < times.size(); ++r)
    for (int k = 0; k < times[r]; ++k)
      out.insert(out.end(), v.begin() + int64_t(r) * width, v.begin() + int64_t(r + 1) * width);
  return out;
}

}  // namespace

TEST(sample_weights_are_repeated_rows) {
  // Integer sample weights (zero included) give the loss, its normalizer and the summed
  // gradient of the batch with each row repeated that many times: every loss and option.
  const int64_t B = 9, C = 4;
  const std::vector<int> times = {1, 0, 3, 2, 1, 4, 0, 1, 2};
  const std::vector<double> w(times.begin(), times.end());
  int64_t R = 0;
  for (int t : times) R += t;
  const auto out = ref::randn<double>(size_t(B * C), 3, 3.0);
  const auto values = ref::randn<double>(size_t(B * C), 4);
  std::vector<double> probs(values.size());
  for (size_t i = 0; i < probs.size(); ++i) probs[i] = ref::sigmoid(values[i]);
  const std::vector<int64_t> labels = {0, 3, -100, 1, 2, 2, 3, -100, 0};
  std::vector<LossSpec> specs;
  for (LossKind kind : {LossKind::MSE, LossKind::L1, LossKind::Huber, LossKind::BinaryCrossEntropy,
                        LossKind::CrossEntropy}) {
    LossSpec spec;
    spec.kind = kind;
    specs.push_back(spec);
    spec.weight = {0.5, 2.0, 1.0, 3.0};
    spec.pos_weight = kind == LossKind::BinaryCrossEntropy ? std::vector<double>{2.0, 0.5, 1.0, 4.0}
                                                           : std::vector<double>{};
    spec.label_smoothing = kind == LossKind::CrossEntropy ? 0.2 : 0.0;
    if (kind == LossKind::BinaryCrossEntropy || kind == LossKind::CrossEntropy) specs.push_back(spec);
  }
  for (const LossSpec& spec : specs) {
    for (bool class_probabilities : {false, true}) {
      if (class_probabilities && spec.kind != LossKind::CrossEntropy) continue;
      const bool by_label = spec.kind == LossKind::CrossEntropy && !class_probabilities;
      const std::vector<double>& t = spec.kind == LossKind::BinaryCrossEntropy ||
                                             class_probabilities ? probs : values;
      Target<double> y, yr;
      y.weights = w.data();
      const auto out_r = repeat_rows(out, times, C);
      const auto t_r = repeat_rows(t, times, C);
      const auto labels_r = repeat_rows(labels, times, 1);
      if (by_label) {
        y.labels = labels.data();
        yr.labels = labels_r.data();
      } else {
        y.values = t.data();
        yr.values = t_r.data();
      }
      const Summed a = summed(out, y, B, C, spec), b = summed(out_r, yr, R, C, spec);
      const std::string what = "loss " + std::to_string(int(spec.kind)) +
                               (spec.weight.empty() ? "" : ", weighted") +
                               (class_probabilities ? ", class probabilities" : "");
      CHECK(std::fabs(a.value - b.value) <= 1e-12 * (1 + std::fabs(b.value)));
      CHECK(std::fabs(a.weight - b.weight) <= 1e-12 * b.weight);
      CHECK_CLOSE(a.grad_sum, b.grad_sum, 1e-12, 1e-12, what + ": summed gradient");
    }
  }
}

TEST(cross_entropy_ignored_rows_and_zero_weight) {
  const int64_t B = 4, C = 3;
  const auto out = ref::randn<double>(size_t(B * C), 5, 2.0);
  LossSpec spec;
  spec.kind = LossKind::CrossEntropy;
  spec.ignore_index = 7;
  const std::vector<int64_t> labels = {2, 7, 0, 7};
  std::vector<double> d(size_t(B * C), 1.0);
  Target<double> y;
  y.labels = labels.data();
  const LossTotal all = cross_entropy_loss(d.data(), out.data(), y, B, C, spec);
  CHECK(all.weight == 2.0);
  for (int64_t c = 0; c < C; ++c) CHECK(d[size_t(C + c)] == 0.0 && d[size_t(3 * C + c)] == 0.0);
  // The same as the batch of the two rows that count.
  const std::vector<double> kept = {out[0], out[1], out[2], out[6], out[7], out[8]};
  const std::vector<int64_t> kept_labels = {2, 0};
  std::vector<double> dk(6);
  Target<double> yk;
  yk.labels = kept_labels.data();
  CHECK(cross_entropy_loss(dk.data(), kept.data(), yk, 2, C, spec).value == all.value);
  // Every row ignored, or every sample weight 0: loss 0 and no gradient (torch: NaN).
  const std::vector<int64_t> none = {7, 7, 7, 7};
  y.labels = none.data();
  const LossTotal empty = cross_entropy_loss(d.data(), out.data(), y, B, C, spec);
  CHECK(empty.value == 0.0 && empty.weight == 0.0);
  CHECK(std::all_of(d.begin(), d.end(), [](double g) { return g == 0.0; }));
  const std::vector<double> zero(size_t(B), 0.0);
  y.labels = labels.data();
  y.weights = zero.data();
  CHECK(cross_entropy_loss(d.data(), out.data(), y, B, C, spec).value == 0.0);
  CHECK(std::all_of(d.begin(), d.end(), [](double g) { return g == 0.0; }));
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
