#include "steepest/network.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace steepest {

template <class T>
Network<T>::Network(std::vector<LayerSpec> layers, uint64_t seed)
    : layers_(std::move(layers)), rng_(seed) {
  if (layers_.empty()) throw std::invalid_argument("a network needs at least one layer");
  // Size table: each Dense layer owns weight (out * in) then bias (out) in the flat buffers.
  int64_t offset = 0, width_sum = 0, mask_sum = 0, kept = 0;
  for (size_t k = 0; k < layers_.size(); ++k) {
    LayerSpec& l = layers_[k];
    if (l.in <= 0 || l.out <= 0) throw std::invalid_argument("layer widths must be positive");
    if (k > 0 && l.in != layers_[k - 1].out)
      throw std::invalid_argument("layer " + std::to_string(k) + " expects " +
                                  std::to_string(l.in) + " features but receives " +
                                  std::to_string(layers_[k - 1].out));
    if (l.kind == LayerKind::Dense) {
      if (dense_.empty()) first_dense_ = k;
      dense_.push_back(k);
      kept_dy_offset_.push_back(kept);
      kept += l.out;
      l.weight_offset = offset;
      offset += l.out * l.in;
      l.bias_offset = l.bias ? offset : -1;
      if (l.bias) offset += l.out;
    } else if (l.in != l.out) {
      throw std::invalid_argument("elementwise layers keep their width");
    }
    max_width_ = std::max({max_width_, l.in, l.out});
    act_offset_.push_back(width_sum);
    width_sum += l.out;
    mask_offset_.push_back(l.kind == LayerKind::Dropout ? mask_sum : -1);
    if (l.kind == LayerKind::Dropout) mask_sum += l.out;
  }
  act_offset_.push_back(width_sum);  // total, in rows-of-width units
  mask_offset_.push_back(mask_sum);
  kept_dy_.assign(size_t(kept), T(0));
  params_.assign(size_t(offset), T(0));
  grads_.assign(size_t(offset), T(0));
  grad_sq_.assign(dense_.size(), 0.0);
  initialize();
}

template <class T>
void Network<T>::initialize() {
  for (size_t k : dense_) {
    const LayerSpec& l = layers_[k];
    const double fan_in = double(l.in), fan_out = double(l.out);
    T* w = params_.data() + l.weight_offset;
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
    for (int64_t i = 0; i < nw; ++i)
      w[i] = bound > 0 ? T(bound * (2 * rng_.uniform() - 1)) : T(stddev * rng_.normal());
    if (l.bias) {
      // torch.nn.Linear draws its bias too; every other initializer starts it at zero.
      T* b = params_.data() + l.bias_offset;
      const double b_bound = l.init == Init::TorchDefault ? 1.0 / std::sqrt(fan_in) : 0.0;
      for (int64_t i = 0; i < l.out; ++i) b[i] = T(b_bound * (2 * rng_.uniform() - 1));
    }
  }
}

template <class T>
void Network<T>::reserve(int64_t B) {
  batch_ = B;
  if (B <= batch_cap_) return;
  batch_cap_ = B;
  acts_.assign(size_t(act_offset_.back() * B), T(0));
  masks_.assign(size_t(mask_offset_.back() * B), T(0));
  grad_a_.assign(size_t(max_width_ * B), T(0));
  grad_b_.assign(size_t(max_width_ * B), T(0));
}

template <class T>
void Network<T>::draw_mask(T* mask, int64_t n, double p) {
  // keep with probability 1 - p: 32 random bits per element, two per draw.
  const auto threshold = uint64_t(p * 4294967296.0);
  const T keep = T(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; i += 2) {
    const uint64_t r = rng_.next();
    mask[i] = (r & 0xFFFFFFFFull) >= threshold ? keep : T(0);
    if (i + 1 < n) mask[i + 1] = (r >> 32) >= threshold ? keep : T(0);
  }
}

template <class T>
const T* Network<T>::forward(const T* x, int64_t B, bool training) {
  reserve(B);
  input_ = x;
  for (size_t k = 0; k < layers_.size(); ++k) {
    const LayerSpec& l = layers_[k];
    const T* in = input_of(k);
    T* out = output(k);
    const int64_t n = B * l.out;
    switch (l.kind) {
      case LayerKind::Dense:
        if (fuses_relu(k)) {  // bias and the ReLU/LeakyReLU after it in one pass
          dense_forward(out, in, params_.data() + l.weight_offset,
                        l.bias ? params_.data() + l.bias_offset : nullptr, B, l.in, l.out,
                        output(k + 1), T(relu_slope(k + 1)));
          ++k;
        } else {
          dense_forward(out, in, params_.data() + l.weight_offset,
                        l.bias ? params_.data() + l.bias_offset : nullptr, B, l.in, l.out);
        }
        break;
      case LayerKind::Activation: activation_forward(out, in, n, l.activation, T(l.param)); break;
      case LayerKind::Softmax: softmax_forward(out, in, B, l.out); break;
      case LayerKind::Dropout: {
        T* mask = masks_.data() + mask_offset_[k] * batch_cap_;
        if (training && l.param > 0) {
          draw_mask(mask, n, l.param);
        } else {
          std::fill(mask, mask + n, T(1));
        }
        dropout_forward(out, in, mask, n);
        break;
      }
    }
  }
  return output(layers_.size() - 1);
}

template <class T>
void Network<T>::backward(const T* dy, bool accumulate) {
  std::copy(dy, dy + batch_ * out_features(), grad_a_.data());
  backward_from_loss(accumulate);
}

template <class T>
double Network<T>::loss(const LossSpec& spec, Target<T> y) {
  const T* out = output(layers_.size() - 1);
  const int64_t C = out_features();
  if (spec.kind == LossKind::CrossEntropy)
    return cross_entropy_loss(grad_a_.data(), out, y.labels, batch_, C, spec.label_smoothing);
  return regression_loss(grad_a_.data(), out, y.values, batch_, C, spec);
}

template <class T>
void Network<T>::backward_from_loss(bool accumulate, bool defer_weight_grads) {
  if (dense_.empty()) return;
  const int64_t B = batch_;
  size_t dense_index = dense_.size();  // of layer k, counted down as the loop meets them
  T* d = grad_a_.data();      // gradient w.r.t. the output of layer k
  T* spare = grad_b_.data();  // receives the gradient w.r.t. its input (Dense only)
  bool db_done = false;       // the bias gradient of the Dense layer below is already summed
  for (size_t k = layers_.size(); k-- > first_dense_;) {
    const LayerSpec& l = layers_[k];
    const T* in = input_of(k);
    const T* out = output(k);
    switch (l.kind) {
      case LayerKind::Dense: {
        T* dx = k == first_dense_ ? nullptr : spare;
        --dense_index;
        if (defer_weight_grads) std::copy(d, d + l.out, kept_dy(dense_index));
        dense_backward(dx, defer_weight_grads ? nullptr : grads_.data() + l.weight_offset,
                       l.bias && !db_done ? grads_.data() + l.bias_offset : nullptr, d, in,
                       params_.data() + l.weight_offset, B, l.in, l.out, accumulate);
        db_done = false;
        std::swap(d, spare);
        break;
      }
      case LayerKind::Activation:
        if (k > first_dense_ && fuses_relu(k - 1)) {
          // ReLU/LeakyReLU backward and the bias gradient of the Dense below, one pass.
          const LayerSpec& below = layers_[k - 1];
          act_backward_colsum(below.bias ? grads_.data() + below.bias_offset : nullptr, d, in,
                              B, l.out, T(relu_slope(k)), accumulate);
          db_done = below.bias;
        } else {
          activation_backward(d, d, in, out, B * l.out, l.activation, T(l.param));
        }
        break;
      case LayerKind::Softmax: softmax_backward(d, d, out, B, l.out); break;
      case LayerKind::Dropout: {
        const T* mask = masks_.data() + mask_offset_[k] * batch_cap_;
        dropout_forward(d, d, mask, B * l.out);
        break;
      }
    }
  }
}

template <class T>
double Network<T>::measure_grads() {
  double total = 0;
  for (size_t i = 0; i < dense_.size(); ++i) {
    const LayerSpec& l = layers_[dense_[i]];
    const int64_t n = l.in * l.out + (l.bias ? l.out : 0);  // bias follows the weight
    grad_sq_[i] = sum_squares(grads_.data() + l.weight_offset, n);
    total += grad_sq_[i];
  }
  return total;
}

template <class T>
void Network<T>::clip_grads(double total_sq, double max_norm) {
  const double norm = std::sqrt(total_sq);
  if (norm > max_norm) scale(grads_.data(), T(max_norm / (norm + 1e-6)), num_params());
}

template <class T>
double Network<T>::outer_grad_sq() {
  double total = 0;
  for (size_t i = 0; i < dense_.size(); ++i) {
    const LayerSpec& l = layers_[dense_[i]];
    const double x_sq = sum_squares(input_of(dense_[i]), l.in);
    grad_sq_[i] = sum_squares(kept_dy(i), l.out) * (x_sq + (l.bias ? 1.0 : 0.0));
    total += grad_sq_[i];
  }
  return total;
}

template <class T>
void Network<T>::write_weight_grads() {
  for (size_t i = 0; i < dense_.size(); ++i) {
    const LayerSpec& l = layers_[dense_[i]];
    outer_product(grads_.data() + l.weight_offset, kept_dy(i), input_of(dense_[i]), l.out, l.in);
  }
}

template <class T>
void Network<T>::fused_update(Optimizer<T>& opt) {
  T* p = params_.data();
  T* g = grads_.data();
  opt.begin_step();
  int64_t done = 0;  // every parameter below this flat index is updated
  for (size_t i = 0; i < dense_.size(); ++i) {
    const LayerSpec& l = layers_[dense_[i]];
    const T* x = input_of(dense_[i]);
    const T* dy = kept_dy(i);
    opt.update(p, g, done, l.weight_offset);
    // The forward pass's row tiles (the same rows on the same core), each in blocks of whole
    // rows of ~16 KiB per buffer: the written g is still in L1 when the update reads it.
    const int tiles = row_tiles(l.out, l.in);
    const int64_t rows = std::max<int64_t>(1, 4096 / l.in);
    auto tile = [&](int64_t t) {
      int64_t lo, hi;
      tile_range(t, tiles, l.out, &lo, &hi);
      for (int64_t r = lo; r < hi; r += rows) {
        const int64_t n = std::min(rows, hi - r);
        const int64_t w = l.weight_offset + r * l.in;
        outer_product(g + w, dy + r, x, n, l.in);
        opt.update(p, g, w, w + n * l.in);
      }
    };
    run_tasks(tiles, tile);
    done = l.weight_offset + l.out * l.in;
  }
  opt.update(p, g, done, num_params());
}

template <class T>
StepStatus Network<T>::train_step(const T* x, Target<T> y, int64_t B, const LossSpec& spec,
                                  Optimizer<T>& opt, double clip_norm, double* loss_out) {
  forward(x, B, true);
  const double value = loss(spec, y);
  *loss_out = value;
  if (!std::isfinite(value)) return StepStatus::NonFiniteLoss;
  // Batch 1: the weight gradients are outer products, consumed by the update as they are made
  // (clipping needs the exact norm of the written gradient first, so it takes the plain path).
  const bool fused = B == 1 && clip_norm <= 0;
  backward_from_loss(false, fused);
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
  return StepStatus::Ok;
}

namespace {
// Rows of out (B, C) whose largest value sits at the label's index.
template <class T>
int64_t count_correct(const T* out, const int64_t* labels, int64_t B, int64_t C) {
  int64_t correct = 0;
  for (int64_t r = 0; r < B; ++r) {
    const T* o = out + r * C;
    correct += std::max_element(o, o + C) - o == labels[r];
  }
  return correct;
}
}  // namespace

template <class T>
EpochStats Network<T>::train_epoch(const T* X, Target<T> y, int64_t N, int64_t batch_size,
                                   bool shuffle, const LossSpec& spec, Optimizer<T>& opt,
                                   double clip_norm, const std::function<bool()>& should_stop) {
  EpochStats stats;
  stats.grad_norms.assign(dense_.size(), 0.0);
  const int64_t IN = in_features(), C = out_features();
  const int64_t bs = std::min(batch_size, N);
  order_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) order_[i] = i;
  if (shuffle) {  // Fisher-Yates with the network's RNG
    for (int64_t i = N - 1; i > 0; --i) std::swap(order_[i], order_[rng_.below(uint64_t(i + 1))]);
  }
  const bool labels = y.labels != nullptr;
  if (shuffle && N > bs) {  // gathered batches; sized once per run
    batch_x_.resize(size_t(bs * IN));
    if (labels) batch_labels_.resize(size_t(bs));
    else batch_y_.resize(size_t(bs * C));
  }
  double loss_sum = 0;
  for (int64_t start = 0; start < N; start += bs) {
    if (should_stop && should_stop()) {
      stats.status = StepStatus::Interrupted;
      break;
    }
    const int64_t B = std::min(bs, N - start);
    const T* xb;
    Target<T> yb;
    if (!shuffle || N <= bs) {
      // Contiguous rows, no gather (one full batch is X itself: a mean loss ignores order).
      xb = X + start * IN;
      if (labels) yb.labels = y.labels + start;
      else yb.values = y.values + start * C;
    } else {
      for (int64_t r = 0; r < B; ++r) {
        const int64_t src = order_[start + r];
        std::copy(X + src * IN, X + (src + 1) * IN, batch_x_.data() + r * IN);
        if (labels) batch_labels_[r] = y.labels[src];
        else std::copy(y.values + src * C, y.values + (src + 1) * C, batch_y_.data() + r * C);
      }
      xb = batch_x_.data();
      if (labels) yb.labels = batch_labels_.data();
      else yb.values = batch_y_.data();
    }
    double value = 0;
    const StepStatus status = train_step(xb, yb, B, spec, opt, clip_norm, &value);
    if (status != StepStatus::Ok) {
      stats.status = status;
      stats.bad_loss = value;
      break;
    }
    loss_sum += value * double(B);
    if (labels) stats.correct += count_correct(output(layers_.size() - 1), yb.labels, B, C);
    stats.samples += B;
    stats.steps += 1;
    for (size_t i = 0; i < grad_sq_.size(); ++i) stats.grad_norms[i] += std::sqrt(grad_sq_[i]);
  }
  if (stats.steps > 0) {
    stats.loss = loss_sum / double(stats.samples);
    for (double& g : stats.grad_norms) g /= double(stats.steps);
  }
  return stats;
}

template <class T>
void Network<T>::infer(T* out, const T* x, int64_t N) const {
  // Rows in chunks through two scratch buffers; elementwise layers work in place.
  const int64_t chunk = std::min<int64_t>(N, 256);
  std::vector<T> a(size_t(chunk * max_width_)), b(size_t(chunk * max_width_));
  const int64_t IN = in_features(), OUT = out_features();
  for (int64_t start = 0; start < N; start += chunk) {
    const int64_t B = std::min(chunk, N - start);
    std::copy(x + start * IN, x + (start + B) * IN, a.data());
    T* cur = a.data();
    T* spare = b.data();
    for (size_t k = 0; k < layers_.size(); ++k) {
      const LayerSpec& l = layers_[k];
      switch (l.kind) {
        case LayerKind::Dense: {
          const bool fused = fuses_relu(k);  // then the activation runs in place, here
          dense_forward(spare, cur, params_.data() + l.weight_offset,
                        l.bias ? params_.data() + l.bias_offset : nullptr, B, l.in, l.out,
                        fused ? spare : nullptr, T(fused ? relu_slope(k + 1) : 0.0));
          std::swap(cur, spare);
          if (fused) ++k;  // the activation is done
          break;
        }
        case LayerKind::Activation:
          activation_forward(cur, cur, B * l.out, l.activation, T(l.param));
          break;
        case LayerKind::Softmax: softmax_forward(cur, cur, B, l.out); break;
        case LayerKind::Dropout: break;  // identity at inference
      }
    }
    std::copy(cur, cur + B * OUT, out + start * OUT);
  }
}

template class Network<float>;
template class Network<double>;

}  // namespace steepest
