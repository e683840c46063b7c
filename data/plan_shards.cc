// Prints, as JSON, the batches each process sees under Accelerate's data
// sharding: {"ranks": [[batch, ...], ...]}, each batch a list of sample
// indices. `accelerate plan-shards` runs it; it calls //data's sharding, so it
// agrees with the loader exactly.
//
//   plan_shards --dataset_length 10 --batch_size 2 --num_processes 2
//   plan_shards --dataset_length 10 --batch_size 2 --num_processes 2 --iterable
//   plan_shards ... --shuffle --seed 42 --epoch 1 --skip_batches 3
//
// Exit code 2 with a message naming the bad flag for invalid options.

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/batch_sampler_shard.h"
#include "data/sampler.h"

ABSL_FLAG(int64_t, dataset_length, -1, "Samples in the dataset (required).");
ABSL_FLAG(int64_t, batch_size, 1,
          "Batch size per process (per global batch with --split_batches).");
ABSL_FLAG(int, num_processes, 1, "Processes sharing the data.");
ABSL_FLAG(bool, split_batches, false,
          "Split each global batch between the processes.");
ABSL_FLAG(bool, even_batches, true,
          "Complete the last batches by cycling from the start.");
ABSL_FLAG(bool, drop_last, false, "Drop the last incomplete batch.");
ABSL_FLAG(bool, shuffle, false, "Seeded random order (Accelerate's).");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the random order.");
ABSL_FLAG(int64_t, epoch, 0, "Epoch (added to the seed).");
ABSL_FLAG(bool, iterable, false,
          "Plan an iterable dataset (a stream of dataset_length samples).");
ABSL_FLAG(int64_t, skip_batches, 0,
          "Plan the loader resumed after this many batches.");

namespace {

using Batches = std::vector<std::vector<int64_t>>;

std::string Json(const std::vector<Batches>& ranks) {
  std::vector<std::string> rank_texts;
  for (const Batches& batches : ranks) {
    std::vector<std::string> batch_texts;
    for (const auto& batch : batches) {
      batch_texts.push_back(absl::StrCat("[", absl::StrJoin(batch, ", "), "]"));
    }
    rank_texts.push_back(absl::StrCat("[", absl::StrJoin(batch_texts, ", "), "]"));
  }
  return absl::StrCat("{\"ranks\": [", absl::StrJoin(rank_texts, ", "), "]}");
}

int Fail(const absl::Status& status) {
  std::cerr << "plan-shards: " << status.message() << std::endl;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints the batches each process sees, as JSON: "
      "{\"ranks\": [[batch, ...], ...]}.");
  absl::ParseCommandLine(argc, argv);
  using namespace accelerate::data;  // NOLINT: a small program.
  const int64_t length = absl::GetFlag(FLAGS_dataset_length);
  if (length < 0) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--dataset_length ", length, " is missing or negative")));
  }
  const int64_t skip = absl::GetFlag(FLAGS_skip_batches);
  if (skip < 0) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--skip_batches ", skip, " is negative")));
  }
  if (absl::GetFlag(FLAGS_iterable) && absl::GetFlag(FLAGS_shuffle)) {
    return Fail(absl::InvalidArgumentError(
        "--shuffle does not apply to --iterable: a stream is read in its own "
        "order"));
  }
  ShardOptions options;
  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.num_processes = absl::GetFlag(FLAGS_num_processes);
  options.split_batches = absl::GetFlag(FLAGS_split_batches);
  // One process reads the plain sequence, as the loaders do (and as
  // Accelerate's prepare_data_loader does): nothing is evened or completed.
  options.even_batches =
      absl::GetFlag(FLAGS_even_batches) && options.num_processes > 1;
  options.drop_last = absl::GetFlag(FLAGS_drop_last);
  const IndexOrder order = IndexOrder::Create(
      length, {.shuffle = absl::GetFlag(FLAGS_shuffle),
               .seed = absl::GetFlag(FLAGS_seed),
               .epoch = absl::GetFlag(FLAGS_epoch)});

  std::vector<Batches> ranks;
  for (int p = 0; p < std::max(options.num_processes, 1); ++p) {
    options.process_index = p;
    Batches batches;
    if (absl::GetFlag(FLAGS_iterable)) {
      absl::StatusOr<std::vector<int64_t>> samples =
          IterableShardOrder(length, options);
      if (!samples.ok()) return Fail(samples.status());
      if (options.num_processes == 1 && !options.drop_last) {
        samples->resize(static_cast<size_t>(length));  // The plain stream.
      }
      const int64_t per = options.split_batches
                              ? options.batch_size / options.num_processes
                              : options.batch_size;
      for (size_t i = 0; i < samples->size(); i += per) {
        std::vector<int64_t> batch;
        for (size_t j = i; j < std::min(samples->size(), i + per); ++j) {
          batch.push_back((*samples)[j]);
        }
        batches.push_back(batch);
      }
    } else {
      absl::StatusOr<BatchSamplerShard> shard =
          BatchSamplerShard::Create(order, options);
      if (!shard.ok()) return Fail(shard.status());
      batches = shard->AllBatches();
    }
    batches.erase(batches.begin(),
                  batches.begin() + std::min<int64_t>(skip, batches.size()));
    ranks.push_back(std::move(batches));
  }
  std::cout << Json(ranks) << std::endl;
  return 0;
}
