// The enums and the plain structs of specs.hpp, plan.hpp and check_batch.hpp: what Python
// fills in to describe a model, a loss and an optimizer, and what the core reports back.
#include <pybind11/stl.h>

#include <string>

#include "bindings/common.hpp"
#include "bindings/register.hpp"

namespace steepest::bindings {

void register_specs(py::module_& m) {
  py::enum_<LayerKind>(m, "LayerKind")
      .value("Dense", LayerKind::Dense)
      .value("Activation", LayerKind::Activation)
      .value("Softmax", LayerKind::Softmax)
      .value("Dropout", LayerKind::Dropout)
      .value("BatchNorm", LayerKind::BatchNorm)
      .value("LayerNorm", LayerKind::LayerNorm)
      .value("Standardize", LayerKind::Standardize)
      .value("MinMaxScale", LayerKind::MinMaxScale);
  py::enum_<Store>(m, "Store")
      .value("Params", Store::Params)
      .value("Buffers", Store::Buffers)
      .value("Counts", Store::Counts);
  py::enum_<Activation>(m, "Activation")
      .value("ReLU", Activation::ReLU)
      .value("LeakyReLU", Activation::LeakyReLU)
      .value("ELU", Activation::ELU)
      .value("GELU", Activation::GELU)
      .value("SiLU", Activation::SiLU)
      .value("Sigmoid", Activation::Sigmoid)
      .value("Tanh", Activation::Tanh)
      .value("Softplus", Activation::Softplus)
      .value("GELUTanh", Activation::GELUTanh);
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
      .value("CrossEntropy", LossKind::CrossEntropy)
      .value("PoissonNLL", LossKind::PoissonNLL);
  py::enum_<OptimizerKind>(m, "OptimizerKind")
      .value("SGD", OptimizerKind::SGD)
      .value("Adam", OptimizerKind::Adam)
      .value("AdamW", OptimizerKind::AdamW)
      .value("RMSprop", OptimizerKind::RMSprop)
      .value("Adagrad", OptimizerKind::Adagrad);
  py::enum_<StepStatus>(m, "StepStatus")
      .value("Ok", StepStatus::Ok)
      .value("NonFiniteLoss", StepStatus::NonFiniteLoss)
      .value("NonFiniteGradient", StepStatus::NonFiniteGradient)
      .value("Interrupted", StepStatus::Interrupted);
  py::enum_<BatchRule>(m, "BatchRule")
      .value("Ok", BatchRule::Ok)
      .value("XShape", BatchRule::XShape)
      .value("XEmpty", BatchRule::XEmpty)
      .value("XFeatures", BatchRule::XFeatures)
      .value("XType", BatchRule::XType)
      .value("XLayout", BatchRule::XLayout)
      .value("XNonFinite", BatchRule::XNonFinite)
      .value("YShape", BatchRule::YShape)
      .value("YLength", BatchRule::YLength)
      .value("YType", BatchRule::YType)
      .value("YLayout", BatchRule::YLayout)
      .value("YNonFinite", BatchRule::YNonFinite)
      .value("LabelRange", BatchRule::LabelRange)
      .value("TargetRange", BatchRule::TargetRange)
      .value("LossWeights", BatchRule::LossWeights);

  py::class_<LayerSpec>(m, "LayerSpec")
      .def(py::init<>())
      .def_readwrite("kind", &LayerSpec::kind)
      .def_readwrite("in_features", &LayerSpec::in)
      .def_readwrite("out_features", &LayerSpec::out)
      .def_readwrite("bias", &LayerSpec::bias)
      .def_readwrite("activation", &LayerSpec::activation)
      .def_readwrite("param", &LayerSpec::param)
      .def_readwrite("threshold", &LayerSpec::threshold)
      .def_readwrite("init", &LayerSpec::init)
      .def_readwrite("affine", &LayerSpec::affine)
      .def_readwrite("eps", &LayerSpec::eps)
      .def_readwrite("momentum", &LayerSpec::momentum)
      .def_readwrite("track_running_stats", &LayerSpec::track_running_stats)
      .def_readonly("weight_offset", &LayerSpec::weight_offset)
      .def_readonly("bias_offset", &LayerSpec::bias_offset);

  py::class_<LossSpec>(m, "LossSpec")
      .def(py::init<>())
      .def_readwrite("kind", &LossSpec::kind)
      .def_readwrite("delta", &LossSpec::delta)
      .def_readwrite("label_smoothing", &LossSpec::label_smoothing)
      .def_readwrite("scale", &LossSpec::scale)
      .def_readwrite("l2", &LossSpec::l2)
      .def_readwrite("weight", &LossSpec::weight)
      .def_readwrite("pos_weight", &LossSpec::pos_weight)
      .def_readwrite("ignore_index", &LossSpec::ignore_index);

  py::class_<OptimizerConfig>(m, "OptimizerConfig")
      .def(py::init<>())
      .def_readwrite("kind", &OptimizerConfig::kind)
      .def_readwrite("lr", &OptimizerConfig::lr)
      .def_readwrite("weight_decay", &OptimizerConfig::weight_decay)
      .def_readwrite("maximize", &OptimizerConfig::maximize)
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

  py::class_<DenseSizes>(m, "DenseSizes")
      .def_readonly("layer", &DenseSizes::layer)
      .def_readonly("in_features", &DenseSizes::in)
      .def_readonly("out_features", &DenseSizes::out)
      .def_readonly("weight_offset", &DenseSizes::weight_offset)
      .def_readonly("bias_offset", &DenseSizes::bias_offset)
      .def_property_readonly("weight_shape",
                             [](const DenseSizes& d) { return py::make_tuple(d.out, d.in); })
      .def_property_readonly("bias_shape",
                             [](const DenseSizes& d) -> py::object {
                               if (d.bias_offset < 0) return py::none();
                               return py::make_tuple(d.out);
                             })
      .def("__repr__", [](const DenseSizes& d) {
        return "DenseSizes(layer=" + std::to_string(d.layer) + ", weight (" +
               std::to_string(d.out) + ", " + std::to_string(d.in) + ") at " +
               std::to_string(d.weight_offset) +
               (d.bias_offset < 0 ? std::string(", no bias")
                                  : ", bias at " + std::to_string(d.bias_offset)) +
               ")";
      });

  py::class_<Slot>(m, "Slot")
      .def_readonly("layer", &Slot::layer)
      .def_readonly("name", &Slot::name)
      .def_readonly("store", &Slot::store)
      .def_readonly("offset", &Slot::offset)
      .def_property_readonly("shape",
                             [](const Slot& s) { return py::tuple(py::cast(s.shape)); })
      .def_property_readonly("size", &Slot::size)
      .def("__repr__", [](const Slot& s) {
        std::string shape;
        for (int64_t d : s.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        return "Slot('" + std::to_string(s.layer) + "." + s.name + "', " +
               std::string(py::str(py::cast(s.store))) + " at " + std::to_string(s.offset) +
               ", shape (" + shape + (s.shape.size() == 1 ? ",)" : ")") + ")";
      });

  py::class_<NormSizes>(m, "NormSizes")
      .def_readonly("layer", &NormSizes::layer)
      .def_readonly("width", &NormSizes::width)
      .def_readonly("weight_offset", &NormSizes::weight_offset)
      .def_readonly("bias_offset", &NormSizes::bias_offset)
      .def_readonly("buffer_offset", &NormSizes::buffer_offset)
      .def_readonly("count_offset", &NormSizes::count_offset);

  py::class_<SizeTable>(m, "SizeTable")
      .def_readonly("dense", &SizeTable::dense)
      .def_readonly("norms", &SizeTable::norms)
      .def_readonly("slots", &SizeTable::slots)
      .def_readonly("num_params", &SizeTable::num_params)
      .def_readonly("num_buffers", &SizeTable::num_buffers)
      .def_readonly("num_counts", &SizeTable::num_counts)
      .def_property_readonly("workspace_per_row", &SizeTable::workspace_per_row)
      .def("__repr__", [](const SizeTable& t) {
        return "SizeTable(" + std::to_string(t.dense.size()) + " Dense layers, " +
               std::to_string(t.num_params) + " parameters, " +
               std::to_string(t.workspace_per_row()) + " workspace values per batch row)";
      });

  py::class_<BatchCheck>(m, "BatchCheck")
      .def_readonly("rule", &BatchCheck::rule)
      .def_readonly("got", &BatchCheck::got)
      .def_readonly("want", &BatchCheck::want)
      .def_readonly("label_min", &BatchCheck::label_min)
      .def_readonly("label_max", &BatchCheck::label_max)
      .def_readonly("target_min", &BatchCheck::target_min)
      .def_readonly("target_max", &BatchCheck::target_max)
      .def_property_readonly("ok", &BatchCheck::ok)
      .def("__repr__", [](const BatchCheck& c) {
        std::string out = "BatchCheck(" + std::string(py::str(py::cast(c.rule))) +
                          ", got=" + std::to_string(c.got) + ", want=" + std::to_string(c.want);
        if (c.rule == BatchRule::LabelRange)
          out += ", labels in [" + std::to_string(c.label_min) + ", " +
                 std::to_string(c.label_max) + "]";
        if (c.rule == BatchRule::TargetRange)
          out += ", targets in [" + std::string(py::str(py::float_(c.target_min))) + ", " +
                 std::string(py::str(py::float_(c.target_max))) + "]";
        return out + ")";
      });
}

}  // namespace steepest::bindings
