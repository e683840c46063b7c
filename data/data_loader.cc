#include "data/data_loader.h"

#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <ATen/ATen.h>
#include "data/batch_collectives.h"
#include "data/internal/broadcast_batch.h"
#include "data/internal/dispatch_plan.h"
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::data {
namespace {

// The dataset (or its collate) must give one sample per index:
// `InvalidArgument` describing the batch otherwise.
absl::Status CheckSamples(const Batch& batch, size_t indices) {
  absl::StatusOr<int64_t> samples = batch.BatchSize();
  if (!samples.ok()) return samples.status();
  if (*samples != static_cast<int64_t>(indices)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the dataset gave ", *samples, " samples for ", indices,
                     " indices: ", batch.Describe()));
  }
  return absl::OkStatus();
}

}  // namespace

TensorDataset::TensorDataset(Batch rows) : rows_(std::move(rows)) {
  absl::StatusOr<int64_t> size = rows_.BatchSize();
  ACCELERATE_CHECK(size.ok()) << "TensorDataset: " << size.status().message();
  size_ = *size;
}

TensorDataset::TensorDataset(at::Tensor data, at::Tensor target)
    : TensorDataset(Batch::Of({std::move(data), std::move(target)})) {}

absl::StatusOr<Batch> TensorDataset::Get(
    const std::vector<int64_t>& indices) const {
  const at::Tensor index = at::tensor(indices, at::kLong);
  return rows_.Transform(
      [&](const at::Tensor& t) { return t.index_select(0, index); });
}

std::string LoaderState::Serialize() const {
  return absl::StrCat("epoch=", epoch, " batches_done=", batches_done,
                      " seed=", seed);
}

absl::StatusOr<LoaderState> LoaderState::Parse(const std::string& text) {
  LoaderState state;
  int found = 0;
  for (absl::string_view field : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    bool ok = kv.size() == 2;
    if (ok && kv[0] == "epoch") {
      ok = absl::SimpleAtoi(kv[1], &state.epoch) && state.epoch >= 0;
    } else if (ok && kv[0] == "batches_done") {
      ok = absl::SimpleAtoi(kv[1], &state.batches_done) &&
           state.batches_done >= 0;
    } else if (ok && kv[0] == "seed") {
      ok = absl::SimpleAtoi(kv[1], &state.seed);
    } else {
      ok = false;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "loader state \"", text, "\": bad field \"", field,
          "\" (expected epoch=E batches_done=B seed=S)"));
    }
    ++found;
  }
  if (found != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loader state \"", text, "\" needs epoch, batches_done and seed"));
  }
  return state;
}

PreparedDataLoader::PreparedDataLoader(std::shared_ptr<const MapDataset> dataset,
                                       const state::PartialState& state,
                                       const DataLoaderOptions& options)
    : dataset_(std::move(dataset)), state_(state), options_(options) {}

PreparedDataLoader::~PreparedDataLoader() { StopWorkers(); }

absl::StatusOr<std::unique_ptr<PreparedDataLoader>> PreparedDataLoader::Create(
    std::shared_ptr<const MapDataset> dataset, const state::PartialState& state,
    const DataLoaderOptions& options) {
  if (dataset == nullptr) {
    return absl::InvalidArgumentError("the data loader needs a dataset");
  }
  if (options.num_workers < 0 || options.prefetch_factor < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_workers ", options.num_workers, " / prefetch_factor ",
        options.prefetch_factor, ": need num_workers >= 0, prefetch_factor >= 1"));
  }
  if (options.dispatch_batches && !options.even_batches &&
      state.num_processes() > 1) {
    return absl::InvalidArgumentError(
        "dispatch_batches needs even_batches: every process must take part "
        "in every broadcast");
  }
  std::unique_ptr<PreparedDataLoader> loader(
      new PreparedDataLoader(std::move(dataset), state, options));
  ACCELERATE_RETURN_IF_ERROR(loader->BuildShards());
  return loader;
}

absl::StatusOr<IndexOrder> PreparedDataLoader::EpochOrder() const {
  if (!options_.sampler) {
    return IndexOrder::Create(
        dataset_->size(),
        {.shuffle = options_.shuffle, .seed = options_.seed, .epoch = epoch_});
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      std::vector<int64_t> indices,
      state::CallGuarded(absl::StrCat("the sampler of epoch ", epoch_),
                         [&] { return options_.sampler(epoch_); }));
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= dataset_->size()) {
      return absl::OutOfRangeError(absl::StrCat(
          "the sampler of epoch ", epoch_, " gave index ", indices[i],
          " at position ", i, "; the dataset has ", dataset_->size(),
          " samples"));
    }
  }
  return IndexOrder::FromIndices(std::move(indices));
}

absl::Status PreparedDataLoader::BuildShards() {
  StopWorkers();
  // The epoch starts over whether or not its plan can be made.
  next_ = 0;
  end_of_epoch_ = false;
  rng_synced_ = false;
  MarkIterating(false);
  shards_error_ = PlanEpoch();
  return shards_error_;
}

absl::Status PreparedDataLoader::PlanEpoch() {
  ACCELERATE_ASSIGN_OR_RETURN(const IndexOrder order, EpochOrder());
  ShardOptions shard_options;
  shard_options.batch_size = options_.batch_size;
  shard_options.drop_last = options_.drop_last;
  shard_options.num_processes = state_.num_processes();
  shard_options.split_batches = options_.split_batches;
  // As Accelerate's prepare_data_loader, one process reads the plain batch
  // sampler: nothing to even out, the last batch stays short.
  shard_options.even_batches =
      options_.even_batches && state_.num_processes() > 1;
  shard_options.process_index = state_.process_index();
  if (options_.dispatch_batches && state_.use_distributed()) {
    ACCELERATE_ASSIGN_OR_RETURN(
        data_internal::DispatchPlan plan,
        data_internal::DispatchPlan::Create(order, shard_options));
    dispatch_ = std::make_unique<data_internal::DispatchPlan>(std::move(plan));
  } else {
    ACCELERATE_ASSIGN_OR_RETURN(shard_,
                                BatchSamplerShard::Create(order, shard_options));
  }
  return absl::OkStatus();
}

int64_t PreparedDataLoader::size() const {
  return dispatch_ != nullptr ? dispatch_->size() : shard_->size();
}

int64_t PreparedDataLoader::remainder() const {
  return dispatch_ != nullptr ? dispatch_->remainder() : shard_->remainder();
}

void PreparedDataLoader::SetEpoch(int64_t epoch) {
  // The current epoch keeps its position, so a resumed or skipped loader
  // continues where it was (as Accelerate's set_epoch keeps skip_batches).
  if (epoch == epoch_) return;
  epoch_ = epoch;
  // The options were validated at creation; only the order changes (a
  // user's sampler may fail: Next reports it).
  BuildShards().IgnoreError();
}

void PreparedDataLoader::SkipBatches(int64_t n) {
  StopWorkers();
  next_ = std::min(size(), next_ + std::max<int64_t>(n, 0));
}

LoaderState PreparedDataLoader::state() const {
  return {epoch_, next_, options_.seed};
}

absl::Status PreparedDataLoader::Restore(const LoaderState& saved) {
  if (saved.seed != options_.seed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "loader state was saved with seed ", saved.seed,
        ", this loader uses seed ", options_.seed));
  }
  epoch_ = saved.epoch;
  ACCELERATE_RETURN_IF_ERROR(BuildShards());
  if (saved.batches_done > size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "loader state has ", saved.batches_done,
        " batches done, but an epoch here has only ", size()));
  }
  next_ = saved.batches_done;
  return absl::OkStatus();
}

absl::StatusOr<Batch> PreparedDataLoader::Load(int64_t k) const {
  const std::vector<int64_t> indices = shard_->Batch(k);
  absl::StatusOr<Batch> batch = dataset_->Get(indices);
  if (!batch.ok()) {
    return absl::Status(batch.status().code(),
                        absl::StrCat("loading batch ", k, ": ",
                                     batch.status().message()));
  }
  if (absl::Status samples = CheckSamples(*batch, indices.size());
      !samples.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch ", k, " from the dataset: ", samples.message()));
  }
  return ToDevice(*std::move(batch), state_.device());
}

absl::StatusOr<Batch> PreparedDataLoader::LoadGuarded(int64_t k) const {
  // The batch is named only on failure: no string per batch.
  absl::StatusOr<absl::StatusOr<Batch>> loaded =
      state::CallGuarded("loading a batch", [&] { return Load(k); });
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("batch ", k, ": ",
                                     loaded.status().message()));
  }
  return *std::move(loaded);
}

void PreparedDataLoader::StartWorkers() {
  claimed_ = next_;
  stop_ = false;
  ready_.clear();
  const int64_t ahead =
      static_cast<int64_t>(options_.num_workers) * options_.prefetch_factor;
  for (int w = 0; w < options_.num_workers; ++w) {
    workers_.emplace_back([this, ahead] {
      while (true) {
        int64_t k = 0;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] {
            return stop_ || (claimed_ < size() && claimed_ < next_ + ahead);
          });
          if (stop_) return;
          k = claimed_++;
        }
        absl::StatusOr<Batch> batch = LoadGuarded(k);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ready_.emplace(k, std::move(batch));
        }
        cv_.notify_all();
      }
    });
  }
}

void PreparedDataLoader::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  ready_.clear();
}

absl::StatusOr<Batch> PreparedDataLoader::NextDispatched(int64_t k) {
  // The main process reads the global batch of step k and broadcasts it;
  // each process keeps its slice.
  const data_internal::DispatchStep step = dispatch_->Step(k);
  Batch global;
  std::string extra = "ok";
  if (state_.is_main_process()) {
    absl::StatusOr<absl::StatusOr<Batch>> loaded = state::CallGuarded(
        absl::StrCat("loading global batch ", k),
        [&] { return dataset_->Get(step.indices); });
    absl::Status error = loaded.ok() ? loaded->status() : loaded.status();
    if (error.ok()) {
      global = **std::move(loaded);
      error = CheckSamples(global, step.indices.size());
    }
    if (!error.ok()) {
      // Everyone hears of the failure instead of waiting for a batch.
      global = Batch();
      // The code travels too: every process reports the same status.
      extra = absl::StrCat("error:", static_cast<int>(error.code()),
                           ": global batch ", k, ": ", error.message());
    }
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      global, data_internal::BroadcastBatch(state_, global, &extra));
  if (absl::StartsWith(extra, "error:")) {
    const size_t colon = extra.find(':', 6);
    int code = static_cast<int>(absl::StatusCode::kInternal);
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(extra.substr(6, colon - 6), &code) || code <= 0 ||
        code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
      return absl::DataLossError(absl::StrCat("bad batch header \"", extra, "\""));
    }
    return absl::Status(static_cast<absl::StatusCode>(code),
                        extra.substr(colon + 2));
  }
  const int64_t begin = state_.process_index() * step.per_process;
  return Slice(global, begin, begin + step.per_process);
}

absl::StatusOr<std::optional<Batch>> PreparedDataLoader::Next() {
  if (!shards_error_.ok()) return shards_error_;
  if (!rng_synced_) {
    // The epoch's first call on every process, whatever its shard holds
    // (a collective): its random draws start from the main process's
    // state. Marked first, so that a failure is not retried on one process.
    rng_synced_ = true;
    ACCELERATE_RETURN_IF_ERROR(
        state::SynchronizeRngStates(state_, options_.rng_types));
    if (options_.sampler && !options_.rng_types.empty()) {
      // The user's sampler may draw from the generators just synchronized:
      // its order is drawn again, now alike on every process (the position
      // in the epoch is kept).
      shards_error_ = PlanEpoch();
      ACCELERATE_RETURN_IF_ERROR(shards_error_);
    }
  }
  if (next_ >= size()) {
    // The epoch is over: say so once, and move on to the next epoch (as
    // Accelerate's seedable sampler does after a full pass).
    ++epoch_;
    BuildShards().IgnoreError();  // Reported by the next call.
    return std::optional<Batch>();
  }
  const int64_t k = next_;
  Batch batch;
  if (dispatch_ != nullptr) {
    ACCELERATE_ASSIGN_OR_RETURN(batch, NextDispatched(k));
  } else if (options_.num_workers == 0) {
    ACCELERATE_ASSIGN_OR_RETURN(batch, LoadGuarded(k));
  } else {
    if (workers_.empty()) StartWorkers();
    absl::StatusOr<Batch> loaded;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return ready_.count(k) > 0; });
      if (!ready_.at(k).ok()) {
        // Kept, so that asking again gives the same error, not a hang.
        return ready_.at(k).status();
      }
      loaded = std::move(ready_.at(k));
      ready_.erase(k);
    }
    batch = *std::move(loaded);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++next_;
  }
  cv_.notify_all();
  end_of_epoch_ = next_ == size();
  MarkIterating(true);
  return std::optional<Batch>(std::move(batch));
}

absl::StatusOr<at::Tensor> GatherForMetrics(const state::PartialState& state,
                                            const at::Tensor& tensor,
                                            bool end_of_epoch,
                                            int64_t remainder) {
  ACCELERATE_ASSIGN_OR_RETURN(at::Tensor all, state::Gather(state, tensor));
  if (end_of_epoch && remainder > 0 && all.size(0) > remainder) {
    return all.slice(0, 0, remainder);
  }
  return all;
}

absl::StatusOr<Batch> GatherForMetrics(const state::PartialState& state,
                                       const Batch& batch, bool end_of_epoch,
                                       int64_t remainder) {
  ACCELERATE_ASSIGN_OR_RETURN(Batch all, Gather(state, batch));
  if (!end_of_epoch || remainder <= 0) return all;
  ACCELERATE_ASSIGN_OR_RETURN(const int64_t samples, all.BatchSize());
  return samples > remainder ? Slice(all, 0, remainder) : all;
}

absl::StatusOr<at::Tensor> GatherForMetrics(const state::PartialState& state,
                                            const TrackedLoader& loader,
                                            const at::Tensor& tensor) {
  return GatherForMetrics(state, tensor, loader.end_of_epoch(),
                          loader.remainder());
}

absl::StatusOr<Batch> GatherForMetrics(const state::PartialState& state,
                                       const TrackedLoader& loader,
                                       const Batch& batch) {
  return GatherForMetrics(state, batch, loader.end_of_epoch(),
                          loader.remainder());
}

}  // namespace accelerate::data
