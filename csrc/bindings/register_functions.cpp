// Free functions: the size table of a list of layer specs, the batch check, a loss as a pure
// function, gradient clipping, the matrix-product kernels and the thread count.
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>

#include "bindings/common.hpp"
#include "bindings/register.hpp"
#include "steepest/gemm_kernels.hpp"

namespace steepest::bindings {

namespace {

template <class T>
void register_typed(py::module_& m) {
  // Loss value and gradient as a pure function: (value, d(loss)/d(out), the weight the value
  // is the mean over: loss_normalizer), weighted by sample_weight (one per row) unless None.
  m.def("loss_forward",
        [](const LossSpec& spec, Array<T> out, py::array y, const Weights& sample_weight) {
          if (out.ndim() != 2) throw py::value_error("loss_forward: out must be 2-D (B, C)");
          const int64_t B = out.shape(0), C = out.shape(1);
          const BatchCheck check = check_targets(array_info(y), B, scalar_type<T>(), C, spec,
                                                 false);
          if (!check.ok())
            throw py::value_error(std::string("loss_forward: y breaks the core's rule ") +
                                  batch_rule_name(check.rule) + "; validate it first");
          require_rows(sample_weight, B, "loss_forward: sample_weight");
          Array<T> grad({B, C});
          double value, weight;
          const Target<T> t = target_of<T>(y, sample_weight);
          {
            py::gil_scoped_release release;
            value = batch_loss(grad.mutable_data(), out.data(), t.labels, t.values, B, C, spec,
                               RowWeights::over(t.weights, B), weight);
          }
          return py::make_tuple(value, grad, weight);
        },
        py::arg("loss"), py::arg("out").noconvert(), py::arg("y").noconvert(),
        py::arg("sample_weight").noconvert() = py::none());

  m.def("clip_grad_norm",
        [](Model<T>& s, double max_norm) {
          auto lock = exclusive(s);
          const double total_sq = s.net.measure_grads();
          s.net.clip_grads(total_sq, max_norm);
          return std::sqrt(total_sq);
        },
        py::arg("model"), py::arg("max_norm"));
}

}  // namespace

void register_functions(py::module_& m) {
  // The size table of a model with these layers, without building it (no buffer allocated).
  m.def("size_table", &size_table, py::arg("layers"));

  // The rules of check_batch.hpp, the one implementation of what a batch must be (Python's
  // validation asks them, then names its arguments): BatchCheck.rule is BatchRule.Ok when none
  // is broken. dtype: the model's ("float32", "float64" or a numpy dtype).
  auto model_type = [](const py::object& dtype) {
    const ScalarType type = scalar_type_of(py::dtype::from_args(dtype));
    if (type != ScalarType::Float32 && type != ScalarType::Float64)
      throw py::value_error("dtype must be float32 or float64");
    return type;
  };
  m.def("check_features",
        [model_type](py::array x, int64_t in_features, py::object dtype) {
          const ScalarType type = model_type(dtype);
          const ArrayInfo xi = array_info(x);
          py::gil_scoped_release release;
          return check_features(xi, type, in_features);
        },
        py::arg("x").noconvert(), py::arg("in_features"), py::arg("dtype"));
  m.def("check_targets",
        [model_type](py::array y, int64_t rows, int64_t out_features, const LossSpec& loss,
                     py::object dtype) {
          const ScalarType type = model_type(dtype);
          const ArrayInfo yi = array_info(y);
          py::gil_scoped_release release;
          return check_targets(yi, rows, type, out_features, loss);
        },
        py::arg("y").noconvert(), py::arg("rows"), py::arg("out_features"), py::arg("loss"),
        py::arg("dtype"));

  register_typed<float>(m);
  register_typed<double>(m);

  // The matrix-product kernels this CPU runs: "avx512" or "avx2" (steepest's own, whose
  // results do not depend on the thread count nor on the batch a row is in), or "none" (BLAS).
  m.def("gemm_isa", [] { return std::string(gemm_isa_name(gemm_isa())); });

  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
}

}  // namespace steepest::bindings
