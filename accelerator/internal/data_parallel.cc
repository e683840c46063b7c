#include "accelerator/internal/data_parallel.h"

#include <memory>
#include <utility>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include "accelerator/internal/reducer.h"
#include "state/collectives.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::accelerator_internal {
namespace {

// PyTorch DDP's first bucket: small, so that communication starts early.
constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;

// Averages each gradient bucket with one all-reduce and counts them.
class AveragingHook final : public c10d::CommHookInterface {
 public:
  AveragingHook(c10::intrusive_ptr<c10d::ProcessGroup> group,
                std::atomic<int64_t>* count)
      : group_(std::move(group)), count_(count) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(
      c10d::GradBucket& bucket) override {
    count_->fetch_add(1);
    std::vector<at::Tensor> tensors = {bucket.getBufferRef()};
    // Divide first, as PyTorch's allreduce hook, to keep fp16 in range.
    tensors[0].div_(group_->getSize());
    return group_->allreduce(tensors)->getFuture();
  }

  at::Tensor parseHookResult(const c10::IValue& result) override {
    return result.isTensor() ? result.toTensor() : result.toTensorVector()[0];
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::atomic<int64_t>* count_;
};

}  // namespace

std::vector<at::Tensor> TrainableParameters(const torch::nn::Module& model) {
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

DataParallel::DataParallel(std::shared_ptr<torch::nn::Module> model,
                           const state::PartialState& state,
                           DataParallelOptions options)
    : model_(std::move(model)), state_(state), options_(options) {}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    std::shared_ptr<torch::nn::Module> model, const state::PartialState& state,
    const DataParallelOptions& options) {
  std::unique_ptr<DataParallel> dp(new DataParallel(model, state, options));
  // Under FULL_SHARD, parameters left empty (meta) on the other processes
  // receive their slices from the main process, onto the device.
  bool empty_parameters = false;
  for (const at::Tensor& p : model->parameters()) {
    empty_parameters = empty_parameters || p.device().is_meta();
  }
  if (!(options.shard_parameters && empty_parameters)) {
    ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
        "moving the model to the device", [&] { model->to(state.device()); }));
  } else {
    ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
        "moving the buffers to the device", [&] {
          for (at::Tensor& b : model->buffers()) b.set_data(b.to(state.device()));
        }));
  }
  for (const at::Tensor& b : model->buffers()) dp->buffers_.push_back(b);
  if (options.shard_parameters) {
    sharding::FullyShardedOptions full_shard = options.full_shard;
    ACCELERATE_ASSIGN_OR_RETURN(
        full_shard.units, sharding::UnitModules(*model, options.auto_wrap));
    ACCELERATE_ASSIGN_OR_RETURN(
        dp->fully_sharded_,
        sharding::FullyShardedModel::Create(model, state, full_shard));
    return dp;
  }
  if (!state.use_distributed()) return dp;

  // Every process starts from rank 0's weights and buffers.
  std::vector<at::Tensor> states = model->parameters();
  states.insert(states.end(), dp->buffers_.begin(), dp->buffers_.end());
  ACCELERATE_RETURN_IF_ERROR(state::BroadcastInPlace(state, states));
  std::vector<at::Tensor> params = TrainableParameters(*model);
  if (params.empty()) return dp;
  auto group = c10::intrusive_ptr<c10d::ProcessGroup>::reclaim_copy(
      state.process_group());
  ACCELERATE_RETURN_IF_ERROR(
      state::RunGuarded("setting up gradient buckets", [&] {
        dp->reducer_ = MakeReducer(
            params, group,
            {.bucket_cap_bytes = options.bucket_cap_bytes,
             .first_bucket_cap_bytes = kFirstBucketBytes,
             .find_unused_parameters = options.find_unused_parameters});
        dp->reducer_->register_comm_hook(
            std::make_unique<AveragingHook>(group, &dp->buckets_));
      }));
  return dp;
}

absl::Status DataParallel::StartSynchronizedStep() {
  if (!distributed() || !state_.use_distributed()) return absl::OkStatus();
  if (options_.broadcast_buffers && !buffers_.empty()) {
    ACCELERATE_RETURN_IF_ERROR(state::BroadcastInPlace(state_, buffers_));
  }
  if (reducer_ == nullptr) return absl::OkStatus();
  return state::RunGuarded("starting a synchronized step",
                           [&] { reducer_->prepare_for_forward(); });
}

void DataParallel::PrepareBackward(const at::Tensor& loss, bool outside_step) {
  if (fully_sharded_ != nullptr) {
    // Its own hooks reduce; this backward does.
    fully_sharded_->set_sync(true);
    return;
  }
  // Before every synchronizing backward, as DDP does before every forward:
  // after the first pass it settles the bucket order once; it also checks
  // that the previous reduction finished.
  reducer_->rebuild_buckets();
  if (outside_step) reducer_->prepare_for_forward();
  reducer_->prepare_for_backward(options_.find_unused_parameters
                                     ? std::vector<at::Tensor>{loss}
                                     : std::vector<at::Tensor>{});
}

}  // namespace accelerate::accelerator_internal
