// Accelerate's `convert_outputs_to_fp32`: the float16 and bfloat16 tensors
// of a model's outputs as float32, whatever holds them.

#ifndef ACCELERATE_ACCELERATOR_INTERNAL_FLOAT32_OUTPUTS_H_
#define ACCELERATE_ACCELERATOR_INTERNAL_FLOAT32_OUTPUTS_H_

#include <tuple>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include "data/batch.h"

namespace accelerate::accelerator_internal {

// Anything else is returned as it is.
template <typename T>
T OutputsToFloat32(T outputs) {
  return outputs;
}

inline at::Tensor OutputsToFloat32(at::Tensor tensor) {
  if (tensor.defined() && (tensor.scalar_type() == at::kHalf ||
                           tensor.scalar_type() == at::kBFloat16)) {
    return tensor.to(at::kFloat);
  }
  return tensor;
}

inline data::Batch OutputsToFloat32(const data::Batch& batch) {
  return batch.Transform(
      [](const at::Tensor& t) { return OutputsToFloat32(t); });
}

inline std::vector<at::Tensor> OutputsToFloat32(
    std::vector<at::Tensor> tensors) {
  for (at::Tensor& t : tensors) t = OutputsToFloat32(std::move(t));
  return tensors;
}

template <typename... T>
std::tuple<T...> OutputsToFloat32(std::tuple<T...> outputs) {
  return std::apply(
      [](auto&&... each) {
        return std::tuple<T...>(OutputsToFloat32(std::move(each))...);
      },
      std::move(outputs));
}

}  // namespace accelerate::accelerator_internal

#endif  // ACCELERATE_ACCELERATOR_INTERNAL_FLOAT32_OUTPUTS_H_
