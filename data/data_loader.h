// A data loader prepared for distributed training, as Accelerate's
// `prepare_data_loader` makes it: each process reads its shard of every
// epoch (BatchSamplerShard semantics), batches are loaded ahead by background
// workers and moved to the process's device, the loader knows when it is at
// the end of the epoch and how many samples of the last global batch are
// real (for `GatherForMetrics`), and it can resume mid-epoch in O(1).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const state::PartialState& state, at::Tensor inputs,
//                        at::Tensor targets) {
//     auto dataset = std::make_shared<TensorDataset>(inputs, targets);
//     DataLoaderOptions options;
//     options.batch_size = 32;
//     options.shuffle = true;
//     options.seed = 42;
//     options.num_workers = 2;
//     ACCELERATE_ASSIGN_OR_RETURN(auto loader,
//                                 PreparedDataLoader::Create(dataset, state, options));
//     for (int epoch = 0; epoch < 3; ++epoch) {
//       loader->SetEpoch(epoch);
//       while (true) {
//         ACCELERATE_ASSIGN_OR_RETURN(std::optional<Batch> batch, loader->Next());
//         if (!batch) break;
//         at::Tensor predictions = batch->tensor(0).sum(1);  // the model's output
//         ACCELERATE_ASSIGN_OR_RETURN(
//             at::Tensor all, GatherForMetrics(state, *loader, predictions));
//       }
//     }
//     return absl::OkStatus();
//   }
// clang-format on
//
// Thread safety: one thread drives a loader; its workers are internal.
// Ownership: the loader shares ownership of the dataset; the `PartialState`
// must outlive it.

#ifndef ACCELERATE_DATA_DATA_LOADER_H_
#define ACCELERATE_DATA_DATA_LOADER_H_

#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include "data/batch.h"
#include "data/batch_sampler_shard.h"
#include "data/sampler.h"
#include "data/tracked_loader.h"
#include "state/partial_state.h"
#include "state/random.h"

namespace accelerate::data_internal {
class DispatchPlan;
}  // namespace accelerate::data_internal

namespace accelerate::data {

// A map-style dataset: a size and random access by index. `Get` is called
// from worker threads, so it must be safe to call concurrently.
class MapDataset {
 public:
  virtual ~MapDataset() = default;
  virtual int64_t size() const = 0;
  // The samples at `indices` as one batch (any structure; every tensor with
  // `indices.size()` samples along dimension 0). Errors and exceptions reach
  // the loader's caller as a status.
  virtual absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const = 0;
};

// Rows of tensors sharing dimension 0, in any structure (PyTorch's
// `TensorDataset` is the list case); batches are gathered with one
// `index_select` per tensor.
class TensorDataset final : public MapDataset {
 public:
  // REQUIRES (CHECKed): every tensor of `rows` with the same size of
  // dimension 0.
  explicit TensorDataset(Batch rows);
  // The list [data, target].
  TensorDataset(at::Tensor data, at::Tensor target);
  int64_t size() const override { return size_; }
  absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const override;

 private:
  Batch rows_;
  int64_t size_;
};

struct DataLoaderOptions {
  // Samples per batch on each process (per global batch with
  // `split_batches`).
  int64_t batch_size = 1;
  // Seeded shuffling: the same order on every process, changed by SetEpoch.
  bool shuffle = false;
  uint64_t seed = 0;
  // The user's own sampler instead (Accelerate shards any sampler the same
  // way): the dataset indices epoch `epoch` visits, in order, any number of
  // them. It must give the same indices on every process (seeded alike or
  // by the epoch, or drawing from a generator that `rng_types`
  // synchronizes: it is then called again after each epoch's
  // synchronization);
  // `TorchSamplerOrder` adapts LibTorch's samplers. An index outside the
  // dataset is an `OutOfRange` error from `Next`. Default: the order
  // `shuffle` and `seed` give.
  std::function<std::vector<int64_t>(int64_t epoch)> sampler;
  bool drop_last = false;
  // Accelerate's sharding switches (see ShardOptions).
  bool split_batches = false;
  bool even_batches = true;
  // Only the main process reads the dataset (for data only one process can
  // read): each step it reads one global batch and broadcasts it, and every
  // process keeps its slice, as Accelerate's `DataLoaderDispatcher` does
  // (the last global batch is split evenly, completed with the epoch's
  // first samples when it does not divide). Needs `even_batches`.
  bool dispatch_batches = false;
  // Background threads loading batches ahead; 0 loads on the caller's
  // thread.
  int num_workers = 0;
  // Batches each worker may load ahead.
  int prefetch_factor = 2;
  // Generators whose state every process takes from the main process at the
  // start of each epoch (Accelerate's `rng_types`; see
  // state::SynchronizeRngStates): then the first `Next` of every epoch is a
  // collective on every process. Default none: our samplers are seeded
  // alike everywhere (Accelerate's default "generator").
  std::vector<state::RngType> rng_types;
};

// Where a loader stands: enough to resume mid-epoch without replaying.
struct LoaderState {
  int64_t epoch = 0;
  // Batches of this epoch already handed out on this process.
  int64_t batches_done = 0;
  uint64_t seed = 0;

  // "epoch=E batches_done=B seed=S", and back. `InvalidArgument` (naming
  // the text) for anything else.
  std::string Serialize() const;
  [[nodiscard]] static absl::StatusOr<LoaderState> Parse(
      const std::string& text);
};

class PreparedDataLoader final : public TrackedLoader {
 public:
  // `InvalidArgument` for bad options (see ValidateShardOptions) and for
  // dispatch mode without even batches.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PreparedDataLoader>>
  Create(std::shared_ptr<const MapDataset> dataset,
         const state::PartialState& state, const DataLoaderOptions& options);

  PreparedDataLoader(const PreparedDataLoader&) = delete;
  PreparedDataLoader& operator=(const PreparedDataLoader&) = delete;
  ~PreparedDataLoader();

  // Starts epoch `epoch` from its first batch (the order changes with it
  // when shuffling). The current epoch is left where it is, so a loader
  // resumed with Restore or SkipBatches keeps its position.
  void SetEpoch(int64_t epoch);

  // The next batch of this epoch on this process, on the state's device;
  // nullopt at the end of the epoch (the next call starts the next epoch).
  // In dispatch mode every process must call it in step. The error of a
  // user's sampler for this epoch comes back here.
  [[nodiscard]] absl::StatusOr<std::optional<Batch>> Next();

  // Skips the next `n` batches of the current epoch without loading them
  // (Accelerate's `skip_first_batches`). O(1).
  void SkipBatches(int64_t n);

  LoaderState state() const;
  // Resumes at `saved`: same epoch order, continuing after its last batch.
  // `FailedPrecondition` when the seed differs from this loader's.
  [[nodiscard]] absl::Status Restore(const LoaderState& saved);

  // Batches per epoch on this process.
  int64_t size() const;
  // True once the last batch of the epoch has been handed out.
  bool end_of_epoch() const override { return end_of_epoch_; }
  // Real samples in the last global batch (0: none padded); see
  // BatchSamplerShard::remainder.
  int64_t remainder() const override;
  int64_t epoch() const { return epoch_; }

 private:
  PreparedDataLoader(std::shared_ptr<const MapDataset> dataset,
                     const state::PartialState& state,
                     const DataLoaderOptions& options);
  // This epoch's order: the user's sampler's, or the seeded one.
  absl::StatusOr<IndexOrder> EpochOrder() const;
  // Starts the epoch over and plans its batches; the error is also kept in
  // `shards_error_` for Next.
  absl::Status BuildShards();
  absl::Status PlanEpoch();
  absl::StatusOr<Batch> Load(int64_t k) const;
  // Load, with any exception (from the dataset, say) as a status.
  absl::StatusOr<Batch> LoadGuarded(int64_t k) const;
  absl::StatusOr<Batch> NextDispatched(int64_t k);
  void StartWorkers();
  void StopWorkers();

  std::shared_ptr<const MapDataset> dataset_;
  const state::PartialState& state_;
  DataLoaderOptions options_;
  int64_t epoch_ = 0;
  int64_t next_ = 0;
  bool end_of_epoch_ = false;
  // This process's shard; in dispatch mode (several processes), the global
  // batches instead.
  std::optional<BatchSamplerShard> shard_;
  std::unique_ptr<data_internal::DispatchPlan> dispatch_;
  // Why this epoch's shards could not be built (a user's sampler failed).
  absl::Status shards_error_;
  // Whether this epoch's `rng_types` synchronization ran.
  bool rng_synced_ = false;

  // Prefetching: workers load batches [next_, next_ + ahead) of the epoch.
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, absl::StatusOr<Batch>> ready_;
  int64_t claimed_ = 0;  // Next batch index a worker will take.
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// Gathers `tensor` from every process (dimension 0) and, at the end of the
// epoch of `loader` (a PreparedDataLoader or a PreparedStreamLoader), drops
// the samples that were added to complete its last global batch, as
// Accelerate's `gather_for_metrics` does.
[[nodiscard]] absl::StatusOr<at::Tensor> GatherForMetrics(
    const state::PartialState& state, const TrackedLoader& loader,
    const at::Tensor& tensor);

// The same for a batch of any structure (outputs with their labels, say).
[[nodiscard]] absl::StatusOr<Batch> GatherForMetrics(
    const state::PartialState& state, const TrackedLoader& loader,
    const Batch& batch);

// The same for any loader: keeps the first `remainder` gathered samples when
// `end_of_epoch` and `remainder > 0`.
[[nodiscard]] absl::StatusOr<at::Tensor> GatherForMetrics(
    const state::PartialState& state, const at::Tensor& tensor,
    bool end_of_epoch, int64_t remainder);
[[nodiscard]] absl::StatusOr<Batch> GatherForMetrics(
    const state::PartialState& state, const Batch& batch, bool end_of_epoch,
    int64_t remainder);

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_DATA_LOADER_H_
