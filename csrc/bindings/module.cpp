// steepest._core: the C++ core's types and functions for Python. Each part is registered by its
// own register_*.cpp (the only files, with their two headers, that include pybind11).
#include "bindings/register.hpp"

PYBIND11_MODULE(_core, m) {
  using namespace steepest::bindings;
  m.doc() = "steepest's C++ core: networks, losses and optimizers over flat buffers";
  register_specs(m);
  register_optimizer(m);
  register_network(m);
  register_functions(m);
}
