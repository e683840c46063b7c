// Adapts a LibTorch map-style dataset (`torch::data::datasets::Dataset`
// returning `torch::data::Example<>`) to `MapDataset`, so that
// `PreparedDataLoader` reads it; and a LibTorch sampler to the loader's
// `sampler` option (`TorchSamplerOrder`).
//
// clang-format off
//   #include <torch/data/datasets/mnist.h>
//   absl::Status Example(const state::PartialState& state, const std::string& root) {
//     auto dataset =
//         std::make_shared<TorchMapDataset<torch::data::datasets::MNIST>>(
//             torch::data::datasets::MNIST(root));
//     return PreparedDataLoader::Create(dataset, state, {.batch_size = 64})
//         .status();
//   }
// clang-format on
//
// Thread safety: with `num_workers > 0`, `get` of the wrapped dataset is
// called from several threads at once (under a lock unless
// `kConcurrentGet` is true).

#ifndef ACCELERATE_DATA_TORCH_DATASET_H_
#define ACCELERATE_DATA_TORCH_DATASET_H_

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/data/example.h>
#include "data/data_loader.h"
#include "state/logging.h"

namespace accelerate::data {

template <typename TorchDataset, bool kConcurrentGet = false>
class TorchMapDataset final : public MapDataset {
 public:
  explicit TorchMapDataset(TorchDataset dataset)
      : dataset_(std::move(dataset)) {
    ACCELERATE_CHECK(dataset_.size().has_value())
        << "a map-style dataset needs a size";
  }

  int64_t size() const override {
    return static_cast<int64_t>(*dataset_.size());
  }

  // The list [data, target], stacked.
  absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const override {
    std::vector<at::Tensor> data, target;
    data.reserve(indices.size());
    target.reserve(indices.size());
    for (int64_t i : indices) {
      torch::data::Example<> example = GetOne(static_cast<size_t>(i));
      data.push_back(std::move(example.data));
      target.push_back(std::move(example.target));
    }
    return Batch::Of({at::stack(data), at::stack(target)});
  }

 private:
  torch::data::Example<> GetOne(size_t i) const {
    if constexpr (kConcurrentGet) {
      return dataset_.get(i);
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      return dataset_.get(i);
    }
  }

  // LibTorch's `get` is not const.
  mutable TorchDataset dataset_;
  mutable std::mutex mu_;
};

// The order of a LibTorch sampler (`torch::data::samplers::Sampler<>`:
// SequentialSampler, RandomSampler, a DistributedRandomSampler of one
// replica since the loader does the sharding, ...) for
// `length` samples, as the loader's `sampler`: each epoch it is told the
// epoch (when it has `set_epoch`), reset and read to the end. Its order must
// be the same on every process: a `RandomSampler` draws from LibTorch's
// global generator, so seed it alike on every process. Ownership: shares
// the sampler; called from the thread that drives the loader.
template <typename TorchSampler>
std::function<std::vector<int64_t>(int64_t epoch)> TorchSamplerOrder(
    std::shared_ptr<TorchSampler> sampler, int64_t length) {
  return [sampler = std::move(sampler), length](int64_t epoch) {
    if constexpr (requires { sampler->set_epoch(size_t{}); }) {
      sampler->set_epoch(static_cast<size_t>(epoch));
    }
    sampler->reset(static_cast<size_t>(length));
    std::vector<int64_t> order;
    while (auto chunk = sampler->next(1024)) {
      order.insert(order.end(), chunk->begin(), chunk->end());
    }
    return order;
  };
}

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_TORCH_DATASET_H_
