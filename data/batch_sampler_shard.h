// Sharding a batch sampler across processes with Accelerate's semantics
// (`accelerate.data_loader.BatchSamplerShard`): each process sees its own
// batches of the global batch sequence, and with `even_batches` every
// process gets the same number of full batches, the last ones completed by
// cycling from the start of the epoch.
//
// clang-format off
//   #include "state/partial_state.h"
//   #include "state/status_macros.h"
//   absl::Status Example(const state::PartialState& state, int64_t dataset_size) {
//     ShardOptions options;
//     options.batch_size = 8;
//     options.num_processes = state.num_processes();
//     options.process_index = state.process_index();
//     ACCELERATE_ASSIGN_OR_RETURN(
//         BatchSamplerShard shard,
//         BatchSamplerShard::Create(IndexOrder::Create(dataset_size), options));
//     for (int64_t k = 0; k < shard.size(); ++k) {
//       std::vector<int64_t> indices = shard.Batch(k);  // this process's batch k
//     }
//     return absl::OkStatus();
//   }
// clang-format on
//
// `Batch(k)` is random access (no batch before k is computed), which is what
// makes resuming mid-epoch O(1).
//
// Thread safety: immutable after creation.

#ifndef ACCELERATE_DATA_BATCH_SAMPLER_SHARD_H_
#define ACCELERATE_DATA_BATCH_SAMPLER_SHARD_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/sampler.h"

namespace accelerate::data {

struct ShardOptions {
  // Samples per batch: per process, or (with `split_batches`) per global
  // batch. Must be positive.
  int64_t batch_size = 1;
  // Drop the last incomplete batch instead of completing or keeping it.
  bool drop_last = false;
  int num_processes = 1;
  int process_index = 0;
  // Split each global batch of `batch_size` samples into equal per-process
  // slices instead of giving each process whole batches. REQUIRES (checked):
  // batch_size % num_processes == 0.
  bool split_batches = false;
  // Complete the last batches by cycling from the start so every process gets
  // the same number of full batches (Accelerate's default). Off: processes
  // may get fewer or shorter batches at the end.
  bool even_batches = true;
};

// `InvalidArgument` naming the bad option: a batch size below 1, fewer than
// one process, a process index outside [0, num_processes), a split batch size
// not divisible by the number of processes, a negative dataset length, or
// (with even_batches) fewer samples than processes, where every process
// could only be handed copies of other processes' samples.
[[nodiscard]] absl::Status ValidateShardOptions(int64_t dataset_length,
                                                const ShardOptions& options);

class BatchSamplerShard {
 public:
  [[nodiscard]] static absl::StatusOr<BatchSamplerShard> Create(
      IndexOrder order, const ShardOptions& options);

  // Batches this process yields in the epoch.
  int64_t size() const { return main_batches_ + static_cast<int64_t>(tail_.size()); }

  // This process's batch `k` (dataset indices). REQUIRES: 0 <= k < size().
  std::vector<int64_t> Batch(int64_t k) const;

  // Every batch of the epoch, in order.
  std::vector<std::vector<int64_t>> AllBatches() const;

  // Samples of the last global batch that are real (not cycled padding) when
  // the epoch is padded to even batches, as Accelerate's `remainder`:
  // dataset length modulo the global batch size; 0 when nothing is padded.
  int64_t remainder() const { return remainder_; }

  const ShardOptions& options() const { return options_; }
  const IndexOrder& order() const { return order_; }

 private:
  BatchSamplerShard(IndexOrder order, ShardOptions options)
      : order_(std::move(order)), options_(options) {}

  // Positions [begin, end) of the underlying batch sampler's batch `j`.
  std::vector<int64_t> GlobalBatch(int64_t j) const;
  void Plan();
  void PlanNoSplit();
  void PlanSplit();

  IndexOrder order_;
  ShardOptions options_;
  // Batches of the steady phase: batch k is global batch
  // `k * stride_ + offset_` (sliced when splitting).
  int64_t main_batches_ = 0;
  // The few batches after the steady phase, computed once.
  std::vector<std::vector<int64_t>> tail_;
  int64_t remainder_ = 0;
};

// The samples one process yields from a stream of `stream_length` samples
// (identified 0, 1, ...), as Accelerate's `IterableDatasetShard` does: the
// stream is cut in global batches of `batch_size * num_processes` samples
// (`batch_size` when splitting), each process takes its slice, and the last
// incomplete global batch is dropped (`drop_last`) or completed with samples
// from the first global batch. `even_batches` does not apply to streams.
[[nodiscard]] absl::StatusOr<std::vector<int64_t>> IterableShardOrder(
    int64_t stream_length, const ShardOptions& options);

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_BATCH_SAMPLER_SHARD_H_
