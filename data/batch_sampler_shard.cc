#include "data/batch_sampler_shard.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::data {
namespace {

// Appends `values` to itself until it holds at least `size` elements.
void DoubleUntil(std::vector<int64_t>& values, int64_t size) {
  while (!values.empty() && static_cast<int64_t>(values.size()) < size) {
    const size_t n = values.size();
    values.reserve(2 * n);
    for (size_t i = 0; i < n; ++i) values.push_back(values[i]);
  }
}

absl::Status ValidateCommon(int64_t length, const ShardOptions& options) {
  if (length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset length ", length, " is negative"));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size ", options.batch_size, " is not a positive count"));
  }
  if (options.num_processes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_processes ", options.num_processes, " is not a positive count"));
  }
  if (options.process_index < 0 ||
      options.process_index >= options.num_processes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "process_index ", options.process_index, " is outside [0, ",
        options.num_processes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateShardOptions(int64_t dataset_length,
                                  const ShardOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(ValidateCommon(dataset_length, options));
  if (options.split_batches && options.batch_size % options.num_processes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "split_batches needs the batch size (", options.batch_size,
        ") to be a round multiple of the number of processes (",
        options.num_processes, ")"));
  }
  if (options.even_batches && !options.drop_last && dataset_length > 0 &&
      dataset_length < options.num_processes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a dataset of ", dataset_length, " samples cannot give each of ",
        options.num_processes,
        " processes a batch of its own with even_batches; use "
        "even_batches=false or fewer processes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<BatchSamplerShard> BatchSamplerShard::Create(
    IndexOrder order, const ShardOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(ValidateShardOptions(order.size(), options));
  BatchSamplerShard shard(std::move(order), options);
  shard.Plan();
  return shard;
}

std::vector<int64_t> BatchSamplerShard::GlobalBatch(int64_t j) const {
  const int64_t begin = j * options_.batch_size;
  const int64_t end = std::min(order_.size(), begin + options_.batch_size);
  std::vector<int64_t> batch;
  batch.reserve(static_cast<size_t>(std::max<int64_t>(end - begin, 0)));
  for (int64_t i = begin; i < end; ++i) batch.push_back(order_[i]);
  return batch;
}

void BatchSamplerShard::Plan() {
  const int64_t n = order_.size();
  const int64_t global_batch =
      options_.split_batches ? options_.batch_size
                             : options_.batch_size * options_.num_processes;
  remainder_ = options_.drop_last ? 0 : n % global_batch;
  if (options_.split_batches) {
    PlanSplit();
  } else {
    PlanNoSplit();
  }
}

void BatchSamplerShard::PlanNoSplit() {
  const int64_t n = order_.size();
  const int64_t bs = options_.batch_size;
  const int64_t processes = options_.num_processes;
  const int64_t p = options_.process_index;
  const int64_t full = n / bs;
  const int64_t batches = options_.drop_last ? full : (n + bs - 1) / bs;
  // A group of `processes` consecutive batches is handed out once its last
  // batch is full.
  const int64_t groups = full / processes;
  main_batches_ = groups;
  if (options_.drop_last || n == 0) return;

  // Our batch in the group that was not handed out, if it exists.
  const int64_t pending = groups * processes + p;
  const bool has_pending = pending < batches;
  if (!options_.even_batches) {
    if (has_pending) tail_.push_back(GlobalBatch(pending));
    return;
  }
  if (has_pending && pending < full) tail_.push_back(GlobalBatch(pending));

  // Samples to cycle through: the first `processes` batches, repeated until
  // they cover one batch per process.
  std::vector<int64_t> initial;
  for (int64_t j = 0; j < std::min(processes, batches); ++j) {
    const std::vector<int64_t> batch = GlobalBatch(j);
    initial.insert(initial.end(), batch.begin(), batch.end());
  }
  DoubleUntil(initial, processes * bs);
  // Complete the last batch, then add batches until every process has had
  // the same number.
  int64_t idx = batches - 1;
  std::vector<int64_t> batch = GlobalBatch(idx);
  if (static_cast<int64_t>(batch.size()) == bs) {
    batch.clear();
    ++idx;
  }
  size_t cycle = 0;
  while (idx % processes != 0 || !batch.empty()) {
    const size_t need = static_cast<size_t>(bs) - batch.size();
    batch.insert(batch.end(), initial.begin() + cycle,
                 initial.begin() + cycle + need);
    if (idx % processes == p) tail_.push_back(batch);
    cycle += need;
    batch.clear();
    ++idx;
  }
}

void BatchSamplerShard::PlanSplit() {
  const int64_t n = order_.size();
  const int64_t bs = options_.batch_size;
  const int64_t slice = bs / options_.num_processes;
  const int64_t begin = slice * options_.process_index;
  const int64_t full = n / bs;
  main_batches_ = full;
  if (options_.drop_last || n == 0 || n % bs == 0) return;

  std::vector<int64_t> last = GlobalBatch(full);
  if (!options_.even_batches) {
    if (static_cast<int64_t>(last.size()) > begin) {
      const int64_t end = std::min<int64_t>(begin + slice, last.size());
      tail_.emplace_back(last.begin() + begin, last.begin() + end);
    }
    return;
  }
  std::vector<int64_t> initial = GlobalBatch(0);
  DoubleUntil(initial, bs);
  last.insert(last.end(), initial.begin(), initial.end());
  tail_.emplace_back(last.begin() + begin, last.begin() + begin + slice);
}

std::vector<int64_t> BatchSamplerShard::Batch(int64_t k) const {
  ACCELERATE_CHECK(k >= 0 && k < size())
      << "batch " << k << " of a shard of " << size();
  if (k >= main_batches_) return tail_[static_cast<size_t>(k - main_batches_)];
  if (!options_.split_batches) {
    return GlobalBatch(k * options_.num_processes + options_.process_index);
  }
  const std::vector<int64_t> global = GlobalBatch(k);
  const int64_t slice = options_.batch_size / options_.num_processes;
  const int64_t begin = slice * options_.process_index;
  return std::vector<int64_t>(global.begin() + begin,
                              global.begin() + begin + slice);
}

std::vector<std::vector<int64_t>> BatchSamplerShard::AllBatches() const {
  std::vector<std::vector<int64_t>> batches;
  batches.reserve(static_cast<size_t>(size()));
  for (int64_t k = 0; k < size(); ++k) batches.push_back(Batch(k));
  return batches;
}

absl::StatusOr<std::vector<int64_t>> IterableShardOrder(
    int64_t stream_length, const ShardOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(ValidateCommon(stream_length, options));
  if (options.split_batches && options.batch_size > 1 &&
      options.batch_size % options.num_processes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "split_batches needs the batch size (", options.batch_size,
        ") to be a round multiple of the number of processes (",
        options.num_processes, ")"));
  }
  const int64_t real_batch = options.split_batches
                                 ? options.batch_size
                                 : options.batch_size * options.num_processes;
  const int64_t per_process = options.split_batches
                                  ? options.batch_size / options.num_processes
                                  : options.batch_size;
  const int64_t begin = options.process_index * per_process;
  std::vector<int64_t> order;
  const int64_t full = stream_length / real_batch;
  for (int64_t chunk = 0; chunk < full; ++chunk) {
    for (int64_t i = begin; i < begin + per_process; ++i) {
      order.push_back(chunk * real_batch + i);
    }
  }
  if (!options.drop_last && stream_length % real_batch != 0) {
    std::vector<int64_t> current;
    for (int64_t s = full * real_batch; s < stream_length; ++s) {
      current.push_back(s);
    }
    std::vector<int64_t> first;
    if (full > 0) {
      for (int64_t s = 0; s < real_batch; ++s) first.push_back(s);
    } else {
      first = current;
    }
    while (static_cast<int64_t>(current.size()) < real_batch) {
      current.insert(current.end(), first.begin(), first.end());
    }
    for (int64_t i = begin; i < begin + per_process; ++i) {
      order.push_back(current[static_cast<size_t>(i)]);
    }
  }
  return order;
}

}  // namespace accelerate::data
