// The network: its size table and op list, train_step against naive backpropagation (batch 13
// and batch 1, whose update is fused), inference, the epoch loop, refused steps, the same bits
// on 1 and 2 threads, and no allocation in a steady-state step.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "check.hpp"
#include "count_allocs.hpp"
#include "reference.hpp"
#include "steepest/network.hpp"
#include "training.hpp"

using namespace steepest;
using namespace steepest::test;
namespace ref = steepest::reference;

namespace {

LayerSpec dense(int64_t in, int64_t out, bool bias = true) {
  LayerSpec l;
  l.kind = LayerKind::Dense;
  l.in = in;
  l.out = out;
  l.bias = bias;
  return l;
}

LayerSpec elementwise(LayerKind kind, int64_t width, Activation a = Activation::ReLU,
                      double param = 0.0) {
  LayerSpec l;
  l.kind = kind;
  l.in = l.out = width;
  l.activation = a;
  l.param = param;
  return l;
}

LayerSpec act(int64_t width, Activation a, double param = 0.0) {
  return elementwise(LayerKind::Activation, width, a, param);
}

// BatchNorm, LayerNorm, Standardize or MinMaxScale of `width` features (momentum < 0: the
// cumulative average).
LayerSpec norm(LayerKind kind, int64_t width, double momentum = 0.1, bool affine = true) {
  LayerSpec l = elementwise(kind, width);
  l.affine = l.bias = affine;
  l.momentum = momentum;
  return l;
}

}  // namespace

TEST(size_table_places_each_dense_layer) {
  // Dense(4, 3) ReLU Dropout Dense(3, 2, no bias) Softmax
  const std::vector<LayerSpec> layers = {dense(4, 3), act(3, Activation::ReLU),
                                         elementwise(LayerKind::Dropout, 3), dense(3, 2, false),
                                         elementwise(LayerKind::Softmax, 2)};
  const SizeTable t = size_table(layers);
  CHECK(t.dense.size() == 2);
  CHECK(t.dense[0].layer == 0 && t.dense[0].weight_offset == 0 && t.dense[0].bias_offset == 12);
  CHECK(t.dense[1].layer == 3 && t.dense[1].weight_offset == 15 && t.dense[1].bias_offset == -1);
  CHECK(t.dense[0].dy_offset == 0 && t.dense[1].dy_offset == 3 && t.kept_dy == 5);
  CHECK(t.num_params == 21);
  CHECK((t.output_offset == std::vector<int64_t>{0, 3, 6, 9, 11, 13}));
  CHECK((t.mask_offset == std::vector<int64_t>{-1, -1, 0, -1, -1, 3}));
  CHECK(t.max_width == 4);
  CHECK(t.workspace_per_row() == 13 + 3 + 2 * 4);
  // The network takes its offsets from the same table.
  Network<float> net(layers, 0);
  CHECK(net.num_params() == 21);
  CHECK(net.layers()[3].weight_offset == 15 && net.layers()[3].bias_offset == -1);
}

TEST(a_network_built_without_initializing_skips_the_same_draws) {
  // every initializer (uniform and normal draws, biases drawn or zero), then the generator
  for (int k = 0; k <= int(Init::Zeros); ++k) {
    std::vector<LayerSpec> layers = {dense(7, 5), act(5, Activation::Tanh), dense(5, 3, false)};
    for (LayerSpec& l : layers) l.init = Init(k);
    Network<double> drawn(layers, 11), skipped(layers, 11, false);
    CHECK(skipped.rng().state() == drawn.rng().state());
    for (double p : params_of(skipped)) CHECK(p == 0.0);
  }
}

TEST(size_table_refuses_inconsistent_layers) {
  auto message = [](const std::vector<LayerSpec>& layers) -> std::string {
    try {
      size_table(layers);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message({}) == "a network needs at least one layer");
  CHECK(message({dense(4, 0)}) == "layer widths must be positive");
  CHECK(message({dense(4, 3), dense(2, 1)}) == "layer 1 expects 2 features but receives 3");
  LayerSpec wider = act(3, Activation::Tanh);
  wider.out = 5;
  CHECK(message({dense(4, 3), wider}) == "elementwise layers keep their width");
}

TEST(size_table_places_normalization_state) {
  // Standardize BatchNorm(affine) LayerNorm(no bias) Dense BatchNorm(no running statistics)
  std::vector<LayerSpec> layers = {norm(LayerKind::Standardize, 3), norm(LayerKind::BatchNorm, 3),
                                   norm(LayerKind::LayerNorm, 3), dense(3, 2),
                                   norm(LayerKind::BatchNorm, 2)};
  layers[2].bias = false;
  layers[4].track_running_stats = false;
  const SizeTable t = size_table(layers);
  CHECK(t.norms.size() == 4 && t.dense.size() == 1);
  CHECK(t.num_params == 6 + 3 + 8 + 4 && t.num_buffers == 6 + 6 && t.num_counts == 2);
  CHECK(t.norms[0].buffer_offset == 0 && t.norms[0].count_offset == 0 && t.norms[0].weight_offset == -1);
  CHECK(t.norms[1].weight_offset == 0 && t.norms[1].bias_offset == 3 && t.norms[1].buffer_offset == 6);
  CHECK(t.norms[2].weight_offset == 6 && t.norms[2].bias_offset == -1 && t.norms[2].buffer_offset == -1);
  CHECK(t.dense[0].weight_offset == 9 && t.dense[0].bias_offset == 15);
  CHECK(t.norms[3].weight_offset == 17 && t.norms[3].count_offset == -1);
  CHECK(t.stats_per_row == 2 && t.stats_fixed == 3 * 3 + 3 * 2);
  std::vector<std::string> names;
  for (const Slot& s : t.slots) names.push_back(std::to_string(s.layer) + "." + s.name);
  CHECK((names == std::vector<std::string>{"0.mean", "0.std", "0.count", "1.weight", "1.bias",
                                           "1.running_mean", "1.running_var",
                                           "1.num_batches_tracked", "2.weight", "3.weight",
                                           "3.bias", "4.weight", "4.bias"}));
  CHECK(t.slots[2].store == Store::Counts && t.slots[2].shape.empty() && t.slots[2].size() == 1);
  // The first op with parameters is the BatchNorm (backward stops there); initial state as torch.
  Network<double> net(layers, 0);
  CHECK(net.buffers()[0] == 0 && net.buffers()[3] == 1 && net.buffers()[6] == 0 && net.buffers()[9] == 1);
  CHECK(net.params()[0] == 1 && net.params()[3] == 0 && net.counts()[1] == 0);
}

TEST(dense_then_relu_becomes_one_op) {
  const std::vector<LayerSpec> layers = {
      dense(8, 6), act(6, Activation::ReLU),                    // fused
      dense(6, 6, false), act(6, Activation::LeakyReLU, 0.2),   // fused, slope 0.2
      dense(6, 5), act(5, Activation::Tanh),                    // not fused
      elementwise(LayerKind::Dropout, 5, Activation::ReLU, 0.1),
      act(5, Activation::ReLU),                                 // after Dropout: not fused
      dense(5, 3)};
  const SizeTable t = size_table(layers);
  const std::vector<Op> ops = build_ops(layers, t);
  const std::vector<OpKind> kinds = {OpKind::DenseReLU, OpKind::DenseReLU, OpKind::Dense,
                                     OpKind::Activation, OpKind::Dropout, OpKind::Activation,
                                     OpKind::Dense};
  CHECK(ops.size() == kinds.size());
  for (size_t i = 0; i < std::min(ops.size(), kinds.size()); ++i) CHECK(ops[i].kind == kinds[i]);
  // The fused op writes z where the Dense layer's output goes and the activation where the
  // ReLU's goes; the next op reads that.
  CHECK(ops[0].input == -1 && ops[0].pre == t.output_offset[0] && ops[0].output == t.output_offset[1]);
  CHECK(ops[1].input == ops[0].output && ops[1].param == 0.2 && ops[1].bias == -1);
  CHECK(ops[0].param == 0.0 && ops[0].dense == 0 && ops[1].dense == 1 && ops[2].dense == 2);
  CHECK(ops[4].mask == t.mask_offset[6] && ops[4].param == 0.1);
  CHECK(ops[6].weight == t.dense[3].weight_offset && ops[6].bias == t.dense[3].bias_offset);
}

namespace {

// One SGD train_step of `layers` against naive float64 backpropagation at batch B (CrossEntropy
// with labels, or MSE against targets when mse).
template <class T>
void check_train_step(const std::vector<LayerSpec>& layers, int64_t B, bool mse, double clip,
                      const std::string& what) {
  Network<T> net(layers, 42);
  const int64_t IN = layers.front().in, C = layers.back().out;
  const auto x = ref::randn<T>(size_t(B * IN), 12);
  const std::vector<int64_t> labels = mse ? std::vector<int64_t>{} : labels_for(B, C);
  const auto targets = ref::randn<T>(size_t(B * C), 13);
  const std::vector<T> p0 = params_of(net);
  const ref::Backprop want = ref::backprop(net.layers(), std::vector<double>(p0.begin(), p0.end()),
                                           std::vector<double>(x.begin(), x.end()), B, labels,
                                           std::vector<double>(targets.begin(), targets.end()));
  LossSpec loss;
  loss.kind = mse ? LossKind::MSE : LossKind::CrossEntropy;
  Optimizer<T> opt(sgd(0.5), {{0, net.num_params()}});
  Target<T> y;
  if (mse) y.values = targets.data();
  else y.labels = labels.data();
  double value = 0;
  CHECK(net.train_step(x.data(), y, B, loss, opt, clip, &value) == StepStatus::Ok);
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  CHECK(std::fabs(value - want.loss) <= tol * (1 + want.loss));
  // grads: the gradient the step used (scaled by min(1, clip / (norm + 1e-6)))
  double norm = 0;
  for (double g : want.grads) norm += g * g;
  norm = std::sqrt(norm);
  const double factor = clip > 0 ? std::min(1.0, clip / (norm + 1e-6)) : 1.0;
  std::vector<double> grads(want.grads), params(p0.size());
  for (size_t i = 0; i < p0.size(); ++i) {
    grads[i] *= factor;
    params[i] = double(p0[i]) - 0.5 * grads[i];
  }
  CHECK_CLOSE(std::vector<T>(net.grads(), net.grads() + net.num_params()), grads, tol * 10, tol,
              what + ": gradients");
  // Each Dense layer's squared gradient norm (before clipping), as the epoch statistics report.
  std::vector<double> layer_sq;
  for (const DenseSizes& d : net.sizes().dense) {
    const int64_t n = d.in * d.out + (d.bias_offset >= 0 ? d.out : 0);
    double sq = 0;
    for (int64_t i = d.weight_offset; i < d.weight_offset + n; ++i) sq += want.grads[size_t(i)] * want.grads[size_t(i)];
    layer_sq.push_back(sq);
  }
  CHECK_CLOSE(net.layer_grad_sq(), layer_sq, tol * 100, tol, what + ": squared gradient norms");
  CHECK_CLOSE(params_of(net), params, tol * 10, tol, what + ": weights after one SGD step");
}

// Stacks covering each op: fused Dense+ReLU and +LeakyReLU, Dense without bias, other
// activations, Softmax.
std::vector<std::pair<std::string, std::vector<LayerSpec>>> stacks() {
  return {
      {"Dense-ReLU-Dense", ref::mlp({31, 300, 7})},
      {"Dense-LeakyReLU-Dense(no bias)-Tanh-Dense",
       {dense(9, 16), act(16, Activation::LeakyReLU, 0.1), dense(16, 12, false),
        act(12, Activation::Tanh), dense(12, 5)}},
      {"Dense-GELU-Dense-Softmax",
       {dense(9, 16), act(16, Activation::GELU), dense(16, 4), elementwise(LayerKind::Softmax, 4)}},
      {"Dense(no bias)-ReLU-Dense-ELU-Dense",
       {dense(9, 20, false), act(20, Activation::ReLU), dense(20, 8), act(8, Activation::ELU, 1.0),
        dense(8, 3)}},
  };
}

}  // namespace

TEST(train_step_matches_naive_backprop) {
  for (const auto& [name, layers] : stacks()) {
    for (int64_t B : {13, 1}) {  // batch 1: the fused outer-product update
      const std::string what = name + ", batch " + std::to_string(B);
      check_train_step<float>(layers, B, false, 0.0, what + ", float32");
      check_train_step<double>(layers, B, false, 0.0, what + ", float64");
      check_train_step<double>(layers, B, true, 0.0, what + ", MSE");
      check_train_step<double>(layers, B, false, 0.05, what + ", clipped");
    }
  }
}

namespace {

// The loss of net on (x, labels) after a forward pass in the given mode.
double loss_at(Network<double>& net, const std::vector<double>& x, int64_t B,
               const std::vector<int64_t>& y, bool training) {
  net.forward(x.data(), B, training);
  return net.loss(cross_entropy(), {y.data(), nullptr});
}

}  // namespace

TEST(normalization_backprop_matches_finite_differences) {
  // Dense Standardize BatchNorm Tanh Dense LayerNorm Dense: the gradient flows through the
  // Standardize (it is not first) and through both normalizations, in training (batch
  // statistics) and eval mode (running statistics).
  const std::vector<LayerSpec> layers = {dense(6, 10), norm(LayerKind::Standardize, 10),
                                         norm(LayerKind::BatchNorm, 10), act(10, Activation::Tanh),
                                         dense(10, 8), norm(LayerKind::LayerNorm, 8), dense(8, 3)};
  const int64_t B = 7;
  const auto x = ref::randn<double>(size_t(B * 6), 61);
  const std::vector<int64_t> y = labels_for(B, 3);
  for (bool training : {true, false}) {
    Network<double> net(layers, 3);
    // Statistics and affine parameters away from their initial 0 and 1.
    const auto noise = ref::randn<double>(size_t(net.num_buffers() + net.num_params()), 62, 0.3);
    for (int64_t i = 0; i < net.num_buffers(); ++i) net.buffers()[i] += noise[size_t(i)];
    for (int64_t i = 0; i < net.num_params(); ++i) net.params()[i] += noise[size_t(net.num_buffers() + i)];
    loss_at(net, x, B, y, training);
    net.backward_from_loss(false);
    const std::vector<double> grads(net.grads(), net.grads() + net.num_params());
    std::vector<double> numeric;
    for (int64_t i = 0; i < net.num_params(); ++i) {
      const double old = net.params()[i], eps = 1e-6;
      net.params()[i] = old + eps;
      const double plus = loss_at(net, x, B, y, training);
      net.params()[i] = old - eps;
      const double minus = loss_at(net, x, B, y, training);
      net.params()[i] = old;
      numeric.push_back((plus - minus) / (2 * eps));
    }
    CHECK_CLOSE(grads, numeric, 1e-6, 1e-9,
                std::string("finite differences, ") + (training ? "training" : "eval"));
  }
}

TEST(batchnorm_running_statistics_follow_accepted_steps) {
  // Running statistics after each train_step, from the batch that reached the BatchNorm (the
  // Dense layer's output): momentum 0.1, and the cumulative average of momentum=None.
  for (double momentum : {0.1, -1.0}) {
    const std::vector<LayerSpec> layers = {dense(5, 6), norm(LayerKind::BatchNorm, 6, momentum),
                                           act(6, Activation::Tanh), dense(6, 3)};
    Network<double> net(layers, 4);
    Optimizer<double> opt(sgd(0.1, 0.9), {{0, net.num_params()}});
    const int64_t B = 8;
    std::vector<double> mean(6, 0.0), var(6, 1.0);
    for (int step = 1; step <= 3; ++step) {
      const auto x = ref::randn<double>(size_t(B * 5), uint64_t(70 + step));
      const std::vector<int64_t> y = labels_for(B, 3);
      double value = 0;
      CHECK(net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value) ==
            StepStatus::Ok);
      const std::vector<double> in(net.layer_output(0), net.layer_output(0) + B * 6);
      const ref::Normalized batch = ref::normalize(in, std::vector<double>(6, 1.0),
                                                   std::vector<double>(6, 0.0),
                                                   std::vector<double>(in.size(), 0.0), B, 6,
                                                   1e-5, false);
      const double f = momentum < 0 ? 1.0 / step : momentum;
      for (size_t c = 0; c < 6; ++c) {
        mean[c] = (1 - f) * mean[c] + f * batch.mean[c];
        var[c] = (1 - f) * var[c] + f * batch.var[c] * double(B) / double(B - 1);
      }
      CHECK_CLOSE(std::vector<double>(net.buffers(), net.buffers() + 6), mean, 1e-12, 1e-14,
                  "running_mean");
      CHECK_CLOSE(std::vector<double>(net.buffers() + 6, net.buffers() + 12), var, 1e-12, 0.0,
                  "running_var");
      CHECK(net.counts()[0] == step);
    }
    // A refused step changes neither the statistics nor the count.
    const std::vector<double> before(net.buffers(), net.buffers() + 12);
    auto bad = ref::randn<double>(size_t(B * 5), 80);
    bad[7] = std::numeric_limits<double>::quiet_NaN();
    const std::vector<int64_t> y = labels_for(B, 3);
    double value = 0;
    CHECK(net.train_step(bad.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value) ==
          StepStatus::NonFiniteLoss);
    CHECK_BITWISE(std::vector<double>(net.buffers(), net.buffers() + 12), before,
                  "running statistics after a refused step");
    CHECK(net.counts()[0] == 3);
    // Eval mode and inference read them and change nothing.
    std::vector<double> out(size_t(B * 3));
    net.infer(out.data(), bad.data() + B * 5 - 2 * 5, 2);
    net.forward(bad.data() + B * 5 - 2 * 5, 2, false);
    CHECK(net.counts()[0] == 3);
  }
}

TEST(batch_statistics_of_one_sample_are_refused) {
  const std::vector<LayerSpec> layers = {dense(3, 4), norm(LayerKind::BatchNorm, 4), dense(4, 2)};
  Network<float> net(layers, 0);
  Optimizer<float> opt(sgd(0.1), {{0, net.num_params()}});
  const auto x = ref::randn<float>(30, 1);
  const std::vector<int64_t> y = labels_for(10, 2);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  double value = 0;
  CHECK(message([&] { net.forward(x.data(), 1, true); }).find("got a batch of 1") != std::string::npos);
  CHECK(message([&] {
          net.train_step(x.data(), {y.data(), nullptr}, 1, cross_entropy(), opt, 0.0, &value);
        }).find("more than 1 value per channel") != std::string::npos);
  CHECK(message([&] {
          net.train_epoch(x.data(), {y.data(), nullptr}, 10, 3, false, cross_entropy(), opt, 0.0,
                          nullptr);
        }).find("leave a last batch of 1") != std::string::npos);
  CHECK(net.counts()[0] == 0 && opt.steps == 0);
  // Eval mode with running statistics takes one sample; without them it cannot.
  std::vector<float> out(2);
  net.infer(out.data(), x.data(), 1);
  std::vector<LayerSpec> untracked = layers;
  untracked[1].track_running_stats = false;
  Network<float> batch_only(untracked, 0);
  CHECK(message([&] { batch_only.infer(out.data(), x.data(), 1); }).find("got a batch of 1") !=
        std::string::npos);
}

TEST(normalized_training_is_independent_of_threads) {
  auto run = [](int threads) {
    set_num_threads(threads);
    const std::vector<LayerSpec> layers = {
        norm(LayerKind::Standardize, 256), dense(256, 512), norm(LayerKind::BatchNorm, 512),
        act(512, Activation::ReLU), dense(512, 256), norm(LayerKind::LayerNorm, 256),
        act(256, Activation::GELU), dense(256, 10)};
    Network<float> net(layers, 7);
    OptimizerConfig c = sgd(0.05, 0.9);
    c.kind = OptimizerKind::Adam;
    Optimizer<float> opt(c, {{0, net.num_params()}});
    const int64_t N = 2048;
    const auto X = ref::randn<float>(size_t(N * 256), 15);
    const auto y = labels_for(N, 10);
    net.train_epoch(X.data(), {y.data(), nullptr}, N, 512, true, cross_entropy(), opt, 0.0, nullptr);
    std::vector<float> state = params_of(net);
    state.insert(state.end(), net.buffers(), net.buffers() + net.num_buffers());
    return state;
  };
  CHECK_BITWISE(run(1), run(2), "BatchNorm and LayerNorm network, batch 512, 1 vs 2 threads");
}

TEST(dropout_backward_uses_the_forward_mask) {
  // Dense-ReLU-Dropout-Dense-LeakyReLU-Dropout-Dense in float64: the masks of the training
  // forward pass (read back as output / input) given to the naive backprop.
  const std::vector<LayerSpec> layers = {
      dense(6, 12), act(12, Activation::ReLU), elementwise(LayerKind::Dropout, 12, Activation::ReLU, 0.5),
      dense(12, 8), act(8, Activation::LeakyReLU, 0.1), elementwise(LayerKind::Dropout, 8, Activation::ReLU, 0.3),
      dense(8, 3)};
  for (int64_t B : {9, 1}) {
    Network<double> net(layers, 5);
    const auto x = ref::randn<double>(size_t(B * 6), 6);
    const std::vector<int64_t> y = labels_for(B, 3);
    const std::vector<double> p0 = params_of(net);
    net.forward(x.data(), B, true);
    std::vector<std::vector<double>> masks(layers.size());
    for (size_t k : {size_t(2), size_t(5)}) {
      const double* in = net.layer_output(k - 1);
      const double* out = net.layer_output(k);
      for (int64_t i = 0; i < B * layers[k].out; ++i) masks[k].push_back(in[i] != 0 ? out[i] / in[i] : 0.0);
    }
    const ref::Backprop want = ref::backprop(net.layers(), p0, x, B, y, {}, masks);
    net.loss(cross_entropy(), {y.data(), nullptr});
    net.backward_from_loss(false);
    CHECK_CLOSE(std::vector<double>(net.grads(), net.grads() + net.num_params()), want.grads,
                1e-10, 1e-12, "gradients through dropout, batch " + std::to_string(B));
  }
}

TEST(backward_accumulates_and_forward_keeps_every_layer_output) {
  const auto layers = ref::mlp({6, 10, 4});
  Network<double> net(layers, 1);
  const int64_t B = 5;
  const auto x = ref::randn<double>(size_t(B * 6), 2), dy = ref::randn<double>(size_t(B * 4), 3);
  net.forward(x.data(), B, true);
  net.backward(dy.data(), false);
  const std::vector<double> once(net.grads(), net.grads() + net.num_params());
  net.backward(dy.data(), true);
  std::vector<double> twice(once);
  for (double& g : twice) g *= 2;
  CHECK_CLOSE(std::vector<double>(net.grads(), net.grads() + net.num_params()), twice, 1e-14, 0.0,
              "backward(accumulate) adds the same gradient");
  // The fused Dense+ReLU keeps both outputs: z (layer 0) and ReLU(z) (layer 1).
  bool relu_ok = true;
  for (int64_t i = 0; i < B * 10; ++i)
    relu_ok = relu_ok && net.layer_output(1)[i] == std::max(net.layer_output(0)[i], 0.0);
  CHECK(relu_ok);
}

TEST(infer_matches_forward) {
  const std::vector<LayerSpec> layers = {
      dense(20, 64), act(64, Activation::LeakyReLU, 0.1), elementwise(LayerKind::Dropout, 64, Activation::ReLU, 0.5),
      dense(64, 32), act(32, Activation::ReLU), dense(32, 16, false), act(16, Activation::SiLU),
      dense(16, 5), elementwise(LayerKind::Softmax, 5)};
  Network<float> net(layers, 3);
  for (int64_t N : {1, 13, 300}) {  // 300: two chunks of rows
    const auto x = ref::randn<float>(size_t(N * 20), 4);
    std::vector<float> out(size_t(N * 5));
    net.infer(out.data(), x.data(), N);
    const float* y = net.forward(x.data(), N, false);
    const std::vector<float> fwd(y, y + N * 5);
    if (N <= 256) CHECK_BITWISE(out, fwd, "infer vs forward, batch " + std::to_string(N));
    CHECK_CLOSE(out, fwd, 1e-5, 1e-6, "infer vs forward, batch " + std::to_string(N));
  }
}

TEST(train_epoch_is_its_steps) {
  // Without shuffling, an epoch of 4 batches of 16 is 4 train_steps on consecutive rows.
  const auto layers = ref::mlp({10, 32, 3});
  const int64_t N = 64, bs = 16;
  const auto X = ref::randn<float>(size_t(N * 10), 5);
  const auto y = labels_for(N, 3);
  Network<float> a(layers, 9), b(layers, 9);
  Optimizer<float> oa(sgd(0.1, 0.9), {{0, a.num_params()}}), ob(sgd(0.1, 0.9), {{0, b.num_params()}});
  const EpochStats st = a.train_epoch(X.data(), {y.data(), nullptr}, N, bs, false, cross_entropy(),
                                      oa, 0.0, nullptr);
  double loss_sum = 0;
  for (int64_t s = 0; s < N; s += bs) {
    double value = 0;
    b.train_step(X.data() + s * 10, {y.data() + s, nullptr}, bs, cross_entropy(), ob, 0.0, &value);
    loss_sum += value * double(bs);
  }
  CHECK_BITWISE(params_of(a), params_of(b), "train_epoch vs its train_steps");
  CHECK(st.status == StepStatus::Ok && st.steps == 4 && st.samples == N);
  CHECK(std::fabs(st.loss - loss_sum / double(N)) <= 1e-12);
  CHECK(st.grad_norms.size() == 2 && st.grad_norms[0] > 0);
  // progress receives the stats so far after every step.
  std::vector<int64_t> reported;
  a.train_epoch(X.data(), {y.data(), nullptr}, N, bs, true, cross_entropy(), oa, 0.0,
                [&](const EpochStats& s) { reported.push_back(s.samples); });
  CHECK((reported == std::vector<int64_t>{16, 32, 48, 64}));
}

TEST(gradient_adds_the_l2_penalty_to_the_weights_only) {
  // Network::gradient = the naive backprop gradient, plus l2 / B * W on every Dense weight
  // (biases untouched), and the loss plus l2 / (2 B) ||W||^2; scale multiplies the data part.
  const auto layers = ref::mlp({6, 12, 4});
  const int64_t B = 7;
  Network<double> net(layers, 3);
  const auto x = ref::randn<double>(size_t(B * 6), 4);
  const auto labels = labels_for(B, 4);
  const std::vector<double> p = params_of(net);
  const ref::Backprop want = ref::backprop(net.layers(), p, x, B, labels, {});
  LossSpec spec = cross_entropy();
  spec.scale = 3.0;
  spec.l2 = 0.7;
  const double value = net.gradient(x.data(), {labels.data(), nullptr}, B, spec, true);
  std::vector<double> grads(want.grads);
  double squares = 0;
  for (double& g : grads) g *= spec.scale;
  for (const DenseSizes& d : net.sizes().dense)
    for (int64_t i = d.weight_offset; i < d.weight_offset + d.in * d.out; ++i) {
      grads[size_t(i)] += spec.l2 / double(B) * p[size_t(i)];
      squares += p[size_t(i)] * p[size_t(i)];
    }
  CHECK(std::fabs(value - (spec.scale * want.loss + 0.5 * spec.l2 * squares / double(B))) <= 1e-12);
  CHECK_CLOSE(std::vector<double>(net.grads(), net.grads() + net.num_params()), grads, 1e-12,
              1e-12, "gradient with scale and l2");
  CHECK_BITWISE(params_of(net), p, "gradient does not update");
}

TEST(sample_weights_count_rows_and_float64_sums_apply_them) {
  // Integer weights train like the rows repeated: the gradient of a weighted batch equals that
  // of the repeated rows, with the weights in the loss rows or (float64 sums) in the sums.
  const auto layers = ref::mlp({5, 16, 3});
  const std::vector<double> w = {2, 0, 1, 3, 1, 1};
  const int64_t B = int64_t(w.size());
  const auto x = ref::randn<float>(size_t(B * 5), 6);
  const auto labels = labels_for(B, 3);
  std::vector<float> x_rep;
  std::vector<int64_t> labels_rep;
  for (int64_t r = 0; r < B; ++r)
    for (int k = 0; k < int(w[size_t(r)]); ++k) {
      x_rep.insert(x_rep.end(), x.begin() + r * 5, x.begin() + (r + 1) * 5);
      labels_rep.push_back(labels[size_t(r)]);
    }
  LossSpec spec = cross_entropy();
  spec.l2 = 0.1;
  Network<float> rep(layers, 8);
  const double want = rep.gradient(x_rep.data(), {labels_rep.data(), nullptr},
                                   int64_t(labels_rep.size()), spec, true);
  const std::vector<float> want_grads(rep.grads(), rep.grads() + rep.num_params());
  for (bool f64 : {false, true}) {
    Network<float> net(layers, 8);
    net.set_float64_sums(f64);
    const double value = net.gradient(x.data(), {labels.data(), nullptr, w.data()}, B, spec, true);
    CHECK(std::fabs(value - want) <= 1e-6 * (1 + want));
    CHECK_CLOSE(std::vector<float>(net.grads(), net.grads() + net.num_params()), want_grads, 1e-5,
                1e-6, std::string("weighted gradient, float64 sums ") + (f64 ? "on" : "off"));
  }
}

TEST(train_epoch_takes_an_order) {
  // An epoch in a given row order is the epoch over the rows gathered in that order.
  const auto layers = ref::mlp({4, 8, 2});
  const int64_t N = 10, bs = 4;
  const auto X = ref::randn<float>(size_t(N * 4), 2);
  const auto y = labels_for(N, 2);
  const std::vector<double> w = {1, 2, 0.5, 1, 3, 1, 1, 2, 1, 0.25};
  const std::vector<int64_t> order = {3, 9, 0, 4, 7, 1, 8, 2, 6, 5};
  std::vector<float> X_ord;
  std::vector<int64_t> y_ord;
  std::vector<double> w_ord;
  for (int64_t i : order) {
    X_ord.insert(X_ord.end(), X.begin() + i * 4, X.begin() + (i + 1) * 4);
    y_ord.push_back(y[size_t(i)]);
    w_ord.push_back(w[size_t(i)]);
  }
  Network<float> a(layers, 1), b(layers, 1);
  Optimizer<float> oa(sgd(0.1), {{0, a.num_params()}}), ob(sgd(0.1), {{0, b.num_params()}});
  const EpochStats sa = a.train_epoch(X.data(), {y.data(), nullptr, w.data()}, N, bs, false,
                                      cross_entropy(), oa, 0.0, nullptr, order.data());
  const EpochStats sb = b.train_epoch(X_ord.data(), {y_ord.data(), nullptr, w_ord.data()}, N, bs,
                                      false, cross_entropy(), ob, 0.0, nullptr);
  CHECK_BITWISE(params_of(a), params_of(b), "train_epoch in an order vs the gathered rows");
  CHECK(sa.loss == sb.loss && sa.steps == 3);
}

TEST(a_non_finite_step_is_refused_and_changes_nothing) {
  // Tanh passes a NaN on (ReLU would turn it into 0 and only the gradient would show it).
  const std::vector<LayerSpec> layers = {dense(4, 8), act(8, Activation::Tanh), dense(8, 2)};
  Network<float> net(layers, 2);
  Optimizer<float> opt(sgd(0.1), {{0, net.num_params()}});
  const auto before = params_of(net);
  auto x = ref::randn<float>(8, 6);
  const std::vector<int64_t> y = {0, 1};
  x[3] = std::numeric_limits<float>::quiet_NaN();
  double value = 0;
  CHECK(net.train_step(x.data(), {y.data(), nullptr}, 2, cross_entropy(), opt, 0.0, &value) ==
        StepStatus::NonFiniteLoss);
  CHECK(std::isnan(value));
  // A finite loss with an overflowing gradient (at batch 1 too, where the weight gradients are
  // deferred): inputs of 1e30 give outputs and an L1 loss near 1e30, weight gradients whose
  // squares exceed float's range.
  for (int64_t B : {2, 1}) {
    const std::vector<float> huge(size_t(B * 4), 1e30f), t(size_t(B * 2), 0.f);
    LossSpec l1;
    l1.kind = LossKind::L1;
    Network<float> big(ref::mlp({4, 8, 2}), 2);
    const auto big_before = params_of(big);
    CHECK(big.train_step(huge.data(), {nullptr, t.data()}, B, l1, opt, 0.0, &value) ==
          StepStatus::NonFiniteGradient);
    CHECK(std::isfinite(value));
    CHECK_BITWISE(params_of(big), big_before, "weights after a refused step");
  }
  CHECK_BITWISE(params_of(net), before, "weights after a refused step");
  CHECK(opt.steps == 0);
}

TEST(a_batch_too_large_for_memory_changes_nothing) {
  // Buffers for 2^56 rows cannot exist (std::length_error here, std::bad_alloc in practice):
  // the network stays as it was, and smaller batches train as on a twin that never saw it.
  const std::vector<LayerSpec> layers = {dense(3, 16), act(16, Activation::ReLU), dense(16, 2)};
  Network<float> net(layers, 4), twin(layers, 4);
  Optimizer<float> opt(sgd(0.1, 0.9), {{0, net.num_params()}});
  Optimizer<float> twin_opt(sgd(0.1, 0.9), {{0, twin.num_params()}});
  const auto x = ref::randn<float>(8 * 3, 5);
  const auto y = labels_for(8, 2);
  bool refused = false;
  try {
    net.forward(x.data(), int64_t(1) << 56, true);
  } catch (const std::exception&) {
    refused = true;
  }
  CHECK(refused);
  double value = 0;
  for (int64_t B : {8, 3}) {  // the first within the old capacity, the second too
    CHECK(net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value) ==
          StepStatus::Ok);
    CHECK(twin.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), twin_opt, 0.0,
                          &value) == StepStatus::Ok);
  }
  const auto trained = params_of(twin);
  CHECK_BITWISE(params_of(net), trained, "weights after a refused batch");
}

TEST(training_is_independent_of_threads) {
  // Wide enough for tiled products and parallel loops at batch 512 and row tiles at batch 1.
  auto run = [](int threads, const std::vector<int64_t>& sizes, int64_t B, double dropout,
                OptimizerKind kind) {
    set_num_threads(threads);
    Network<float> net(ref::mlp(sizes, dropout), 7);
    OptimizerConfig c = sgd(0.05, 0.9);
    c.kind = kind;
    Optimizer<float> opt(c, {{0, net.num_params()}});
    const auto x = ref::randn<float>(size_t(B * sizes[0]), 13);
    const auto y = labels_for(B, sizes.back());
    double loss = 0;
    for (int s = 0; s < 3; ++s)
      net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, s == 2 ? 1.0 : 0.0, &loss);
    const auto x2 = ref::randn<float>(size_t(4 * B * sizes[0]), 14);
    const auto y2 = labels_for(4 * B, sizes.back());
    net.train_epoch(x2.data(), {y2.data(), nullptr}, 4 * B, B, true, cross_entropy(), opt, 0.0, nullptr);
    return params_of(net);
  };
  CHECK_BITWISE(run(1, {256, 2048, 512, 10}, 512, 0.2, OptimizerKind::Adam),
                run(2, {256, 2048, 512, 10}, 512, 0.2, OptimizerKind::Adam),
                "Adam with dropout, batch 512, on 1 vs 2 threads");
  CHECK_BITWISE(run(1, {784, 512, 10}, 1, 0.0, OptimizerKind::SGD),
                run(2, {784, 512, 10}, 1, 0.0, OptimizerKind::SGD),
                "SGD, batch 1, on 1 vs 2 threads");
}

TEST(a_steady_state_step_allocates_nothing) {
  if (!test::allocs::kCounting) {
    std::printf("  (allocations are not counted under a sanitizer)\n");
    return;
  }
  std::vector<LayerSpec> normalized = ref::mlp({784, 512, 512, 10});
  normalized.insert(normalized.begin() + 3, norm(LayerKind::LayerNorm, 512));
  normalized.insert(normalized.begin() + 1, norm(LayerKind::BatchNorm, 512));
  for (int threads : {1, 2})
  for (const auto& layers : {ref::mlp({784, 512, 512, 10}, 0.1), normalized}) {
    set_num_threads(threads);
    Network<float> net(layers, 0);
    OptimizerConfig c;
    c.kind = OptimizerKind::Adam;
    Optimizer<float> opt(c, {{0, net.num_params()}});
    const auto x = ref::randn<float>(size_t(64 * 784), 1);
    const auto y = labels_for(64, 10);
    double loss = 0;
    for (int64_t B : {64, 1, 32}) {  // batch 32 after 64: the buffers are big enough already
      if (B == 1 && net.uses_batch_stats(true)) continue;
      net.train_step(x.data(), {y.data(), nullptr}, 64, cross_entropy(), opt, 0.0, &loss);
      net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &loss);
      test::allocs::start();
      for (int s = 0; s < 3; ++s)
        net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, s == 2 ? 1.0 : 0.0, &loss);
      const int64_t n = test::allocs::stop();
      if (n != 0)
        test::fail(__FILE__, __LINE__, std::to_string(n) + " allocations in 3 steps at batch " +
                                           std::to_string(B) + " on " + std::to_string(threads) +
                                           " threads");
    }
  }
}
