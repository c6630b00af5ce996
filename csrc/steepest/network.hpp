// Network: a sequence of layers over one flat params buffer and one flat grads buffer with the
// same layout, run as the list of operations of its plan (plan.hpp), plus activation/workspace
// buffers that grow only to the largest batch seen. A steady-state training step allocates
// nothing. Per-layer state that is not trained (BatchNorm's running statistics, Standardize's
// mean and std) lives in two more flat stores, buffers (T) and counts (int64), laid out by the
// same size table; the optimizer never sees them.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "steepest/interrupt.hpp"
#include "steepest/kernels.hpp"
#include "steepest/norm.hpp"
#include "steepest/optim.hpp"
#include "steepest/plan.hpp"
#include "steepest/rng.hpp"
#include "steepest/rows.hpp"
#include "steepest/specs.hpp"

namespace steepest {

// n zeros from calloc: the system hands out zeroed pages on first touch, so a buffer that is
// not written yet (a loaded model's gradients before training) costs no time, where a
// std::vector writes all its zeros up front.
template <class T>
class ZeroedBuffer {
 public:
  ZeroedBuffer() = default;
  explicit ZeroedBuffer(size_t n) : p_(static_cast<T*>(std::calloc(n ? n : 1, sizeof(T)))) {
    if (!p_) throw std::bad_alloc();
  }
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p_;
};

// Targets of a batch: integer labels (B) for CrossEntropy, else values (B, OUT); and the
// rows' sample weights (B), nullptr for all 1.
template <class T>
struct Target {
  const int64_t* labels = nullptr;
  const T* values = nullptr;
  const double* weights = nullptr;
};

// Data-parallel training (train_epoch): this process is `rank` of `size`, each training on its
// consecutive share of every global batch; sum(values, n) adds n values in place over all the
// processes (each calls it once per step with the same n: the gradient buffer and the control
// words after it) and returns false when they cannot go on (the caller reports why).
template <class T>
struct Parallel {
  int64_t rank = 0, size = 1;
  std::function<bool(T* values, int64_t n)> sum;
};

// Workspace memory that every computation writes before it reads: resize() leaves new values
// uninitialized, so a large batch's buffers cost no pass of zeros up front (their pages are
// first touched by the interruptible computation that fills them).
template <class T>
struct UninitializedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <class T>
using Workspace = std::vector<T, UninitializedAllocator<T>>;

template <class T>
class Network {
 public:
  // Throws std::invalid_argument when the layer widths do not fit together (see size_table).
  // With initialize false the parameters start at zero and the generator only skips the draws
  // of initialize() (for parameters loaded right after: the network ends up in the state of
  // one built with initialize true and then given those parameters).
  Network(std::vector<LayerSpec> layers, uint64_t seed, bool initialize = true);

  // The specs, with each Dense layer's weight_offset and bias_offset filled in.
  const std::vector<LayerSpec>& layers() const { return layers_; }
  const SizeTable& sizes() const { return table_; }
  const std::vector<Op>& ops() const { return ops_; }
  int64_t in_features() const { return layers_.front().in; }
  int64_t out_features() const { return layers_.back().out; }
  int64_t num_params() const { return table_.num_params; }
  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }
  int64_t num_buffers() const { return table_.num_buffers; }
  int64_t num_counts() const { return table_.num_counts; }
  T* buffers() { return buffers_.data(); }
  int64_t* counts() { return counts_.data(); }
  // What a data-parallel step sums over the processes: the grads followed by kControlWords
  // control words (an interruption, a non-finite loss), reduce_size() values.
  static constexpr int64_t kControlWords = 2;
  int64_t reduce_size() const { return num_params() + kControlWords; }
  Rng& rng() { return rng_; }

  // Draws the parameters of every Dense layer with its initializer from the network's RNG;
  // with write false the RNG only advances past the same draws. Either way it resets every
  // other layer's parameters, buffers and counts as torch does (a few values: weight 1, bias
  // 0, running_mean 0, running_var 1, num_batches_tracked 0; Standardize: mean 0, std 1,
  // count 0, and likewise MinMaxScale's min and range).
  void initialize(bool write = true);

  // Whether some BatchNorm layer normalizes with batch statistics in this mode (training, or
  // eval without running statistics): such a pass needs at least 2 rows.
  bool uses_batch_stats(bool training) const;

  // Training forward pass: x (B, IN) -> output (B, OUT), valid until the next call. x must stay
  // alive and unchanged until backward. With training, Dropout is active and BatchNorm
  // normalizes with the batch's statistics and updates its running statistics; without, it
  // uses the running ones. Throws std::invalid_argument for B = 1 when uses_batch_stats.
  const T* forward(const T* x, int64_t B, bool training);
  // Backpropagation after forward: dy (B, OUT) -> grads (added to them when accumulate).
  void backward(const T* dy, bool accumulate);
  // Loss of the last forward output against y (weighted by y.weights); leaves d(loss)/d(output)
  // ready for backward_from_loss. Returns the loss value.
  double loss(const LossSpec& spec, Target<T> y);
  // With defer_weight_grads (batch 1 only), the weight gradients are not written: each Dense
  // layer's output gradient is kept instead (see fused_update). weights: the rows' sample
  // weights of the last loss, which the float64 sums apply (see set_float64_sums).
  void backward_from_loss(bool accumulate, bool defer_weight_grads = false,
                          const double* weights = nullptr);

  // forward (dropout when training) + loss + backward + the l2 penalty of spec: the gradient of
  // the loss on (x, y) in grads (overwritten); returns the loss, penalty included. No update:
  // a full-batch objective for optimizers such as L-BFGS.
  double gradient(const T* x, Target<T> y, int64_t B, const LossSpec& spec, bool training);

  // Float64 sums: the weight and bias gradients summed over the rows in double and rounded once
  // (dense_weight_grads_f64), the sample weights applied in those sums: a gradient then depends
  // neither on the order of the rows nor on whether a row of weight k stands for k copies. About
  // 2.5x the time of the float32 weight-gradient product; off by default.
  void set_float64_sums(bool on) { float64_sums_ = on; }
  bool float64_sums() const { return float64_sums_; }

  // zero_grad + forward + loss + backward + optimizer step, one call. The step is skipped (and
  // the status says why) when the loss or the gradients are not finite: weights never take NaN.
  // clip_norm > 0 rescales the gradients to that global L2 norm at most. An interruption
  // (interrupt.hpp) before the update abandons the step: parameters, optimizer state and the
  // random generator stay as they were (the gradients and the workspace do not).
  StepStatus train_step(const T* x, Target<T> y, int64_t B, const LossSpec& spec,
                        Optimizer<T>& opt, double clip_norm, double* loss_out);

  // One epoch of mini-batch training over X (N rows of IN) and y (N labels when `labels`, else
  // N rows of OUT targets), read in place and converted per batch (see rows.hpp); weights: N
  // sample weights, nullptr for all 1. The rows go in the given order (N indices) when order is
  // not nullptr, else shuffled with the network's RNG when asked; stops early when interrupted
  // (interrupt.hpp: between steps or inside one) or on a non-finite loss/gradient, with the
  // model as it was after the last completed step (before the epoch's shuffle when no step
  // completed). progress, when given, receives the stats so far (loss: the mean over the
  // completed steps; step_loss: the last step's) after every step; it may change the
  // optimizer's config (a per-batch learning rate), and an exception it throws ends the epoch
  // after that step.
  // With `parallel`, every process runs the same epoch on its share of each global batch of
  // batch_size rows and the gradients are summed before every update, the interruptions too:
  // an interrupted process abandons its step and so do all, before the update. The result is
  // that of one process training on the global batches, up to the order of the sums; stats
  // count this process's rows; each process's share of the gradient is weighted by its part of
  // the global batch's normalizer (sample and class weights included). An l2 penalty is
  // refused with `parallel`.
  EpochStats train_epoch(const Rows& X, const Rows& y, bool labels, int64_t batch_size,
                         bool shuffle, const LossSpec& spec, Optimizer<T>& opt, double clip_norm,
                         const std::function<void(const EpochStats&)>& progress = {},
                         const Parallel<T>* parallel = nullptr, const double* weights = nullptr,
                         const int64_t* order = nullptr);
  // The same over X (N, IN) and y in memory, of the network's types (y.weights: N or nullptr).
  EpochStats train_epoch(const T* X, Target<T> y, int64_t N, int64_t batch_size, bool shuffle,
                         const LossSpec& spec, Optimizer<T>& opt, double clip_norm,
                         const std::function<void(const EpochStats&)>& progress = {},
                         const int64_t* order = nullptr);

  // Inference (eval mode): out (N, OUT) <- x (N, IN). Uses its own scratch memory and does not
  // modify the network, so several threads may call it at once. Throws Interrupted
  // (interrupt.hpp).
  void infer(T* out, const T* x, int64_t N) const;

  // Output (B, width of layer k) of layer k in the last forward pass.
  const T* layer_output(size_t k) { return layer_out(k); }
  int64_t batch() const { return batch_; }

  // Per Dense layer, the squared L2 norm of its gradient (weight and bias) after the last
  // train_step; their sum and the normalization layers' is the global squared norm.
  const std::vector<double>& layer_grad_sq() const { return grad_sq_; }
  // Computes layer_grad_sq from the grads buffer; returns the global squared norm.
  double measure_grads();
  // Rescales the gradients by min(1, max_norm / (norm + 1e-6)), norm = sqrt(total_sq) as
  // measure_grads returns it (torch.nn.utils.clip_grad_norm_'s rule).
  void clip_grads(double total_sq, double max_norm);

 private:
  void reserve(int64_t B);
  // forward(); with update_running false, BatchNorm leaves its running statistics for
  // update_running_stats() (train_step updates them only with the parameters).
  const T* forward_pass(const T* x, int64_t B, bool training, bool update_running);
  // BatchNorm's running statistics from the batch statistics of the last training forward.
  void update_running_stats();
  // Throws std::invalid_argument when B < 2 and uses_batch_stats(training).
  void check_batch_stats(int64_t B, bool training) const;
  // The squared L2 norm of the normalization layers' parameter gradients.
  double norm_grad_sq();
  // Adds spec.l2's penalty to the Dense weights' gradients (after backward); returns its value.
  double add_l2(const LossSpec& spec);
  // The workspace at an offset of the plan (in rows of batch_cap_).
  T* rows(int64_t offset) { return acts_.data() + offset * batch_cap_; }
  T* mask(const Op& op) { return masks_.data() + op.mask * batch_cap_; }
  const T* input_of(const Op& op) { return op.input < 0 ? input_ : rows(op.input); }
  // Output (batch_cap_, width) of layer k, and its input (the output of layer k - 1, or x).
  T* layer_out(size_t k) { return rows(table_.output_offset[k]); }
  const T* layer_in(size_t k) { return k == 0 ? input_ : layer_out(k - 1); }
  const T* weight(const Op& op) const {
    return op.weight < 0 ? nullptr : params_.data() + op.weight;
  }
  const T* bias(const Op& op) const { return op.bias < 0 ? nullptr : params_.data() + op.bias; }
  T* grad_or_null(int64_t offset) { return offset < 0 ? nullptr : grads_.data() + offset; }
  const NormSizes& norm(const Op& op) const { return table_.norms[size_t(op.norm)]; }
  // A BatchNorm's saved mean, rstd and unbiased variance (3 C values); a LayerNorm's saved mean
  // and rstd (2 rows of batch_cap_).
  T* saved_stats(const Op& op) {
    const NormSizes& n = norm(op);
    return op.kind == OpKind::BatchNorm
               ? stats_.data() + table_.stats_per_row * batch_cap_ + n.stats_offset
               : stats_.data() + n.stats_offset * batch_cap_;
  }
  // Batch 1 after backward_from_loss(false, true): the weight gradient of a Dense layer is the
  // outer product dy x^T of its kept output gradient dy (OUT) and its input x (IN).
  T* kept_dy(const DenseSizes& d) { return kept_dy_.data() + d.dy_offset; }
  // Their squared norms, ||dy||^2 (||x||^2 + 1 if bias), into grad_sq_; returns the sum.
  double outer_grad_sq();
  // Writes every weight gradient (the outer products) into grads_.
  void write_weight_grads();
  // A data-parallel train_step on this process's b rows, rows [first, first + b) of a global
  // batch of B whose loss is the mean over `normalizer` (its loss_normalizer: B without
  // weights); interrupted (Interrupted thrown here or on another process) it is abandoned by
  // every process before the update, the RNG as before it.
  StepStatus parallel_step(const T* x, Target<T> y, int64_t b, int64_t first, int64_t B,
                           double normalizer, const LossSpec& spec, Optimizer<T>& opt,
                           double clip_norm, const Parallel<T>& parallel, double* loss_out,
                           double* sum_seconds);
  // Advances the RNG past the dropout masks of a batch of B rows (a process with no rows in it).
  void skip_dropout(int64_t B);
  // One optimizer step that writes each weight gradient a block of rows at a time and updates
  // those parameters while the block is in cache: one pass over p, g and the optimizer state
  // instead of a write of g, a read for its norm and the update's pass. Bitwise opt.step().
  void fused_update(Optimizer<T>& opt);

  std::vector<LayerSpec> layers_;
  SizeTable table_;
  std::vector<Op> ops_;
  // Backward stops at this op, the first with parameters (no dX for it).
  size_t first_param_op_ = 0;
  ZeroedBuffer<T> params_, grads_;
  std::vector<T> buffers_;
  std::vector<int64_t> counts_;
  Rng rng_;

  // Workspace, sized for batch_cap_ rows: the output of every layer (acts_), the dropout masks,
  // two gradient buffers for the backward ping-pong, and gathered batch inputs/targets.
  int64_t batch_cap_ = 0;
  int64_t batch_ = 0;                 // rows of the last forward
  const T* input_ = nullptr;          // input of the last forward
  bool training_ = false;             // mode of the last forward
  // Data-parallel forward: its rows are rows [window_first_, + batch_) of a global batch of
  // window_total_ rows (0: the whole batch), so dropout draws the masks the whole batch would.
  int64_t window_first_ = 0, window_total_ = 0;
  Workspace<T> acts_, masks_, grad_a_, grad_b_, stats_;
  std::vector<T> batch_x_, batch_y_;
  std::vector<T> kept_dy_;            // batch 1: each Dense layer's output gradient
  std::vector<int64_t> batch_labels_, order_;
  std::vector<double> batch_w_;
  std::vector<double> grad_sq_;
  bool float64_sums_ = false;
  double weight_sum_ = 0.0;  // sample weights (or rows) of the last loss
  double loss_weight_ = 0.0;  // what the last loss is the mean over (loss_normalizer)
  // Data-parallel: the whole global batch's labels and weights (its loss_normalizer).
  std::vector<int64_t> global_labels_;
  std::vector<double> global_w_;
  std::vector<double> sum_dy_, sum_x_, sum_dw_;  // float64 sums' scratch
};

}  // namespace steepest
