#include "data/internal/dispatch_plan.h"

#include <algorithm>
#include <utility>

#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::data_internal {

absl::StatusOr<DispatchPlan> DispatchPlan::Create(
    data::IndexOrder order, const data::ShardOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(
      data::ValidateShardOptions(order.size(), options));
  // The main process's own loader: one process, the whole batch size.
  data::ShardOptions plain;
  plain.batch_size = options.batch_size;
  plain.drop_last = options.drop_last;
  plain.even_batches = false;
  ACCELERATE_ASSIGN_OR_RETURN(data::BatchSamplerShard base,
                              data::BatchSamplerShard::Create(std::move(order),
                                                              plain));
  return DispatchPlan(std::move(base),
                      options.split_batches ? 1 : options.num_processes,
                      options.num_processes, options.drop_last);
}

DispatchPlan::DispatchPlan(data::BatchSamplerShard base, int group,
                           int processes, bool drop_last)
    : base_(std::move(base)),
      group_(group),
      processes_(processes),
      drop_last_(drop_last) {
  // With drop_last, Accelerate's dispatcher drops a group of fewer than
  // `num_processes` batches too.
  steps_ = drop_last_ ? base_.size() / group_
                      : (base_.size() + group_ - 1) / group_;
  if (steps_ > 0) remainder_ = static_cast<int64_t>(Global(steps_ - 1).size());
}

std::vector<int64_t> DispatchPlan::Global(int64_t k) const {
  std::vector<int64_t> indices;
  const int64_t end = std::min<int64_t>((k + 1) * group_, base_.size());
  for (int64_t j = k * group_; j < end; ++j) {
    const std::vector<int64_t> batch = base_.Batch(j);
    indices.insert(indices.end(), batch.begin(), batch.end());
  }
  return indices;
}

DispatchStep DispatchPlan::Step(int64_t k) const {
  ACCELERATE_CHECK(k >= 0 && k < steps_) << "step " << k << " of " << steps_;
  DispatchStep step;
  step.indices = Global(k);
  const auto observed = static_cast<int64_t>(step.indices.size());
  step.per_process = observed / processes_;
  if (!drop_last_ && observed % processes_ != 0) {
    // As Accelerate's dispatcher: the first samples of the epoch's first
    // global batch complete it, one more per process.
    const std::vector<int64_t> first = Global(0);
    step.indices.insert(step.indices.end(), first.begin(),
                        first.begin() + std::min<int64_t>(
                                            processes_, first.size()));
    step.per_process += 1;
  }
  return step;
}

}  // namespace accelerate::data_internal
