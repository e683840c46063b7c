// InferAutoDeviceMap, PlanDeviceMap and the device map's JSON (see
// device_map.h); the placement loop is internal/device_map_planner.h.

#include "bigmodel/device_map.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bigmodel/balanced_memory.h"
#include "bigmodel/internal/classes_kept_whole.h"
#include "bigmodel/internal/device_map_planner.h"
#include "bigmodel/internal/json_string.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {

absl::StatusOr<DeviceMap> InferAutoDeviceMap(const ModuleTree& tree,
                                             const DeviceMapOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(
      const bigmodel_internal::ClassesKeptWhole kept_whole,
      bigmodel_internal::CompileDeviceMapOptions(options));
  bigmodel_internal::DeviceMapPlanner planner(tree, options, kept_whole);
  return planner.Plan();
}

absl::StatusOr<DeviceMap> PlanDeviceMap(const ModuleTree& tree,
                                        const DeviceMapOptions& options,
                                        const std::string& strategy) {
  if (strategy == "sequential") return InferAutoDeviceMap(tree, options);
  if (strategy != "auto" && strategy != "balanced" &&
      strategy != "balanced_low_0") {
    return absl::InvalidArgumentError(absl::StrCat(
        "device_map \"", strategy,
        "\" is not one of sequential, auto, balanced, balanced_low_0"));
  }
  DeviceMapOptions balanced = options;
  ACCELERATE_ASSIGN_OR_RETURN(
      balanced.max_memory,
      GetBalancedMemory(tree, options, strategy == "balanced_low_0"));
  return InferAutoDeviceMap(tree, balanced);
}

std::string DeviceMapToJson(const DeviceMap& map) {
  std::vector<std::string> entries;
  for (const auto& [name, device] : map) {
    // GPU indices are numbers, as in Accelerate's maps.
    entries.push_back(absl::StrCat(
        bigmodel_internal::JsonString(name), ": ",
        device.is_gpu() ? device.ToString()
                        : bigmodel_internal::JsonString(device.ToString())));
  }
  return absl::StrCat("{\"device_map\": {", absl::StrJoin(entries, ", "), "}}");
}

}  // namespace accelerate::bigmodel
