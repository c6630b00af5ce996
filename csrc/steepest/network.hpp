// Network: a sequence of layers over one flat params buffer and one flat grads buffer with the
// same layout (built from a size table), plus activation/workspace buffers that grow only to the
// largest batch seen. A steady-state training step allocates nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "steepest/kernels.hpp"
#include "steepest/optim.hpp"
#include "steepest/rng.hpp"

namespace steepest {

enum class LayerKind : int32_t { Dense, Activation, Softmax, Dropout };

enum class Init : int32_t {
  TorchDefault,   // torch.nn.Linear: W, b ~ U(-1/sqrt(in), 1/sqrt(in))
  GlorotUniform,  // U(+-sqrt(6 / (in + out)))
  GlorotNormal,   // N(0, 2 / (in + out))
  HeUniform,      // U(+-sqrt(6 / in))
  HeNormal,       // N(0, 2 / in)
  LecunNormal,    // N(0, 1 / in)
  Normal,         // N(0, 0.01^2): "small random"
  Zeros,
};

struct LayerSpec {
  LayerKind kind = LayerKind::Dense;
  int64_t in = 0, out = 0;                   // feature widths (equal unless Dense)
  bool bias = true;                          // Dense
  Activation activation = Activation::ReLU;  // Activation
  double param = 0.0;  // LeakyReLU slope, ELU alpha, Dropout probability
  Init init = Init::TorchDefault;            // Dense
  // Filled in by the network from the size table:
  int64_t weight_offset = -1, bias_offset = -1;
};

// Targets of a batch: integer labels (B) for CrossEntropy, else values (B, OUT).
template <class T>
struct Target {
  const int64_t* labels = nullptr;
  const T* values = nullptr;
};

enum class StepStatus : int32_t { Ok, NonFiniteLoss, NonFiniteGradient, Interrupted };

struct EpochStats {
  double loss = 0.0;       // mean loss over the samples of the completed steps
  int64_t steps = 0;       // completed optimizer steps
  int64_t samples = 0;     // samples in those steps
  int64_t correct = 0;     // of those, predicted right (argmax == label) before the update
  StepStatus status = StepStatus::Ok;
  double bad_loss = 0.0;   // the offending loss when status is NonFinite*
  std::vector<double> grad_norms;  // per Dense layer: mean over steps of ||grad||_2
};

template <class T>
class Network {
 public:
  Network(std::vector<LayerSpec> layers, uint64_t seed);

  const std::vector<LayerSpec>& layers() const { return layers_; }
  int64_t in_features() const { return layers_.front().in; }
  int64_t out_features() const { return layers_.back().out; }
  int64_t num_params() const { return int64_t(params_.size()); }
  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }
  Rng& rng() { return rng_; }

  // Draws the parameters of every Dense layer with its initializer from the network's RNG.
  void initialize();

  // Training forward pass: x (B, IN) -> output (B, OUT), valid until the next call. x must stay
  // alive and unchanged until backward. Dropout is active when training is true.
  const T* forward(const T* x, int64_t B, bool training);
  // Backpropagation after forward: dy (B, OUT) -> grads (added to them when accumulate).
  void backward(const T* dy, bool accumulate);
  // Loss of the last forward output against y; leaves d(loss)/d(output) ready for
  // backward_from_loss. Returns the loss value.
  double loss(const LossSpec& spec, Target<T> y);
  // With defer_weight_grads (batch 1 only), the weight gradients are not written: each Dense
  // layer's output gradient is kept instead (see fused_update).
  void backward_from_loss(bool accumulate, bool defer_weight_grads = false);

  // zero_grad + forward + loss + backward + optimizer step, one call. The step is skipped (and
  // the status says why) when the loss or the gradients are not finite: weights never take NaN.
  // clip_norm > 0 rescales the gradients to that global L2 norm at most.
  StepStatus train_step(const T* x, Target<T> y, int64_t B, const LossSpec& spec,
                        Optimizer<T>& opt, double clip_norm, double* loss_out);

  // One epoch of mini-batch training over X (N, IN), y. Shuffles with the network's RNG when
  // asked; stops early when should_stop() says so (polled between steps) or on a non-finite
  // loss/gradient, with the model as it was after the last completed step.
  EpochStats train_epoch(const T* X, Target<T> y, int64_t N, int64_t batch_size, bool shuffle,
                         const LossSpec& spec, Optimizer<T>& opt, double clip_norm,
                         const std::function<bool()>& should_stop);

  // Inference: out (N, OUT) <- x (N, IN). Uses its own scratch memory and does not modify the
  // network, so several threads may call it at once.
  void infer(T* out, const T* x, int64_t N) const;

  // Output (B, width of layer k) of layer k in the last forward pass.
  const T* layer_output(size_t k) { return output(k); }
  int64_t batch() const { return batch_; }

  // Per Dense layer, the squared L2 norm of its gradient (weight and bias) after the last
  // train_step; their sum is the global squared norm.
  const std::vector<double>& layer_grad_sq() const { return grad_sq_; }
  // Computes layer_grad_sq from the grads buffer; returns the global squared norm.
  double measure_grads();
  // Rescales the gradients so that their global L2 norm, sqrt(total_sq) as measure_grads
  // returns it, is at most max_norm (torch.nn.utils.clip_grad_norm_'s rule).
  void clip_grads(double total_sq, double max_norm);

 private:
  void reserve(int64_t B);
  // Output (batch_cap_, width) of layer k; the input of layer k is the output of layer k - 1.
  T* output(size_t k) { return acts_.data() + act_offset_[k] * batch_cap_; }
  const T* input_of(size_t k) { return k == 0 ? input_ : output(k - 1); }
  void draw_mask(T* mask, int64_t n, double p);
  // Batch 1 after backward_from_loss(false, true): the weight gradient of Dense layer i is the
  // outer product dy_i x_i^T of its kept output gradient dy_i (OUT) and its input x_i (IN).
  T* kept_dy(size_t i) { return kept_dy_.data() + kept_dy_offset_[i]; }
  // Their squared norms, ||dy||^2 (||x||^2 + 1 if bias), into grad_sq_; returns the sum.
  double outer_grad_sq();
  // Writes every weight gradient (the outer products) into grads_.
  void write_weight_grads();
  // One optimizer step that writes each weight gradient a block of rows at a time and updates
  // those parameters while the block is in cache: one pass over p, g and the optimizer state
  // instead of a write of g, a read for its norm and the update's pass. Bitwise opt.step().
  void fused_update(Optimizer<T>& opt);
  // True when layer k is Dense and layer k + 1 a ReLU or LeakyReLU: forward adds the bias and
  // applies the activation in one pass, backward masks the gradient and sums the bias gradient
  // in one pass.
  bool fuses_relu(size_t k) const {
    if (k + 1 >= layers_.size() || layers_[k].kind != LayerKind::Dense) return false;
    const LayerSpec& a = layers_[k + 1];
    return a.kind == LayerKind::Activation &&
           (a.activation == Activation::ReLU || a.activation == Activation::LeakyReLU);
  }
  double relu_slope(size_t k) const {
    return layers_[k].activation == Activation::LeakyReLU ? layers_[k].param : 0.0;
  }

  std::vector<LayerSpec> layers_;
  std::vector<T> params_, grads_;
  Rng rng_;
  size_t first_dense_ = 0;       // backward stops here (no dX for the first Dense layer)
  std::vector<size_t> dense_;    // indices of the Dense layers
  int64_t max_width_ = 0;

  // Workspace, sized for batch_cap_ rows: the output of every layer (acts_), the dropout masks,
  // two gradient buffers for the backward ping-pong, and gathered batch inputs/targets.
  int64_t batch_cap_ = 0;
  int64_t batch_ = 0;                 // rows of the last forward
  const T* input_ = nullptr;          // input of the last forward
  std::vector<int64_t> act_offset_;   // per layer output, in rows-of-width units
  std::vector<int64_t> mask_offset_;  // per layer, -1 unless Dropout
  std::vector<T> acts_, masks_, grad_a_, grad_b_, batch_x_, batch_y_;
  std::vector<T> kept_dy_;               // batch 1: each Dense layer's output gradient
  std::vector<int64_t> kept_dy_offset_;  // per Dense layer, into kept_dy_
  std::vector<int64_t> batch_labels_, order_;
  std::vector<double> grad_sq_;
};

}  // namespace steepest
