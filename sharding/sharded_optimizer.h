// Optimizer state and gradients sharded across the processes (ZeRO stage
// 2, FSDP's SHARD_GRAD_OP with the parameters kept whole): each parameter
// group of an elementwise optimizer (SGD, Adam, AdamW, RMSprop, Adagrad) is
// laid out in one flat buffer, padded to a multiple of the number of
// processes, and the model's parameters become views into it. The
// optimizer is given, per group, this process's slice of the buffer as its
// only parameter, so it keeps state for 1/N of the values. Each step:
// `BeforeStep` copies this process's slice of the averaged gradients (the
// data-parallel reduction ran in backward) into the slice's gradient and
// frees the whole gradients; the optimizer steps on the slice; `AfterStep`
// all-gathers the slices into the buffer, so every process holds the new
// parameters. Elementwise updates make this exactly the update of the
// unsharded optimizer, with one difference FSDP's flat parameters share: a
// parameter left without a gradient in a step (unused by the loss) gets a
// zero gradient, so weight decay and momentum still move it, where the
// unsharded optimizer skips it.
//
// clang-format off
//   #include <torch/nn/module.h>
//   #include <torch/optim/adamw.h>
//   absl::Status Example(torch::nn::Module& model, const state::PartialState& state) {
//     auto optimizer = std::make_shared<torch::optim::AdamW>(model.parameters());
//     auto sharded = ShardedOptimizer::Create(optimizer, state);
//     if (!sharded.ok()) return sharded.status();
//     // ... forward, backward, gradients averaged ...
//     absl::Status before = (*sharded)->BeforeStep();
//     if (!before.ok()) return before;
//     optimizer->step();
//     return (*sharded)->AfterStep();
//   }
// clang-format on
//
// Thread safety: one thread drives it (the training loop). Ownership:
// shares the optimizer; the flat buffers own the parameters' storage from
// `Create` on. REQUIRES: the state's process group outlives it.

#ifndef ACCELERATE_SHARDING_SHARDED_OPTIMIZER_H_
#define ACCELERATE_SHARDING_SHARDED_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "state/partial_state.h"

namespace accelerate::sharding {

// Bytes held by this process in each kind of training state.
struct StateBytes {
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer_state = 0;
  int64_t total() const { return parameters + gradients + optimizer_state; }
};

struct ShardedOptimizerOptions {
  // Keep the whole gradients until `ZeroGrad` instead of freeing them once
  // the slice is cut (ZeRO stage 1: only the optimizer state is sharded).
  // Default false (ZeRO stage 2, SHARD_GRAD_OP).
  bool keep_whole_gradients = false;
};

class ShardedOptimizer {
 public:
  // Takes over `optimizer`'s parameters as described above. The model's
  // parameters keep their identity (autograd, `named_parameters`), their
  // values now live in the flat buffers. InvalidArgument names an optimizer
  // that is not elementwise (LBFGS), a group that mixes dtypes or devices
  // or holds a parameter that does not require gradients;
  // FailedPrecondition when the optimizer already has state.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShardedOptimizer>>
  Create(std::shared_ptr<torch::optim::Optimizer> optimizer,
         const state::PartialState& state,
         const ShardedOptimizerOptions& options = {});
  ShardedOptimizer(const ShardedOptimizer&) = delete;
  ShardedOptimizer& operator=(const ShardedOptimizer&) = delete;

  // This process's slice of each parameter's gradient into the slice's
  // gradient (zeros where a parameter has none); the whole gradients are
  // freed (unless `keep_whole_gradients`); the slice's values are refreshed from the parameters (which may
  // have been loaded or overwritten since the last step). Call after the
  // gradients are averaged, before the step.
  [[nodiscard]] absl::Status BeforeStep();
  // All-gathers the updated slices: every process holds the parameters
  // after the step. Collective.
  [[nodiscard]] absl::Status AfterStep();
  // Drops the gradients of the slices and of the whole parameters.
  void ZeroGrad();

  // For checkpoints in the unsharded layout (FSDP's FULL_STATE_DICT):
  // gives the optimizer back its whole parameters, with their state
  // gathered from every process, until `Reshard`. Collective. SGD, Adam
  // and AdamW (Unimplemented for the others).
  [[nodiscard]] absl::Status Unshard();
  // Back to this process's slices, their state cut from the whole
  // parameters' state (gathered by `Unshard`, or loaded into the optimizer
  // meanwhile). Local. Does nothing unless unsharded.
  [[nodiscard]] absl::Status Reshard();

  // The whole parameters (as the optimizer had them before `Create`).
  const std::vector<at::Tensor>& parameters() const { return parameters_; }
  // What this process holds now.
  StateBytes Bytes() const;
  // Of that, the gradients of this process's slices.
  int64_t SliceGradientBytes() const;

 private:
  struct Group {
    at::Tensor flat;         // the whole group, padded
    at::Tensor shard;        // this process's slice (the optimizer's param)
    int64_t shard_size = 0;  // elements per process
    std::vector<at::Tensor> params;
    std::vector<int64_t> offsets;  // of each param in `flat`
  };
  ShardedOptimizer(std::shared_ptr<torch::optim::Optimizer> optimizer,
                   const state::PartialState& state,
                   const ShardedOptimizerOptions& options)
      : optimizer_(std::move(optimizer)), state_(state), options_(options) {}

  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  const state::PartialState& state_;
  const ShardedOptimizerOptions options_;
  std::vector<Group> groups_;
  std::vector<at::Tensor> parameters_;
  bool unsharded_ = false;
};

// Bytes of optimizer state `optimizer` holds (SGD, Adam, AdamW, RMSprop,
// Adagrad states; 0 for others).
int64_t OptimizerStateBytes(const torch::optim::Optimizer& optimizer);

}  // namespace accelerate::sharding

#endif  // ACCELERATE_SHARDING_SHARDED_OPTIMIZER_H_
