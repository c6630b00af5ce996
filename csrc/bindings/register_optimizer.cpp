// Optimizer32 / Optimizer64: an optimizer over ranges of a network's flat buffers, its config,
// its step count and zero-copy views of its state buffers (the optimizer is their base).
#include <pybind11/stl.h>

#include <string>

#include "bindings/common.hpp"
#include "bindings/register.hpp"

namespace steepest::bindings {

namespace {

template <class T>
void register_optimizer_t(py::module_& m, const char* name) {
  py::class_<Optimizer<T>>(m, name)
      .def(py::init<const OptimizerConfig&, std::vector<std::pair<int64_t, int64_t>>>(),
           py::arg("config"), py::arg("ranges"))
      .def_readwrite("config", &Optimizer<T>::config)
      .def_readwrite("steps", &Optimizer<T>::steps)
      .def_property_readonly("ranges", &Optimizer<T>::ranges)
      .def("step",
           [](Optimizer<T>& opt, Model<T>& model) {
             auto lock = exclusive(model);
             py::gil_scoped_release release;
             opt.step(model.net.params(), model.net.grads());
           })
      .def("state", [](py::object self) {
        auto& opt = self.cast<Optimizer<T>&>();
        py::dict out;
        for (auto& [key, buf] : opt.state())
          out[key.c_str()] = view<T>(buf->data(), int64_t(buf->size()), self);
        return out;
      });
}

}  // namespace

void register_optimizer(py::module_& m) {
  register_optimizer_t<float>(m, "Optimizer32");
  register_optimizer_t<double>(m, "Optimizer64");
}

}  // namespace steepest::bindings
