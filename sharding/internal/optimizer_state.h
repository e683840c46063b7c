// What the sharding engines need to know about LibTorch's optimizers: which
// ones update each value from its own gradient and state only, and how to
// take one parameter's state apart into tensors and make it again.
//
// Thread safety: pure functions.

#ifndef ACCELERATE_SHARDING_INTERNAL_OPTIMIZER_STATE_H_
#define ACCELERATE_SHARDING_INTERNAL_OPTIMIZER_STATE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>

namespace accelerate::sharding_internal {

// Optimizers whose update of each value depends on that value's own
// gradient and state only (so a slice steps as the whole would): SGD, Adam,
// AdamW, RMSprop, Adagrad.
bool IsElementwise(const torch::optim::Optimizer& optimizer);

// Bytes of `tensor`'s elements; 0 when undefined.
int64_t Bytes(const at::Tensor& tensor);

// The state tensors of one parameter (named as PyTorch's state_dict names
// them), its step count, and how to make a state of the same kind from
// such tensors.
struct StateKind {
  std::vector<std::string> names;
  std::function<std::vector<at::Tensor>(const torch::optim::OptimizerParamState&)>
      fields;
  // 0 for optimizers without one (SGD).
  std::function<int64_t(const torch::optim::OptimizerParamState&)> step;
  std::function<std::unique_ptr<torch::optim::OptimizerParamState>(
      int64_t step, const std::vector<at::Tensor>& fields)>
      make_at;
  // As `make_at`, the step count taken from `like`.
  std::unique_ptr<torch::optim::OptimizerParamState> make(
      const torch::optim::OptimizerParamState& like,
      const std::vector<at::Tensor>& values) const {
    return make_at(step(like), values);
  }
};

// The kind of `optimizer`'s state: SGD, Adam and AdamW; nothing for others.
std::optional<StateKind> KindOf(const torch::optim::Optimizer& optimizer);

}  // namespace accelerate::sharding_internal

#endif  // ACCELERATE_SHARDING_INTERNAL_OPTIMIZER_STATE_H_
