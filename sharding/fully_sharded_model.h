// FULL_SHARD (ZeRO-3): a model whose parameters are sharded across the
// processes at rest. The model's parameters are grouped into units (the
// submodules an auto-wrap policy picks, plus the root for the rest); each
// unit's parameters are laid out in one flat buffer, padded to a multiple
// of the number of processes, of which every process keeps only its slice.
// Between uses a parameter is a placeholder (state/placeholder.h): the
// first operation given it all-gathers its unit, which stays whole while
// its forward runs and is freed when the next unit starts (with
// `reshard_after_forward`; the root stays until backward ends, and so does
// the forward's last unit, whose backward comes first). What
// autograd saves for backward keeps no gathered buffer alive
// (internal/saved_tensors.h): backward gathers a unit again when it
// unpacks the first tensor saved from it, prefetching the unit expected
// next. When all of a unit's gradients have accumulated they are
// reduce-scattered (averaged) into this process's slice, the whole
// gradients freed and the unit resharded; units with gradients missing are
// reduced when backward ends. The optimizer steps on the slices
// (`ShardOptimizer`): each parameter becomes, in the optimizer, the part
// of it this process holds (possibly empty), so the optimizer state is
// sharded too and keeps its per-parameter layout.
//
// The model's code does not change: LibTorch modules have no forward
// hooks, and none are needed. Elementwise optimizers (SGD, Adam, AdamW,
// RMSprop, Adagrad) step exactly as unsharded; gradient averaging is a
// reduce-scatter per unit (the sum of per-process averages), so results
// equal data parallel's to float rounding. A parameter left without a
// gradient gets a zero gradient slice, as FSDP's flat parameters do.
//
// clang-format off
//   #include <torch/nn/module.h>
//   #include <torch/optim/adamw.h>
//   absl::Status Example(std::shared_ptr<torch::nn::Module> model,
//                        const state::PartialState& state) {
//     auto sharded = FullyShardedModel::Create(model, state, {.units = {"blocks.0", "blocks.1"}});
//     if (!sharded.ok()) return sharded.status();
//     auto optimizer = std::make_shared<torch::optim::AdamW>(model->parameters());
//     absl::Status taken = (*sharded)->ShardOptimizer(*optimizer);
//     if (!taken.ok()) return taken;
//     // ... loss = f(model->forward(x)); loss.backward(); optimizer->step();
//     return absl::OkStatus();
//   }
// clang-format on
//
// A forward pass with no backward after it (evaluation) leaves its root
// and last unit gathered: call `ReleaseGathered` before the optimizer next
// steps (the Accelerator does, after every step), or those copies go stale.
// Outside a forward or backward pass the parameters are placeholders: an
// operation on one gathers its unit on this process only, which is a
// collective the other processes do not join. Read or write them between
// `Unshard` and `Reshard` (both collective), as FSDP's summon_full_params.
//
// Thread safety: one training thread; the hooks run on autograd's threads
// under the model's lock. Ownership: shares the model; the parameters'
// storage is the units' from `Create` on. Destroying it leaves the
// parameters placeholders without an owner (an error on use).
// REQUIRES: the state's process group outlives it.

#ifndef ACCELERATE_SHARDING_FULLY_SHARDED_MODEL_H_
#define ACCELERATE_SHARDING_FULLY_SHARDED_MODEL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sharding/internal/activation_checkpoint.h"
#include "sharding/internal/saved_tensors.h"
#include "sharding/sharded_optimizer.h"
#include "state/partial_state.h"
#include "state/placeholder.h"

namespace accelerate::sharding {

// FSDP's backward_prefetch.
enum class BackwardPrefetch {
  kNone,          // NO_PREFETCH
  kBackwardPre,   // BACKWARD_PRE: when a unit is gathered for backward
  kBackwardPost,  // BACKWARD_POST: when a unit's gradients are reduced
};

struct FullyShardedOptions {
  // Paths of the submodules that are units (UnitModules); the root module
  // is one too. Default: the root only.
  std::vector<std::string> units;
  // Free a unit's gathered parameters after its forward (FULL_SHARD);
  // false keeps them until its backward is done. Default true.
  bool reshard_after_forward = true;
  // All-gather the next unit while one computes its forward. Default false
  // (FSDP's and Accelerate's default).
  bool forward_prefetch = false;
  // Default BACKWARD_PRE (FSDP's default).
  BackwardPrefetch backward_prefetch = BackwardPrefetch::kBackwardPre;
  // The main process's parameters and buffers are every process's: its
  // slices are scattered (and buffers broadcast), so the other processes'
  // parameters may be empty, on the meta device (CPU-RAM-efficient
  // loading: they never hold the whole model). Default true.
  bool sync_module_states = true;
  // FSDP's mixed precision: the dtype units are gathered in inside
  // autocast regions (so forward and backward compute in it, and gathering
  // moves fewer bytes; outside them, in full precision) and the dtype
  // gradients are reduced in; the slices, the parts the optimizer steps
  // and checkpoints keep the parameters' own dtype. Unset: the parameters'
  // dtype. (The Accelerator sets both to bf16 under
  // `mixed_precision: bf16`, as Accelerate's FSDP plugin does.)
  std::optional<at::ScalarType> param_dtype;
  std::optional<at::ScalarType> reduce_dtype;
  // FSDP 1's buffer_dtype: the model's floating-point buffers are cast to
  // it when a forward inside an autocast region first uses a parameter
  // (what comes before sees them as they were) and back to their
  // own dtype when its backward ends (or `ReleaseGathered`, `Unshard`), so
  // checkpoints keep their dtypes; updates made meanwhile (a batch norm's
  // running statistics) are kept, rounded. Unset: never cast. (The
  // Accelerator sets it to bf16 under `mixed_precision: bf16` with FSDP 1,
  // as Accelerate does; FSDP 2 has no buffer dtype.)
  std::optional<at::ScalarType> buffer_dtype;
  // Which processes share the slices: 0, all of them (FULL_SHARD); -1, the
  // processes of each node (HYBRID_SHARD: sharded within a node, each node
  // a replica; gradients reduce-scattered within the node, then averaged
  // across nodes); n > 0, blocks of n consecutive processes (a divisor of
  // their number). Default 0.
  int shard_group_size = 0;
  // FSDP's CPU offload: the slices, their gradients and so the optimizer
  // state live in (pinned) CPU memory, the optimizer steps there; units
  // are gathered onto the model's device. On a CPU model, nothing moves.
  // Default false.
  bool offload_params = false;
  // FSDP's activation checkpointing (Accelerate's
  // `fsdp_activation_checkpointing`, applied to the units the auto-wrap
  // policy picks): each unit's (not the root's) forward keeps none of the
  // tensors backward needs; its backward recomputes them first, replaying
  // the operations its forward ran (internal/activation_checkpoint.h). A
  // forward that cannot be replayed (one writing in place into a tensor
  // from outside the unit, such as a batch norm's running statistics)
  // keeps its activations, with a warning. Default false.
  bool activation_checkpointing = false;
};

// This process's part of one parameter (or one optimizer state tensor),
// for sharded checkpoints: a contiguous range of the flattened tensor.
struct TensorPartView {
  std::string name;
  std::vector<int64_t> shape;  // of the whole tensor
  int64_t start = 0;           // of the part, flattened
  at::Tensor values;           // the part, flattened (aliases the slice)
};

// Elements [start, start + dest.numel()) of the flattened tensor `name`
// into `dest`; false when the checkpoint has no such tensor.
using ReadPart = std::function<absl::StatusOr<bool>(
    const std::string& name, int64_t start, at::Tensor dest)>;

// Counters of what the units did.
struct FullyShardedStats {
  int64_t all_gathers = 0;      // units gathered
  int64_t prefetched = 0;       // of those, issued ahead of their use
  int64_t reduce_scatters = 0;  // units' gradients reduced
  // Activation checkpointing: units' forwards whose saved tensors were
  // dropped, replayed in backward, and kept (not replayable).
  int64_t checkpointed = 0;
  int64_t recomputed = 0;
  int64_t not_checkpointed = 0;
};

class FullyShardedModel final : public state::PlaceholderOwner,
                                public sharding_internal::StorageOwner {
 public:
  // Shards `model` (on the state's device, or its parameters on the meta
  // device but on the main process) as described above. InvalidArgument
  // names a unit path that is not a submodule, a parameter on the meta
  // device where values are needed; an error names a unit whose parameters
  // mix dtypes or devices; Unavailable/DeadlineExceeded from the scatter.
  // Collective.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<FullyShardedModel>>
  Create(std::shared_ptr<torch::nn::Module> model,
         const state::PartialState& state,
         const FullyShardedOptions& options = {});
  FullyShardedModel(const FullyShardedModel&) = delete;
  FullyShardedModel& operator=(const FullyShardedModel&) = delete;
  ~FullyShardedModel() override;

  // Replaces, in `optimizer`'s groups, each of this model's parameters with
  // the part of it this process holds (an optimizer holding none of them is
  // left alone). InvalidArgument for an optimizer
  // that is not elementwise or a parameter of this model that does not
  // require gradients; FailedPrecondition when it already has state.
  [[nodiscard]] absl::Status ShardOptimizer(torch::optim::Optimizer& optimizer);

  // Whether backward passes reduce gradients (false: the whole gradients
  // accumulate in the parameters, as FSDP's no_sync, and are reduced by
  // the next backward that syncs). Default true.
  void set_sync(bool sync);

  // Gathers every unit and keeps it whole until `Reshard`: the parameters
  // hold their values (checkpoints, evaluation on every process).
  // Collective.
  [[nodiscard]] absl::Status Unshard();
  // Back to slices; values written into the parameters meanwhile are kept.
  // Local.
  [[nodiscard]] absl::Status Reshard();
  // For checkpoints in the unsharded layout: gives `optimizer` (sharded by
  // `ShardOptimizer`) back the whole parameters, with their state gathered
  // from every process, until `ReshardOptimizer`. REQUIRES: `Unshard`ed.
  // Collective; SGD, Adam and AdamW (Unimplemented for others).
  [[nodiscard]] absl::Status UnshardOptimizer(torch::optim::Optimizer& optimizer);
  // Back to the parts, their state cut from the whole parameters' (as
  // gathered, or as loaded meanwhile). Local.
  [[nodiscard]] absl::Status ReshardOptimizer(torch::optim::Optimizer& optimizer);

  // Frees the units a forward pass left gathered with no backward to
  // follow (evaluation; the root and the last unit stay gathered for a
  // backward), so that what is held is the slices only and no gathered
  // copy outlives a change of the slices (an optimizer step). A later use
  // gathers them again. Local; nothing while `Unshard`ed or in backward.
  void ReleaseGathered();

  // Sharded checkpoints (FSDP's SHARDED_STATE_DICT): this process's part of
  // every parameter, by the parameters' names. No communication.
  std::vector<TensorPartView> ParameterParts() const;
  // Fills every part from `read` (a checkpoint written by any number of
  // processes); `InvalidArgument` naming a parameter it lacks or whose shape
  // differs (given by `shape_of`). Gathered copies are released. Local.
  [[nodiscard]] absl::Status LoadParameterParts(
      const std::function<absl::StatusOr<std::vector<int64_t>>(
          const std::string&)>& shape_of,
      const ReadPart& read);
  // The state of `optimizer` (sharded by `ShardOptimizer`; SGD, Adam,
  // AdamW) for this process's parts: tensors named "<id>.<field>" (the
  // parameter's position in the optimizer's groups, as PyTorch's
  // state_dict numbers them), and each id's step count. Parameters of
  // other models count whole. Parameters without state are left out.
  [[nodiscard]] absl::Status OptimizerParts(
      const torch::optim::Optimizer& optimizer,
      std::vector<TensorPartView>* parts,
      std::map<int64_t, int64_t>* steps) const;
  // Gives every parameter of `optimizer` whose id has a step in `steps` its
  // state, its fields read through `read`. Local.
  [[nodiscard]] absl::Status LoadOptimizerParts(
      torch::optim::Optimizer& optimizer,
      const std::map<int64_t, int64_t>& steps, const ReadPart& read);

  // Clips the gradients of the parts this process holds by the norm of the
  // whole gradients (all processes' parts), as clip_grad_norm_; returns
  // that norm. Collective.
  [[nodiscard]] absl::StatusOr<double> ClipGradNorm(double max_norm,
                                                    double norm_type = 2.0);
  // Clamps the parts' gradients to [-clip_value, clip_value]. Local.
  [[nodiscard]] absl::Status ClipGradValue(double clip_value);

  // What this process holds now: parameter slices and gathered units,
  // gradient parts and whole gradients not yet reduced (the optimizer
  // state is the optimizer's to count).
  StateBytes Bytes() const;
  FullyShardedStats stats() const;
  // The units' module paths ("" for the root), in their order.
  std::vector<std::string> unit_names() const;
  // The gradients the optimizer sees: each parameter's part's.
  std::vector<at::Tensor> parts() const;

  // The fallback's and the saved-tensor hooks' calls.
  void Materialize(const std::vector<int>& tags) override;
  at::Tensor Storage(int tag) override;

 private:
  struct Param {
    std::string name;
    at::Tensor tensor;  // the model's (identity kept)
    c10::intrusive_ptr<c10::TensorImpl> placeholder;
    int unit = 0;
    int64_t offset = 0;   // in the unit's flat buffer
    at::Tensor part;      // this process's part: a view into the slice
    int64_t part_at = 0;  // where the part starts in the parameter
    // LibTorch 2.13 holds autograd nodes in `intrusive_ptr`, earlier
    // releases in `shared_ptr`: whatever `grad_accumulator` returns.
    decltype(torch::autograd::impl::grad_accumulator(
        std::declval<const at::Tensor&>())) accumulator;
    uintptr_t hook = 0;
    bool got_grad = false;  // this backward
  };
  struct Unit {
    std::string name;
    std::vector<int> params;
    int trainable = 0;     // params requiring gradients
    int64_t shard_size = 0;
    at::Tensor shard;      // this process's slice
    at::Tensor full;       // gathered (or being gathered), else undefined
    at::Tensor grads;      // flat gradients of this backward, if given
    // The dtype its forward gathered it in (its backward gathers alike).
    at::ScalarType gather_dtype = at::kFloat;
    // The all-gather in flight (on a CPU, one broadcast per process).
    std::vector<c10::intrusive_ptr<c10d::Work>> gathering;
    bool installed = false;  // the parameters point into `full`
    int waiting = 0;         // gradients still to come this backward
    bool reduced = false;    // this backward
    int next = -1;           // the unit whose forward came next last time
    int previous = -1;       // and the one before
  };
  struct Reduction {
    int unit;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    at::Tensor output;
    at::Tensor input;
    // On a CPU: the other processes' parts of `output`, to add in.
    std::vector<at::Tensor> received;
  };

  FullyShardedModel(std::shared_ptr<torch::nn::Module> model,
                    const state::PartialState& state,
                    const FullyShardedOptions& options);

  // All under mu_.
  void StartGather(int u, bool prefetch);
  void EnsureGathered(int u);
  // Waits for the unit's all-gather in flight, if any (Fail on error).
  void WaitForGather(int u);
  // The dtype unit `u` is gathered in now (recorded for its backward).
  at::ScalarType GatherDtype(int u);
  // Where and in which dtype a unit's gradients are reduced.
  at::TensorOptions GradientOptions(const Unit& unit) const;
  // Counts the parameter's gradients as they accumulate (once it is real).
  void AttachGradientHook(int i);
  // Makes the unit's parameters' gradients views of one flat buffer, for
  // autograd to accumulate into (when none has a gradient yet).
  void GiveGradientBuffer(int u);
  void ReshardUnit(int u, bool write_back);
  void OnGradient(int index);
  void LaunchReduce(int u);
  // Waits for `r` and adds this process's slice into the parts' gradients.
  void FinishReduce(Reduction& r);
  void EndBackward();
  void Prefetch(int u);
  // buffer_dtype: casts the buffers (once per forward), and back.
  void CastBuffers();
  void RestoreBuffers();
  [[noreturn]] void Fail(const std::string& what, const std::exception& e);

  std::shared_ptr<torch::nn::Module> model_;
  const state::PartialState& state_;
  const FullyShardedOptions options_;
  // This process's sharding group (all processes, or its node's) and, for
  // HYBRID_SHARD, its replicas' group (null otherwise).
  c10d::ProcessGroup* shard_group_ = nullptr;
  c10::intrusive_ptr<c10d::ProcessGroup> own_shard_group_;
  c10::intrusive_ptr<c10d::ProcessGroup> replica_group_;
  int64_t world_;  // of the sharding group
  int64_t rank_;   // in it
  c10::Device device_ = c10::Device(c10::kCPU);  // the model's
  mutable std::mutex mu_;
  std::vector<Unit> units_;
  std::vector<Param> params_;
  std::map<const c10::TensorImpl*, int> index_;  // param and part -> index
  std::vector<Reduction> reductions_;
  bool sync_ = true;
  bool held_ = false;           // Unshard
  bool in_backward_ = false;    // a final callback is queued
  int p2p_tag_ = 0;             // of the reductions' sends, in order
  int last_forward_ = -1;
  FullyShardedStats stats_;
  // Buffers cast to buffer_dtype, with their own dtypes.
  std::vector<std::pair<at::Tensor, at::ScalarType>> cast_buffers_;
  // Activation checkpointing's (null without it).
  std::shared_ptr<sharding_internal::CheckpointCounters> checkpoint_counters_;
  std::string broken_;          // why a collective failed, once it has
};

}  // namespace accelerate::sharding

#endif  // ACCELERATE_SHARDING_FULLY_SHARDED_MODEL_H_
