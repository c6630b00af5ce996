#include "steepest/check_batch.hpp"

#include <algorithm>
#include <cmath>

#include "steepest/kernels.hpp"

namespace steepest {

namespace {

BatchCheck fail(BatchRule rule, int64_t got = 0, int64_t want = 0) {
  BatchCheck c;
  c.rule = rule;
  c.got = got;
  c.want = want;
  return c;
}

// Values (n) of type t are all finite (t is Float32 or Float64).
bool finite(const void* data, ScalarType t, int64_t n) {
  return t == ScalarType::Float32 ? all_finite(static_cast<const float*>(data), n)
                                  : all_finite(static_cast<const double*>(data), n);
}

// Targets v (n) in [0, high] (BinaryCrossEntropy: 1, PoissonNLL: infinity); else TargetRange
// with their span.
template <class T>
BatchCheck in_range(const T* v, int64_t n, T high) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(v[i] >= T(0) && v[i] <= high)) {
      const auto [lo, hi] = std::minmax_element(v, v + n);
      BatchCheck c = fail(BatchRule::TargetRange);
      c.target_min = double(*lo);
      c.target_max = double(*hi);
      return c;
    }
  }
  return {};
}

}  // namespace

const char* batch_rule_name(BatchRule rule) {
  switch (rule) {
    case BatchRule::Ok: return "Ok";
    case BatchRule::XShape: return "XShape";
    case BatchRule::XEmpty: return "XEmpty";
    case BatchRule::XFeatures: return "XFeatures";
    case BatchRule::XType: return "XType";
    case BatchRule::XLayout: return "XLayout";
    case BatchRule::XNonFinite: return "XNonFinite";
    case BatchRule::YShape: return "YShape";
    case BatchRule::YLength: return "YLength";
    case BatchRule::YType: return "YType";
    case BatchRule::YLayout: return "YLayout";
    case BatchRule::YNonFinite: return "YNonFinite";
    case BatchRule::LabelRange: return "LabelRange";
    case BatchRule::TargetRange: return "TargetRange";
    case BatchRule::LossWeights: return "LossWeights";
  }
  return "?";
}

BatchCheck check_features(const ArrayInfo& x, ScalarType dtype, int64_t in_features,
                          bool values) {
  if (x.ndim != 2) return fail(BatchRule::XShape);
  if (x.rows < 1) return fail(BatchRule::XEmpty);
  if (x.cols != in_features) return fail(BatchRule::XFeatures, x.cols, in_features);
  if (x.type != dtype) return fail(BatchRule::XType);
  if (!x.contiguous) return fail(BatchRule::XLayout);
  if (values && !finite(x.data, dtype, x.rows * x.cols)) return fail(BatchRule::XNonFinite);
  return {};
}

BatchCheck check_targets(const ArrayInfo& y, int64_t rows, ScalarType dtype,
                         int64_t out_features, const LossSpec& spec, bool values) {
  const int64_t C = out_features;
  const LossKind loss = spec.kind;
  for (const auto* w : {&spec.weight, &spec.pos_weight}) {
    if (!w->empty() && int64_t(w->size()) != C) return fail(BatchRule::LossWeights, w->size(), C);
  }
  if (loss == LossKind::CrossEntropy && y.ndim == 1) {  // class indices
    if (y.rows != rows) return fail(BatchRule::YLength, y.rows, rows);
    if (y.type != ScalarType::Int64) return fail(BatchRule::YType);
    if (!y.contiguous) return fail(BatchRule::YLayout);
    const int64_t* labels = static_cast<const int64_t*>(y.data);
    for (int64_t i = 0; i < rows; ++i) {
      if ((labels[i] < 0 || labels[i] >= C) && labels[i] != spec.ignore_index) {
        const auto [lo, hi] = std::minmax_element(labels, labels + rows);
        BatchCheck c = fail(BatchRule::LabelRange, 0, C);
        c.label_min = *lo;
        c.label_max = *hi;
        return c;
      }
    }
    return {};
  }
  // Values (rows, C): CrossEntropy's class probabilities, the other losses' targets.
  const bool one_column = C == 1 && loss != LossKind::CrossEntropy;
  if (!((y.ndim == 2 && y.cols == C) || (y.ndim == 1 && one_column))) return fail(BatchRule::YShape);
  if (y.rows != rows) return fail(BatchRule::YLength, y.rows, rows);
  if (y.type != dtype) return fail(BatchRule::YType);
  if (!y.contiguous) return fail(BatchRule::YLayout);
  if (!values) return {};
  if (!finite(y.data, dtype, rows * C)) return fail(BatchRule::YNonFinite);
  if (loss == LossKind::BinaryCrossEntropy || loss == LossKind::PoissonNLL) {
    const double high = loss == LossKind::PoissonNLL ? HUGE_VAL : 1.0;
    return dtype == ScalarType::Float32
               ? in_range(static_cast<const float*>(y.data), rows * C, float(high))
               : in_range(static_cast<const double*>(y.data), rows * C, high);
  }
  return {};
}

BatchCheck check_batch(const ArrayInfo& x, const ArrayInfo* y, ScalarType dtype,
                       int64_t in_features, int64_t out_features, const LossSpec& loss,
                       bool values) {
  const BatchCheck c = check_features(x, dtype, in_features, values);
  if (!c.ok() || !y) return c;
  return check_targets(*y, x.rows, dtype, out_features, loss, values);
}

}  // namespace steepest
