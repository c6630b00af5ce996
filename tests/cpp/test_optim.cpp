// The optimizer updates, bit for bit against torch's formulas (reference.hpp): every optimizer
// and option, on 1 and 2 threads, in one step or in pieces, over ranges of a larger buffer.
#include <string>

#include "check.hpp"
#include "reference.hpp"
#include "steepest/optim.hpp"
#include "steepest/threads.hpp"

using namespace steepest;
namespace ref = steepest::reference;

namespace {

// One config per optimizer and option worth a separate code path.
std::vector<OptimizerConfig> configs() {
  std::vector<OptimizerConfig> out;
  auto add = [&](OptimizerKind kind, auto&& tweak) {
    OptimizerConfig c;
    c.kind = kind;
    c.lr = 0.01;
    tweak(c);
    out.push_back(c);
  };
  add(OptimizerKind::SGD, [](OptimizerConfig&) {});
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.momentum = 0.9, c.weight_decay = 1e-3; });
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.momentum = 0.9, c.dampening = 0.2; });
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.momentum = 0.9, c.nesterov = true; });
  add(OptimizerKind::Adam, [](OptimizerConfig&) {});
  add(OptimizerKind::Adam, [](OptimizerConfig& c) { c.weight_decay = 1e-2, c.amsgrad = true; });
  add(OptimizerKind::AdamW, [](OptimizerConfig& c) { c.weight_decay = 1e-2; });
  add(OptimizerKind::AdamW, [](OptimizerConfig& c) { c.weight_decay = 1e-2, c.amsgrad = true; });
  add(OptimizerKind::RMSprop, [](OptimizerConfig&) {});
  add(OptimizerKind::RMSprop, [](OptimizerConfig& c) { c.centered = true, c.momentum = 0.5, c.weight_decay = 1e-3; });
  add(OptimizerKind::Adagrad, [](OptimizerConfig&) {});
  add(OptimizerKind::Adagrad, [](OptimizerConfig& c) { c.lr_decay = 0.1, c.initial_accumulator_value = 0.5, c.weight_decay = 1e-3; });
  // maximize, in every kind and in each SGD and Adam loop
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.maximize = true, c.weight_decay = 1e-3; });
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.maximize = true, c.momentum = 0.9, c.dampening = 0.2; });
  add(OptimizerKind::SGD, [](OptimizerConfig& c) { c.maximize = true, c.momentum = 0.9, c.nesterov = true; });
  add(OptimizerKind::Adam, [](OptimizerConfig& c) { c.maximize = true, c.weight_decay = 1e-2; });
  add(OptimizerKind::AdamW, [](OptimizerConfig& c) { c.maximize = true, c.weight_decay = 1e-2, c.amsgrad = true; });
  add(OptimizerKind::RMSprop, [](OptimizerConfig& c) { c.maximize = true, c.centered = true, c.momentum = 0.5; });
  add(OptimizerKind::Adagrad, [](OptimizerConfig& c) { c.maximize = true, c.weight_decay = 1e-3; });
  return out;
}

std::string name(const OptimizerConfig& c, size_t i) {
  return "optimizer " + std::to_string(int(c.kind)) + " (config " + std::to_string(i) + ")";
}

// Three steps of the optimizer over n parameters against the reference; returns the params.
template <class T>
std::vector<T> three_steps(const OptimizerConfig& c, int64_t n, const std::string& what) {
  Optimizer<T> opt(c, {{0, n}});
  auto p = ref::randn<T>(size_t(n), 11), want = p;
  ref::OptimizerState<T> state(size_t(n), c);
  for (int step = 1; step <= 3; ++step) {
    const auto g = ref::randn<T>(size_t(n), uint64_t(20 + step));
    opt.step(p.data(), g.data());
    ref::optimizer_step(want, g, state, c, step);
  }
  CHECK(opt.steps == 3);
  CHECK_BITWISE(p, want, what);
  return p;
}

}  // namespace

TEST(optimizers_match_torch_formulas_bitwise) {
  const auto all = configs();
  for (size_t i = 0; i < all.size(); ++i) {
    three_steps<float>(all[i], 5003, name(all[i], i) + ", float32");
    three_steps<double>(all[i], 5003, name(all[i], i) + ", float64");
  }
}

TEST(optimizers_are_independent_of_threads) {
  // Large enough for the updates to run in chunks on the pool.
  const auto all = configs();
  for (size_t i = 0; i < all.size(); ++i) {
    set_num_threads(1);
    const auto one = three_steps<float>(all[i], 300007, name(all[i], i) + " on 1 thread");
    set_num_threads(2);
    const auto two = three_steps<float>(all[i], 300007, name(all[i], i) + " on 2 threads");
    CHECK_BITWISE(one, two, name(all[i], i) + " on 1 vs 2 threads");
  }
}

TEST(a_step_in_pieces_is_bitwise_a_whole_step) {
  const int64_t n = 7001;
  for (const OptimizerConfig& c : configs()) {
    Optimizer<float> whole(c, {{0, n}}), pieces(c, {{0, n}});
    auto p1 = ref::randn<float>(size_t(n), 1), p2 = p1;
    for (int step = 1; step <= 3; ++step) {
      const auto g = ref::randn<float>(size_t(n), uint64_t(step));
      whole.step(p1.data(), g.data());
      pieces.begin_step();
      // Disjoint intervals covering [0, n), in no particular order.
      for (auto [lo, hi] : {std::pair<int64_t, int64_t>{4000, n}, {0, 13}, {13, 4000}})
        pieces.update(p2.data(), g.data(), lo, hi);
    }
    CHECK_BITWISE(p1, p2, "optimizer " + std::to_string(int(c.kind)) + " in pieces");
  }
}

TEST(an_optimizer_updates_only_its_ranges) {
  // Two ranges of a 100-parameter buffer: the state is their concatenation (30 values).
  OptimizerConfig c;
  c.kind = OptimizerKind::Adam;
  Optimizer<double> opt(c, {{10, 20}, {60, 10}});
  CHECK(opt.size() == 30);
  auto p = ref::randn<double>(100, 1);
  const auto before = p;
  const auto g = ref::randn<double>(100, 2);
  opt.step(p.data(), g.data());
  for (int64_t i = 0; i < 100; ++i) {
    const bool inside = (i >= 10 && i < 30) || (i >= 60 && i < 70);
    CHECK(inside == (p[size_t(i)] != before[size_t(i)]));
  }
  // The state of the second range starts at 20: exp_avg = (1 - beta1) g there.
  const auto state = opt.state();
  CHECK(state.size() == 2 && state[0].first == "exp_avg" && state[1].first == "exp_avg_sq");
  CHECK(state[0].second->size() == 30);
  CHECK((*state[0].second)[20] == (1 - 0.9) * (g[60] - 0.0));
}

TEST(optimizer_state_names_follow_torch) {
  auto names = [](OptimizerConfig c) {
    std::string out;
    for (auto& [key, buf] : Optimizer<float>(c, {{0, 4}}).state()) out += key + " ";
    return out;
  };
  OptimizerConfig c;
  CHECK(names(c).empty());  // plain SGD keeps no state
  c.momentum = 0.9;
  CHECK(names(c) == "momentum_buffer ");
  c = {};
  c.kind = OptimizerKind::Adam;
  c.amsgrad = true;
  CHECK(names(c) == "exp_avg exp_avg_sq max_exp_avg_sq ");
  c = {};
  c.kind = OptimizerKind::RMSprop;
  c.momentum = 0.5;
  c.centered = true;
  CHECK(names(c) == "square_avg momentum_buffer grad_avg ");
  c = {};
  c.kind = OptimizerKind::Adagrad;
  CHECK(names(c) == "sum ");
}
