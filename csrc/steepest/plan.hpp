// The network's plan, computed once from its layer specs: the size table (where each parameter
// and each layer output lives in the flat buffers) and the list of operations that forward,
// backward and infer run as straight loops, as in llm.c. No buffer is allocated here.
#pragma once

#include <cstdint>
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

struct SizeTable {
  std::vector<DenseSizes> dense;  // in layer order
  int64_t num_params = 0;         // length of the flat params and grads buffers
  // The workspace, per batch row, in values: layer k's output starts at output_offset[k] rows
  // into the activation buffer (output_offset.back() is the whole width), a Dropout layer's
  // mask at mask_offset[k] rows into the mask buffer (-1 for other layers; back() the total).
  std::vector<int64_t> output_offset, mask_offset;
  int64_t max_width = 0;          // widest layer: each of the two backward gradient buffers
  int64_t kept_dy = 0;            // batch 1: the Dense output gradients, sum of their widths

  // Values of workspace per batch row: layer outputs, dropout masks, two gradient buffers.
  int64_t workspace_per_row() const {
    return output_offset.back() + mask_offset.back() + 2 * max_width;
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
};

// The operations of layers with the sizes of `table`: a Dense layer followed by a ReLU or
// LeakyReLU becomes one DenseReLU operation, decided here once.
std::vector<Op> build_ops(const std::vector<LayerSpec>& layers, const SizeTable& table);

}  // namespace steepest
