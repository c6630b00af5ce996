// The rules a training batch must follow before the core may use it without a copy, in one
// place: check_batch says which rule a batch breaks (and the numbers a message needs), so the
// bindings' fast path and the Python validation can share it.
#pragma once

#include <cstdint>

#include "steepest/specs.hpp"

namespace steepest {

// Element types the core works with; Other is anything else (including another byte order).
enum class ScalarType : int32_t { Float32, Float64, Int64, Other };

// What the checks need to know about an array: its exact element type, whether it is
// C-contiguous and aligned to its element size, its shape and its data.
struct ArrayInfo {
  ScalarType type = ScalarType::Other;
  bool contiguous = false;  // C-contiguous and aligned
  int64_t ndim = 0;
  int64_t rows = 0, cols = 0;  // shape[0] when ndim >= 1, shape[1] when ndim >= 2
  const void* data = nullptr;
};

// The rules, in the order they are checked: the shape of x, its type and layout, its values;
// then the same for y. A type or layout failure means "convert first"; the others are errors
// in the data.
enum class BatchRule : int32_t {
  Ok,
  XShape,       // x is not 2-D
  XEmpty,       // x has no rows
  XFeatures,    // x has `got` features, the model expects `want`
  XType,        // x is not of the model's dtype
  XLayout,      // x is not C-contiguous and aligned
  XNonFinite,   // x holds NaN or infinity
  YShape,       // y is not 1-D labels or (rows, C) class probabilities (CrossEntropy), or not
                // (rows, C) targets ((rows,) if C is 1)
  YLength,      // y has `got` rows, x `want`
  YType,        // y is not int64 labels (CrossEntropy, 1-D) or of the model's dtype
  YLayout,      // y is not C-contiguous and aligned
  YNonFinite,   // y holds NaN or infinity
  LabelRange,   // labels span [label_min, label_max], outside [0, want) (want = classes) and
                // not the loss's ignore_index
  TargetRange,  // targets span [target_min, target_max], outside [0, 1] (BinaryCrossEntropy)
                // or below 0 (PoissonNLL)
  LossWeights,  // the loss's weight or pos_weight has `got` entries, not one per output (`want`)
};

// The rule's name as the enum spells it ("XFeatures"), for messages.
const char* batch_rule_name(BatchRule rule);

struct BatchCheck {
  BatchRule rule = BatchRule::Ok;
  int64_t got = 0, want = 0;
  int64_t label_min = 0, label_max = 0;
  double target_min = 0.0, target_max = 0.0;
  bool ok() const { return rule == BatchRule::Ok; }
};

// The value rules (finite x and y, BinaryCrossEntropy targets in [0, 1], PoissonNLL's >= 0) cost
// a pass over the data; values = false skips them and keeps every rule the core's memory safety
// rests on (shape, type, layout, label range): for data already checked once (a fit's later
// epochs).

// x (B, in_features) of `dtype` (Float32 or Float64), finite.
BatchCheck check_features(const ArrayInfo& x, ScalarType dtype, int64_t in_features,
                          bool values = true);

// y for `rows` samples of a model with out_features outputs trained with `loss`: for
// CrossEntropy int64 labels (rows) in [0, out_features) or equal to loss.ignore_index, or
// finite class probabilities (rows, out_features) of `dtype`; else finite targets (rows,
// out_features) of `dtype` ((rows,) when out_features is 1), in [0, 1] for BinaryCrossEntropy,
// >= 0 for PoissonNLL. The loss's weight and pos_weight hold one value per output, or none.
BatchCheck check_targets(const ArrayInfo& y, int64_t rows, ScalarType dtype,
                         int64_t out_features, const LossSpec& loss, bool values = true);

// check_features, then (when y is not nullptr) check_targets for x's rows.
BatchCheck check_batch(const ArrayInfo& x, const ArrayInfo* y, ScalarType dtype,
                       int64_t in_features, int64_t out_features, const LossSpec& loss,
                       bool values = true);

}  // namespace steepest
