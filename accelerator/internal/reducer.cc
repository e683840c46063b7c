#include "accelerator/internal/reducer.h"

#include <algorithm>
#include <string>
#include <unordered_map>

namespace accelerate::accelerator_internal {

std::unique_ptr<c10d::Reducer> MakeReducer(
    const std::vector<at::Tensor>& params,
    const c10::intrusive_ptr<c10d::ProcessGroup>& group,
    const ReducerOptions& options) {
  std::vector<bool> sparse(params.size(), false);
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params,
      {static_cast<size_t>(options.first_bucket_cap_bytes),
       static_cast<size_t>(options.bucket_cap_bytes)},
      sparse);
  // Gradients arrive roughly in reverse order of definition.
  std::reverse(buckets.begin(), buckets.end());
  // LibTorch 2.13's constructor; the last three arguments are what Python's
  // DDP passes by default (all-reduce unused parameters too, the C++
  // reducer, the Reducer's own limits when it rebuilds buckets).
  return std::make_unique<c10d::Reducer>(
      params, std::move(buckets), group, std::move(sparse),
      options.bucket_cap_bytes, options.find_unused_parameters,
      /*gradient_as_bucket_view=*/false,
      std::unordered_map<size_t, std::string>{},
      options.first_bucket_cap_bytes,
      /*skip_all_reduce_unused_params=*/false,
      /*use_python_reducer=*/false,
      /*bucket_bytes_cap_list=*/std::vector<int64_t>{});
}

}  // namespace accelerate::accelerator_internal
