// The one file that includes pybind11: it registers the core's types, hands out zero-copy numpy
// views of C++-owned buffers (the owner is the view's base) and releases the GIL around every
// call that computes. Python validates and converts arrays before they get here; the one
// exception, train_step_checked, checks exact arrays itself and hands anything else back.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <mutex>
#include <shared_mutex>

#include "steepest/network.hpp"

namespace py = pybind11;
using namespace steepest;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

// A zero-copy 1-D view of n values at data, kept alive by (and keeping alive) owner.
template <class T>
py::array_t<T> view(T* data, int64_t n, py::handle owner) {
  return py::array_t<T>({n}, {int64_t(sizeof(T))}, data, owner);
}

// A network plus the lock that lets many predictions run at once but never beside training.
template <class T>
struct Model {
  Model(std::vector<LayerSpec> layers, uint64_t seed) : net(std::move(layers), seed) {}
  Network<T> net;
  std::shared_mutex busy;
  // The input of the last forward(), kept alive for backward(); None once another call
  // (train_step, train_epoch, layer_outputs) has reused the activation buffers.
  py::object forward_input = py::none();
};

template <class T>
std::unique_lock<std::shared_mutex> exclusive(Model<T>& m) {
  std::unique_lock<std::shared_mutex> lock(m.busy, std::try_to_lock);
  if (!lock.owns_lock())
    throw std::runtime_error("the model is in use by another thread (training or predicting)");
  return lock;
}

// Polled by train_epoch between steps: every 20 ms, take the GIL and run Python's signal
// handlers, so Ctrl-C stops an epoch at a step boundary.
struct SignalPoll {
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  py::object error;  // the exception a handler raised (KeyboardInterrupt, ...)
  bool operator()() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(20)) return false;
    last = now;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    error = py::error_already_set().value();
    return true;
  }
};

const char* status_name(StepStatus s) {
  switch (s) {
    case StepStatus::Ok: return "ok";
    case StepStatus::NonFiniteLoss: return "non-finite loss";
    case StepStatus::NonFiniteGradient: return "non-finite gradient";
    case StepStatus::Interrupted: return "interrupted";
  }
  return "?";
}

template <class T>
Target<T> target_of(const py::array& y) {
  Target<T> t;
  if (py::isinstance<py::array_t<int64_t>>(y)) t.labels = static_cast<const int64_t*>(y.data());
  else t.values = static_cast<const T*>(y.data());
  return t;
}

// One Network::train_step on x (B rows) and y with the model locked and the GIL released;
// (status, loss) for Python. Both train_step bindings end here.
template <class T>
py::tuple locked_train_step(Model<T>& s, const T* x, int64_t B, const py::array& y,
                            const LossSpec& spec, Optimizer<T>& opt, double clip_norm) {
  auto lock = exclusive(s);
  s.forward_input = py::none();
  double value = 0;
  StepStatus status;
  {
    py::gil_scoped_release release;
    status = s.net.train_step(x, target_of<T>(y), B, spec, opt, clip_norm, &value);
  }
  return py::make_tuple(status_name(status), value);
}

// The fast path of Sequential.train_step: true when x and y are exactly what Python's
// validation would hand over unchanged (C-contiguous, aligned, the model's dtype or int64
// labels, the right shapes) and pass its checks: finite values, labels in [0, C), BCE targets
// in [0, 1]. Anything else goes the slow way, which converts or raises the usual error.
template <class T>
bool fast_input_ok(const Network<T>& net, const py::array& x, const py::array& y,
                   const LossSpec& spec) {
  auto exact = [](const py::array& a, py::dtype dt) {
    return a.dtype().is(dt) || (a.dtype().equal(dt) && a.dtype().kind() == dt.kind());
  };
  auto aligned = [](const py::array& a, size_t align) {
    return (a.flags() & py::array::c_style) && reinterpret_cast<uintptr_t>(a.data()) % align == 0;
  };
  const py::dtype dt = py::dtype::of<T>();
  if (!exact(x, dt) || !aligned(x, alignof(T)) || x.ndim() != 2 || x.shape(0) < 1 ||
      x.shape(1) != net.in_features())
    return false;
  const int64_t B = x.shape(0), C = net.out_features();
  if (!all_finite(static_cast<const T*>(x.data()), B * net.in_features())) return false;
  if (spec.kind == LossKind::CrossEntropy) {
    if (!exact(y, py::dtype::of<int64_t>()) || !aligned(y, alignof(int64_t)) || y.ndim() != 1 ||
        y.shape(0) != B)
      return false;
    const int64_t* labels = static_cast<const int64_t*>(y.data());
    for (int64_t i = 0; i < B; ++i)
      if (labels[i] < 0 || labels[i] >= C) return false;
    return true;
  }
  const bool shape_ok = (y.ndim() == 2 && y.shape(0) == B && y.shape(1) == C) ||
                        (y.ndim() == 1 && C == 1 && y.shape(0) == B);
  if (!exact(y, dt) || !aligned(y, alignof(T)) || !shape_ok) return false;
  const T* v = static_cast<const T*>(y.data());
  if (!all_finite(v, B * C)) return false;
  if (spec.kind == LossKind::BinaryCrossEntropy) {
    for (int64_t i = 0; i < B * C; ++i)
      if (!(v[i] >= T(0) && v[i] <= T(1))) return false;
  }
  return true;
}

template <class T>
void register_model(py::module_& m, const char* name) {
  using M = Model<T>;
  py::class_<Optimizer<T>>(m, (std::string("Optimizer") + (name + 7)).c_str())
      .def(py::init<const OptimizerConfig&, std::vector<std::pair<int64_t, int64_t>>>(),
           py::arg("config"), py::arg("ranges"))
      .def_readwrite("config", &Optimizer<T>::config)
      .def_readwrite("steps", &Optimizer<T>::steps)
      .def_property_readonly("ranges", &Optimizer<T>::ranges)
      .def("step",
           [](Optimizer<T>& opt, M& model) {
             auto lock = exclusive(model);
             py::gil_scoped_release release;
             opt.step(model.net.params(), model.net.grads());
           })
      .def("state", [](py::object self) {
        auto& opt = self.cast<Optimizer<T>&>();
        py::dict out;
        for (auto& [key, buf] : opt.state()) out[key.c_str()] = view<T>(buf->data(), buf->size(), self);
        return out;
      });

  py::class_<M>(m, name)
      .def(py::init<std::vector<LayerSpec>, uint64_t>(), py::arg("layers"), py::arg("seed"))
      .def_property_readonly("layers", [](M& s) { return s.net.layers(); })
      .def_property_readonly("num_params", [](M& s) { return s.net.num_params(); })
      .def_property_readonly("params", [](py::object self) {
        auto& s = self.cast<M&>();
        return view<T>(s.net.params(), s.net.num_params(), self);
      })
      .def_property_readonly("grads", [](py::object self) {
        auto& s = self.cast<M&>();
        return view<T>(s.net.grads(), s.net.num_params(), self);
      })
      .def_property(
          "rng_state", [](M& s) { return s.net.rng().state(); },
          [](M& s, const Rng::State& st) {
            auto lock = exclusive(s);
            s.net.rng().set_state(st);
          })
      .def("initialize",
           [](M& s) {
             auto lock = exclusive(s);
             s.net.initialize();
           })
      .def("forward",
           [](M& s, Array<T> x, bool training) {
             auto lock = exclusive(s);
             const int64_t B = x.shape(0);
             Array<T> out({B, s.net.out_features()});
             {
               py::gil_scoped_release release;
               const T* y = s.net.forward(x.data(), B, training);
               std::copy(y, y + B * s.net.out_features(), out.mutable_data());
             }
             s.forward_input = x;
             return out;
           },
           py::arg("x").noconvert(), py::arg("training"))
      .def("backward",
           [](M& s, Array<T> dy, bool accumulate) {
             auto lock = exclusive(s);
             if (s.forward_input.is_none())
               throw std::runtime_error("backward needs a forward(x, training=True) first (another "
                                        "call since has reused its buffers)");
             if (dy.ndim() != 2 || dy.shape(0) != s.net.batch() ||
                 dy.shape(1) != s.net.out_features())
               throw std::invalid_argument("backward: dy must have the shape of the last forward "
                                           "output");
             py::gil_scoped_release release;
             s.net.backward(dy.data(), accumulate);
           },
           py::arg("dy").noconvert(), py::arg("accumulate"))
      .def("layer_outputs",
           [](M& s, Array<T> x) {
             // Every layer's output for x, dropout off: copies, for diagnostics.
             auto lock = exclusive(s);
             s.forward_input = py::none();
             const int64_t B = x.shape(0);
             {
               py::gil_scoped_release release;
               s.net.forward(x.data(), B, false);
             }
             py::list out;
             for (size_t k = 0; k < s.net.layers().size(); ++k) {
               const int64_t W = s.net.layers()[k].out;
               Array<T> a({B, W});
               std::copy(s.net.layer_output(k), s.net.layer_output(k) + B * W, a.mutable_data());
               out.append(a);
             }
             return out;
           },
           py::arg("x").noconvert())
      .def("measure_grads", [](M& s) {
        auto lock = exclusive(s);
        s.net.measure_grads();
        return s.net.layer_grad_sq();
      })
      .def("train_step",
           [](M& s, Array<T> x, py::array y, const LossSpec& spec, Optimizer<T>& opt,
              double clip_norm) {
             return locked_train_step(s, x.data(), x.shape(0), y, spec, opt, clip_norm);
           },
           py::arg("x").noconvert(), py::arg("y"), py::arg("loss"), py::arg("optimizer"),
           py::arg("clip_norm"))
      .def("train_step_checked",
           // train_step for arrays that need no conversion, validated here in one pass (see
           // fast_input_ok); ("unchecked", 0.0) and nothing done when they are not.
           [](M& s, py::array x, py::array y, const LossSpec& spec, Optimizer<T>& opt,
              double clip_norm) -> py::tuple {
             if (!fast_input_ok(s.net, x, y, spec)) return py::make_tuple("unchecked", 0.0);
             return locked_train_step(s, static_cast<const T*>(x.data()), x.shape(0), y, spec,
                                      opt, clip_norm);
           },
           py::arg("x"), py::arg("y"), py::arg("loss"), py::arg("optimizer"),
           py::arg("clip_norm"))
      .def("train_epoch",
           [](M& s, Array<T> X, py::array y, int64_t batch_size, bool shuffle,
              const LossSpec& spec, Optimizer<T>& opt, double clip_norm) {
             auto lock = exclusive(s);
             s.forward_input = py::none();
             SignalPoll poll;
             EpochStats st;
             {
               py::gil_scoped_release release;
               st = s.net.train_epoch(X.data(), target_of<T>(y), X.shape(0), batch_size, shuffle,
                                      spec, opt, clip_norm, std::ref(poll));
             }
             py::dict out;
             out["loss"] = st.loss;
             out["steps"] = st.steps;
             out["samples"] = st.samples;
             out["correct"] = st.correct;
             out["status"] = status_name(st.status);
             out["bad_loss"] = st.bad_loss;
             out["grad_norms"] = st.grad_norms;
             out["error"] = poll.error ? poll.error : py::none();
             return out;
           },
           py::arg("X").noconvert(), py::arg("y"), py::arg("batch_size"), py::arg("shuffle"),
           py::arg("loss"), py::arg("optimizer"), py::arg("clip_norm"))
      .def("infer",
           [](M& s, Array<T> x) {
             std::shared_lock<std::shared_mutex> lock(s.busy, std::try_to_lock);
             if (!lock.owns_lock())
               throw std::runtime_error("the model is being trained by another thread");
             const int64_t N = x.shape(0);
             Array<T> out({N, s.net.out_features()});
             py::gil_scoped_release release;
             s.net.infer(out.mutable_data(), x.data(), N);
             return out;
           },
           py::arg("x").noconvert());

  // Loss value and gradient as a pure function: (value, d(loss)/d(out)).
  m.def("loss_forward",
        [](const LossSpec& spec, Array<T> out, py::array y) {
          const int64_t B = out.shape(0), C = out.shape(1);
          Array<T> grad({B, C});
          double value;
          Target<T> t = target_of<T>(y);
          {
            py::gil_scoped_release release;
            value = spec.kind == LossKind::CrossEntropy
                        ? cross_entropy_loss(grad.mutable_data(), out.data(), t.labels, B, C,
                                             spec.label_smoothing)
                        : regression_loss(grad.mutable_data(), out.data(), t.values, B, C, spec);
          }
          return py::make_tuple(value, grad);
        },
        py::arg("loss"), py::arg("out").noconvert(), py::arg("y"));

  m.def("clip_grad_norm",
        [](M& s, double max_norm) {
          auto lock = exclusive(s);
          const double total_sq = s.net.measure_grads();
          s.net.clip_grads(total_sq, max_norm);
          return std::sqrt(total_sq);
        },
        py::arg("model"), py::arg("max_norm"));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "steepest's C++ core: networks, losses and optimizers over flat buffers";

  py::enum_<LayerKind>(m, "LayerKind")
      .value("Dense", LayerKind::Dense)
      .value("Activation", LayerKind::Activation)
      .value("Softmax", LayerKind::Softmax)
      .value("Dropout", LayerKind::Dropout);
  py::enum_<Activation>(m, "Activation")
      .value("ReLU", Activation::ReLU)
      .value("LeakyReLU", Activation::LeakyReLU)
      .value("ELU", Activation::ELU)
      .value("GELU", Activation::GELU)
      .value("SiLU", Activation::SiLU)
      .value("Sigmoid", Activation::Sigmoid)
      .value("Tanh", Activation::Tanh)
      .value("Softplus", Activation::Softplus);
  py::enum_<Init>(m, "Init")
      .value("torch_default", Init::TorchDefault)
      .value("glorot_uniform", Init::GlorotUniform)
      .value("glorot_normal", Init::GlorotNormal)
      .value("he_uniform", Init::HeUniform)
      .value("he_normal", Init::HeNormal)
      .value("lecun_normal", Init::LecunNormal)
      .value("normal", Init::Normal)
      .value("zeros", Init::Zeros);
  py::enum_<LossKind>(m, "LossKind")
      .value("MSE", LossKind::MSE)
      .value("L1", LossKind::L1)
      .value("Huber", LossKind::Huber)
      .value("BinaryCrossEntropy", LossKind::BinaryCrossEntropy)
      .value("CrossEntropy", LossKind::CrossEntropy);
  py::enum_<OptimizerKind>(m, "OptimizerKind")
      .value("SGD", OptimizerKind::SGD)
      .value("Adam", OptimizerKind::Adam)
      .value("AdamW", OptimizerKind::AdamW)
      .value("RMSprop", OptimizerKind::RMSprop)
      .value("Adagrad", OptimizerKind::Adagrad);

  py::class_<LayerSpec>(m, "LayerSpec")
      .def(py::init<>())
      .def_readwrite("kind", &LayerSpec::kind)
      .def_readwrite("in_features", &LayerSpec::in)
      .def_readwrite("out_features", &LayerSpec::out)
      .def_readwrite("bias", &LayerSpec::bias)
      .def_readwrite("activation", &LayerSpec::activation)
      .def_readwrite("param", &LayerSpec::param)
      .def_readwrite("init", &LayerSpec::init)
      .def_readonly("weight_offset", &LayerSpec::weight_offset)
      .def_readonly("bias_offset", &LayerSpec::bias_offset);

  py::class_<LossSpec>(m, "LossSpec")
      .def(py::init<>())
      .def_readwrite("kind", &LossSpec::kind)
      .def_readwrite("delta", &LossSpec::delta)
      .def_readwrite("label_smoothing", &LossSpec::label_smoothing);

  py::class_<OptimizerConfig>(m, "OptimizerConfig")
      .def(py::init<>())
      .def_readwrite("kind", &OptimizerConfig::kind)
      .def_readwrite("lr", &OptimizerConfig::lr)
      .def_readwrite("weight_decay", &OptimizerConfig::weight_decay)
      .def_readwrite("momentum", &OptimizerConfig::momentum)
      .def_readwrite("dampening", &OptimizerConfig::dampening)
      .def_readwrite("nesterov", &OptimizerConfig::nesterov)
      .def_readwrite("beta1", &OptimizerConfig::beta1)
      .def_readwrite("beta2", &OptimizerConfig::beta2)
      .def_readwrite("amsgrad", &OptimizerConfig::amsgrad)
      .def_readwrite("eps", &OptimizerConfig::eps)
      .def_readwrite("alpha", &OptimizerConfig::alpha)
      .def_readwrite("centered", &OptimizerConfig::centered)
      .def_readwrite("lr_decay", &OptimizerConfig::lr_decay)
      .def_readwrite("initial_accumulator_value", &OptimizerConfig::initial_accumulator_value);

  register_model<float>(m, "Network32");
  register_model<double>(m, "Network64");

  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
}
