// Builds c10d's `Reducer` (the engine behind PyTorch's DDP) for a list of
// parameters. The one place that knows the Reducer's constructor, which
// changes between LibTorch releases.

#ifndef ACCELERATE_ACCELERATOR_INTERNAL_REDUCER_H_
#define ACCELERATE_ACCELERATOR_INTERNAL_REDUCER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

namespace accelerate::accelerator_internal {

struct ReducerOptions {
  // Bytes per bucket after the first.
  int64_t bucket_cap_bytes = int64_t{25} << 20;
  // Bytes in the first bucket (the last gradients to arrive), small so that
  // communication starts early.
  int64_t first_bucket_cap_bytes = int64_t{1} << 20;
  // Whether parameters that get no gradient in a step are found and marked
  // ready (DDP's `find_unused_parameters`).
  bool find_unused_parameters = false;
};

// A Reducer over `params` (dense, requiring gradients), bucketed in reverse
// order of definition, as gradients arrive. Throws `c10::Error` as c10d
// does. REQUIRES: `params` non-empty.
std::unique_ptr<c10d::Reducer> MakeReducer(
    const std::vector<at::Tensor>& params,
    const c10::intrusive_ptr<c10d::ProcessGroup>& group,
    const ReducerOptions& options);

}  // namespace accelerate::accelerator_internal

#endif  // ACCELERATE_ACCELERATOR_INTERNAL_REDUCER_H_
