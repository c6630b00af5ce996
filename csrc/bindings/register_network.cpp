// Network32 / Network64: a network with zero-copy views of its flat params, grads, buffers and
// counts, and its calls (forward, backward, train_step, train_epoch, infer), each with the model
// locked and the GIL released around the computation.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <functional>

#include "bindings/common.hpp"
#include "bindings/register.hpp"

namespace steepest::bindings {

namespace {

// The stored type of a numpy dtype the core reads in place (native byte order), if any.
bool stored_type_of(const py::dtype& dt, StoredType* type) {
  if (dt.byteorder() == '>') return false;
  const auto size = dt.itemsize();
  switch (dt.kind()) {
    case 'f':
      if (size == 2) *type = StoredType::F16;
      else if (size == 4) *type = StoredType::F32;
      else if (size == 8) *type = StoredType::F64;
      else return false;
      return true;
    case 'i': case 'u': case 'b': {
      const bool sign = dt.kind() == 'i';
      if (size == 1) *type = sign ? StoredType::I8 : StoredType::U8;
      else if (size == 2) *type = sign ? StoredType::I16 : StoredType::U16;
      else if (size == 4) *type = sign ? StoredType::I32 : StoredType::U32;
      else if (size == 8) *type = sign ? StoredType::I64 : StoredType::U64;
      else return false;
      return true;
    }
    default: return false;
  }
}

// Rows of `width` values from one array or a list of arrays (the parts, in order), each
// C-contiguous of a stored type with shape (rows, width), or (rows,) when width is 1. Python
// has validated the values; this checks only what reading them in place needs.
Rows rows_from(const py::object& data, int64_t width, const char* name) {
  std::vector<RowPart> parts;
  py::list arrays;
  if (py::isinstance<py::array>(data)) arrays.append(data);
  else arrays = py::list(data);
  for (const py::handle& item : arrays) {
    if (!py::isinstance<py::array>(item))
      throw py::type_error(std::string(name) + ": every part must be a numpy array");
    const auto a = py::reinterpret_borrow<py::array>(item);
    RowPart part;
    const bool shape_ok = a.ndim() == 2 ? a.shape(1) == width : a.ndim() == 1 && width == 1;
    if (!shape_ok || !(a.flags() & py::array::c_style) || !stored_type_of(a.dtype(), &part.type))
      throw py::value_error(std::string(name) +
                            ": every part must be a C-contiguous numeric array of width " +
                            std::to_string(width));
    part.data = a.data();
    part.rows = a.shape(0);
    parts.push_back(part);
  }
  return Rows(std::move(parts), width);
}

// ndim of data (an array, or a list of arrays: its first).
int first_part_ndim(const py::object& data) {
  if (py::isinstance<py::array>(data)) return int(data.cast<py::array>().ndim());
  const py::list parts(data);
  if (parts.empty() || !py::isinstance<py::array>(parts[0])) return 0;
  return int(parts[0].cast<py::array>().ndim());
}

// At most this often train_epoch reports its progress to Python (taking the GIL).
constexpr std::chrono::milliseconds kProgressInterval{50};

// One Network::train_step on x and y: (check, status, loss). The batch is checked first by the
// core's rules (check_batch.hpp, values included); when it breaks one, nothing runs and check
// says which (Python then converts, or raises with its argument names). Otherwise the step runs
// with the model locked and the GIL released; a signal handler's exception (Ctrl-C) interrupts
// it and is raised here, the step abandoned.
template <class T>
py::tuple checked_train_step(Model<T>& s, const py::array& x, const py::array& y,
                             const LossSpec& spec, Optimizer<T>& opt, double clip_norm,
                             const Weights& sample_weight) {
  const ArrayInfo xi = array_info(x), yi = array_info(y);
  const BatchCheck check = check_batch(xi, &yi, scalar_type<T>(), s.net.in_features(),
                                       s.net.out_features(), spec);
  if (!check.ok()) return py::make_tuple(check, StepStatus::Ok, 0.0);
  require_rows(sample_weight, xi.rows, "train_step: sample_weight");
  auto lock = exclusive(s);
  s.forward_input = py::none();
  SignalPoll poll;
  double value = 0;
  StepStatus status;
  {
    py::gil_scoped_release release;
    status = s.net.train_step(static_cast<const T*>(x.data()), target_of<T>(y, sample_weight),
                              xi.rows, spec, opt, clip_norm, &value);
  }
  if (status == StepStatus::Interrupted) poll.raise_error();
  return py::make_tuple(check, status, value);
}

// Runs compute() with the GIL released and the signal poll installed; an interruption raises
// the signal handler's exception.
template <class F>
void interruptible(F&& compute) {
  SignalPoll poll;
  try {
    py::gil_scoped_release release;
    compute();
  } catch (const Interrupted&) {
    poll.raise_error();
  }
}

template <class T>
void register_model(py::module_& m, const char* name) {
  using M = Model<T>;
  py::class_<M>(m, name)
      .def(py::init<std::vector<LayerSpec>, uint64_t, bool>(), py::arg("layers"), py::arg("seed"),
           py::arg("initialize") = true)
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
             require_batch(s.net, x, nullptr, LossSpec{}, "forward");
             auto lock = exclusive(s);
             const int64_t B = x.shape(0);
             Array<T> out({B, s.net.out_features()});
             s.forward_input = py::none();
             interruptible([&] {
               const T* y = s.net.forward(x.data(), B, training);
               std::copy(y, y + B * s.net.out_features(), out.mutable_data());
             });
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
             interruptible([&] { s.net.backward(dy.data(), accumulate); });
           },
           py::arg("dy").noconvert(), py::arg("accumulate"))
      .def("layer_outputs",
           [](M& s, Array<T> x) {
             // Every layer's output for x, dropout off: copies, for diagnostics.
             require_batch(s.net, x, nullptr, LossSpec{}, "layer_outputs");
             auto lock = exclusive(s);
             s.forward_input = py::none();
             const int64_t B = x.shape(0);
             interruptible([&] { s.net.forward(x.data(), B, false); });
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
      .def("train_step", &checked_train_step<T>, py::arg("x").noconvert(),
           py::arg("y").noconvert(), py::arg("loss"), py::arg("optimizer"), py::arg("clip_norm"),
           py::arg("sample_weight").noconvert() = py::none())
      .def("gradient",
           // Network::gradient on (x, y, weights): the loss, with its gradient in grads.
           [](M& s, Array<T> x, py::array y, const LossSpec& spec, const Weights& weights,
              bool training) {
             require_batch(s.net, x, &y, spec, "gradient");
             require_rows(weights, x.shape(0), "gradient: weights");
             auto lock = exclusive(s);
             s.forward_input = py::none();
             double value = 0;
             interruptible([&] {
               value = s.net.gradient(x.data(), target_of<T>(y, weights), x.shape(0), spec,
                                      training);
             });
             return value;
           },
           py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("loss"),
           py::arg("weights").noconvert(), py::arg("training"))
      .def_property(
          "float64_sums", [](M& s) { return s.net.float64_sums(); },
          [](M& s, bool on) {
            auto lock = exclusive(s);
            s.net.set_float64_sums(on);
          })
      .def_property_readonly("reduce_buffer", [](py::object self) {
        // What a data-parallel step sums over the processes (see Network::reduce_size).
        auto& s = self.cast<M&>();
        return view<T>(s.net.grads(), s.net.reduce_size(), self);
      })
      .def("train_epoch",
           // X, y: an array or a list of arrays (the parts, read in place and converted per
           // batch; see rows.hpp; the epoch checks every batch's labels); labels when the loss
           // is CrossEntropy and y is 1-D, else targets (CrossEntropy: class probabilities).
           // progress: None, or called as progress(steps, samples, mean loss)
           // at most every kProgressInterval, between steps. With sum (a callable that sums
           // reduce_buffer over the processes in place), a data-parallel epoch as process
           // `rank` of `size`; stop: see SignalPoll. on_step: None, or called as
           // on_step(step, loss) after every step (the step's index in the epoch and its loss);
           // it may change the optimizer, and what it raises ends the epoch after that step.
           // weights: None or one per row; order: None or a permutation of the rows, the order
           // of the epoch.
           [](M& s, py::object X, py::object y, int64_t batch_size, bool shuffle,
              const LossSpec& spec, Optimizer<T>& opt, double clip_norm, py::object progress,
              int64_t rank, int64_t size, py::object sum, py::object stop, py::object on_step,
              const Weights& weights, const std::optional<Array<int64_t>>& order) {
             const bool labels = spec.kind == LossKind::CrossEntropy && first_part_ndim(y) == 1;
             const Rows xs = rows_from(X, s.net.in_features(), "X");
             const Rows ys = rows_from(y, labels ? 1 : s.net.out_features(), "y");
             if (xs.size() != ys.size() || xs.size() == 0)
               throw py::value_error("train_epoch: X and y must have the same, non-zero rows");
             if (batch_size < 1) throw py::value_error("train_epoch: batch_size must be >= 1");
             if (size < 1 || rank < 0 || rank >= size || (size > 1) == sum.is_none())
               throw py::value_error("train_epoch: rank must be in [0, size), sum given iff "
                                     "size > 1");
             require_rows(weights, xs.size(), "train_epoch: weights");
             require_rows(order, xs.size(), "train_epoch: order");
             if (order) {
               const int64_t N = xs.size();
               const int64_t* o = order->data();
               if (std::any_of(o, o + N, [N](int64_t i) { return i < 0 || i >= N; }))
                 throw py::value_error("train_epoch: order holds an index outside the rows");
             }
             auto lock = exclusive(s);
             s.forward_input = py::none();
             SignalPoll poll(stop);
             std::function<void(const EpochStats&)> report;
             auto last = std::chrono::steady_clock::now();
             if (!progress.is_none() || !on_step.is_none()) {
               report = [&](const EpochStats& st) {
                 if (!on_step.is_none()) {
                   py::gil_scoped_acquire gil;
                   on_step(st.steps - 1, st.step_loss);
                 }
                 const auto now = std::chrono::steady_clock::now();
                 if (progress.is_none() || now - last < kProgressInterval) return;
                 last = now;
                 py::gil_scoped_acquire gil;
                 progress(st.steps, st.samples, st.loss);
               };
             }
             EpochHandOver<T> hand_over(s);
             auto after_step = [&](const EpochStats& st) {
               hand_over.between_steps();
               if (report) report(st);
             };
             // The sum runs Python (mpi4py) with the GIL held for the call only; the callable
             // is a C function (no bytecode), so no signal handler runs inside it.
             py::object sum_error = py::none();
             Parallel<T> parallel{rank, size, [&](T*, int64_t) {
                                    py::gil_scoped_acquire gil;
                                    try {
                                      sum();
                                      return true;
                                    } catch (py::error_already_set& e) {
                                      sum_error = e.value();
                                      return false;
                                    }
                                  }};
             EpochStats st;
             {
               py::gil_scoped_release release;
               st = s.net.train_epoch(xs, ys, labels, batch_size, shuffle, spec, opt, clip_norm,
                                      after_step, size > 1 ? &parallel : nullptr,
                                      weights ? weights->data() : nullptr,
                                      order ? order->data() : nullptr);
             }
             py::dict out;
             out["loss"] = st.loss;
             out["steps"] = st.steps;
             out["samples"] = st.samples;
             out["correct"] = st.correct;
             out["scored"] = st.scored;
             out["loss_weight"] = st.loss_weight;
             out["status"] = st.status;
             out["bad_loss"] = st.bad_loss;
             out["grad_norms"] = st.grad_norms;
             out["error"] = poll.error ? poll.error : py::none();
             out["sum_seconds"] = st.sum_seconds;
             out["sum_error"] = sum_error;
             return out;
           },
           py::arg("X"), py::arg("y"), py::arg("batch_size"), py::arg("shuffle"),
           py::arg("loss"), py::arg("optimizer"), py::arg("clip_norm"),
           py::arg("progress") = py::none(), py::arg("rank") = 0, py::arg("size") = 1,
           py::arg("sum") = py::none(), py::arg("stop") = py::none(),
           py::arg("on_step") = py::none(), py::arg("weights").noconvert() = py::none(),
           py::arg("order").noconvert() = py::none())
      .def("copy_state",
           // (params, buffers, counts): copies after a whole step, also while another thread
           // trains (see copy_state).
           [](M& s) {
             Array<T> params({s.net.num_params()}), buffers({s.net.num_buffers()});
             Array<int64_t> counts({s.net.num_counts()});
             T* p = params.mutable_data();
             T* b = buffers.mutable_data();
             int64_t* c = counts.mutable_data();
             {
               py::gil_scoped_release release;
               copy_state(s, p, b, c);
             }
             return py::make_tuple(params, buffers, counts);
           })
      .def("write_state",
           // Replaces the parameters, buffers and counts (flat, of num_params, num_buffers and
           // num_counts values); refused while another thread trains or predicts.
           [](M& s, Array<T> params, Array<T> buffers, Array<int64_t> counts) {
             if (params.ndim() != 1 || params.shape(0) != s.net.num_params() ||
                 buffers.ndim() != 1 || buffers.shape(0) != s.net.num_buffers() ||
                 counts.ndim() != 1 || counts.shape(0) != s.net.num_counts())
               throw std::invalid_argument(
                   "write_state: params, buffers and counts must have num_params, num_buffers "
                   "and num_counts values");
             auto lock = exclusive(s);
             std::copy(params.data(), params.data() + params.shape(0), s.net.params());
             std::copy(buffers.data(), buffers.data() + buffers.shape(0), s.net.buffers());
             std::copy(counts.data(), counts.data() + counts.shape(0), s.net.counts());
           },
           py::arg("params").noconvert(), py::arg("buffers").noconvert(),
           py::arg("counts").noconvert())
      .def("infer",
           [](M& s, Array<T> x) {
             require_batch(s.net, x, nullptr, LossSpec{}, "infer");
             std::shared_lock<std::shared_mutex> lock(s.busy, std::try_to_lock);
             if (!lock.owns_lock()) {
               if (held_across_fork(s)) throw forked_mid_call();
               throw std::runtime_error("the model is being trained by another thread");
             }
             const int64_t N = x.shape(0);
             Array<T> out({N, s.net.out_features()});
             interruptible([&] { s.net.infer(out.mutable_data(), x.data(), N); });
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

