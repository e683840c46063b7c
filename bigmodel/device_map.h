// Accelerate's `infer_auto_device_map` over a module tree (module_tree.h):
// modules are placed in order on the first device with room — GPUs in the
// order given, then "cpu", then "disk" — keeping tied parameters together,
// splitting only modules that have children and whose class is not in
// `no_split_module_classes`, and reserving room for the largest layer on the
// main devices (the first GPU and the CPU), which must be able to hold any
// offloaded layer while it runs. Unlike Accelerate's, the cost grows
// linearly with the number of modules (200 000 in well under a second).
// Budgets are max_memory.h's; spreading the model evenly over several GPUs
// is balanced_memory.h.
//
// clang-format off
//   absl::StatusOr<std::string> Example(const ModuleTree& tree) {
//     absl::StatusOr<MaxMemory> memory = ParseMaxMemory("0=10GiB,cpu=30GB");
//     if (!memory.ok()) return memory.status();
//     absl::StatusOr<DeviceMap> map = InferAutoDeviceMap(
//         tree, {.max_memory = *memory, .no_split_module_classes = {"Block"}});
//     if (!map.ok()) return map.status();
//     return DeviceMapToJson(*map);  // {"device_map": {"embed": 0, ...}}
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_DEVICE_MAP_H_
#define ACCELERATE_BIGMODEL_DEVICE_MAP_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/device.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel {

struct DeviceMapOptions {
  // The devices to fill and their budgets, in placement order. "disk" is
  // added, unbounded, when missing.
  MaxMemory max_memory;
  // Class names of modules never split across devices: exact names or RE2
  // patterns matching the whole name ("Block|.*DecoderLayer"). A bad pattern
  // is an `InvalidArgument` naming it.
  std::vector<std::string> no_split_module_classes;
  // Count floating-point tensors in this dtype ("float16", ...; the PyTorch
  // names of dtype.h).
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

// The device map (device.h) of `tree`, in placement order, with fully
// placed subtrees merged into their parent as Accelerate's clean_device_map
// does. `InvalidArgument` for an unknown dtype or a bad no-split pattern.
[[nodiscard]] absl::StatusOr<DeviceMap> InferAutoDeviceMap(
    const ModuleTree& tree, const DeviceMapOptions& options);

// The map for one of Accelerate's `device_map` strategies, as its
// load_checkpoint_and_dispatch computes it: "sequential" fills the devices
// in order (InferAutoDeviceMap); "auto" and "balanced" first lower the GPU
// budgets with GetBalancedMemory (balanced_memory.h), "balanced_low_0" with
// `low_zero`. `InvalidArgument` names any other strategy.
[[nodiscard]] absl::StatusOr<DeviceMap> PlanDeviceMap(
    const ModuleTree& tree, const DeviceMapOptions& options,
    const std::string& strategy = "sequential");

// {"device_map": {"name": 0, "other": "cpu", ...}} (GPU indices as numbers),
// as `accelerate plan-device-map` prints it.
std::string DeviceMapToJson(const DeviceMap& map);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DEVICE_MAP_H_
