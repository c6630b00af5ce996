#include "steepest/plan.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace steepest {

namespace {

bool is_norm(LayerKind k) {
  return k == LayerKind::BatchNorm || k == LayerKind::LayerNorm || k == LayerKind::Standardize ||
         k == LayerKind::MinMaxScale;
}

// Places a slot of `size` values at the end of its store (whose length is `end`).
int64_t place(SizeTable& t, int64_t& end, int64_t layer, const char* name, Store store,
              std::vector<int64_t> shape) {
  Slot s;
  s.layer = layer;
  s.name = name;
  s.store = store;
  s.offset = end;
  s.shape = std::move(shape);
  end += s.size();
  t.slots.push_back(s);
  return s.offset;
}

// The normalization layer l (layer k) in the stores: params, buffers, counts, statistics.
NormSizes place_norm(SizeTable& t, const LayerSpec& l, int64_t k) {
  NormSizes n;
  n.layer = k;
  n.width = l.out;
  const int64_t C = l.out;
  if (l.kind == LayerKind::BatchNorm || l.kind == LayerKind::LayerNorm) {
    if (l.affine) n.weight_offset = place(t, t.num_params, k, "weight", Store::Params, {C});
    if (l.bias) n.bias_offset = place(t, t.num_params, k, "bias", Store::Params, {C});
  }
  if (l.kind == LayerKind::BatchNorm) {
    if (l.track_running_stats) {
      n.buffer_offset = place(t, t.num_buffers, k, "running_mean", Store::Buffers, {C});
      place(t, t.num_buffers, k, "running_var", Store::Buffers, {C});
      n.count_offset = place(t, t.num_counts, k, "num_batches_tracked", Store::Counts, {});
    }
    n.stats_offset = t.stats_fixed;
    t.stats_fixed += 3 * C;
  } else if (l.kind == LayerKind::LayerNorm) {
    n.stats_offset = t.stats_per_row;
    t.stats_per_row += 2;
  } else {
    const bool standardize = l.kind == LayerKind::Standardize;
    n.buffer_offset = place(t, t.num_buffers, k, standardize ? "mean" : "min", Store::Buffers, {C});
    place(t, t.num_buffers, k, standardize ? "std" : "range", Store::Buffers, {C});
    n.count_offset = place(t, t.num_counts, k, "count", Store::Counts, {});
  }
  return n;
}

}  // namespace

SizeTable size_table(const std::vector<LayerSpec>& layers) {
  if (layers.empty()) throw std::invalid_argument("a network needs at least one layer");
  SizeTable t;
  int64_t width_sum = 0, mask_sum = 0;
  for (size_t k = 0; k < layers.size(); ++k) {
    const LayerSpec& l = layers[k];
    if (l.in <= 0 || l.out <= 0) throw std::invalid_argument("layer widths must be positive");
    if (k > 0 && l.in != layers[k - 1].out)
      throw std::invalid_argument("layer " + std::to_string(k) + " expects " +
                                  std::to_string(l.in) + " features but receives " +
                                  std::to_string(layers[k - 1].out));
    if (l.kind == LayerKind::Dense) {
      // Each Dense layer owns weight (out * in) then bias (out) in the flat buffers.
      DenseSizes d;
      d.layer = int64_t(k);
      d.in = l.in;
      d.out = l.out;
      d.weight_offset = place(t, t.num_params, d.layer, "weight", Store::Params, {l.out, l.in});
      if (l.bias) d.bias_offset = place(t, t.num_params, d.layer, "bias", Store::Params, {l.out});
      d.dy_offset = t.kept_dy;
      t.kept_dy += l.out;
      t.dense.push_back(d);
    } else if (l.in != l.out) {
      throw std::invalid_argument("elementwise layers keep their width");
    } else if (is_norm(l.kind)) {
      t.norms.push_back(place_norm(t, l, int64_t(k)));
    }
    t.max_width = std::max({t.max_width, l.in, l.out});
    t.output_offset.push_back(width_sum);
    width_sum += l.out;
    t.mask_offset.push_back(l.kind == LayerKind::Dropout ? mask_sum : -1);
    if (l.kind == LayerKind::Dropout) mask_sum += l.out;
  }
  t.output_offset.push_back(width_sum);
  t.mask_offset.push_back(mask_sum);
  return t;
}

namespace {
bool is_relu(const LayerSpec& l) {
  return l.kind == LayerKind::Activation &&
         (l.activation == Activation::ReLU || l.activation == Activation::LeakyReLU);
}
}  // namespace

std::vector<Op> build_ops(const std::vector<LayerSpec>& layers, const SizeTable& table) {
  std::vector<Op> ops;
  int64_t dense = 0;  // the next row of table.dense
  int64_t norm = 0;   // the next row of table.norms
  for (size_t k = 0; k < layers.size(); ++k) {
    const LayerSpec& l = layers[k];
    Op op;
    op.in = l.in;
    op.out = l.out;
    op.input = k == 0 ? -1 : table.output_offset[k - 1];
    op.output = table.output_offset[k];
    op.param = l.param;
    op.threshold = l.threshold;
    switch (l.kind) {
      case LayerKind::Dense: {
        const DenseSizes& d = table.dense[size_t(dense)];
        op.kind = OpKind::Dense;
        op.dense = dense++;
        op.weight = d.weight_offset;
        op.bias = d.bias_offset;
        op.param = 0.0;
        if (k + 1 < layers.size() && is_relu(layers[k + 1])) {
          // The layer outputs stay as they were: z in the Dense layer's, the activation in
          // the ReLU's (layer_output shows both).
          const LayerSpec& relu = layers[++k];
          op.kind = OpKind::DenseReLU;
          op.pre = op.output;
          op.output = table.output_offset[k];
          op.param = relu.activation == Activation::LeakyReLU ? relu.param : 0.0;
        }
        break;
      }
      case LayerKind::Activation:
        op.kind = OpKind::Activation;
        op.activation = l.activation;
        break;
      case LayerKind::Softmax: op.kind = OpKind::Softmax; break;
      case LayerKind::Dropout:
        op.kind = OpKind::Dropout;
        op.mask = table.mask_offset[k];
        break;
      case LayerKind::BatchNorm:
      case LayerKind::LayerNorm:
      case LayerKind::Standardize:
      case LayerKind::MinMaxScale: {
        const NormSizes& n = table.norms[size_t(norm)];
        op.kind = l.kind == LayerKind::BatchNorm   ? OpKind::BatchNorm
                  : l.kind == LayerKind::LayerNorm ? OpKind::LayerNorm
                                                   : OpKind::Rescale;
        op.norm = norm++;
        op.weight = n.weight_offset;
        op.bias = n.bias_offset;
        op.eps = l.eps;
        op.momentum = l.momentum;
        op.track_running_stats = l.kind == LayerKind::BatchNorm && l.track_running_stats;
        break;
      }
    }
    ops.push_back(op);
  }
  return ops;
}

}  // namespace steepest
