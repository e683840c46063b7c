// A LibTorch optimizer's state as Python's `Optimizer.state_dict()` holds
// it, and back: `state` keyed by the parameter's index over all groups in
// order (only parameters with state), `param_groups` with every
// hyperparameter PyTorch 2 writes and `params` as those indices. SGD, Adam
// and AdamW, whose LibTorch and Python states map one to one (`step` is a
// float32 scalar tensor in Python, an integer in LibTorch).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(torch::optim::Optimizer& optimizer) {
//     ACCELERATE_ASSIGN_OR_RETURN(c10::IValue saved, OptimizerStateDict(optimizer));
//     return LoadOptimizerStateDict(optimizer, saved, "optimizer.bin");
//   }
// clang-format on
//
// Thread safety: not while the optimizer steps.

#ifndef ACCELERATE_CHECKPOINT_OPTIMIZER_STATE_H_
#define ACCELERATE_CHECKPOINT_OPTIMIZER_STATE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/ivalue.h>
#include <torch/optim/optimizer.h>

namespace accelerate::checkpoint {

// `Unimplemented` naming the type for optimizers other than SGD, Adam and
// AdamW. State tensors are the optimizer's own (not copies).
[[nodiscard]] absl::StatusOr<c10::IValue> OptimizerStateDict(
    const torch::optim::Optimizer& optimizer);

// Restores `optimizer` from `saved` (Python's structure; `source` names it
// in errors): hyperparameters of every group and each parameter's state,
// tensors moved to the parameter's device (and, but for `step`, dtype).
// `InvalidArgument` naming the value when the groups or parameter counts
// differ, a tensor's shape differs from its parameter's, the state is of
// another optimizer, or an option LibTorch lacks is on (`maximize`,
// `capturable`...). Nothing changes on error.
[[nodiscard]] absl::Status LoadOptimizerStateDict(
    torch::optim::Optimizer& optimizer, const c10::IValue& saved,
    const std::string& source);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_OPTIMIZER_STATE_H_
