// What several register_*.cpp files share: the Model wrapper (a network and its lock), zero-copy
// views of C++-owned buffers, and the reading of numpy arrays. Python validates and converts
// arrays before they get here; the only exception is check_batch (see check_batch.hpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
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

}  // namespace steepest::bindings
