// The parts of the _core module; module.cpp registers them in this order (the optimizers
// before the networks that take them, as pybind11 names argument types from what it knows).
#pragma once

#include <pybind11/pybind11.h>

namespace steepest::bindings {

namespace py = pybind11;

// Enums (layers, activations, initializers, losses, optimizers, step status, batch rules) and
// the plain structs: LayerSpec, LossSpec, OptimizerConfig, SizeTable, BatchCheck.
void register_specs(py::module_& m);
// Optimizer32 / Optimizer64: an optimizer's config, step count and zero-copy state views.
void register_optimizer(py::module_& m);
// Network32 / Network64: the network with zero-copy params/grads views and its training calls.
void register_network(py::module_& m);
// Free functions: size_table, check_batch, loss_forward, clip_grad_norm, the thread count.
void register_functions(py::module_& m);

}  // namespace steepest::bindings
