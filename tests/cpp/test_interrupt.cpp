// Interruption (interrupt.hpp): products of many pieces give the same bits with or without a
// poll and on any thread count, an interrupted product throws, an interrupted step leaves
// parameters, optimizer state and the random generator as they were at every boundary it can
// stop at, and an interrupted epoch is its completed steps.
#include <chrono>
#include <cstdio>

#include "check.hpp"
#include "reference.hpp"
#include "steepest/gemm.hpp"
#include "steepest/interrupt.hpp"
#include "steepest/network.hpp"
#include "steepest/threads.hpp"
#include "training.hpp"

using namespace steepest;
using namespace steepest::test;
namespace ref = steepest::reference;

namespace {

// Says stop at its `stop_at`-th question (never when 0); counts the questions.
struct CountingPoll : InterruptPoll {
  explicit CountingPoll(int stop_at = 0) : stop_at(stop_at) {}
  bool stop_requested() override { return ++asked == stop_at; }
  int stop_at, asked = 0;
};

constexpr std::chrono::nanoseconds kEveryTime{0};

// C (M, N) = op(A) op(B) as gemm computes it, on `threads` threads, with `poll` installed
// (asked at every boundary) unless it is null.
std::vector<float> product(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                           const std::vector<float>& A, const std::vector<float>& B, int threads,
                           InterruptPoll* poll) {
  set_num_threads(threads);
  std::vector<float> C(size_t(M * N), 0.f);
  ScopedInterruptPoll installed(poll, kEveryTime);
  gemm<float>(ta, tb, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f, C.data(), N);
  return C;
}

template <class T>
std::vector<T> state_of(Optimizer<T>& opt) {
  std::vector<T> all;
  for (auto& [name, buf] : opt.state()) all.insert(all.end(), buf->begin(), buf->end());
  return all;
}

}  // namespace

TEST(products_are_cut_into_pieces_from_the_shape) {
  // Up to 2^31 multiply-adds: at most 8 tiles and no K chunks, as before pieces existed.
  CHECK(gemm_tiles(1024, 2048, 1024) == 8 && gemm_chunks(1024, 2048, 1024) == 1);
  CHECK(gemm_tiles(64, 512, 256) == 8 && gemm_chunks(64, 512, 256) == 1);
  // A full-batch forward product: tiles of at most 2^28.
  CHECK(gemm_tiles(200000, 128, 784) == 128 && gemm_chunks(200000, 128, 784) == 1);
  // A full-batch weight gradient: C is (512, 784), K the batch: tiles, then chunks of K.
  CHECK(gemm_tiles(512, 784, 200000) == 16 && gemm_chunks(512, 784, 200000) == 32);
  set_num_threads(1);
  CHECK(gemm_tiles(512, 784, 200000) == 16);
}

TEST(products_in_pieces_give_the_same_bits_with_a_poll_and_on_any_thread_count) {
  // (M, N, K, tiles, chunks): 16 tiles of rows; 2 tiles of 2 chunks of K each (the shape of a
  // weight gradient over a long batch).
  const int64_t shapes[][5] = {{140000, 128, 128, 16, 1}, {64, 64, 140000, 2, 2}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const bool ta = K > M;  // the weight gradient's layout: dy^T x
    CHECK(gemm_tiles(M, N, K) == s[3] && gemm_chunks(M, N, K) == s[4]);
    const auto A = ref::randn<float>(size_t(M * K), 1), B = ref::randn<float>(size_t(K * N), 2);
    const auto one = product(ta, false, M, N, K, A, B, 1, nullptr);
    const auto two = product(ta, false, M, N, K, A, B, 2, nullptr);
    CountingPoll never;
    const auto polled = product(ta, false, M, N, K, A, B, 2, &never);
    const std::string what = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
    CHECK_BITWISE(one, two, what + " on 1 vs 2 threads");
    CHECK_BITWISE(one, polled, what + " with a poll asked between pieces");
    CHECK(never.asked >= 1);
    // Against the reference, element by element on a sample (K is long).
    for (int64_t i = 0; i < M * N; i += M * N / 37 + 1) {
      const int64_t r = i / N, c = i % N;
      double want = 0;
      for (int64_t k = 0; k < K; ++k)
        want += double(ta ? A[size_t(k * M + r)] : A[size_t(r * K + k)]) * double(B[size_t(k * N + c)]);
      if (!(std::fabs(one[size_t(i)] - want) <= 1e-4 * std::sqrt(double(K))))
        test::fail(__FILE__, __LINE__, what + ": element " + std::to_string(i) + " is " +
                                           std::to_string(one[size_t(i)]) + ", reference " +
                                           std::to_string(want));
    }
  }
}

TEST(an_interrupted_product_throws_and_the_next_one_is_whole) {
  const int64_t M = 140000, N = 128, K = 128;
  const auto A = ref::randn<float>(size_t(M * K), 3), B = ref::randn<float>(size_t(K * N), 4);
  const auto whole = product(false, false, M, N, K, A, B, 2, nullptr);
  for (int threads : {1, 2}) {
    CountingPoll stop(1);
    bool thrown = false;
    try {
      product(false, false, M, N, K, A, B, threads, &stop);
    } catch (const Interrupted&) {
      thrown = true;
    }
    CHECK(thrown && stop.asked == 1);
    CHECK_BITWISE(product(false, false, M, N, K, A, B, threads, nullptr), whole,
                  "a product after an interrupted one");
  }
}

TEST(an_interrupted_step_leaves_parameters_optimizer_and_rng_as_they_were) {
  // Interrupted at each boundary it polls, in turn, until the step completes: every time the
  // parameters, the optimizer's state and step count and the random generator (dropout) are
  // unchanged, and the next step is bitwise the uninterrupted one.
  const auto layers = ref::mlp({12, 16, 16, 3}, 0.25);
  const int64_t B = 40;
  const auto x = ref::randn<float>(size_t(B * 12), 5);
  const auto y = labels_for(B, 3);
  OptimizerConfig c;
  c.kind = OptimizerKind::Adam;
  Network<float> twin(layers, 3);
  Optimizer<float> twin_opt(c, {{0, twin.num_params()}});
  double value = 0;
  for (int s = 0; s < 2; ++s)
    twin.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), twin_opt, 0.0, &value);
  int interrupted = 0;
  for (int stop_at = 1;; ++stop_at) {
    Network<float> net(layers, 3);
    Optimizer<float> opt(c, {{0, net.num_params()}});
    net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value);
    const auto params = params_of(net), state = state_of(opt);
    const Rng::State rng = net.rng().state();
    CountingPoll poll(stop_at);
    StepStatus status;
    {
      ScopedInterruptPoll installed(&poll, kEveryTime);
      status = net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value);
    }
    if (status == StepStatus::Ok) {
      CHECK_BITWISE(params_of(net), params_of(twin), "a step whose poll never said stop");
      break;
    }
    ++interrupted;
    const std::string what = " after a stop at question " + std::to_string(stop_at);
    CHECK(status == StepStatus::Interrupted);
    CHECK_BITWISE(params_of(net), params, "parameters" + what);
    CHECK_BITWISE(state_of(opt), state, "optimizer state" + what);
    CHECK(opt.steps == 1 && net.rng().state() == rng);
    net.train_step(x.data(), {y.data(), nullptr}, B, cross_entropy(), opt, 0.0, &value);
    CHECK_BITWISE(params_of(net), params_of(twin), "the step after an interrupted one" + what);
  }
  CHECK(interrupted >= 8);  // every op of forward and backward, and before the update
}

TEST(a_large_dropout_mask_drawn_in_pieces_is_the_mask_of_one_draw) {
  // 1100 x 1024 values: two pieces between which an interruption is polled.
  Network<float> net(ref::mlp({4, 1024, 2}, 0.3), 8);
  const int64_t B = 1100, W = 1024;
  const auto x = ref::randn<float>(size_t(B * 4), 9);
  Rng rng = net.rng();
  CountingPoll never;
  {
    ScopedInterruptPoll installed(&never, kEveryTime);
    net.forward(x.data(), B, true);
  }
  std::vector<float> mask(size_t(B * W)), want(size_t(B * W)), got(size_t(B * W));
  dropout_mask(mask.data(), rng, B * W, 0.3);
  const float* before = net.layer_output(1);  // the ReLU's output, the Dropout's input
  for (size_t i = 0; i < mask.size(); ++i) want[i] = before[i] * mask[i];
  std::copy(net.layer_output(2), net.layer_output(2) + B * W, got.data());
  CHECK_BITWISE(got, want, "a dropout mask drawn in pieces");
  CHECK(net.rng().state() == rng.state() && never.asked >= 2);
}

TEST(an_interrupted_epoch_is_its_completed_steps) {
  const auto layers = ref::mlp({10, 24, 3}, 0.1);
  const int64_t N = 96, bs = 16;
  const auto X = ref::randn<float>(size_t(N * 10), 6);
  const auto y = labels_for(N, 3);
  OptimizerConfig c;
  c.kind = OptimizerKind::SGD;
  c.lr = 0.1;
  // Stopped at the third step: two completed steps.
  Network<float> a(layers, 4);
  Optimizer<float> oa(c, {{0, a.num_params()}});
  struct AfterSteps : InterruptPoll {
    int64_t done = 0;
    bool stop_requested() override { return done >= 2; }
  } poll;
  EpochStats st;
  {
    ScopedInterruptPoll installed(&poll, kEveryTime);
    st = a.train_epoch(X.data(), {y.data(), nullptr}, N, bs, true, cross_entropy(), oa, 0.0,
                       [&](const EpochStats& s) { poll.done = s.steps; });
  }
  CHECK(st.status == StepStatus::Interrupted && st.steps == 2 && st.samples == 2 * bs);
  CHECK(oa.steps == 2);
  // Stopped before its first step: the random generator is as before the epoch's shuffle.
  Network<float> b(layers, 4);
  Optimizer<float> ob(c, {{0, b.num_params()}});
  const Rng::State before = b.rng().state();
  CountingPoll at_once(1);
  {
    ScopedInterruptPoll installed(&at_once, kEveryTime);
    st = b.train_epoch(X.data(), {y.data(), nullptr}, N, bs, true, cross_entropy(), ob, 0.0);
  }
  CHECK(st.status == StepStatus::Interrupted && st.steps == 0 && b.rng().state() == before);
  CHECK(ob.steps == 0);
}

TEST(interrupted_inference_throws) {
  Network<float> net(ref::mlp({8, 16, 2}), 1);
  const auto x = ref::randn<float>(600 * 8, 7);
  std::vector<float> out(600 * 2);
  CountingPoll stop(1);
  bool thrown = false;
  try {
    ScopedInterruptPoll installed(&stop, kEveryTime);
    net.infer(out.data(), x.data(), 600);
  } catch (const Interrupted&) {
    thrown = true;
  }
  CHECK(thrown);
}

TEST(polls_nest_and_are_asked_at_most_every_interval) {
  CountingPoll outer, inner;
  {
    ScopedInterruptPoll a(&outer, std::chrono::hours(1));
    for (int i = 0; i < 100; ++i) CHECK(!interrupt_requested());
    CHECK(outer.asked == 0);  // not yet an hour
    {
      ScopedInterruptPoll b(&inner, kEveryTime);
      CHECK(!interrupt_requested() && !interrupt_requested());
    }
    CHECK(inner.asked == 2 && !interrupt_requested() && outer.asked == 0);
  }
  CHECK(!interrupt_requested());  // no poll: never
  CountingPoll stop(1);
  ScopedInterruptPoll c(&stop, kEveryTime);
  CHECK(interrupt_requested() && interrupt_requested() && stop.asked == 1);  // stays stopped
}
