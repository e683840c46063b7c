// The batches of dispatch mode, as Accelerate's `DataLoaderDispatcher` makes
// them: each step the main process reads one global batch (the next
// `num_processes` batches of the plain batch sampler concatenated, or one
// batch of `batch_size` with `split_batches`) and every process keeps its
// equal slice. A last global batch that does not divide among the processes
// takes the epoch's first `num_processes` samples and every slice grows by
// one (unless `drop_last`, which drops incomplete batches and groups), so
// that the processes stay in step.

#ifndef ACCELERATE_DATA_INTERNAL_DISPATCH_PLAN_H_
#define ACCELERATE_DATA_INTERNAL_DISPATCH_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_sampler_shard.h"
#include "data/sampler.h"

namespace accelerate::data_internal {

struct DispatchStep {
  // The dataset indices the main process reads and broadcasts.
  std::vector<int64_t> indices;
  // Samples of `indices` each process keeps: process p takes
  // [p * per_process, (p + 1) * per_process).
  int64_t per_process = 0;
};

class DispatchPlan {
 public:
  // Uses `batch_size`, `drop_last`, `num_processes` and `split_batches` of
  // `options`; `InvalidArgument` as BatchSamplerShard::Create.
  [[nodiscard]] static absl::StatusOr<DispatchPlan> Create(
      data::IndexOrder order, const data::ShardOptions& options);

  // Steps in the epoch.
  int64_t size() const { return steps_; }
  // Step `k`. REQUIRES: 0 <= k < size().
  DispatchStep Step(int64_t k) const;
  // The real samples of the last global batch (what gathering for metrics
  // keeps of it), as Accelerate's dispatcher reports at the end, also when
  // nothing was added (GatherForMetrics then keeps everything).
  int64_t remainder() const { return remainder_; }

 private:
  DispatchPlan(data::BatchSamplerShard base, int group, int processes,
               bool drop_last);
  // The concatenated batches of step `k`.
  std::vector<int64_t> Global(int64_t k) const;

  data::BatchSamplerShard base_;  // The plain batch sampler.
  int group_;                     // Base batches per step.
  int processes_;
  bool drop_last_;
  int64_t steps_ = 0;
  int64_t remainder_ = 0;
};

}  // namespace accelerate::data_internal

#endif  // ACCELERATE_DATA_INTERNAL_DISPATCH_PLAN_H_
