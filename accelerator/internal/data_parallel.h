// One prepared model's data parallelism: its buffers (broadcast from rank 0
// at synchronized steps) and c10d's `Reducer` averaging its gradients in
// buckets from autograd hooks (null on one process). What PyTorch's
// `DistributedDataParallel` holds, without wrapping the module. Under
// FULL_SHARD (and ZeRO 3) the model is a `sharding::FullyShardedModel`
// instead, which gathers the parameters and reduce-scatters the gradients
// itself (no Reducer), on any number of processes.
//
// Thread safety: one training thread (the Reducer's hooks run on autograd's
// threads and only touch the bucket counter, atomically).

#ifndef ACCELERATE_ACCELERATOR_INTERNAL_DATA_PARALLEL_H_
#define ACCELERATE_ACCELERATOR_INTERNAL_DATA_PARALLEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/nn/module.h>
#include "sharding/auto_wrap.h"
#include "sharding/fully_sharded_model.h"
#include "state/partial_state.h"

namespace accelerate::accelerator_internal {

struct DataParallelOptions {
  // Bytes per gradient bucket after the first (a 1 MiB first bucket, as
  // PyTorch's DDP).
  int64_t bucket_cap_bytes = int64_t{25} << 20;
  bool find_unused_parameters = false;
  bool broadcast_buffers = true;
  // FULL_SHARD: the parameters sharded at rest, in the units `auto_wrap`
  // picks, with `full_shard`'s options. Default off.
  bool shard_parameters = false;
  sharding::AutoWrapPolicy auto_wrap;
  sharding::FullyShardedOptions full_shard;
};

class DataParallel {
 public:
  // Moves `model` to the state's device, broadcasts its parameters and
  // buffers from rank 0 and (several processes) builds its Reducer.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataParallel>> Create(
      std::shared_ptr<torch::nn::Module> model,
      const state::PartialState& state, const DataParallelOptions& options);

  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Whether gradients are averaged at all (more than one process, or
  // sharded parameters).
  bool distributed() const {
    return reducer_ != nullptr || fully_sharded_ != nullptr;
  }

  // Whether the open step's backward averages gradients (never while
  // gradient sync is disabled).
  void set_sync(bool sync) {
    sync_ = sync && sync_enabled_;
    if (fully_sharded_ != nullptr) fully_sharded_->set_sync(sync_);
  }
  bool sync() const { return sync_; }

  // Off: no backward averages gradients, in or outside steps (LocalSGD
  // averages the parameters instead).
  void set_sync_enabled(bool enabled) { sync_enabled_ = enabled; }
  bool sync_enabled() const { return sync_enabled_; }

  // Readies a synchronizing step: broadcasts the buffers from rank 0 (if
  // asked) and prepares the Reducer. Nothing on one process.
  [[nodiscard]] absl::Status StartSynchronizedStep();

  // Readies the Reducer for a synchronizing backward of `loss`;
  // `outside_step` when no step was opened (every backward synchronizes, as
  // under DDP). REQUIRES: distributed(). Throws LibTorch's errors.
  void PrepareBackward(const at::Tensor& loss, bool outside_step);

  // Gradient buckets all-reduced so far.
  int64_t buckets_reduced() const { return buckets_.load(); }

  // The FULL_SHARD engine; null otherwise.
  sharding::FullyShardedModel* fully_sharded() const {
    return fully_sharded_.get();
  }

 private:
  DataParallel(std::shared_ptr<torch::nn::Module> model,
               const state::PartialState& state, DataParallelOptions options);

  std::shared_ptr<torch::nn::Module> model_;
  const state::PartialState& state_;
  DataParallelOptions options_;
  std::vector<at::Tensor> buffers_;
  // Declared after what its hooks use, so that it goes first.
  std::atomic<int64_t> buckets_{0};
  std::unique_ptr<c10d::Reducer> reducer_;
  std::unique_ptr<sharding::FullyShardedModel> fully_sharded_;
  bool sync_ = true;
  bool sync_enabled_ = true;
};

// The parameters of `model` that require gradients.
std::vector<at::Tensor> TrainableParameters(const torch::nn::Module& model);

}  // namespace accelerate::accelerator_internal

#endif  // ACCELERATE_ACCELERATOR_INTERNAL_DATA_PARALLEL_H_
