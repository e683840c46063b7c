// A loader for streams (iterable datasets) with Accelerate's
// `IterableDatasetShard` semantics: every process reads the stream, cuts it
// in global batches of `batch_size * num_processes` samples (`batch_size`
// with `split_batches`), keeps its slice of each, and completes the last
// global batch with samples from the first one unless `drop_last`.
//
// clang-format off
//   #include <fstream>
//   #include <ATen/ATen.h>
//   #include "state/status_macros.h"
//   // One sample per line of a file: its length, and whether it is empty.
//   class Lines : public SampleStream {
//    public:
//     explicit Lines(std::string path) : path_(std::move(path)) {}
//     void Reset(int64_t epoch) override { in_ = std::ifstream(path_); }
//     std::optional<Batch> Next() override {
//       std::string line;
//       if (!std::getline(in_, line)) return std::nullopt;
//       const auto length = static_cast<float>(line.size());
//       return Batch::Named({{"length", at::full({1}, length)},
//                            {"empty", at::full({1}, length == 0)}});
//     }
//
//    private:
//     std::string path_;
//     std::ifstream in_;
//   };
//
//   absl::Status Example(const state::PartialState& state, std::string path) {
//     DataLoaderOptions options;
//     options.batch_size = 16;
//     ACCELERATE_ASSIGN_OR_RETURN(auto loader, PreparedStreamLoader::Create(
//         std::make_shared<Lines>(path), state, options));
//     while (true) {
//       ACCELERATE_ASSIGN_OR_RETURN(std::optional<Batch> batch, loader->Next());
//       if (!batch) break;
//     }
//     return absl::OkStatus();
//   }
// clang-format on
//
// With `dispatch_batches`, only the main process reads the stream (the
// others may pass a null stream) and broadcasts each global batch; every
// process keeps its slice. A stream cannot jump: `SkipBatches` reads and
// drops. Thread safety: one
// thread drives a loader. Ownership: shares the stream; the state must
// outlive the loader.

#ifndef ACCELERATE_DATA_STREAM_LOADER_H_
#define ACCELERATE_DATA_STREAM_LOADER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "data/data_loader.h"
#include "data/tracked_loader.h"
#include "state/partial_state.h"

namespace accelerate::data {

// Samples read in order: one sample each (any structure, the same for every
// sample), without a batch dimension; the loader stacks them.
class SampleStream {
 public:
  virtual ~SampleStream() = default;
  // Starts the stream over, for `epoch` (a stream may reshuffle by it).
  virtual void Reset(int64_t epoch) = 0;
  // The next sample, or nullopt at the end of the stream.
  virtual std::optional<Batch> Next() = 0;
};

class PreparedStreamLoader final : public TrackedLoader {
 public:
  // Uses `batch_size`, `drop_last`, `split_batches`, `dispatch_batches` and
  // `rng_types` of `options`;
  // `InvalidArgument` for a bad batch size or a split batch size not divisible
  // by the number of processes.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PreparedStreamLoader>>
  Create(std::shared_ptr<SampleStream> stream,
         const state::PartialState& state, const DataLoaderOptions& options);

  PreparedStreamLoader(const PreparedStreamLoader&) = delete;
  PreparedStreamLoader& operator=(const PreparedStreamLoader&) = delete;

  // Starts epoch `epoch` (resets the stream).
  void SetEpoch(int64_t epoch);
  // This process's next batch on the state's device; nullopt once at the end
  // of the epoch, after which the next epoch begins.
  [[nodiscard]] absl::StatusOr<std::optional<Batch>> Next();
  // Reads and drops the next `n` batches.
  [[nodiscard]] absl::Status SkipBatches(int64_t n);

  // True once the last batch of the epoch has been handed out (known one
  // global batch ahead).
  bool end_of_epoch() const override { return end_of_epoch_; }
  // Real samples in the last global batch when it was completed from the
  // first one; 0 otherwise (as PreparedDataLoader::remainder).
  int64_t remainder() const override { return remainder_; }

 private:
  PreparedStreamLoader(std::shared_ptr<SampleStream> stream,
                       const state::PartialState& state,
                       const DataLoaderOptions& options);
  // Reads the next global batch of the stream into `ahead_`; false at the
  // end.
  bool ReadGlobalBatch();
  void StartEpoch();
  absl::StatusOr<std::optional<Batch>> NextDispatched();

  std::shared_ptr<SampleStream> stream_;
  const state::PartialState& state_;
  DataLoaderOptions options_;
  int64_t real_batch_;
  int64_t per_process_;
  int64_t epoch_ = 0;
  bool started_ = false;
  bool end_of_epoch_ = false;
  int64_t remainder_ = 0;
  std::vector<Batch> first_;  // The first global batch, for completing.
  std::optional<std::vector<Batch>> ahead_;
  // Samples of `ahead_` that came from the stream (the rest completed it).
  int64_t ahead_real_ = 0;
};

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_STREAM_LOADER_H_
