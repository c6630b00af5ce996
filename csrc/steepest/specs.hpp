// What describes a model and its training, in one place: the enums (layers, activations,
// initializers, losses, optimizers, step outcomes) and the plain structs built from them that
// the network, the optimizers and the bindings share. Data only, no behaviour.
#pragma once

#include <cstdint>
#include <vector>

namespace steepest {

// ---------------------------------------------------------------------------------------------
// Layers

// BatchNorm is torch's BatchNorm1d on (B, C); Standardize and MinMaxScale rescale each feature
// with statistics learned from data ((x - mean) / std, (x - min) / range), not by gradients.
enum class LayerKind : int32_t {
  Dense, Activation, Softmax, Dropout, BatchNorm, LayerNorm, Standardize, MinMaxScale
};

// GELU is the exact form (erf); GELUTanh torch's approximate="tanh".
enum class Activation : int32_t {
  ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh, Softplus, GELUTanh
};

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
  bool bias = true;                          // Dense, BatchNorm, LayerNorm: a trainable bias
  Activation activation = Activation::ReLU;  // Activation
  double param = 0.0;  // LeakyReLU slope, ELU alpha, Softplus beta, Dropout probability
  double threshold = 20.0;  // Softplus: linear where beta * x > threshold
  Init init = Init::TorchDefault;            // Dense
  bool affine = true;   // BatchNorm, LayerNorm: a trainable weight (scale)
  double eps = 1e-5;    // BatchNorm, LayerNorm: added to the variance
  // BatchNorm's running statistics: running = (1 - momentum) running + momentum batch; a
  // negative momentum is torch's momentum=None, the cumulative average (1 / batches seen).
  double momentum = 0.1;
  bool track_running_stats = true;  // BatchNorm: without, eval mode uses batch statistics
  // Filled in by the network from the size table:
  int64_t weight_offset = -1, bias_offset = -1;
};

// ---------------------------------------------------------------------------------------------
// Losses, with mean reduction as torch.nn's reduction="mean".

// PoissonNLL: exp(out) - target * out, out the log of the rate (torch.nn.PoissonNLLLoss with
// log_input=True, full=False).
enum class LossKind : int32_t { MSE, L1, Huber, BinaryCrossEntropy, CrossEntropy, PoissonNLL };

// With sample weights the mean is weighted: sum_r w_r loss_r / sum_r w_r.
struct LossSpec {
  LossSpec(LossKind k = LossKind::MSE) : kind(k) {}  // NOLINT: a kind is a spec with defaults
  LossKind kind;
  double delta = 1.0;            // Huber
  double label_smoothing = 0.0;  // CrossEntropy
  double scale = 1.0;  // multiplies the loss and its gradient
  // In a training step, l2 / 2 ||W||^2 / (sum of the batch's sample weights, or its rows) is
  // added for every Dense weight W, biases excepted: scikit-learn's alpha.
  double l2 = 0.0;
  // torch's options. CrossEntropy: one weight per class; BinaryCrossEntropy: one per output
  // (broadcast over the rows). Empty: all 1. With class indices the mean is torch's weighted
  // mean, sum_i w_i weight[y_i] l_i / sum_i w_i weight[y_i] (w_i: the sample weights, rows
  // with ignore_index left out of both sums); every other mean is over the rows (or the sum
  // of their sample weights). A batch whose normalizer is 0 has loss 0 and no gradient.
  std::vector<double> weight;
  std::vector<double> pos_weight;  // BinaryCrossEntropy: per output, the positives' weight
  int64_t ignore_index = -100;     // CrossEntropy with class indices: rows that count 0
};

// ---------------------------------------------------------------------------------------------
// Optimizers, with torch.optim's names, defaults and semantics.

enum class OptimizerKind : int32_t { SGD, Adam, AdamW, RMSprop, Adagrad };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::SGD;
  double lr = 1e-3;
  double weight_decay = 0.0;
  bool maximize = false;  // every kind: ascend the gradient (the update of -grad)
  // SGD and RMSprop
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9, beta2 = 0.999;
  bool amsgrad = false;
  double eps = 1e-8;
  // RMSprop
  double alpha = 0.99;
  bool centered = false;
  // Adagrad
  double lr_decay = 0.0;
  double initial_accumulator_value = 0.0;
};

// ---------------------------------------------------------------------------------------------
// Training outcomes

enum class StepStatus : int32_t { Ok, NonFiniteLoss, NonFiniteGradient, Interrupted };

struct EpochStats {
  double loss = 0.0;       // mean loss over the samples of the completed steps (weighted)
  int64_t steps = 0;       // completed optimizer steps
  int64_t samples = 0;     // samples in those steps
  int64_t correct = 0;     // CrossEntropy: of those, predicted right (argmax == label) before
  int64_t scored = 0;      // the update, out of `scored` (the rows without ignore_index)
  double loss_weight = 0.0;  // what `loss` is the mean over: the rows, or their weights
  StepStatus status = StepStatus::Ok;
  double bad_loss = 0.0;   // the offending loss when status is NonFinite*
  std::vector<double> grad_norms;  // per Dense layer: mean over steps of ||grad||_2
  double step_loss = 0.0;  // during the epoch (train_epoch's progress): the last step's loss
  double sum_seconds = 0.0;  // data-parallel: time spent summing gradients over the processes
};

}  // namespace steepest
