// The network's plan, computed once from its layer specs: the size table (where each parameter
// and each layer output lives in the flat buffers) and the list of operations that forward,
// backward and infer run as straight loops, as in llm.c. No buffer is allocated here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "steepest/specs.hpp"

namespace steepest {

// One Dense layer's place in the flat params/grads buffers: weight (out, in), then bias (out).
struct DenseSizes {
  int64_t layer = 0;          // index in the layer list
  int64_t in = 0, out = 0;
  int64_t weight_offset = 0;  // flat index of W[0, 0]
  int64_t bias_offset = -1;   // flat index of b[0]; -1 without bias
  int64_t dy_offset = 0;      // batch 1: its output gradient (out) in the kept-gradient buffer
};

// The three flat stores of a network: trainable parameters (with their gradients, laid out
// alike, and the optimizer's state), buffers (per-layer state the optimizer never touches:
// BatchNorm's running statistics, Standardize's mean and std) and counts (int64: BatchNorm's
// num_batches_tracked, the samples a Standardize layer was adapted on).
enum class Store : int32_t { Params, Buffers, Counts };

// One named array of a layer in a store: the state_dict entry "{layer}.{name}".
struct Slot {
  int64_t layer = 0;
  std::string name;            // torch's: "weight", "bias", "running_mean", ...
  Store store = Store::Params;
  int64_t offset = 0;          // first entry in its store
  std::vector<int64_t> shape;  // torch's: weight (out, in), vectors (C,), a count ()
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// A BatchNorm, LayerNorm, Standardize or MinMaxScale layer's place in the stores (-1: absent).
struct NormSizes {
  int64_t layer = 0;           // index in the layer list
  int64_t width = 0;           // C
  int64_t weight_offset = -1;  // params: the affine weight (C), then the bias (C)
  int64_t bias_offset = -1;
  // buffers, 2 C values: BatchNorm's running_mean then running_var; Standardize's mean then
  // std, MinMaxScale's min then range (the shift, then the scale that divides)
  int64_t buffer_offset = -1;
  int64_t count_offset = -1;   // counts: num_batches_tracked, or the samples adapted on
  // What the forward pass saves for backward, in the statistics workspace: LayerNorm, its mean
  // and rstd per row (2 rows' worth, from stats_offset rows into the per-row part); BatchNorm,
  // mean, rstd and unbiased variance per feature (3 C values, from stats_offset values into the
  // fixed part).
  int64_t stats_offset = -1;
};

struct SizeTable {
  std::vector<DenseSizes> dense;  // in layer order
  std::vector<NormSizes> norms;   // in layer order
  std::vector<Slot> slots;        // every named array of every layer, in layer order
  int64_t num_params = 0;         // length of the flat params and grads buffers
  int64_t num_buffers = 0;        // length of the flat buffers store
  int64_t num_counts = 0;         // length of the counts store
  // The workspace, per batch row, in values: layer k's output starts at output_offset[k] rows
  // into the activation buffer (output_offset.back() is the whole width), a Dropout layer's
  // mask at mask_offset[k] rows into the mask buffer (-1 for other layers; back() the total).
  std::vector<int64_t> output_offset, mask_offset;
  int64_t max_width = 0;          // widest layer: each of the two backward gradient buffers
  int64_t kept_dy = 0;            // batch 1: the Dense output gradients, sum of their widths
  // The normalization statistics workspace: per batch row, and fixed (see NormSizes).
  int64_t stats_per_row = 0, stats_fixed = 0;

  // Values of workspace per batch row: layer outputs, dropout masks, two gradient buffers,
  // saved statistics.
  int64_t workspace_per_row() const {
    return output_offset.back() + mask_offset.back() + 2 * max_width + stats_per_row;
  }
};

// Checks that consecutive widths agree and computes the table; throws std::invalid_argument
// naming the first inconsistent layer.
SizeTable size_table(const std::vector<LayerSpec>& layers);

enum class OpKind : int32_t {
  Dense,       // y = x W^T + b
  DenseReLU,   // a Dense layer and the ReLU or LeakyReLU after it, fused (param: the slope)
  Activation,  // elementwise (activation, param)
  Softmax,
  Dropout,     // param: the probability of dropping
  BatchNorm,
  LayerNorm,
  Rescale,     // Standardize, MinMaxScale: y = (x - shift) / scale
};

// One operation of the forward pass, with every buffer offset it needs. Offsets into the
// activation and mask buffers are in rows (see SizeTable): the values start at offset * rows.
struct Op {
  OpKind kind = OpKind::Dense;
  int64_t in = 0, out = 0;  // widths of its input and output
  int64_t input = -1;       // where its input is; -1: the network's input x
  int64_t output = 0;       // where its output goes (the next operation's input)
  int64_t pre = -1;         // DenseReLU: where the Dense output (the pre-activation) goes
  int64_t mask = -1;        // Dropout: its mask in the mask buffer
  int64_t dense = -1;       // Dense, DenseReLU: its row in SizeTable::dense
  int64_t weight = -1, bias = -1;  // Dense, DenseReLU: flat offsets of W and b (-1: no bias)
  Activation activation = Activation::ReLU;  // Activation
  double param = 0.0;  // LeakyReLU/DenseReLU slope, ELU alpha, Softplus beta, Dropout probability
  double threshold = 20.0;  // Softplus
  int64_t norm = -1;        // BatchNorm, LayerNorm, Rescale: its row in SizeTable::norms
  double eps = 0.0;         // BatchNorm, LayerNorm
  double momentum = 0.0;    // BatchNorm; negative: the cumulative average
  bool track_running_stats = false;  // BatchNorm
};

// The operations of layers with the sizes of `table`: a Dense layer followed by a ReLU or
// LeakyReLU becomes one DenseReLU operation, decided here once.
std::vector<Op> build_ops(const std::vector<LayerSpec>& layers, const SizeTable& table);

}  // namespace steepest
