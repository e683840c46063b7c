// The order in which one epoch visits a map-style dataset, with Accelerate's
// seedable semantics: `shuffle` draws `torch.randperm(length)` from a CPU
// generator seeded with `seed + epoch`, exactly what Accelerate's
// `SeedableRandomSampler` (and so Python's `RandomSampler`) yields, so the
// same seed and epoch give the same order on every rank and in Python.
//
// clang-format off
//   int64_t Example() {
//     IndexOrder order = IndexOrder::Create(20000, {.shuffle = true, .seed = 42,
//                                                   .epoch = 3});
//     return order[0];
//   }
// clang-format on
//
// Thread safety: immutable after construction; copies share the permutation.

#ifndef ACCELERATE_DATA_SAMPLER_H_
#define ACCELERATE_DATA_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <vector>

namespace accelerate::data {

struct SamplerOptions {
  // Visit the samples in a seeded random order instead of 0, 1, 2, ...
  bool shuffle = false;
  // Seed of the permutation (Accelerate's `data_seed`). Default 0.
  uint64_t seed = 0;
  // Added to the seed, as `set_epoch` does. Default 0.
  int64_t epoch = 0;
};

class IndexOrder {
 public:
  // REQUIRES: length >= 0.
  static IndexOrder Create(int64_t length, const SamplerOptions& options = {});
  // The order a user's sampler gave (any length; indices may repeat).
  static IndexOrder FromIndices(std::vector<int64_t> indices);

  int64_t size() const { return length_; }
  // The dataset index visited at position `i`. REQUIRES: 0 <= i < size().
  int64_t operator[](int64_t i) const {
    return permutation_ == nullptr ? i : (*permutation_)[i];
  }

 private:
  IndexOrder(int64_t length, std::shared_ptr<const std::vector<int64_t>> p)
      : length_(length), permutation_(std::move(p)) {}

  int64_t length_;
  // nullptr for the sequential order (nothing is materialized).
  std::shared_ptr<const std::vector<int64_t>> permutation_;
};

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_SAMPLER_H_
