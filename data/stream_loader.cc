#include "data/stream_loader.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "data/batch_sampler_shard.h"
#include "data/collate.h"
#include "data/internal/broadcast_batch.h"
#include "state/collectives.h"
#include "state/status_macros.h"

namespace accelerate::data {

PreparedStreamLoader::PreparedStreamLoader(std::shared_ptr<SampleStream> stream,
                                           const state::PartialState& state,
                                           const DataLoaderOptions& options)
    : stream_(std::move(stream)), state_(state), options_(options) {
  const int64_t processes = state.num_processes();
  real_batch_ = options.split_batches ? options.batch_size
                                      : options.batch_size * processes;
  per_process_ = options.split_batches ? options.batch_size / processes
                                       : options.batch_size;
}

absl::StatusOr<std::unique_ptr<PreparedStreamLoader>>
PreparedStreamLoader::Create(std::shared_ptr<SampleStream> stream,
                             const state::PartialState& state,
                             const DataLoaderOptions& options) {
  if (stream == nullptr &&
      !(options.dispatch_batches && !state.is_main_process())) {
    return absl::InvalidArgumentError(
        "the stream loader needs a stream (only non-main processes in "
        "dispatch mode may pass none)");
  }
  ShardOptions shard;
  shard.batch_size = options.batch_size;
  shard.drop_last = options.drop_last;
  shard.num_processes = state.num_processes();
  shard.process_index = state.process_index();
  shard.split_batches = options.split_batches;
  // The same checks as the iterable shard plan.
  ACCELERATE_RETURN_IF_ERROR(IterableShardOrder(0, shard).status());
  if (options.split_batches && options.batch_size < state.num_processes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "split_batches with batch_size ", options.batch_size,
        " leaves no samples for some of the ", state.num_processes(),
        " processes"));
  }
  return std::unique_ptr<PreparedStreamLoader>(
      new PreparedStreamLoader(std::move(stream), state, options));
}

void PreparedStreamLoader::SetEpoch(int64_t epoch) {
  epoch_ = epoch;
  started_ = false;
  MarkIterating(false);
}

bool PreparedStreamLoader::ReadGlobalBatch() {
  std::vector<Batch> batch;
  while (static_cast<int64_t>(batch.size()) < real_batch_) {
    std::optional<Batch> sample = stream_->Next();
    if (!sample.has_value()) break;
    batch.push_back(std::move(*sample));
  }
  if (batch.empty()) {
    ahead_.reset();
    return false;
  }
  const int64_t real = static_cast<int64_t>(batch.size());
  // One process reads the plain stream, as Accelerate's prepare_data_loader
  // does: the last batch stays short.
  if (real < real_batch_ && state_.num_processes() > 1) {
    if (options_.drop_last) {
      ahead_.reset();
      return false;
    }
    // Complete with the first global batch (the stream's first samples).
    const std::vector<Batch> fill = first_.empty() ? batch : first_;
    while (static_cast<int64_t>(batch.size()) < real_batch_) {
      batch.insert(batch.end(), fill.begin(), fill.end());
    }
    batch.resize(static_cast<size_t>(real_batch_));
  }
  if (real < real_batch_ && options_.drop_last) {
    ahead_.reset();
    return false;
  }
  if (first_.empty()) first_ = batch;
  ahead_ = std::move(batch);
  ahead_real_ = real;
  return true;
}

absl::StatusOr<std::optional<Batch>> PreparedStreamLoader::NextDispatched() {
  // Only the main process reads the stream; it broadcasts each global batch
  // (stacked) with "last real" or "end" in the header.
  Batch global;
  std::string extra = "end";
  if (state_.is_main_process()) {
    if (!started_) StartEpoch();
    if (ahead_.has_value()) {
      absl::StatusOr<Batch> stacked = Stack(*ahead_);
      if (!stacked.ok()) {
        // Everyone hears of it instead of waiting for a batch.
        extra = absl::StrCat("error: ", stacked.status().message());
      } else {
        global = *std::move(stacked);
      }
      const int64_t real = ahead_real_;
      const bool last = !ReadGlobalBatch();
      if (stacked.ok()) extra = absl::StrCat(last ? 1 : 0, " ", real);
    }
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      global, data_internal::BroadcastBatch(state_, global, &extra));
  if (absl::StartsWith(extra, "error: ")) {
    return absl::InvalidArgumentError(
        absl::StrCat("the stream's samples: ", extra.substr(7)));
  }
  if (extra == "end") {
    ++epoch_;
    started_ = false;
    MarkIterating(false);
    return std::optional<Batch>();
  }
  int last = 0;
  int64_t real = 0;
  std::vector<std::string> flags = absl::StrSplit(extra, ' ');
  if (flags.size() != 2 || !absl::SimpleAtoi(flags[0], &last) ||
      !absl::SimpleAtoi(flags[1], &real)) {
    return absl::DataLossError(absl::StrCat("bad stream header \"", extra, "\""));
  }
  end_of_epoch_ = last != 0;
  remainder_ = end_of_epoch_ && real < real_batch_ ? real : 0;
  const int64_t begin = state_.process_index() * per_process_;
  ACCELERATE_ASSIGN_OR_RETURN(const int64_t samples, global.BatchSize());
  const int64_t end = std::min<int64_t>(begin + per_process_, samples);
  MarkIterating(true);
  return std::optional<Batch>(Slice(global, begin, end));
}

void PreparedStreamLoader::StartEpoch() {
  stream_->Reset(epoch_);
  first_.clear();
  remainder_ = 0;
  end_of_epoch_ = false;
  started_ = true;
  ReadGlobalBatch();
}

absl::StatusOr<std::optional<Batch>> PreparedStreamLoader::Next() {
  if (epoch_begun_at() == 0) {
    // A new epoch (on every process in step): its random draws start from
    // the main process's state.
    ACCELERATE_RETURN_IF_ERROR(
        state::SynchronizeRngStates(state_, options_.rng_types));
  }
  if (options_.dispatch_batches && state_.use_distributed()) {
    return NextDispatched();
  }
  if (!started_) StartEpoch();
  if (!ahead_.has_value()) {
    // The epoch is over: say so once, and move on to the next epoch.
    ++epoch_;
    started_ = false;
    MarkIterating(false);
    return std::optional<Batch>();
  }
  std::vector<Batch> global = std::move(*ahead_);
  const int64_t real = ahead_real_;
  const bool last = !ReadGlobalBatch();
  end_of_epoch_ = last;
  remainder_ = last && real < real_batch_ ? real : 0;
  const int64_t begin = state_.process_index() * per_process_;
  const int64_t end =
      std::min<int64_t>(begin + per_process_, static_cast<int64_t>(global.size()));
  const std::vector<Batch> mine(global.begin() + begin, global.begin() + end);
  absl::StatusOr<Batch> batch = Stack(mine);
  if (!batch.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the stream's samples: ", batch.status().message()));
  }
  MarkIterating(true);
  return std::optional<Batch>(ToDevice(*std::move(batch), state_.device()));
}

absl::Status PreparedStreamLoader::SkipBatches(int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<Batch> batch, Next());
    if (!batch.has_value()) break;
  }
  return absl::OkStatus();
}

}  // namespace accelerate::data
