// Accelerate's `infer_auto_device_map` over a module tree (module_tree.h):
// modules are placed in order on the first device with room — GPUs in the
// order given, then "cpu", then "disk" — keeping tied parameters together,
// splitting only modules that have children and whose class is not in
// `no_split_module_classes`, and reserving room for the largest layer on the
// main devices (the first GPU and the CPU), which must be able to hold any
// offloaded layer while it runs. Unlike Accelerate's, the cost grows
// linearly with the number of modules (200 000 in well under a second).
//
//   ACCELERATE_ASSIGN_OR_RETURN(auto memory,
//   ParseMaxMemory("0=10GiB,cpu=30GB")); ACCELERATE_ASSIGN_OR_RETURN(DeviceMap
//   map, InferAutoDeviceMap(tree, {memory})); std::cout <<
//   DeviceMapToJson(map);  // {"device_map": {"embed": 0, ...}}
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_DEVICE_MAP_H_
#define ACCELERATE_BIGMODEL_DEVICE_MAP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel {

// Devices with their byte budgets, in placement order: GPU indices ("0",
// "1", ...), "cpu", "disk".
using MaxMemory = std::vector<std::pair<std::string, int64_t>>;

// Parses "0=10GiB,1=10GiB,cpu=30GB,disk=1TB": sizes in bytes or with
// Accelerate's units (KB/MB/GB/TB = 10^3.., KiB/MiB/GiB/TiB = 2^10..).
// `InvalidArgument` names the bad entry.
[[nodiscard]] absl::StatusOr<MaxMemory> ParseMaxMemory(const std::string& text);

struct DeviceMapOptions {
  MaxMemory max_memory;
  // Class names of modules never split across devices: exact names or RE2
  // patterns matching the whole name ("Block|.*DecoderLayer"). A bad pattern
  // is an `InvalidArgument` naming it.
  std::vector<std::string> no_split_module_classes;
  // Count floating-point tensors in this dtype ("float16", ...).
  std::optional<std::string> dtype;
  // Buffers of modules placed on "cpu" or "disk" will be offloaded with
  // them. When false (the default, as Accelerate), they will sit on the
  // execution device, and a warning is logged when they fit no GPU's room
  // left. Placement is the same either way.
  bool offload_buffers = false;
  // When a device gets nothing because the next module does not fit, look
  // ahead (splitting what may be split) for a module that does, and place
  // it there first (Accelerate's fallback_allocation).
  bool fallback_allocation = false;
};

// Module (or tensor) full name -> device ("0", "cpu", "disk"), in placement
// order, with fully placed subtrees merged into their parent as Accelerate's
// clean_device_map does.
using DeviceMap = std::vector<std::pair<std::string, std::string>>;

[[nodiscard]] absl::StatusOr<DeviceMap> InferAutoDeviceMap(
    const ModuleTree& tree, const DeviceMapOptions& options);

// Accelerate's get_balanced_memory: lowers the budgets of all GPUs but the
// last to an even share of the model plus a margin (1.25 times the larger of
// the first no-split block and the mean module size), so that
// InferAutoDeviceMap spreads the model over the GPUs instead of filling the
// first. `low_zero` ("balanced_low_0") keeps GPU 0 as free as the others
// allow, for generation outputs. The returned budgets are meant for
// InferAutoDeviceMap with the same options.
[[nodiscard]] absl::StatusOr<MaxMemory> GetBalancedMemory(
    const ModuleTree& tree, const DeviceMapOptions& options, bool low_zero);

// The map for one of Accelerate's `device_map` strategies, as its
// load_checkpoint_and_dispatch computes it: "sequential" fills the devices
// in order (InferAutoDeviceMap); "auto" and "balanced" first lower the GPU
// budgets with GetBalancedMemory, "balanced_low_0" with `low_zero`.
// `InvalidArgument` names any other strategy.
[[nodiscard]] absl::StatusOr<DeviceMap> PlanDeviceMap(
    const ModuleTree& tree, const DeviceMapOptions& options,
    const std::string& strategy = "sequential");

// {"device_map": {"name": 0, "other": "cpu", ...}} (GPU indices as numbers).
std::string DeviceMapToJson(const DeviceMap& map);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DEVICE_MAP_H_
