#include "data/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ATen.h>

#include "state/logging.h"

namespace accelerate::data {

IndexOrder IndexOrder::Create(int64_t length, const SamplerOptions& options) {
  ACCELERATE_CHECK(length >= 0) << "length " << length;
  if (!options.shuffle) return IndexOrder(length, nullptr);
  // torch.Generator().manual_seed(seed + epoch), then torch.randperm(n, g):
  // the same kernel and generator as Python's RandomSampler.
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(
      options.seed + static_cast<uint64_t>(options.epoch));
  const at::Tensor permutation =
      at::randperm(length, generator, at::TensorOptions().dtype(at::kLong));
  auto values = std::make_shared<std::vector<int64_t>>(
      permutation.data_ptr<int64_t>(),
      permutation.data_ptr<int64_t>() + length);
  return IndexOrder(length, std::move(values));
}

IndexOrder IndexOrder::FromIndices(std::vector<int64_t> indices) {
  const auto length = static_cast<int64_t>(indices.size());
  return IndexOrder(
      length, std::make_shared<const std::vector<int64_t>>(std::move(indices)));
}

}  // namespace accelerate::data
