// What several register_*.cpp files share: the Model wrapper (a network and its lock), zero-copy
// views of C++-owned buffers, and the reading of numpy arrays. Python converts arrays and
// reports broken rules with messages naming its arguments; the rules themselves are the core's
// (check_batch.hpp), and every entry point that reads data checks at least the memory-safety
// ones (require_batch) so no call can read out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "steepest/check_batch.hpp"
#include "steepest/network.hpp"

namespace steepest::bindings {

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style>;

// A zero-copy 1-D view of n values at data, kept alive by (and keeping alive) owner.
template <class T>
py::array_t<T> view(T* data, int64_t n, py::handle owner) {
  return py::array_t<T>({n}, {int64_t(sizeof(T))}, data, owner);
}

// A network plus the lock that lets many predictions run at once but never beside training,
// and the hand-over that gives other threads a copy of the parameters at a step boundary of a
// running epoch (copy_state).
template <class T>
struct Model {
  Model(std::vector<LayerSpec> layers, uint64_t seed, bool initialize)
      : net(std::move(layers), seed, initialize) {}
  Network<T> net;
  std::shared_mutex busy;
  // The input of the last forward(), kept alive for backward(); None once another call
  // (train_step, train_epoch, layer_outputs) has reused the activation buffers.
  py::object forward_input = py::none();
  // Guarded by pause: the thread running train_epoch (none: std::thread::id()), how many
  // copy_state wait for its next step boundary, and whether it waits there for them.
  std::mutex pause;
  std::condition_variable pause_cv;
  std::thread::id epoch_thread;
  int waiting = 0;
  bool paused = false;
  std::atomic<int> asked{0};    // waiting, read between steps without the mutex
  std::atomic<int> copying{0};  // copy_state holding busy shared: exclusive() waits for them
  std::atomic<pid_t> holder{0};  // the process whose thread holds busy exclusively (0: none)
};

// Whether busy is held by a thread of the process this one was forked from (the fork copied
// the lock but not the thread that will release it): then nothing here can wait for it.
template <class T>
bool held_across_fork(const Model<T>& m) {
  const pid_t holder = m.holder.load();
  return holder != 0 && holder != getpid();
}

inline std::runtime_error forked_mid_call() {
  return std::runtime_error("the model was being changed by another thread (training) "
                            "when this process was forked: its parameters may be mid-step, and "
                            "that thread does not exist here; fork before or after training, or "
                            "load a saved copy in this process");
}

// The exclusive lock of the model, marking its process as the holder while it is held.
template <class T>
class ExclusiveLock {
 public:
  ExclusiveLock(Model<T>& m, std::unique_lock<std::shared_mutex> lock)
      : m_(&m), lock_(std::move(lock)) {
    m_->holder.store(getpid());
  }
  ExclusiveLock(ExclusiveLock&&) noexcept = default;
  ~ExclusiveLock() {
    if (lock_.owns_lock()) m_->holder.store(0);  // before the unlock
  }

 private:
  Model<T>* m_;
  std::unique_lock<std::shared_mutex> lock_;
};

// The model for a call that changes it; refused while another thread trains or predicts. A
// copy_state holds the lock for a moment only: it is waited for, so that saving from another
// thread between two epochs never makes the next epoch fail.
template <class T>
ExclusiveLock<T> exclusive(Model<T>& m) {
  std::unique_lock<std::shared_mutex> lock(m.busy, std::defer_lock);
  for (;;) {
    const bool copy_running = m.copying.load() > 0;
    if (lock.try_lock()) return ExclusiveLock<T>(m, std::move(lock));
    if (held_across_fork(m)) throw forked_mid_call();
    if (!copy_running)
      throw std::runtime_error("the model is in use by another thread (training or predicting)");
    std::this_thread::yield();
  }
}

// Copies the parameters, buffers and counts into params (num_params values), buffers
// (num_buffers) and counts (num_counts) as they are after a whole step: at once
// when nothing changes the model; at the next step boundary of an epoch another thread runs
// (it pauses there for the copy); after a single call another thread makes (train_step,
// forward, an optimizer step); refused in a process forked while one of these ran. In the
// epoch's own thread (a signal handler, which the core runs only before a step's update) the
// parameters are those of the last whole step already. Call it without the GIL.
template <class T>
void copy_state(Model<T>& m, T* params, T* buffers, int64_t* counts) {
  auto copy = [&] {
    std::copy(m.net.params(), m.net.params() + m.net.num_params(), params);
    std::copy(m.net.buffers(), m.net.buffers() + m.net.num_buffers(), buffers);
    std::copy(m.net.counts(), m.net.counts() + m.net.num_counts(), counts);
  };
  for (;;) {
    bool copied = false;
    m.copying.fetch_add(1);
    {
      std::shared_lock<std::shared_mutex> lock(m.busy, std::try_to_lock);
      if (lock.owns_lock()) {
        copy();
        copied = true;
      }
    }
    m.copying.fetch_sub(1);  // after the lock is released: exclusive() waits until then
    if (copied) return;
    if (held_across_fork(m)) throw forked_mid_call();  // no step boundary will come
    std::unique_lock<std::mutex> g(m.pause);
    if (m.epoch_thread == std::this_thread::get_id()) {
      copy();
      return;
    }
    if (m.epoch_thread == std::thread::id()) {  // a single call: it ends soon
      g.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    m.asked.store(++m.waiting);
    m.pause_cv.wait(g, [&] { return m.paused || m.epoch_thread == std::thread::id(); });
    copied = m.paused;
    if (copied) copy();
    m.asked.store(--m.waiting);
    m.pause_cv.notify_all();
    if (copied) return;
  }
}

// train_epoch's side of copy_state: marks the thread running the epoch for its lifetime, and
// after each step (train_epoch's progress call) lets waiting copies take the parameters.
template <class T>
class EpochHandOver {
 public:
  explicit EpochHandOver(Model<T>& m) : m_(m) {
    std::lock_guard<std::mutex> g(m_.pause);
    m_.epoch_thread = std::this_thread::get_id();
  }
  ~EpochHandOver() {
    {
      std::lock_guard<std::mutex> g(m_.pause);
      m_.epoch_thread = std::thread::id();
    }
    m_.pause_cv.notify_all();
  }
  void between_steps() {
    if (m_.asked.load() == 0) return;
    std::unique_lock<std::mutex> g(m_.pause);
    m_.paused = true;
    m_.pause_cv.notify_all();
    m_.pause_cv.wait(g, [&] { return m_.waiting == 0; });
    m_.paused = false;
  }

 private:
  Model<T>& m_;
};

// The interruption poll of a call from Python's main thread (the one that runs signal
// handlers), installed for the object's lifetime: when the core asks it (at most every 20 ms,
// see interrupt.hpp) it takes the GIL and runs Python's signal handlers, and keeps the
// exception one raised (Ctrl-C's KeyboardInterrupt, ...) for raise_error() once the core has
// stopped. Nothing is installed on other threads: Python runs handlers on the main one only.
// stop (a callable, or None) is asked after the handlers: it serves handlers that record a
// request instead of raising (data-parallel runs, where every process must stop alike).
// Construct it with the GIL held.
class SignalPoll : public InterruptPoll {
 public:
  explicit SignalPoll(py::object stop = py::none())
      : stop_(std::move(stop)),
        installed_(PyThread_get_thread_ident() == main_thread_ident() ? this : nullptr) {}

  bool stop_requested() override {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return !stop_.is_none() && py::bool_(stop_());
    error = py::error_already_set().value();
    return true;
  }

  // Raises the handler's exception (with the GIL held, after the core stopped).
  [[noreturn]] void raise_error() const {
    if (!error) throw std::runtime_error("interrupted");
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
  }

  py::object error;  // the exception a handler raised, or null

 private:
  static unsigned long main_thread_ident() {
    static const unsigned long ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    return ident;
  }
  py::object stop_;
  ScopedInterruptPoll installed_;
};

// Sample weights as Python passes them: None, or float64 (rows), checked and converted there.
using Weights = std::optional<py::array_t<double, py::array::c_style>>;

// Labels (int64) or values of y, and the rows' weights, as train_step and the losses take them.
template <class T>
Target<T> target_of(const py::array& y, const Weights& weights = std::nullopt) {
  Target<T> t;
  if (py::isinstance<py::array_t<int64_t>>(y)) t.labels = static_cast<const int64_t*>(y.data());
  else t.values = static_cast<const T*>(y.data());
  if (weights) t.weights = weights->data();
  return t;
}

template <class T>
constexpr ScalarType scalar_type() {
  return sizeof(T) == 4 ? ScalarType::Float32 : ScalarType::Float64;
}

// The core's type of a numpy dtype: Other unless it is exactly float32, float64 or int64 (an
// equivalent dtype of the same kind; another byte order is not).
inline ScalarType scalar_type_of(const py::dtype& dt) {
  auto exact = [&](const py::dtype& want) {
    return dt.is(want) || (dt.equal(want) && dt.kind() == want.kind());
  };
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4 && exact(py::dtype::of<float>())) return ScalarType::Float32;
  if (kind == 'f' && size == 8 && exact(py::dtype::of<double>())) return ScalarType::Float64;
  if (kind == 'i' && size == 8 && exact(py::dtype::of<int64_t>())) return ScalarType::Int64;
  return ScalarType::Other;
}

// What check_batch needs of a numpy array (no copy); contiguous means C-contiguous and aligned
// to the element size.
inline ArrayInfo array_info(const py::array& a) {
  ArrayInfo info;
  const py::dtype dt = a.dtype();
  info.type = scalar_type_of(dt);
  info.contiguous = (a.flags() & py::array::c_style) &&
                    reinterpret_cast<uintptr_t>(a.data()) % uintptr_t(dt.itemsize()) == 0;
  info.ndim = a.ndim();
  info.rows = a.ndim() >= 1 ? a.shape(0) : 0;
  info.cols = a.ndim() >= 2 ? a.shape(1) : 0;
  info.data = a.data();
  return info;
}

// Throws ValueError unless x (and y, unless nullptr) pass the core's shape, type, layout and
// label-range rules for net trained with loss (check_batch with values = false): the entry
// points that take data Python validated once (fit's epochs, predict) check this much again.
template <class T>
void require_batch(const Network<T>& net, const py::array& x, const py::array* y,
                   const LossSpec& loss, const char* where) {
  const ArrayInfo xi = array_info(x);
  const ArrayInfo yi = y ? array_info(*y) : ArrayInfo{};
  const BatchCheck c = check_batch(xi, y ? &yi : nullptr, scalar_type<T>(), net.in_features(),
                                   net.out_features(), loss, false);
  if (!c.ok())
    throw py::value_error(std::string(where) + ": the data breaks the core's rule " +
                          batch_rule_name(c.rule) + "; validate it first (Sequential.check_data)");
}

// An optional per-row array (sample weights, an order) must have one entry per row: its
// absence is fine, another length a ValueError naming `what`.
template <class A>
void require_rows(const std::optional<A>& a, int64_t rows, const char* what) {
  if (a && (a->ndim() != 1 || a->shape(0) != rows))
    throw py::value_error(std::string(what) + " must have one entry per row (" +
                          std::to_string(rows) + ")");
}

}  // namespace steepest::bindings
