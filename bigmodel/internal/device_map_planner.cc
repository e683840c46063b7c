// The placement loop of InferAutoDeviceMap (see device_map_planner.h).

#include "bigmodel/internal/device_map_planner.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bigmodel/internal/merge_device_map.h"
#include "state/logging.h"

namespace accelerate::bigmodel_internal {
namespace {

using ::accelerate::bigmodel::Device;
using ::accelerate::bigmodel::DeviceMap;
using ::accelerate::bigmodel::DeviceMapOptions;
using ::accelerate::bigmodel::ModuleTree;

// The queued item named `name`, or `queue.end()`.
std::deque<Item>::iterator FindQueued(std::deque<Item>& queue,
                                      const std::string& name) {
  return std::find_if(queue.begin(), queue.end(),
                      [&](const Item& item) { return item.name == name; });
}

void EraseQueued(std::deque<Item>& queue, const std::string& name) {
  queue.erase(
      std::remove_if(queue.begin(), queue.end(),
                     [&](const Item& item) { return item.name == name; }),
      queue.end());
}

}  // namespace

DeviceMapPlanner::DeviceMapPlanner(const ModuleTree& tree,
                                   const DeviceMapOptions& options,
                                   const ClassesKeptWhole& kept_whole)
    : tree_(tree),
      options_(options),
      kept_whole_(kept_whole),
      sizes_(bigmodel::ComputeModuleSizes(tree, options.dtype)),
      tied_(tree, sizes_),
      layers_(sizes_, kept_whole) {
  for (const auto& [device, bytes] : options.max_memory) {
    devices_.push_back(device);
    budgets_[device] = bytes;
  }
  if (std::find(devices_.begin(), devices_.end(), Device::Disk()) ==
      devices_.end()) {
    devices_.push_back(Device::Disk());
  }
  for (const Device& device : devices_) {
    if (device.is_gpu()) gpus_.push_back(device);
  }
  main_devices_ = {Device::Cpu()};
  if (!gpus_.empty()) main_devices_.insert(gpus_[0]);
  const std::vector<Item> top = Contents(tree_, "", /*with_buffers=*/true);
  queue_.assign(top.begin(), top.end());
  for (const Item& item : queue_) layers_.Add(item);
  std::tie(max_layer_, max_layer_names_) = layers_.Max(/*modules_only=*/false);
}

absl::StatusOr<DeviceMap> DeviceMapPlanner::Plan() {
  while (!queue_.empty()) {
    const Item item = TakeNext();
    const int64_t module_size = SizeOf(sizes_, item.name);
    const Ties ties = tied_.TiesOf(item.name, queue_);
    if (current_ >= devices_.size()) {
      return absl::InternalError("device map: ran past the last device");
    }
    const Device device = devices_[current_];
    const Room room = RoomOn(device);
    if (!room.bounded || used_[device] + ties.size_with_ties <= room.limit) {
      PlaceWithTies(item, ties, device);
      continue;
    }
    // The module fits without its tied modules: split the first tied
    // module that may be split, and try again.
    if (!ties.params.empty() && used_[device] + module_size <= room.limit &&
        SplitATiedModule(item, ties)) {
      continue;
    }
    // Too big here: split it if it may be split, else try the next device.
    if (used_[device] + module_size >= room.limit && SplitItem(item)) continue;
    if (used_[device] == 0 && options_.fallback_allocation &&
        BringForwardAModuleThatFits(item, device, ties.size_with_ties)) {
      continue;
    }
    MoveToNextDevice(item, device, ties.size_with_ties, room.reserved);
  }
  MergeSubtreesOnOneDevice(map_);
  LogDevicesLeftEmpty();
  WarnIfOffloadedBuffersFitNoGpu();
  return map_;
}

Item DeviceMapPlanner::TakeNext() {
  Item item = queue_.front();
  queue_.pop_front();
  layers_.Remove(item.name);
  EraseUnder(max_layer_names_, item.name, [](const std::string&) {});
  if (max_layer_names_.empty()) RecomputeLargestLayer();
  return item;
}

void DeviceMapPlanner::RecomputeLargestLayer() {
  std::tie(max_layer_, max_layer_names_) = layers_.Max(/*modules_only=*/true);
}

DeviceMapPlanner::Room DeviceMapPlanner::RoomOn(const Device& device) const {
  Room room;
  room.bounded = !device.is_disk();
  room.limit = room.bounded ? BudgetOf(device) : 0;
  if (room.bounded && main_devices_.count(device) > 0) {
    room.limit -= max_layer_;
    room.reserved = max_layer_;
  }
  return room;
}

int64_t DeviceMapPlanner::BudgetOf(const Device& device) const {
  auto it = budgets_.find(device);
  return it == budgets_.end() ? 0 : it->second;
}

void DeviceMapPlanner::PlaceWithTies(const Item& item, const Ties& ties,
                                     const Device& device) {
  used_[device] += ties.size_with_ties;
  map_.emplace_back(item.name, device);
  for (const std::string& name : ties.modules) {
    EraseQueued(queue_, name);
    layers_.Remove(name);
    map_.emplace_back(name, device);
  }
  if (item.module != nullptr) placed_modules_.emplace_back(item, device);
}

bool DeviceMapPlanner::SplitATiedModule(const Item& item, const Ties& ties) {
  for (const std::string& name : ties.modules) {
    auto it = FindQueued(queue_, name);
    if (it == queue_.end() || !kept_whole_.MaySplit(*it)) continue;
    OpenQueuedModule(it);
    queue_.push_front(item);
    layers_.Add(item);
    RecomputeLargestLayer();
    return true;
  }
  return false;
}

bool DeviceMapPlanner::SplitItem(const Item& item) {
  if (!kept_whole_.MaySplit(item)) return false;
  const std::vector<Item> parts =
      Contents(*item.module, item.name, /*with_buffers=*/false);
  queue_.insert(queue_.begin(), parts.begin(), parts.end());
  for (const Item& part : parts) layers_.Add(part);
  RecomputeLargestLayer();
  return true;
}

bool DeviceMapPlanner::BringForwardAModuleThatFits(const Item& item,
                                                   const Device& device,
                                                   int64_t size_with_ties) {
  const int64_t limit = BudgetOf(device) - std::max(max_layer_, size_with_ties);
  std::deque<Item> search(queue_.begin(), queue_.end());
  std::optional<Item> found;
  while (!search.empty()) {
    const Item candidate = search.front();
    search.pop_front();
    if (tied_.TiesOf(candidate.name, search).size_with_ties <= limit) {
      found = candidate;
      break;
    }
    if (!kept_whole_.MaySplit(candidate)) continue;
    const std::vector<Item> parts =
        Contents(*candidate.module, candidate.name, /*with_buffers=*/false);
    search.insert(search.begin(), parts.begin(), parts.end());
  }
  if (!found) return false;
  // Open up the queued modules holding it, then move it first.
  for (size_t dot = found->name.find('.'); dot != std::string::npos;
       dot = found->name.find('.', dot + 1)) {
    auto it = FindQueued(queue_, found->name.substr(0, dot));
    if (it != queue_.end() && it->module != nullptr) OpenQueuedModule(it);
  }
  EraseQueued(queue_, found->name);
  queue_.push_front(item);
  queue_.push_front(*found);
  layers_.Add(item);
  return true;
}

void DeviceMapPlanner::MoveToNextDevice(const Item& item, const Device& device,
                                        int64_t size_with_ties,
                                        int64_t reserved) {
  if (used_[device] == 0) {
    minimum_needed_.emplace_back(device, size_with_ties + reserved);
  }
  used_[device] += reserved;
  ++current_;
  queue_.push_front(item);
  layers_.Add(item);
}

std::deque<Item>::iterator DeviceMapPlanner::OpenQueuedModule(
    std::deque<Item>::iterator it) {
  const Item opened = *it;
  const std::vector<Item> parts =
      Contents(*opened.module, opened.name, /*with_buffers=*/false);
  it = queue_.erase(it);
  layers_.Remove(opened.name);
  for (const Item& part : parts) layers_.Add(part);
  return queue_.insert(it, parts.begin(), parts.end());
}

void DeviceMapPlanner::LogDevicesLeftEmpty() const {
  if (minimum_needed_.empty()) return;
  std::string lines;
  for (const auto& [device, bytes] : minimum_needed_) {
    absl::StrAppend(&lines, "\n  - ", device.ToString(), ": ", bytes,
                    " bytes required");
  }
  ACCELERATE_LOG(INFO)
      << "device map: no module could be placed on these devices for "
         "lack of memory:"
      << lines
      << "\nThese minimums hold for this placement; give the devices at "
         "least that much, or change the model.";
}

void DeviceMapPlanner::WarnIfOffloadedBuffersFitNoGpu() const {
  if (options_.offload_buffers || gpus_.empty()) return;
  int64_t offloaded_buffers = 0;
  for (const auto& [placed, device] : placed_modules_) {
    if (!device.is_gpu()) {
      offloaded_buffers += BufferBytes(*placed.module, placed.name, sizes_);
    }
  }
  bool fits = offloaded_buffers == 0;
  for (const Device& gpu : gpus_) {
    auto used = used_.find(gpu);
    const int64_t used_bytes = used == used_.end() ? 0 : used->second;
    if (BudgetOf(gpu) >= offloaded_buffers + used_bytes) fits = true;
  }
  if (!fits) {
    ACCELERATE_LOG(WARNING)
        << "device map: the offloaded modules' buffers take "
        << offloaded_buffers
        << " bytes, which fit no GPU's remaining memory; if you run out "
           "of memory later, offload the buffers too (offload_buffers).";
  }
}

}  // namespace accelerate::bigmodel_internal
