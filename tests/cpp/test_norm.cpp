// The normalization kernels against the naive chain-rule reference (reference.hpp): BatchNorm
// in training (batch statistics) and eval (running statistics), LayerNorm, Rescale; with and
// without the affine weight and bias, in place, and the same bits on 1 and 2 threads.
#include <cmath>
#include <string>

#include "check.hpp"
#include "reference.hpp"
#include "steepest/norm.hpp"
#include "steepest/threads.hpp"

using namespace steepest;
namespace ref = steepest::reference;
using test::tolerance;

namespace {

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// One kernel's outputs on 1 thread and on 2, for the bitwise comparison.
template <class T>
struct Outputs {
  std::vector<T> y, dx, dw, db, mean, rstd;
};

template <class T>
Outputs<T> run_batchnorm(const std::vector<T>& x, const std::vector<T>* w,
                         const std::vector<T>* b, const std::vector<T>& dy, int64_t B,
                         int64_t C, double eps, bool in_place) {
  Outputs<T> o;
  std::vector<T> var(static_cast<size_t>(C));
  o.mean.resize(size_t(C));
  o.rstd.resize(size_t(C));
  batchnorm_statistics(o.mean.data(), o.rstd.data(), var.data(), x.data(), B, C, eps);
  o.y.resize(x.size());
  batchnorm_forward(o.y.data(), x.data(), o.mean.data(), o.rstd.data(), w ? w->data() : nullptr,
                    b ? b->data() : nullptr, B, C);
  o.dw.assign(size_t(C), T(0));
  o.db.assign(size_t(C), T(0));
  o.dx = dy;  // in place: dx overwrites dy
  std::vector<T> out(x.size());
  batchnorm_backward(in_place ? o.dx.data() : out.data(), o.dw.data(), o.db.data(), o.dx.data(),
                     x.data(), o.mean.data(), o.rstd.data(), w ? w->data() : nullptr, B, C, true,
                     false);
  if (!in_place) o.dx = out;
  return o;
}

template <class T>
void check_batchnorm(int64_t B, int64_t C, bool affine) {
  const std::string what = std::string("BatchNorm ") + (sizeof(T) == 4 ? "float32" : "float64") +
                           " B=" + std::to_string(B) + " C=" + std::to_string(C) +
                           (affine ? "" : " affine=False");
  const auto x = ref::randn<T>(size_t(B * C), 21, 2.0), dy = ref::randn<T>(size_t(B * C), 22);
  std::vector<T> w = ref::randn<T>(size_t(C), 23), b = ref::randn<T>(size_t(C), 24);
  if (!affine) {
    w.assign(size_t(C), T(1));
    b.assign(size_t(C), T(0));
  }
  const double eps = 1e-5;
  const ref::Normalized want = ref::normalize(as_double(x), as_double(w), as_double(b),
                                              as_double(dy), B, C, eps, false);
  set_num_threads(1);
  const Outputs<T> one = run_batchnorm(x, affine ? &w : nullptr, affine ? &b : nullptr, dy, B, C,
                                       eps, false);
  set_num_threads(2);
  const Outputs<T> two = run_batchnorm(x, affine ? &w : nullptr, affine ? &b : nullptr, dy, B, C,
                                       eps, true);
  const double tol = tolerance<T>();
  CHECK_CLOSE(one.mean, want.mean, tol, tol, what + ": mean");
  std::vector<double> rstd;
  for (double v : want.var) rstd.push_back(1 / std::sqrt(v + eps));
  CHECK_CLOSE(one.rstd, rstd, tol, tol, what + ": rstd");
  CHECK_CLOSE(one.y, want.y, tol * 10, tol, what + ": forward");
  CHECK_CLOSE(one.dx, want.dx, tol * 100, tol * 10, what + ": dx");
  CHECK_CLOSE(one.dw, want.dw, tol * 10, tol * 10, what + ": dw");
  CHECK_CLOSE(one.db, want.db, tol * 10, tol * 10, what + ": db");
  CHECK_BITWISE(one.y, two.y, what + ": forward on 1 vs 2 threads");
  CHECK_BITWISE(one.dx, two.dx, what + ": dx on 1 vs 2 threads, in place");
  CHECK_BITWISE(one.dw, two.dw, what + ": dw on 1 vs 2 threads");
}

}  // namespace

TEST(batchnorm_matches_reference) {
  for (bool affine : {true, false}) {
    check_batchnorm<double>(7, 5, affine);
    check_batchnorm<float>(7, 5, affine);
  }
  // Wide and tall enough for blocks of columns split between threads.
  check_batchnorm<double>(300, 200, true);
  check_batchnorm<float>(300, 200, true);
}

TEST(batchnorm_statistics_unbiased_variance_and_running_update) {
  const int64_t B = 6, C = 3;
  const auto x = ref::randn<double>(size_t(B * C), 31, 3.0);
  std::vector<double> mean(C), rstd(C), var(C);
  batchnorm_statistics(mean.data(), rstd.data(), var.data(), x.data(), B, C, 1e-5);
  const ref::Normalized want = ref::normalize(x, std::vector<double>(C, 1.0),
                                              std::vector<double>(C, 0.0),
                                              std::vector<double>(x.size(), 0.0), B, C, 1e-5, false);
  std::vector<double> unbiased;
  for (double v : want.var) unbiased.push_back(v * double(B) / double(B - 1));
  CHECK_CLOSE(var, unbiased, 1e-13, 0.0, "unbiased variance");
  // running <- (1 - f) running + f batch, from torch's initial 0 and 1
  std::vector<double> running_mean(C, 0.0), running_var(C, 1.0);
  batchnorm_update_running(running_mean.data(), running_var.data(), mean.data(), var.data(), C, 0.1);
  std::vector<double> want_mean, want_var;
  for (int64_t c = 0; c < C; ++c) {
    want_mean.push_back(0.1 * want.mean[size_t(c)]);
    want_var.push_back(0.9 + 0.1 * unbiased[size_t(c)]);
  }
  CHECK_CLOSE(running_mean, want_mean, 1e-13, 1e-15, "running mean");
  CHECK_CLOSE(running_var, want_var, 1e-13, 0.0, "running variance");
}

TEST(batchnorm_with_running_statistics_is_affine_per_feature) {
  // Eval mode: y = (x - running_mean) / sqrt(running_var + eps) w + b, and dx = dy w rstd.
  const int64_t B = 5, C = 4;
  const double eps = 1e-3;
  const auto x = ref::randn<double>(size_t(B * C), 41), dy = ref::randn<double>(size_t(B * C), 42);
  const auto w = ref::randn<double>(size_t(C), 43), b = ref::randn<double>(size_t(C), 44);
  const std::vector<double> running_mean = {0.5, -1.0, 2.0, 0.0}, running_var = {1.0, 4.0, 0.25, 9.0};
  std::vector<double> rstd(C), y(size_t(B * C)), dx(size_t(B * C)), dw(C, 1.0), db(C, 1.0);
  batchnorm_running_rstd(rstd.data(), running_var.data(), C, eps);
  batchnorm_forward(y.data(), x.data(), running_mean.data(), rstd.data(), w.data(), b.data(), B, C);
  batchnorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), running_mean.data(),
                     rstd.data(), w.data(), B, C, false, true);  // accumulate onto 1
  std::vector<double> want_y, want_dx, want_dw(C, 1.0), want_db(C, 1.0);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const size_t i = size_t(r * C + c);
      const double s = 1 / std::sqrt(running_var[size_t(c)] + eps);
      const double xhat = (x[i] - running_mean[size_t(c)]) * s;
      want_y.push_back(xhat * w[size_t(c)] + b[size_t(c)]);
      want_dx.push_back(dy[i] * w[size_t(c)] * s);
      want_dw[size_t(c)] += dy[i] * xhat;
      want_db[size_t(c)] += dy[i];
    }
  CHECK_CLOSE(y, want_y, 1e-13, 1e-14, "eval forward");
  CHECK_CLOSE(dx, want_dx, 1e-13, 1e-14, "eval dx");
  CHECK_CLOSE(dw, want_dw, 1e-13, 1e-14, "eval dw, accumulated");
  CHECK_CLOSE(db, want_db, 1e-13, 1e-14, "eval db, accumulated");
}

namespace {

template <class T>
void check_layernorm(int64_t B, int64_t C, bool weight, bool bias) {
  const std::string what = std::string("LayerNorm ") + (sizeof(T) == 4 ? "float32" : "float64") +
                           " B=" + std::to_string(B) + " C=" + std::to_string(C) +
                           (weight ? "" : " no weight") + (bias ? "" : " no bias");
  const auto x = ref::randn<T>(size_t(B * C), 51, 2.0), dy = ref::randn<T>(size_t(B * C), 52);
  std::vector<T> w = ref::randn<T>(size_t(C), 53), b = ref::randn<T>(size_t(C), 54);
  if (!weight) w.assign(size_t(C), T(1));
  if (!bias) b.assign(size_t(C), T(0));
  const double eps = 1e-5;
  const ref::Normalized want = ref::normalize(as_double(x), as_double(w), as_double(b),
                                              as_double(dy), B, C, eps, true);
  auto run = [&](int threads, bool in_place) {
    set_num_threads(threads);
    Outputs<T> o;
    o.mean.resize(size_t(B));
    o.rstd.resize(size_t(B));
    o.y = x;  // in place: y overwrites x's copy
    layernorm_forward(o.y.data(), o.mean.data(), o.rstd.data(), in_place ? o.y.data() : x.data(),
                      weight ? w.data() : nullptr, bias ? b.data() : nullptr, B, C, eps);
    o.dw.assign(size_t(C), T(0));
    o.db.assign(size_t(C), T(0));
    o.dx = dy;
    std::vector<T> out(x.size());
    layernorm_backward(in_place ? o.dx.data() : out.data(), weight ? o.dw.data() : nullptr,
                       bias ? o.db.data() : nullptr, o.dx.data(), x.data(), o.mean.data(),
                       o.rstd.data(), weight ? w.data() : nullptr, B, C, false);
    if (!in_place) o.dx = out;
    return o;
  };
  const Outputs<T> one = run(1, false), two = run(2, true);
  const double tol = tolerance<T>();
  CHECK_CLOSE(one.mean, want.mean, tol, tol, what + ": mean");
  CHECK_CLOSE(one.y, want.y, tol * 10, tol, what + ": forward");
  CHECK_CLOSE(one.dx, want.dx, tol * 100, tol * 10, what + ": dx");
  if (weight) CHECK_CLOSE(one.dw, want.dw, tol * 10, tol * 10, what + ": dw");
  if (bias) CHECK_CLOSE(one.db, want.db, tol * 10, tol * 10, what + ": db");
  CHECK_BITWISE(one.y, two.y, what + ": forward on 1 vs 2 threads, in place");
  CHECK_BITWISE(one.dx, two.dx, what + ": dx on 1 vs 2 threads, in place");
  CHECK_BITWISE(one.dw, two.dw, what + ": dw on 1 vs 2 threads");
}

}  // namespace

TEST(layernorm_matches_reference) {
  for (bool weight : {true, false})
    for (bool bias : {true, false}) {
      check_layernorm<double>(6, 11, weight, bias);
      check_layernorm<float>(6, 11, weight, bias);
    }
  check_layernorm<double>(400, 300, true, true);
  check_layernorm<float>(400, 300, true, true);
}

TEST(rescale_divides_by_scale_forward_and_backward) {
  const int64_t B = 3, C = 2;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6}, shift = {2, -1}, scale = {4, 0.5f};
  std::vector<float> y(6), dx = {1, 1, 2, 2, 3, 3};
  rescale_forward(y.data(), x.data(), shift.data(), scale.data(), B, C);
  rescale_backward(dx.data(), dx.data(), scale.data(), B, C);
  CHECK((y == std::vector<float>{-0.25f, 6, 0.25f, 10, 0.75f, 14}));
  CHECK((dx == std::vector<float>{0.25f, 2, 0.5f, 4, 0.75f, 6}));
}
