// Accelerate's get_balanced_memory: GPU budgets lowered so that
// InferAutoDeviceMap (device_map.h) spreads a model over several GPUs
// instead of filling the first. PlanDeviceMap's "auto", "balanced" and
// "balanced_low_0" strategies use it.
//
// clang-format off
//   absl::StatusOr<DeviceMap> Example(const ModuleTree& tree) {
//     DeviceMapOptions options;
//     options.max_memory = {{"0", 10'000}, {"1", 10'000}};
//     absl::StatusOr<MaxMemory> balanced =
//         GetBalancedMemory(tree, options, /*low_zero=*/false);
//     if (!balanced.ok()) return balanced.status();
//     options.max_memory = *balanced;  // GPU 0 lowered to its share
//     return InferAutoDeviceMap(tree, options);
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_BALANCED_MEMORY_H_
#define ACCELERATE_BIGMODEL_BALANCED_MEMORY_H_

#include "absl/status/statusor.h"
#include "bigmodel/device_map.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel {

// `options.max_memory` with the budgets of all GPUs but the last lowered to
// an even share of the model plus a margin (1.25 times the larger of the
// first no-split block and the mean module size). `low_zero`
// ("balanced_low_0") keeps GPU 0 as free as the others allow, for
// generation outputs. The returned budgets are meant for InferAutoDeviceMap
// with the same options. Errors as InferAutoDeviceMap's.
[[nodiscard]] absl::StatusOr<MaxMemory> GetBalancedMemory(
    const ModuleTree& tree, const DeviceMapOptions& options, bool low_zero);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_BALANCED_MEMORY_H_
