// Network32 / Network64: a network with zero-copy views of its flat params, grads, buffers and
// counts, and its calls (forward, backward, train_step, train_epoch, infer), each with the model
// locked and the GIL released around the computation.
#include <pybind11/stl.h>

#include <chrono>

#include "bindings/common.hpp"
#include "bindings/register.hpp"

namespace steepest::bindings {

namespace {

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

template <class T>
void register_model(py::module_& m, const char* name) {
  using M = Model<T>;
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
      .def_property_readonly("buffers", [](py::object self) {
        auto& s = self.cast<M&>();
        return view<T>(s.net.buffers(), s.net.num_buffers(), self);
      })
      .def_property_readonly("counts", [](py::object self) {
        auto& s = self.cast<M&>();
        return view<int64_t>(s.net.counts(), s.net.num_counts(), self);
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
           // The fast path of Sequential.train_step: train_step for arrays that need no
           // conversion and pass check_batch, checked here in one pass; ("unchecked", 0.0) and
           // nothing done for anything else, which goes the slow way (converted, or the usual
           // error).
           [](M& s, py::array x, py::array y, const LossSpec& spec, Optimizer<T>& opt,
              double clip_norm) -> py::tuple {
             const ArrayInfo xi = array_info(x), yi = array_info(y);
             if (!check_batch(xi, &yi, scalar_type<T>(), s.net.in_features(),
                              s.net.out_features(), spec.kind)
                      .ok())
               return py::make_tuple("unchecked", 0.0);
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
}

}  // namespace

void register_network(py::module_& m) {
  register_model<float>(m, "Network32");
  register_model<double>(m, "Network64");
}

}  // namespace steepest::bindings

