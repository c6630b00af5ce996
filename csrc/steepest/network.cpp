#include "steepest/network.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace steepest {

namespace {
constexpr int64_t kMaskPiece = int64_t(1) << 20;  // dropout mask values drawn between polls
}  // namespace

template <class T>
Network<T>::Network(std::vector<LayerSpec> layers, uint64_t seed, bool initialize)
    : layers_(std::move(layers)),
      table_(size_table(layers_)),
      ops_(build_ops(layers_, table_)),
      rng_(seed) {
  for (const DenseSizes& d : table_.dense) {
    layers_[size_t(d.layer)].weight_offset = d.weight_offset;
    layers_[size_t(d.layer)].bias_offset = d.bias_offset;
  }
  for (const NormSizes& n : table_.norms) {
    layers_[size_t(n.layer)].weight_offset = n.weight_offset;
    layers_[size_t(n.layer)].bias_offset = n.bias_offset;
  }
  first_param_op_ = size_t(
      std::find_if(ops_.begin(), ops_.end(),
                   [](const Op& op) { return op.weight >= 0 || op.bias >= 0; }) -
      ops_.begin());
  kept_dy_.assign(size_t(table_.kept_dy), T(0));
  params_ = ZeroedBuffer<T>(size_t(table_.num_params));
  grads_ = ZeroedBuffer<T>(size_t(reduce_size()));  // the control words follow the grads
  buffers_.assign(size_t(table_.num_buffers), T(0));
  counts_.assign(size_t(table_.num_counts), 0);
  grad_sq_.assign(table_.dense.size(), 0.0);
  this->initialize(initialize);
}

template <class T>
void Network<T>::initialize(bool write) {
  for (const DenseSizes& d : table_.dense) {
    const LayerSpec& l = layers_[size_t(d.layer)];
    const double fan_in = double(l.in), fan_out = double(l.out);
    T* w = params_.data() + d.weight_offset;
    const int64_t nw = l.in * l.out;
    double bound = 0.0, stddev = 0.0;  // uniform bound or normal standard deviation
    switch (l.init) {
      case Init::TorchDefault: bound = 1.0 / std::sqrt(fan_in); break;
      case Init::GlorotUniform: bound = std::sqrt(6.0 / (fan_in + fan_out)); break;
      case Init::GlorotNormal: stddev = std::sqrt(2.0 / (fan_in + fan_out)); break;
      case Init::HeUniform: bound = std::sqrt(6.0 / fan_in); break;
      case Init::HeNormal: stddev = std::sqrt(2.0 / fan_in); break;
      case Init::LecunNormal: stddev = std::sqrt(1.0 / fan_in); break;
      case Init::Normal: stddev = 0.01; break;
      case Init::Zeros: break;
    }
    if (!write) {  // the same draws, values unused
      if (bound > 0) rng_.skip_uniform(nw); else rng_.skip_normal(nw);
      if (d.bias_offset >= 0) rng_.skip_uniform(l.out);
      continue;
    }
    for (int64_t i = 0; i < nw; ++i)
      w[i] = bound > 0 ? T(bound * (2 * rng_.uniform() - 1)) : T(stddev * rng_.normal());
    if (d.bias_offset >= 0) {
      // torch.nn.Linear draws its bias too; every other initializer starts it at zero.
      T* b = params_.data() + d.bias_offset;
      const double b_bound = l.init == Init::TorchDefault ? 1.0 / std::sqrt(fan_in) : 0.0;
      for (int64_t i = 0; i < l.out; ++i) b[i] = T(b_bound * (2 * rng_.uniform() - 1));
    }
  }
  // The other layers draw nothing: the random stream of the Dense layers stays the same.
  for (const NormSizes& n : table_.norms) {
    T* p = params_.data();
    if (n.weight_offset >= 0) std::fill(p + n.weight_offset, p + n.weight_offset + n.width, T(1));
    if (n.bias_offset >= 0) std::fill(p + n.bias_offset, p + n.bias_offset + n.width, T(0));
    if (n.buffer_offset >= 0) {  // shift 0, scale 1 (running_mean 0, running_var 1)
      T* b = buffers_.data() + n.buffer_offset;
      std::fill(b, b + n.width, T(0));
      std::fill(b + n.width, b + 2 * n.width, T(1));
    }
    if (n.count_offset >= 0) counts_[size_t(n.count_offset)] = 0;
  }
}

template <class T>
bool Network<T>::uses_batch_stats(bool training) const {
  return std::any_of(ops_.begin(), ops_.end(), [&](const Op& op) {
    return op.kind == OpKind::BatchNorm && (training || !op.track_running_stats);
  });
}

template <class T>
void Network<T>::check_batch_stats(int64_t B, bool training) const {
  if (B < 2 && uses_batch_stats(training))
    throw std::invalid_argument(
        "BatchNorm1d expects more than 1 value per channel when normalizing with batch "
        "statistics (training, or track_running_stats=False), got a batch of " +
        std::to_string(B) + " sample");
}

template <class T>
void Network<T>::reserve(int64_t B) {
  if (B > batch_cap_) {
    // Every buffer is allocated before anything changes (strong guarantee): a bad_alloc leaves
    // the network as it was (capacity, buffers, last batch), and a smaller batch still runs in
    // the old buffers. The new ones are not filled (Workspace).
    Workspace<T> acts(size_t(table_.output_offset.back() * B));
    Workspace<T> masks(size_t(table_.mask_offset.back() * B));
    Workspace<T> grad_a(size_t(table_.max_width * B)), grad_b(size_t(table_.max_width * B));
    Workspace<T> stats(size_t(table_.stats_per_row * B + table_.stats_fixed));
    acts_.swap(acts);
    masks_.swap(masks);
    grad_a_.swap(grad_a);
    grad_b_.swap(grad_b);
    stats_.swap(stats);
    batch_cap_ = B;
  }
  batch_ = B;
}

template <class T>
const T* Network<T>::forward(const T* x, int64_t B, bool training) {
  return forward_pass(x, B, training, true);
}

template <class T>
const T* Network<T>::forward_pass(const T* x, int64_t B, bool training, bool update_running) {
  check_batch_stats(B, training);
  reserve(B);
  input_ = x;
  training_ = training;
  const T* p = params_.data();
  for (const Op& op : ops_) {
    check_interrupt();
    const T* in = input_of(op);
    T* out = rows(op.output);
    const int64_t n = B * op.out;
    switch (op.kind) {
      case OpKind::Dense:
        dense_forward(out, in, p + op.weight, bias(op), B, op.in, op.out);
        break;
      case OpKind::DenseReLU:
        dense_relu_forward(rows(op.pre), out, in, p + op.weight, bias(op), B, op.in, op.out,
                           T(op.param));
        break;
      case OpKind::Activation: activation_forward(out, in, n, op.activation, T(op.param), T(op.threshold));
        break;
      case OpKind::Softmax: softmax_forward(out, in, B, op.out); break;
      case OpKind::Dropout:
        if (training && op.param > 0 && window_total_ > 0) {
          check_interrupt();
          dropout_mask_part(mask(op), rng_, window_first_ * op.out, n, window_total_ * op.out,
                            op.param);
        } else if (training && op.param > 0) {
          // In pieces with an interruption poll between them (a full batch's mask takes tens
          // of milliseconds); even lengths keep each random number's pair of draws together,
          // so the bits are those of one call.
          for (int64_t lo = 0; lo < n; lo += kMaskPiece) {
            check_interrupt();
            dropout_mask(mask(op) + lo, rng_, std::min(kMaskPiece, n - lo), op.param);
          }
        } else {
          std::fill(mask(op), mask(op) + n, T(1));
        }
        dropout_forward(out, in, mask(op), n);
        break;
      case OpKind::BatchNorm: {
        const int64_t C = op.out;
        T* mean = saved_stats(op);
        T* rstd = mean + C;
        if (training || !op.track_running_stats) {
          batchnorm_statistics(mean, rstd, rstd + C, in, B, C, op.eps);
        } else {
          const T* running = buffers_.data() + norm(op).buffer_offset;
          std::copy(running, running + C, mean);
          batchnorm_running_rstd(rstd, running + C, C, op.eps);
        }
        batchnorm_forward(out, in, mean, rstd, weight(op), bias(op), B, C);
        break;
      }
      case OpKind::LayerNorm: {
        T* mean = saved_stats(op);
        layernorm_forward(out, mean, mean + batch_cap_, in, weight(op), bias(op), B, op.out,
                          op.eps);
        break;
      }
      case OpKind::Rescale: {
        const T* shift = buffers_.data() + norm(op).buffer_offset;
        rescale_forward(out, in, shift, shift + op.out, B, op.out);
        break;
      }
    }
  }
  if (training && update_running) update_running_stats();
  return rows(ops_.back().output);
}

template <class T>
void Network<T>::update_running_stats() {
  for (const Op& op : ops_) {
    if (op.kind != OpKind::BatchNorm || !op.track_running_stats) continue;
    const NormSizes& n = norm(op);
    const int64_t batches = ++counts_[size_t(n.count_offset)];
    const double factor = op.momentum < 0 ? 1.0 / double(batches) : op.momentum;
    T* running = buffers_.data() + n.buffer_offset;
    const T* mean = saved_stats(op);
    batchnorm_update_running(running, running + op.out, mean, mean + 2 * op.out, op.out, factor);
  }
}

template <class T>
void Network<T>::backward(const T* dy, bool accumulate) {
  std::copy(dy, dy + batch_ * out_features(), grad_a_.data());
  backward_from_loss(accumulate);
}

template <class T>
double Network<T>::loss(const LossSpec& spec, Target<T> y) {
  const T* out = layer_out(layers_.size() - 1);
  const int64_t C = out_features();
  RowWeights rw = RowWeights::over(y.weights, batch_);
  rw.weigh_grad = !float64_sums_;  // else the backward's sums apply them
  weight_sum_ = rw.sum(batch_);
  return batch_loss(grad_a_.data(), out, y.labels, y.values, batch_, C, spec, rw, loss_weight_);
}

template <class T>
double Network<T>::add_l2(const LossSpec& spec) {
  if (spec.l2 <= 0) return 0.0;
  const double coef = spec.l2 / weight_sum_;
  double squares = 0;
  for (const DenseSizes& d : table_.dense) {
    const T* w = params_.data() + d.weight_offset;
    T* g = grads_.data() + d.weight_offset;
    squares += sum_squares(w, d.in * d.out);
    const T c = T(coef);
    for_chunks(d.in * d.out, 1, [=](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) g[i] += c * w[i];
    });
  }
  return 0.5 * coef * squares;
}

template <class T>
double Network<T>::gradient(const T* x, Target<T> y, int64_t B, const LossSpec& spec,
                            bool training) {
  forward(x, B, training);
  const double value = loss(spec, y);
  backward_from_loss(false, false, y.weights);
  return value + add_l2(spec);
}

template <class T>
void Network<T>::backward_from_loss(bool accumulate, bool defer_weight_grads,
                                    const double* weights) {
  const int64_t B = batch_;
  T* d = grad_a_.data();      // gradient w.r.t. the output of op i
  T* spare = grad_b_.data();  // receives the gradient w.r.t. its input (Dense only)
  const bool f64 = float64_sums_ && !defer_weight_grads;
  if (f64 && sum_dy_.size() < size_t(B * table_.max_width)) {
    sum_dy_.resize(size_t(B * table_.max_width));
    sum_x_.resize(size_t(B * table_.max_width));
    int64_t largest = 0;
    for (const DenseSizes& ds : table_.dense) largest = std::max(largest, ds.in * ds.out);
    sum_dw_.resize(size_t(largest));
  }
  for (size_t i = ops_.size(); i-- > first_param_op_;) {
    check_interrupt();
    const Op& op = ops_[i];
    const T* in = input_of(op);
    const int64_t n = B * op.out;
    switch (op.kind) {
      case OpKind::DenseReLU:
        // The ReLU/LeakyReLU backward (masking d) and the bias gradient in one pass, then the
        // Dense layer's backward without its bias.
        act_backward_colsum(op.bias < 0 || f64 ? nullptr : grads_.data() + op.bias, d,
                            rows(op.pre), B, op.out, T(op.param), accumulate);
        [[fallthrough]];
      case OpKind::Dense: {
        T* dx = i == first_param_op_ ? nullptr : spare;
        T* db = op.bias >= 0 && (op.kind == OpKind::Dense || f64) ? grads_.data() + op.bias
                                                                  : nullptr;
        if (defer_weight_grads) std::copy(d, d + op.out, kept_dy(table_.dense[size_t(op.dense)]));
        if (f64) {
          dense_weight_grads_f64(grads_.data() + op.weight, db, d, in, weights, B, op.in, op.out,
                                 accumulate, sum_dy_.data(), sum_x_.data(), sum_dw_.data());
          dense_backward(dx, static_cast<T*>(nullptr), static_cast<T*>(nullptr), d, in,
                         params_.data() + op.weight, B, op.in, op.out, accumulate);
        } else {
          dense_backward(dx, defer_weight_grads ? nullptr : grads_.data() + op.weight, db, d, in,
                         params_.data() + op.weight, B, op.in, op.out, accumulate);
        }
        std::swap(d, spare);
        break;
      }
      case OpKind::Activation:
        activation_backward(d, d, in, rows(op.output), n, op.activation, T(op.param),
                            T(op.threshold));
        break;
      case OpKind::Softmax: softmax_backward(d, d, rows(op.output), B, op.out); break;
      case OpKind::Dropout: dropout_forward(d, d, mask(op), n); break;
      case OpKind::BatchNorm: {  // dx in place over d
        const T* mean = saved_stats(op);
        batchnorm_backward(i == first_param_op_ ? nullptr : d, grad_or_null(op.weight),
                           grad_or_null(op.bias), d, in, mean, mean + op.out, weight(op), B,
                           op.out, training_ || !op.track_running_stats, accumulate);
        break;
      }
      case OpKind::LayerNorm: {
        const T* mean = saved_stats(op);
        layernorm_backward(i == first_param_op_ ? nullptr : d, grad_or_null(op.weight),
                           grad_or_null(op.bias), d, in, mean, mean + batch_cap_, weight(op), B,
                           op.out, accumulate);
        break;
      }
      case OpKind::Rescale:
        rescale_backward(d, d, buffers_.data() + norm(op).buffer_offset + op.out, B, op.out);
        break;
    }
  }
}

template <class T>
double Network<T>::norm_grad_sq() {
  double total = 0;
  for (const NormSizes& n : table_.norms) {
    // weight and bias are adjacent: one range from the first present
    const int64_t first = n.weight_offset >= 0 ? n.weight_offset : n.bias_offset;
    const int64_t count = (n.weight_offset >= 0) + (n.bias_offset >= 0);
    if (count > 0) total += sum_squares(grads_.data() + first, count * n.width);
  }
  return total;
}

template <class T>
double Network<T>::measure_grads() {
  double total = 0;
  for (size_t i = 0; i < table_.dense.size(); ++i) {
    const DenseSizes& d = table_.dense[i];
    const int64_t n = d.in * d.out + (d.bias_offset >= 0 ? d.out : 0);  // bias follows the weight
    grad_sq_[i] = sum_squares(grads_.data() + d.weight_offset, n);
    total += grad_sq_[i];
  }
  return total + norm_grad_sq();
}

template <class T>
void Network<T>::clip_grads(double total_sq, double max_norm) {
  // torch's rule: scale by max_norm / (norm + 1e-6) clamped to 1, so a norm equal to max_norm
  // (or up to 1e-6 below it) is still scaled down a little.
  const double factor = max_norm / (std::sqrt(total_sq) + 1e-6);
  if (factor < 1) scale(grads_.data(), T(factor), num_params());
}

template <class T>
double Network<T>::outer_grad_sq() {
  double total = 0;
  for (size_t i = 0; i < table_.dense.size(); ++i) {
    const DenseSizes& d = table_.dense[i];
    const double x_sq = sum_squares(layer_in(size_t(d.layer)), d.in);
    grad_sq_[i] = sum_squares(kept_dy(d), d.out) * (x_sq + (d.bias_offset >= 0 ? 1.0 : 0.0));
    total += grad_sq_[i];
  }
  return total + norm_grad_sq();
}

template <class T>
void Network<T>::write_weight_grads() {
  for (const DenseSizes& d : table_.dense)
    outer_product(grads_.data() + d.weight_offset, kept_dy(d), layer_in(size_t(d.layer)), d.out,
                  d.in);
}

template <class T>
void Network<T>::fused_update(Optimizer<T>& opt) {
  T* p = params_.data();
  T* g = grads_.data();
  opt.begin_step();
  int64_t done = 0;  // every parameter below this flat index is updated
  for (const DenseSizes& d : table_.dense) {
    const T* x = layer_in(size_t(d.layer));
    const T* dy = kept_dy(d);
    opt.update(p, g, done, d.weight_offset);
    // The forward pass's row tiles (the same rows on the same core), each in blocks of whole
    // rows of ~16 KiB per buffer: the written g is still in L1 when the update reads it.
    const int tiles = row_tiles(d.out, d.in);
    const int64_t block = std::max<int64_t>(1, 4096 / d.in);  // rows
    auto tile = [&](int64_t t) {
      int64_t lo, hi;
      tile_range(t, tiles, d.out, &lo, &hi);
      for (int64_t r = lo; r < hi; r += block) {
        const int64_t n = std::min(block, hi - r);
        const int64_t w = d.weight_offset + r * d.in;
        outer_product(g + w, dy + r, x, n, d.in);
        opt.update(p, g, w, w + n * d.in);
      }
    };
    run_tasks(tiles, tile);
    done = d.weight_offset + d.out * d.in;
  }
  opt.update(p, g, done, num_params());
}

template <class T>
StepStatus Network<T>::train_step(const T* x, Target<T> y, int64_t B, const LossSpec& spec,
                                  Optimizer<T>& opt, double clip_norm, double* loss_out) {
  // Batch 1: the weight gradients are outer products, consumed by the update as they are made
  // (clipping needs the exact norm of the written gradient first, and the l2 penalty and the
  // float64 sums the written gradient, so they take the plain path).
  const bool fused = B == 1 && clip_norm <= 0 && spec.l2 <= 0 && !float64_sums_;
  const Rng::State rng_before = rng_.state();
  double value = 0;
  try {  // interruptible until the update: nothing but the workspace has changed before it
    forward_pass(x, B, true, false);
    value = loss(spec, y);
    *loss_out = value;
    if (!std::isfinite(value)) return StepStatus::NonFiniteLoss;
    backward_from_loss(false, fused, y.weights);
    check_interrupt();
  } catch (const Interrupted&) {
    rng_.set_state(rng_before);  // the dropout masks of the abandoned step are drawn again
    return StepStatus::Interrupted;
  }
  *loss_out = value += add_l2(spec);
  // The squared norms double as the finiteness check: a NaN or infinity anywhere makes the sum
  // non-finite, and a sum below T's maximum keeps every g*g finite in T for the optimizer.
  const double total_sq = fused ? outer_grad_sq() : measure_grads();
  if (!(total_sq <= double(std::numeric_limits<T>::max()))) {
    if (fused) write_weight_grads();  // the grads of a refused step are there to inspect
    return StepStatus::NonFiniteGradient;
  }
  if (clip_norm > 0) clip_grads(total_sq, clip_norm);
  if (fused) {
    fused_update(opt);
  } else {
    opt.step(params_.data(), grads_.data());
  }
  update_running_stats();  // a refused step leaves them too
  return StepStatus::Ok;
}

namespace {
// CrossEntropy's accuracy: rows of out (B, C) whose largest value sits at the label's index
// (or at the largest class probability's); rows with ignore_index are not counted (scored).
template <class T>
int64_t count_correct(const T* out, Target<T> y, int64_t B, int64_t C, int64_t ignore_index,
                      int64_t* scored) {
  int64_t correct = 0;
  for (int64_t r = 0; r < B; ++r) {
    const T* o = out + r * C;
    int64_t label;
    if (y.labels) {
      label = y.labels[r];
      if (label == ignore_index) continue;
    } else {
      label = std::max_element(y.values + r * C, y.values + (r + 1) * C) - (y.values + r * C);
    }
    correct += std::max_element(o, o + C) - o == label;
    *scored += 1;
  }
  return correct;
}
}  // namespace

template <class T>
StepStatus Network<T>::parallel_step(const T* x, Target<T> y, int64_t b, int64_t first,
                                     int64_t B, double normalizer, const LossSpec& spec,
                                     Optimizer<T>& opt, double clip_norm,
                                     const Parallel<T>& parallel, double* loss_out,
                                     double* sum_seconds) {
  // This process's share of the gradient of the global batch's mean loss: the gradient of the
  // mean over its b rows (over their weight), scaled by that weight over the global batch's
  // (b / B without weights) before backpropagation; the sum adds the shares. Every process
  // reaches the sum, whatever happened to its share.
  T* control = grads_.data() + num_params();
  const Rng::State rng_before = rng_.state();
  double value = 0;
  bool interrupted = false, finite = true;
  try {
    check_interrupt();
    if (b > 0) {
      window_first_ = first;
      window_total_ = B;
      forward(x, b, true);
      window_first_ = window_total_ = 0;
      value = loss(spec, y);
      finite = std::isfinite(value);
      if (finite) {
        const double share = normalizer > 0 ? loss_weight_ / normalizer : 0.0;
        scale(grad_a_.data(), T(share), b * out_features());
        backward_from_loss(false, false, y.weights);
      }
    } else {
      loss_weight_ = 0;
      skip_dropout(B);
    }
  } catch (const Interrupted&) {
    window_first_ = window_total_ = 0;
    interrupted = true;
  }
  *loss_out = value;
  if (b == 0 || !finite || interrupted) std::fill(grads_.data(), control, T(0));
  control[0] = T(interrupted ? 1 : 0);
  control[1] = T(finite ? 0 : 1);
  const auto started = std::chrono::steady_clock::now();
  const bool summed = parallel.sum(grads_.data(), reduce_size());
  *sum_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!summed || control[0] > 0) {  // abandoned by every process, as train_step abandons
    rng_.set_state(rng_before);
    return StepStatus::Interrupted;
  }
  if (control[1] > 0) return StepStatus::NonFiniteLoss;  // on some process: none updates
  const double total_sq = measure_grads();
  if (!(total_sq <= double(std::numeric_limits<T>::max()))) return StepStatus::NonFiniteGradient;
  if (clip_norm > 0) clip_grads(total_sq, clip_norm);
  opt.step(params_.data(), grads_.data());
  return StepStatus::Ok;
}

template <class T>
void Network<T>::skip_dropout(int64_t B) {
  for (const Op& op : ops_) {
    if (op.kind == OpKind::Dropout && op.param > 0) {
      for (int64_t i = 0; i < B * op.out; i += 2) rng_.next();  // two elements per draw
    }
  }
}

namespace {
// Rows [lo, lo + b) of the epoch's order from `rows`: gathered into buffer (shuffled), or in
// place when they lie in one part of type V, else copied into buffer.
template <class V>
const V* rows_of(const Rows& rows, V* buffer, bool gather, const std::vector<int64_t>& order,
                 int64_t lo, int64_t b) {
  if (gather) {
    rows.gather(buffer, order.data() + lo, b);
    return buffer;
  }
  if (const V* in_place = rows.contiguous<V>(lo, b)) return in_place;
  rows.copy(buffer, lo, b);
  return buffer;
}
}  // namespace

template <class T>
EpochStats Network<T>::train_epoch(const Rows& X, const Rows& y, bool labels, int64_t batch_size,
                                   bool shuffle, const LossSpec& spec, Optimizer<T>& opt,
                                   double clip_norm,
                                   const std::function<void(const EpochStats&)>& progress,
                                   const Parallel<T>* parallel, const double* weights,
                                   const int64_t* order) {
  if (parallel && spec.l2 > 0)
    throw std::invalid_argument("train_epoch: data-parallel training takes no l2 penalty");
  EpochStats stats;
  const Rng::State rng_before = rng_.state();
  stats.grad_norms.assign(table_.dense.size(), 0.0);
  const int64_t N = X.size(), IN = in_features(), C = out_features();
  const int64_t bs = std::min(batch_size, N);
  const int64_t rank = parallel ? parallel->rank : 0, size = parallel ? parallel->size : 1;
  if (uses_batch_stats(true)) {
    // Each process would normalize with its share's statistics, not the global batch's.
    if (size > 1)
      throw std::invalid_argument(
          "BatchNorm1d cannot train data-parallel (each process would normalize with the "
          "statistics of its share of the batch): train it in one process");
    // A last batch of 1 would fail in the middle of the epoch: refuse before the first step.
    if (bs == 1 || N % bs == 1)
      throw std::invalid_argument(
          "BatchNorm1d needs more than 1 sample per batch in training, but batches of " +
          std::to_string(bs) + " over " + std::to_string(N) + " samples " +
          (bs == 1 ? std::string("have 1 each") : "leave a last batch of 1") +
          ": choose another batch size");
  }
  order_.resize(size_t(N));
  if (order) {
    std::copy(order, order + N, order_.begin());
    shuffle = true;  // gathered in that order
  } else {
    for (int64_t i = 0; i < N; ++i) order_[i] = i;
  }
  if (shuffle && !order) {  // Fisher-Yates with the network's RNG
    for (int64_t i = N - 1; i > 0; --i) std::swap(order_[i], order_[rng_.below(uint64_t(i + 1))]);
  }
  // Batches are gathered when shuffled; contiguous rows are read in place when they lie in one
  // part of the network's type (one full batch is X itself: a mean loss ignores order).
  const bool gather = shuffle && N > bs;
  const int64_t share = (bs + size - 1) / size;  // most rows of a batch one process gets
  batch_x_.resize(size_t(share * IN));
  if (labels) batch_labels_.resize(size_t(share));
  else batch_y_.resize(size_t(share * C));
  if (weights && gather) batch_w_.resize(size_t(bs));
  // Data-parallel: each process needs the global batch's normalizer, from all its labels and
  // weights (without either it is the batch's rows).
  const bool global_norm = parallel && (labels || weights);
  if (global_norm && labels) global_labels_.resize(size_t(bs));
  if (global_norm && weights) global_w_.resize(size_t(bs));
  // The epoch's loss: the batches' values weighted by their normalizers (their rows, or their
  // sample x class weights), i.e. the weighted mean over the epoch's rows.
  double loss_sum = 0, weight_sum = 0;
  auto mean_loss = [&] { return weight_sum > 0 ? loss_sum / weight_sum : 0.0; };
  for (int64_t start = 0; start < N; start += bs) {
    if (!parallel && interrupt_requested()) {  // data-parallel: decided in the step
      stats.status = StepStatus::Interrupted;
      break;
    }
    const int64_t B = std::min(bs, N - start);
    const int64_t lo = start + B * rank / size, b = start + B * (rank + 1) / size - lo;
    Target<T> yb;
    if (labels) {
      yb.labels = rows_of(y, batch_labels_.data(), gather, order_, lo, b);
      // Validated before, in chunks; checked again so that no label reads out of bounds.
      if (std::any_of(yb.labels, yb.labels + b, [C, &spec](int64_t l) {
            return (l < 0 || l >= C) && l != spec.ignore_index;
          }))
        throw std::invalid_argument("train_epoch: a label is outside [0, outputs)");
    } else {
      yb.values = rows_of(y, batch_y_.data(), gather, order_, lo, b);
    }
    if (weights && gather) {
      for (int64_t r = 0; r < b; ++r) batch_w_[size_t(r)] = weights[order_[size_t(lo + r)]];
      yb.weights = batch_w_.data();
    } else if (weights) {
      yb.weights = weights + lo;
    }
    const T* xb = rows_of(X, batch_x_.data(), gather, order_, lo, b);
    double normalizer = double(B);
    if (global_norm) {
      RowWeights whole;
      const int64_t* whole_labels = nullptr;
      if (labels) whole_labels = rows_of(y, global_labels_.data(), gather, order_, start, B);
      if (weights) {
        for (int64_t r = 0; r < B; ++r)
          global_w_[size_t(r)] = weights[gather ? order_[size_t(start + r)] : start + r];
        whole = RowWeights::over(global_w_.data(), B);
      }
      normalizer = loss_normalizer(whole_labels, B, spec, whole);
    }
    double value = 0;
    const StepStatus status =
        parallel ? parallel_step(xb, yb, b, lo - start, B, normalizer, spec, opt, clip_norm,
                                 *parallel, &value, &stats.sum_seconds)
                 : train_step(xb, yb, B, spec, opt, clip_norm, &value);
    if (status != StepStatus::Ok) {
      stats.status = status;
      if (status != StepStatus::Interrupted) stats.bad_loss = value;
      break;
    }
    loss_sum += value * loss_weight_;
    weight_sum += loss_weight_;
    if (spec.kind == LossKind::CrossEntropy && b > 0)
      stats.correct += count_correct(layer_out(layers_.size() - 1), yb, b, C, spec.ignore_index,
                                     &stats.scored);
    stats.samples += b;
    stats.steps += 1;
    for (size_t i = 0; i < grad_sq_.size(); ++i) stats.grad_norms[i] += std::sqrt(grad_sq_[i]);
    if (progress) {
      stats.loss = mean_loss();
      stats.step_loss = value;
      progress(stats);
    }
  }
  // Interrupted before its first step: as it started (the shuffle drawn again next time).
  if (stats.status == StepStatus::Interrupted && stats.steps == 0) rng_.set_state(rng_before);
  if (stats.steps > 0) {
    stats.loss = mean_loss();
    stats.loss_weight = weight_sum;
    for (double& g : stats.grad_norms) g /= double(stats.steps);
  }
  return stats;
}

template <class T>
EpochStats Network<T>::train_epoch(const T* X, Target<T> y, int64_t N, int64_t batch_size,
                                   bool shuffle, const LossSpec& spec, Optimizer<T>& opt,
                                   double clip_norm,
                                   const std::function<void(const EpochStats&)>& progress,
                                   const int64_t* order) {
  const bool labels = y.labels != nullptr;
  const Rows targets = labels ? Rows::of(y.labels, N, 1) : Rows::of(y.values, N, out_features());
  return train_epoch(Rows::of(X, N, in_features()), targets, labels, batch_size, shuffle, spec,
                     opt, clip_norm, progress, nullptr, y.weights, order);
}

template <class T>
void Network<T>::infer(T* out, const T* x, int64_t N) const {
  // Rows in chunks through two scratch buffers; elementwise and normalization operations work
  // in place. A BatchNorm without running statistics normalizes with the statistics of all N
  // rows: one chunk then.
  check_batch_stats(N, false);
  const int64_t chunk = uses_batch_stats(false) ? N : std::min<int64_t>(N, 256);
  std::vector<T> a(size_t(chunk * table_.max_width)), b(size_t(chunk * table_.max_width));
  // BatchNorm's mean, rstd and variance, or LayerNorm's mean and rstd per row
  std::vector<T> stat(size_t(std::max(3 * table_.max_width, 2 * chunk)));
  const int64_t IN = in_features(), OUT = out_features();
  const T* p = params_.data();
  for (int64_t start = 0; start < N; start += chunk) {
    const int64_t B = std::min(chunk, N - start);
    std::copy(x + start * IN, x + (start + B) * IN, a.data());
    T* cur = a.data();
    T* spare = b.data();
    for (const Op& op : ops_) {
      check_interrupt();
      switch (op.kind) {
        case OpKind::Dense:
          dense_forward(spare, cur, p + op.weight, bias(op), B, op.in, op.out);
          std::swap(cur, spare);
          break;
        case OpKind::DenseReLU:  // the activation in place: z is not needed
          dense_relu_forward(spare, spare, cur, p + op.weight, bias(op), B, op.in, op.out,
                             T(op.param));
          std::swap(cur, spare);
          break;
        case OpKind::Activation:
          activation_forward(cur, cur, B * op.out, op.activation, T(op.param),
                             T(op.threshold));
          break;
        case OpKind::Softmax: softmax_forward(cur, cur, B, op.out); break;
        case OpKind::Dropout: break;  // identity at inference
        case OpKind::BatchNorm: {
          const int64_t C = op.out;
          T* rstd = stat.data() + C;
          const T* mean = stat.data();
          if (op.track_running_stats) {
            const T* running = buffers_.data() + norm(op).buffer_offset;
            mean = running;
            batchnorm_running_rstd(rstd, running + C, C, op.eps);
          } else {
            batchnorm_statistics(stat.data(), rstd, rstd + C, cur, B, C, op.eps);
          }
          batchnorm_forward(cur, cur, mean, rstd, weight(op), bias(op), B, C);
          break;
        }
        case OpKind::LayerNorm:
          layernorm_forward(cur, stat.data(), stat.data() + B, cur, weight(op), bias(op), B,
                            op.out, op.eps);
          break;
        case OpKind::Rescale: {
          const T* shift = buffers_.data() + norm(op).buffer_offset;
          rescale_forward(cur, cur, shift, shift + op.out, B, op.out);
          break;
        }
      }
    }
    std::copy(cur, cur + B * OUT, out + start * OUT);
  }
}

template class Network<float>;
template class Network<double>;

}  // namespace steepest
