// Debian's libtorch-dev 1.13.1 ships c10d/reducer.hpp but not the
// distributed-autograd headers it includes. The Reducer only names two
// types from them (a callback type and a shared_ptr), so this stand-in
// declares exactly those; nothing of distributed autograd is used, and the
// Reducer's layout does not depend on the class body.

#ifndef ACCELERATE_THIRD_PARTY_TORCH_SHIMS_DIST_AUTOGRAD_CONTEXT_H_
#define ACCELERATE_THIRD_PARTY_TORCH_SHIMS_DIST_AUTOGRAD_CONTEXT_H_

#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch

#endif  // ACCELERATE_THIRD_PARTY_TORCH_SHIMS_DIST_AUTOGRAD_CONTEXT_H_
