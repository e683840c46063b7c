// The placement loop of InferAutoDeviceMap (Accelerate's
// infer_auto_device_map), step by step: take the next item; place it (with
// what is tied to it) on the current device if it fits; else split a tied
// module or the item itself; else, with fallback allocation, bring a later
// module that fits forward; else move on to the next device.
//
// Thread safety: not thread-safe; one planner per map.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_DEVICE_MAP_PLANNER_H_
#define ACCELERATE_BIGMODEL_INTERNAL_DEVICE_MAP_PLANNER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/device.h"
#include "bigmodel/device_map.h"
#include "bigmodel/internal/classes_kept_whole.h"
#include "bigmodel/internal/layer_index.h"
#include "bigmodel/internal/placement_items.h"
#include "bigmodel/internal/tied_tensors.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel_internal {

// REQUIRES: `tree`, `options` and `kept_whole` (compiled from `options`)
// outlive the planner.
class DeviceMapPlanner {
 public:
  DeviceMapPlanner(const bigmodel::ModuleTree& tree,
                   const bigmodel::DeviceMapOptions& options,
                   const ClassesKeptWhole& kept_whole);
  DeviceMapPlanner(const DeviceMapPlanner&) = delete;
  DeviceMapPlanner& operator=(const DeviceMapPlanner&) = delete;

  // Places the whole tree and returns the map, merged as clean_device_map
  // does; logs the devices left empty and offloaded buffers that fit no
  // GPU. Call once.
  [[nodiscard]] absl::StatusOr<bigmodel::DeviceMap> Plan();

 private:
  // The room on a device for the item being placed.
  struct Room {
    bool bounded = true;   // False for the disk.
    int64_t limit = 0;     // Budget less the reservation.
    int64_t reserved = 0;  // Kept for the largest layer (main devices).
  };

  // Pops the next item and forgets its layers, finding the largest layer
  // left when the largest ones are all gone.
  Item TakeNext();
  // The largest layer among the modules left (tensors left out).
  void RecomputeLargestLayer();
  Room RoomOn(const bigmodel::Device& device) const;
  // The budget given for `device` (0 when it has none).
  int64_t BudgetOf(const bigmodel::Device& device) const;
  // Places `item` and the queued modules tied to it on `device`.
  void PlaceWithTies(const Item& item, const Ties& ties,
                     const bigmodel::Device& device);
  // Opens the first splittable queued module tied to `item` and queues
  // `item` again; false when none may be split.
  bool SplitATiedModule(const Item& item, const Ties& ties);
  // Queues `item`'s contents in its place; false when it may not be split.
  bool SplitItem(const Item& item);
  // Fallback allocation: for an empty `device`, finds a later module that
  // fits (splitting what may be split) and queues it first, then `item`;
  // false when none fits.
  bool BringForwardAModuleThatFits(const Item& item,
                                   const bigmodel::Device& device,
                                   int64_t size_with_ties);
  // Gives up on `device` for `item`: queues `item` again for the next one.
  void MoveToNextDevice(const Item& item, const bigmodel::Device& device,
                        int64_t size_with_ties, int64_t reserved);
  // Replaces the queued module at `it` by its parameters and children, in
  // place; returns where they start.
  std::deque<Item>::iterator OpenQueuedModule(std::deque<Item>::iterator it);
  void LogDevicesLeftEmpty() const;
  void WarnIfOffloadedBuffersFitNoGpu() const;

  const bigmodel::ModuleTree& tree_;
  const bigmodel::DeviceMapOptions& options_;
  const ClassesKeptWhole& kept_whole_;
  const std::map<std::string, int64_t> sizes_;
  const TiedTensors tied_;

  std::vector<bigmodel::Device> devices_;  // In placement order, disk last.
  std::map<bigmodel::Device, int64_t> budgets_;
  std::vector<bigmodel::Device> gpus_;
  std::set<bigmodel::Device> main_devices_;  // The first GPU and the CPU.

  std::deque<Item> queue_;
  LayerIndex layers_;
  int64_t max_layer_ = 0;
  std::set<std::string> max_layer_names_;
  size_t current_ = 0;  // Index of the device being filled.
  std::map<bigmodel::Device, int64_t> used_;

  bigmodel::DeviceMap map_;
  // Modules placed whole, for the buffer check.
  std::vector<std::pair<Item, bigmodel::Device>> placed_modules_;
  // Devices left empty, with what the module that did not fit needed.
  std::vector<std::pair<bigmodel::Device, int64_t>> minimum_needed_;
};

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_DEVICE_MAP_PLANNER_H_
