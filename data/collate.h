// Collating samples into batches: stacking (PyTorch's default collate),
// padding variable-length sequences to the longest in the batch (as
// Hugging Face's `DataCollatorWithPadding`), and a map-style dataset of the
// user's own sample type with the collate function the user passes.
//
// clang-format off
//   #include <ATen/ATen.h>
//   struct Sentence { std::vector<int64_t> tokens; };
//   absl::StatusOr<Batch> Example() {
//     CollatedDataset<Sentence> dataset(
//         /*size=*/100,
//         [](int64_t i) { return Sentence{std::vector<int64_t>(1 + i % 7, i)}; },
//         [](std::vector<Sentence> sentences) -> absl::StatusOr<Batch> {
//           std::vector<Batch> samples;
//           for (const Sentence& s : sentences) {
//             at::Tensor ids = at::tensor(s.tokens, at::kLong);
//             samples.push_back(Batch::Named({{"input_ids", ids}, {"labels", ids}}));
//           }
//           // Labels pad with -100 (ignored by the loss), the rest with 0;
//           // an attention mask marks the real tokens.
//           return PadAndStack(samples, {.pad_values = {{"labels", -100}},
//                                        .attention_mask = "attention_mask"});
//         });
//     return dataset.Get({0, 1, 2, 3});  // 4 samples padded to 4 tokens
//   }
// clang-format on
//
// Thread safety: `CollatedDataset::Get` calls the user's functions from the
// loader's worker threads at once; they must allow it.

#ifndef ACCELERATE_DATA_COLLATE_H_
#define ACCELERATE_DATA_COLLATE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "data/batch.h"
#include "data/data_loader.h"

namespace accelerate::data {

// The samples stacked along a new dimension 0. `InvalidArgument` naming the
// sample and the field when a structure, dtype or shape differs from sample
// 0's.
[[nodiscard]] absl::StatusOr<Batch> Stack(const std::vector<Batch>& samples);

struct PadCollateOptions {
  // Value of the padding, by field path ("labels", "pair.1"); fields not
  // named pad with `pad_value`. Default: 0.
  std::map<std::string, double> pad_values;
  double pad_value = 0;
  // Lengths are rounded up to a multiple of this. Default 1.
  int64_t pad_to_multiple_of = 1;
  // Pad before the data (left padding, for generation) instead of after.
  bool pad_first = false;
  // When not empty, a field of this name is added to a map batch: 1 for the
  // real positions, 0 for the padding (of the first padded field), Long.
  std::string attention_mask;
};

// Pads dimension 0 of every tensor of the samples (the sequence) to the
// longest in the batch, then stacks them. Tensors without dimensions are
// stacked as they are. `InvalidArgument` as `Stack`, and for a
// `pad_to_multiple_of` below 1.
[[nodiscard]] absl::StatusOr<Batch> PadAndStack(
    const std::vector<Batch>& samples, const PadCollateOptions& options = {});

// A map-style dataset of the user's samples: `get(i)` returns sample `i`,
// `collate` turns the samples of a batch into a `Batch` (by default, for
// `Batch` samples, `Stack`).
template <typename Sample>
class CollatedDataset final : public MapDataset {
 public:
  using GetFn = std::function<Sample(int64_t index)>;
  using CollateFn =
      std::function<absl::StatusOr<Batch>(std::vector<Sample> samples)>;

  // REQUIRES: size >= 0; `get` and `collate` callable from several threads.
  CollatedDataset(int64_t size, GetFn get, CollateFn collate)
      : size_(size), get_(std::move(get)), collate_(std::move(collate)) {}
  CollatedDataset(int64_t size, GetFn get)
    requires std::is_same_v<Sample, Batch>
      : CollatedDataset(size, std::move(get), [](std::vector<Batch> samples) {
          return Stack(samples);
        }) {}

  int64_t size() const override { return size_; }
  absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const override {
    std::vector<Sample> samples;
    samples.reserve(indices.size());
    for (int64_t i : indices) samples.push_back(get_(i));
    return collate_(std::move(samples));
  }

 private:
  int64_t size_;
  GetFn get_;
  CollateFn collate_;
};

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_COLLATE_H_
