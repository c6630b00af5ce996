// check_batch: each rule of a training batch, with the numbers its message needs.
#include <algorithm>
#include <cmath>
#include <limits>

#include "check.hpp"
#include "steepest/check_batch.hpp"

using namespace steepest;

namespace {

template <class T>
ArrayInfo matrix(const std::vector<T>& v, int64_t rows, int64_t cols, ScalarType type) {
  ArrayInfo a;
  a.type = type;
  a.contiguous = true;
  a.ndim = 2;
  a.rows = rows;
  a.cols = cols;
  a.data = v.data();
  return a;
}

template <class T>
ArrayInfo vector_of(const std::vector<T>& v, ScalarType type) {
  ArrayInfo a = matrix(v, int64_t(v.size()), 0, type);
  a.ndim = 1;
  return a;
}

constexpr auto F32 = ScalarType::Float32;
constexpr auto F64 = ScalarType::Float64;
constexpr auto I64 = ScalarType::Int64;

BatchRule rule(const ArrayInfo& x, const ArrayInfo* y, LossKind loss, int64_t C = 3) {
  return check_batch(x, y, F32, 2, C, loss).rule;
}

}  // namespace

TEST(check_batch_accepts_exact_finite_batches) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};  // (3, 2)
  const std::vector<int64_t> labels = {0, 2, 1};
  const std::vector<float> targets(9, 0.5f), single = {0.f, 1.f, 0.5f};
  const ArrayInfo xi = matrix(x, 3, 2, F32), li = vector_of(labels, I64);
  const ArrayInfo ti = matrix(targets, 3, 3, F32), si = vector_of(single, F32);
  CHECK(check_batch(xi, &li, F32, 2, 3, LossKind::CrossEntropy).ok());
  for (LossKind k : {LossKind::MSE, LossKind::L1, LossKind::Huber, LossKind::BinaryCrossEntropy})
    CHECK(check_batch(xi, &ti, F32, 2, 3, k).ok());
  CHECK(check_batch(xi, &si, F32, 2, 1, LossKind::BinaryCrossEntropy).ok());  // (B,) when C = 1
  CHECK(check_batch(xi, nullptr, F32, 2, 3, LossKind::MSE).ok());             // x alone
}

TEST(check_batch_names_the_broken_rule_of_x) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  CHECK(rule(vector_of(x, F32), nullptr, LossKind::MSE) == BatchRule::XShape);
  CHECK(rule(matrix(x, 0, 2, F32), nullptr, LossKind::MSE) == BatchRule::XEmpty);
  const BatchCheck features = check_batch(matrix(x, 2, 3, F32), nullptr, F32, 2, 3, LossKind::MSE);
  CHECK(features.rule == BatchRule::XFeatures && features.got == 3 && features.want == 2);
  CHECK(rule(matrix(x, 3, 2, F64), nullptr, LossKind::MSE) == BatchRule::XType);
  ArrayInfo strided = matrix(x, 3, 2, F32);
  strided.contiguous = false;
  CHECK(rule(strided, nullptr, LossKind::MSE) == BatchRule::XLayout);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> w = x;
    w[5] = bad;
    CHECK(rule(matrix(w, 3, 2, F32), nullptr, LossKind::MSE) == BatchRule::XNonFinite);
  }
  // Shape before type: a wrong shape is an error whatever the dtype.
  CHECK(rule(matrix(x, 2, 3, ScalarType::Other), nullptr, LossKind::MSE) == BatchRule::XFeatures);
}

TEST(check_batch_names_the_broken_rule_of_labels) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const ArrayInfo xi = matrix(x, 3, 2, F32);
  const std::vector<int64_t> labels = {0, 2, 1}, short_labels = {0, 1};
  ArrayInfo as_matrix = matrix(labels, 3, 1, I64);
  CHECK(rule(xi, &as_matrix, LossKind::CrossEntropy) == BatchRule::YShape);
  const ArrayInfo two = vector_of(short_labels, I64);
  const BatchCheck length = check_batch(xi, &two, F32, 2, 3, LossKind::CrossEntropy);
  CHECK(length.rule == BatchRule::YLength && length.got == 2 && length.want == 3);
  const std::vector<float> float_labels = {0, 2, 1};
  const ArrayInfo fl = vector_of(float_labels, F32);
  CHECK(rule(xi, &fl, LossKind::CrossEntropy) == BatchRule::YType);
  ArrayInfo strided = vector_of(labels, I64);
  strided.contiguous = false;
  CHECK(rule(xi, &strided, LossKind::CrossEntropy) == BatchRule::YLayout);
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{0, 3, 1}, std::vector<int64_t>{-1, 0, 0},
                                           std::vector<int64_t>{5, 4, 3}}) {
    const ArrayInfo bi = vector_of(bad, I64);
    const BatchCheck c = check_batch(xi, &bi, F32, 2, 3, LossKind::CrossEntropy);
    CHECK(c.rule == BatchRule::LabelRange && c.want == 3);
    CHECK(c.label_min == *std::min_element(bad.begin(), bad.end()));
    CHECK(c.label_max == *std::max_element(bad.begin(), bad.end()));
  }
}

TEST(check_batch_names_the_broken_rule_of_targets) {
  const std::vector<double> x = {1, 2, 3, 4, 5, 6};
  const ArrayInfo xi = matrix(x, 3, 2, F64);
  auto rule64 = [&](const ArrayInfo& y, LossKind loss, int64_t C = 3) {
    return check_batch(xi, &y, F64, 2, C, loss);
  };
  const std::vector<double> t(9, 0.25), t1 = {0.1, 0.2, 0.3};
  CHECK(rule64(matrix(t, 3, 3, F64), LossKind::MSE).ok());
  CHECK(rule64(vector_of(t1, F64), LossKind::MSE).rule == BatchRule::YShape);  // (B,) needs C = 1
  CHECK(rule64(matrix(t, 3, 2, F64), LossKind::MSE).rule == BatchRule::YShape);
  const BatchCheck length = rule64(matrix(t, 2, 3, F64), LossKind::MSE);
  CHECK(length.rule == BatchRule::YLength && length.got == 2 && length.want == 3);
  CHECK(rule64(matrix(t, 3, 3, F32), LossKind::MSE).rule == BatchRule::YType);
  CHECK(rule64(matrix(t, 3, 3, I64), LossKind::Huber).rule == BatchRule::YType);
  ArrayInfo strided = matrix(t, 3, 3, F64);
  strided.contiguous = false;
  CHECK(rule64(strided, LossKind::L1).rule == BatchRule::YLayout);
  std::vector<double> bad = t;
  bad[8] = -std::numeric_limits<double>::infinity();
  CHECK(rule64(matrix(bad, 3, 3, F64), LossKind::MSE).rule == BatchRule::YNonFinite);
  bad[8] = 1.5;  // above 1 alone, then below 0 too
  CHECK(rule64(matrix(bad, 3, 3, F64), LossKind::MSE).ok());
  const BatchCheck above = rule64(matrix(bad, 3, 3, F64), LossKind::BinaryCrossEntropy);
  CHECK(above.rule == BatchRule::TargetRange && above.target_min == 0.25 && above.target_max == 1.5);
  bad[0] = -0.5;
  const BatchCheck both = rule64(matrix(bad, 3, 3, F64), LossKind::BinaryCrossEntropy);
  CHECK(both.rule == BatchRule::TargetRange && both.target_min == -0.5 && both.target_max == 1.5);
  // PoissonNLL: counts, any size but not negative
  CHECK(rule64(matrix(bad, 3, 3, F64), LossKind::PoissonNLL).rule == BatchRule::TargetRange);
  bad[0] = 7.0;
  CHECK(rule64(matrix(bad, 3, 3, F64), LossKind::PoissonNLL).ok());
}
