#include "bigmodel/device_map.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "re2/re2.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

// One thing to place: a module or a tensor (a module's own parameter or
// buffer), by full name.
struct Item {
  std::string name;
  const ModuleTree* module = nullptr;  // Null for a tensor.
};

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : absl::StrCat(prefix, ".", name);
}

// Accelerate's order for a module's contents: its own parameters, then its
// children (the top level also lists its own buffers last).
std::vector<Item> Contents(const ModuleTree& module, const std::string& path,
                           bool with_buffers) {
  std::vector<Item> items;
  for (const TensorSpec& p : module.params)
    items.push_back({Join(path, p.name), nullptr});
  for (const ModuleTree& c : module.children)
    items.push_back({Join(path, c.name), &c});
  if (with_buffers) {
    for (const TensorSpec& b : module.buffers)
      items.push_back({Join(path, b.name), nullptr});
  }
  return items;
}

// Class names of modules never split: exact names or RE2 patterns that
// match a whole class name, with the answer kept per class name.
class NoSplitClasses {
 public:
  static absl::StatusOr<NoSplitClasses> Compile(
      const std::vector<std::string>& patterns) {
    NoSplitClasses classes;
    for (const std::string& pattern : patterns) {
      auto re = std::make_shared<RE2>(pattern, RE2::Quiet);
      if (!re->ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("no_split_module_classes pattern \"", pattern,
                         "\" is not valid RE2: ", re->error()));
      }
      classes.patterns_.push_back(std::move(re));
    }
    return classes;
  }

  bool Contains(const ModuleTree& module) const {
    auto [it, inserted] = cache_.try_emplace(module.class_name, false);
    if (inserted) {
      for (const auto& re : patterns_) {
        if (RE2::FullMatch(module.class_name, *re)) it->second = true;
      }
    }
    return it->second;
  }

 private:
  std::vector<std::shared_ptr<RE2>> patterns_;
  mutable std::map<std::string, bool> cache_;
};

bool NoSplit(const ModuleTree& module, const NoSplitClasses& classes) {
  return classes.Contains(module);
}

int64_t Size(const std::map<std::string, int64_t>& sizes,
             const std::string& name) {
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

// A module with children that is not of a no-split class.
bool Splittable(const Item& item, const NoSplitClasses& no_split) {
  return item.module != nullptr && !item.module->children.empty() &&
         !NoSplit(*item.module, no_split);
}

// The bytes of every buffer in `module` (named `path`) and below it.
int64_t BufferBytes(const ModuleTree& module, const std::string& path,
                    const std::map<std::string, int64_t>& sizes) {
  int64_t bytes = 0;
  for (const TensorSpec& buffer : module.buffers) {
    if (buffer.tied_to.empty()) bytes += Size(sizes, Join(path, buffer.name));
  }
  for (const ModuleTree& child : module.children) {
    bytes += BufferBytes(child, Join(path, child.name), sizes);
  }
  return bytes;
}

// Erases `name` and every key under it ("name.…") from a sorted container.
template <typename Sorted, typename OnErase>
void EraseUnder(Sorted& keys, const std::string& name, OnErase on_erase) {
  auto erase = [&](auto first, auto last) {
    for (auto it = first; it != last; ++it) on_erase(*it);
    keys.erase(first, last);
  };
  auto exact = keys.find(name);
  if (exact != keys.end()) erase(exact, std::next(exact));
  // Keys under name sort between "name." and "name/" ('/' follows '.').
  erase(keys.lower_bound(name + "."), keys.lower_bound(name + "/"));
}

// The layers (Accelerate's get_max_layer_size: modules without children or
// of a no-split class, found through children; tensors count as themselves)
// of the items still to place, kept sorted by size so that the largest is
// found in logarithmic time rather than by walking every remaining module.
class LayerIndex {
 public:
  LayerIndex(const std::map<std::string, int64_t>& sizes,
             const NoSplitClasses& no_split)
      : sizes_(sizes), no_split_(no_split) {}

  void Add(const Item& item) {
    std::vector<Item> stack = {item};
    while (!stack.empty()) {
      Item next = stack.back();
      stack.pop_back();
      if (next.module == nullptr || next.module->children.empty() ||
          NoSplit(*next.module, no_split_)) {
        const int64_t size = Size(sizes_, next.name);
        const bool tensor = next.module == nullptr;
        by_name_[next.name] = {size, tensor};
        (tensor ? tensors_ : modules_).insert({size, next.name});
        continue;
      }
      for (const ModuleTree& c : next.module->children) {
        stack.push_back({Join(next.name, c.name), &c});
      }
    }
  }

  void Remove(const std::string& name) {
    EraseUnder(by_name_, name, [&](const auto& entry) {
      const auto& [size, tensor] = entry.second;
      (tensor ? tensors_ : modules_).erase({size, entry.first});
    });
  }

  // The largest layer size and every layer of that size; tensor items are
  // left out with `modules_only`, as Accelerate does after the first time.
  std::pair<int64_t, std::set<std::string>> Max(bool modules_only) const {
    int64_t max_size = 0;
    if (!modules_.empty()) max_size = modules_.rbegin()->first;
    if (!modules_only && !tensors_.empty()) {
      max_size = std::max(max_size, tensors_.rbegin()->first);
    }
    std::set<std::string> names;
    auto collect = [&](const std::set<std::pair<int64_t, std::string>>& set) {
      for (auto it = set.rbegin(); it != set.rend() && it->first == max_size;
           ++it) {
        names.insert(it->second);
      }
    };
    collect(modules_);
    if (!modules_only) collect(tensors_);
    return {max_size, std::move(names)};
  }

 private:
  const std::map<std::string, int64_t>& sizes_;
  const NoSplitClasses& no_split_;
  std::map<std::string, std::pair<int64_t, bool>> by_name_;
  std::set<std::pair<int64_t, std::string>> modules_;
  std::set<std::pair<int64_t, std::string>> tensors_;
};

// Groups of names that are one tensor (find_tied_parameters).
std::vector<std::vector<std::string>> TiedGroups(const ModuleTree& tree) {
  std::map<std::string, std::vector<std::string>> groups;
  std::map<std::string, std::string> key_of;  // Tied name -> its group's key.
  std::vector<std::string> order;
  std::vector<std::pair<const ModuleTree*, std::string>> stack = {{&tree, ""}};
  while (!stack.empty()) {
    auto [module, path] = stack.back();
    stack.pop_back();
    for (const TensorSpec& p : module->params) {
      if (p.tied_to.empty()) continue;
      // A chain (c tied to b, b tied to a) is one group, keyed by a.
      auto known = key_of.find(p.tied_to);
      const std::string key = known == key_of.end() ? p.tied_to : known->second;
      auto& group = groups[key];
      if (group.empty()) {
        group.push_back(key);
        order.push_back(key);
      }
      const std::string name = Join(path, p.name);
      group.push_back(name);
      key_of[name] = key;
    }
    for (auto it = module->children.rbegin(); it != module->children.rend();
         ++it) {
      stack.push_back({&*it, Join(path, it->name)});
    }
  }
  std::vector<std::vector<std::string>> result;
  for (const std::string& key : order) result.push_back(groups[key]);
  return result;
}

bool Under(const std::string& name, const std::string& module) {
  return absl::StartsWith(absl::StrCat(name, "."), absl::StrCat(module, "."));
}

// Accelerate's clean_device_map: the outermost prefixes whose (two or more)
// entries all share one device become one entry each, placed where their
// first entry was. One pass over a trie of the names.
void Clean(DeviceMap& map) {
  struct Node {
    std::map<std::string, int> children;  // Segment -> node index.
    // Children in order of appearance, with their segments.
    std::vector<std::pair<std::string, int>> order;
    int count = 0;       // Entries at or under this node.
    std::string device;  // Shared device, "" when mixed.
    size_t first = 0;    // Index of the first entry under it.
    int entry = -1;      // The map entry named by this node.
  };
  std::vector<Node> nodes(1);
  for (size_t i = 0; i < map.size(); ++i) {
    int node = 0;
    auto visit = [&](int n) {
      Node& at = nodes[n];
      if (at.count == 0) {
        at.device = map[i].second;
        at.first = i;
      } else if (at.device != map[i].second) {
        at.device.clear();
      }
      ++at.count;
    };
    visit(0);
    if (!map[i].first.empty()) {
      for (absl::string_view part : absl::StrSplit(map[i].first, '.')) {
        const std::string segment(part);
        auto it = nodes[node].children.find(segment);
        int child;
        if (it == nodes[node].children.end()) {
          child = static_cast<int>(nodes.size());
          nodes[node].children.emplace(segment, child);
          nodes[node].order.emplace_back(segment, child);
          nodes.emplace_back();
        } else {
          child = it->second;
        }
        node = child;
        visit(node);
      }
    }
    nodes[node].entry = static_cast<int>(i);
  }
  // (first index, name, device) of the entries to keep.
  std::vector<std::tuple<size_t, std::string, std::string>> kept;
  std::vector<std::pair<int, std::string>> stack = {{0, ""}};
  while (!stack.empty()) {
    auto [n, name] = stack.back();
    stack.pop_back();
    const Node& node = nodes[n];
    if (node.count > 1 && !node.device.empty()) {
      kept.emplace_back(node.first, name, node.device);
      continue;
    }
    if (node.entry >= 0) {
      kept.emplace_back(node.entry, map[node.entry].first,
                        map[node.entry].second);
    }
    for (const auto& [segment, child] : node.order) {
      stack.push_back({child, name.empty() ? segment : name + "." + segment});
    }
  }
  std::sort(kept.begin(), kept.end());
  map.clear();
  for (auto& [first, name, device] : kept) map.emplace_back(name, device);
}

}  // namespace

absl::StatusOr<MaxMemory> ParseMaxMemory(const std::string& text) {
  MaxMemory memory;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_memory entry \"", entry, "\" is not DEVICE=SIZE"));
    }
    std::string device(absl::StripAsciiWhitespace(kv[0]));
    int index = 0;
    if (device != "cpu" && device != "disk") {
      if (device.empty() ||
          !std::all_of(device.begin(), device.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(device, &index)) {
        return absl::InvalidArgumentError(
            absl::StrCat("max_memory device \"", device,
                         "\" is not a GPU index, cpu or disk"));
      }
      device = absl::StrCat(index);  // "01" is GPU 1.
    }
    for (const auto& [seen, bytes] : memory) {
      if (seen == device) {
        return absl::InvalidArgumentError(absl::StrCat(
            "max_memory names device ", device, " twice (\"", entry, "\")"));
      }
    }
    std::string size(absl::StripAsciiWhitespace(kv[1]));
    static const std::vector<std::pair<std::string, double>> kUnits = {
        {"TIB", 1024.0 * 1024 * 1024 * 1024},
        {"GIB", 1024.0 * 1024 * 1024},
        {"MIB", 1024.0 * 1024},
        {"KIB", 1024.0},
        {"TB", 1e12},
        {"GB", 1e9},
        {"MB", 1e6},
        {"KB", 1e3},
        {"B", 1}};
    double multiplier = 1;
    const std::string upper = absl::AsciiStrToUpper(size);
    for (const auto& [unit, factor] : kUnits) {
      if (absl::EndsWith(upper, unit)) {
        multiplier = factor;
        // As Accelerate: "10Gb" (a lowercase b after a decimal unit) is bits.
        if (unit.size() == 2 && absl::EndsWith(size, "b")) {
          multiplier /= 8;
        }
        size = size.substr(0, size.size() - unit.size());
        break;
      }
    }
    double value = 0;
    if (!absl::SimpleAtod(size, &value) || !std::isfinite(value) || value < 0 ||
        value * multiplier >= 9.2e18) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_memory size \"", kv[1], "\" for ", device,
          " is not a size (bytes, or with KB/MB/GB/TB or KiB/MiB/GiB/TiB)"));
    }
    memory.emplace_back(device, static_cast<int64_t>(value * multiplier));
  }
  if (memory.empty()) {
    return absl::InvalidArgumentError("max_memory is empty");
  }
  // GPUs first (by index), then cpu, then disk, as Accelerate orders them.
  std::stable_sort(memory.begin(), memory.end(),
                   [](const auto& a, const auto& b) {
                     const auto rank = [](const std::string& d) {
                       return d == "disk" ? 2 : d == "cpu" ? 1 : 0;
                     };
                     if (rank(a.first) != rank(b.first))
                       return rank(a.first) < rank(b.first);
                     if (rank(a.first) == 0)
                       return std::stoi(a.first) < std::stoi(b.first);
                     return false;
                   });
  return memory;
}

namespace {

// The checks both entry points make on `options`; the compiled no-split
// classes.
absl::StatusOr<NoSplitClasses> CheckOptions(const DeviceMapOptions& options) {
  if (options.dtype.has_value() && !DtypeBytes(*options.dtype).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype \"", *options.dtype, "\" is not a known dtype"));
  }
  return NoSplitClasses::Compile(options.no_split_module_classes);
}

// Drops the modules under (and including) `module` that hold no tensor;
// returns whether `module` holds one.
bool EraseTensorless(const ModuleTree& module, const std::string& path,
                     std::map<std::string, int64_t>& sizes) {
  bool holds = !module.params.empty() || !module.buffers.empty();
  for (const ModuleTree& child : module.children) {
    holds = EraseTensorless(child, Join(path, child.name), sizes) || holds;
  }
  if (!holds && !path.empty()) sizes.erase(path);
  return holds;
}

// Names in `sizes` with nothing under them.
std::set<std::string> Leaves(const std::map<std::string, int64_t>& sizes) {
  std::set<std::string> leaves;
  for (const auto& [name, size] : sizes) {
    if (name.empty()) continue;
    auto next = sizes.lower_bound(name + ".");
    if (next == sizes.end() || next->first >= name + "/") leaves.insert(name);
  }
  return leaves;
}

}  // namespace

absl::StatusOr<MaxMemory> GetBalancedMemory(const ModuleTree& tree,
                                            const DeviceMapOptions& options,
                                            bool low_zero) {
  ACCELERATE_ASSIGN_OR_RETURN(const NoSplitClasses no_split,
                              CheckOptions(options));
  MaxMemory memory = options.max_memory;
  std::vector<size_t> gpus;  // Indices into `memory`, in GPU order.
  for (size_t i = 0; i < memory.size(); ++i) {
    const std::string& device = memory[i].first;
    if (device != "cpu" && device != "disk" && memory[i].second > 0) {
      gpus.push_back(i);
    }
  }
  if (gpus.empty()) return memory;
  if (gpus.size() == 1) low_zero = false;
  std::map<std::string, int64_t> sizes =
      ComputeModuleSizes(tree, options.dtype);
  // As Accelerate's sizes, which come from the tensors: modules holding no
  // tensor at any depth are not there.
  EraseTensorless(tree, "", sizes);
  const int64_t total = sizes[""];
  int64_t per_gpu =
      total / static_cast<int64_t>(low_zero ? gpus.size() - 1 : gpus.size());

  // Spread evenly, GPUs would each take slightly less than their share and
  // leave the last layers to offload, so each gets a margin: 1.25 times the
  // larger of the first no-split block's size and the mean size of the
  // modules that hold tensors directly.
  int64_t block = 0;
  std::vector<std::pair<const ModuleTree*, std::string>> stack = {{&tree, ""}};
  std::set<std::string> classes_seen;
  while (!stack.empty()) {
    auto [module, path] = stack.back();
    stack.pop_back();
    // Modules without tensors have no size (Accelerate never sees them).
    auto size = sizes.find(path);
    if (!path.empty() && size != sizes.end() && NoSplit(*module, no_split) &&
        classes_seen.insert(module->class_name).second) {
      block = std::max(block, size->second);
    }
    for (auto it = module->children.rbegin(); it != module->children.rend();
         ++it) {
      stack.push_back({&*it, Join(path, it->name)});
    }
  }
  for (const std::string& tensor : Leaves(sizes)) sizes.erase(tensor);
  const std::set<std::string> final_modules = Leaves(sizes);
  int64_t sum = 0;
  for (const std::string& name : final_modules) sum += sizes[name];
  const int64_t mean =
      sum / std::max<int64_t>(static_cast<int64_t>(final_modules.size()), 1);
  per_gpu +=
      static_cast<int64_t>(1.25 * static_cast<double>(std::max(block, mean)));

  // The last GPU keeps its whole budget in case the margin falls short.
  for (size_t g = 0; g + 1 < gpus.size(); ++g) {
    if (low_zero && g == 0) continue;
    memory[gpus[g]].second = std::min(per_gpu, memory[gpus[g]].second);
  }
  if (low_zero) {
    int64_t others = 0;
    for (size_t g = 1; g < gpus.size(); ++g) others += memory[gpus[g]].second;
    memory[gpus[0]].second =
        std::min(std::max<int64_t>(0, total - others), memory[gpus[0]].second);
  }
  return memory;
}

namespace {

struct Ties {
  std::vector<std::string> params;   // Tied tensors outside the module.
  std::vector<std::string> modules;  // Queued modules holding them.
  int64_t size_with_ties = 0;
};

}  // namespace

absl::StatusOr<DeviceMap> InferAutoDeviceMap(const ModuleTree& tree,
                                             const DeviceMapOptions& options) {
  std::vector<std::string> devices;
  std::map<std::string, int64_t> max_memory;
  for (const auto& [device, bytes] : options.max_memory) {
    devices.push_back(device);
    max_memory[device] = bytes;
  }
  if (std::find(devices.begin(), devices.end(), "disk") == devices.end()) {
    devices.push_back("disk");
  }
  std::vector<std::string> gpus;
  for (const std::string& d : devices) {
    if (d != "cpu" && d != "disk") gpus.push_back(d);
  }
  std::set<std::string> main_devices = {"cpu"};
  if (!gpus.empty()) main_devices.insert(gpus[0]);
  ACCELERATE_ASSIGN_OR_RETURN(const NoSplitClasses no_split,
                              CheckOptions(options));
  const std::map<std::string, int64_t> sizes =
      ComputeModuleSizes(tree, options.dtype);
  const std::vector<std::vector<std::string>> tied = TiedGroups(tree);
  // Tied name -> its group, to find an item's groups by name range.
  std::map<std::string, size_t> tied_group_of;
  for (size_t g = 0; g < tied.size(); ++g) {
    for (const std::string& name : tied[g]) tied_group_of[name] = g;
  }

  // Accelerate's get_module_size_with_ties: the tensors tied to ones
  // inside `name` but outside it, and the queued modules holding them,
  // whose sizes count with it (less the tied tensors themselves).
  const auto ties_of = [&](const std::string& name,
                           const std::deque<Item>& candidates) {
    Ties ties;
    ties.size_with_ties = Size(sizes, name);
    std::set<size_t> touched;  // Groups with a name inside `name`.
    auto add = [&](auto first, auto last) {
      for (auto it = first; it != last; ++it) touched.insert(it->second);
    };
    auto exact = tied_group_of.find(name);
    if (exact != tied_group_of.end()) add(exact, std::next(exact));
    add(tied_group_of.lower_bound(name + "."),
        tied_group_of.lower_bound(name + "/"));
    for (size_t g : touched) {
      for (const std::string& p : tied[g]) {
        if (!Under(p, name)) ties.params.push_back(p);
      }
    }
    for (const std::string& p : ties.params) {
      for (const Item& other : candidates) {
        if (absl::StartsWith(p, other.name + ".")) {
          // A module holding several tied tensors counts once (Accelerate
          // counts it once per tensor and lists it twice).
          if (std::find(ties.modules.begin(), ties.modules.end(),
                        other.name) == ties.modules.end()) {
            ties.modules.push_back(other.name);
            ties.size_with_ties += Size(sizes, other.name);
          }
          ties.size_with_ties -= Size(sizes, p);
          break;
        }
      }
    }
    return ties;
  };

  DeviceMap map;
  // Modules placed whole, for the buffer check.
  std::vector<std::pair<Item, std::string>> placed_modules;
  // Devices left empty, with what the module that did not fit needed.
  std::vector<std::pair<std::string, int64_t>> minimum_needed;
  std::map<std::string, int64_t> used;
  size_t current = 0;
  std::vector<Item> top = Contents(tree, "", /*with_buffers=*/true);
  std::deque<Item> queue(top.begin(), top.end());
  LayerIndex layers(sizes, no_split);
  for (const Item& item : queue) layers.Add(item);
  auto [max_layer, max_layer_names] = layers.Max(/*modules_only=*/false);
  // Replaces the queued module at `it` by its parameters and children, in
  // place; returns where they start.
  const auto open_queued = [&](std::deque<Item>::iterator it) {
    const Item opened = *it;
    const std::vector<Item> parts =
        Contents(*opened.module, opened.name, /*with_buffers=*/false);
    it = queue.erase(it);
    layers.Remove(opened.name);
    for (const Item& part : parts) layers.Add(part);
    return queue.insert(it, parts.begin(), parts.end());
  };

  while (!queue.empty()) {
    Item item = queue.front();
    queue.pop_front();
    layers.Remove(item.name);
    EraseUnder(max_layer_names, item.name, [](const std::string&) {});
    if (max_layer_names.empty()) {
      std::tie(max_layer, max_layer_names) = layers.Max(/*modules_only=*/true);
    }
    const int64_t module_size = Size(sizes, item.name);
    const Ties ties = ties_of(item.name, queue);
    const int64_t size_with_ties = ties.size_with_ties;
    if (current >= devices.size()) {
      return absl::InternalError("device map: ran past the last device");
    }
    const std::string& device = devices[current];
    const bool bounded = device != "disk";
    int64_t max_size = bounded ? max_memory[device] : 0;
    int64_t reserved = 0;
    if (main_devices.count(device) > 0 && bounded) {
      max_size -= max_layer;
      reserved = max_layer;
    }
    if (!bounded || used[device] + size_with_ties <= max_size) {
      used[device] += size_with_ties;
      map.emplace_back(item.name, device);
      for (const std::string& name : ties.modules) {
        queue.erase(
            std::remove_if(queue.begin(), queue.end(),
                           [&](const Item& i) { return i.name == name; }),
            queue.end());
        layers.Remove(name);
        map.emplace_back(name, device);
      }
      if (item.module != nullptr) placed_modules.emplace_back(item, device);
      continue;
    }
    // The module fits without its tied modules: split the first tied
    // module that may be split, and try again.
    if (!ties.params.empty() && used[device] + module_size <= max_size) {
      bool split = false;
      for (const std::string& name : ties.modules) {
        auto it = std::find_if(queue.begin(), queue.end(),
                               [&](const Item& i) { return i.name == name; });
        if (it == queue.end() || !Splittable(*it, no_split)) continue;
        open_queued(it);
        queue.push_front(item);
        layers.Add(item);
        std::tie(max_layer, max_layer_names) = layers.Max(/*modules_only=*/true);
        split = true;
        break;
      }
      if (split) continue;
    }
    // Too big here: split it if it may be split, else try the next device.
    if (used[device] + module_size >= max_size) {
      if (Splittable(item, no_split)) {
        std::vector<Item> parts =
            Contents(*item.module, item.name, /*with_buffers=*/false);
        queue.insert(queue.begin(), parts.begin(), parts.end());
        for (const Item& part : parts) layers.Add(part);
        std::tie(max_layer, max_layer_names) =
            layers.Max(/*modules_only=*/true);
        continue;
      }
    }
    if (used[device] == 0 && options.fallback_allocation) {
      // Look for a later module that fits, splitting what may be split.
      const int64_t limit =
          max_memory[device] - std::max(max_layer, size_with_ties);
      std::deque<Item> search(queue.begin(), queue.end());
      std::optional<Item> found;
      while (!search.empty()) {
        const Item candidate = search.front();
        search.pop_front();
        if (ties_of(candidate.name, search).size_with_ties <= limit) {
          found = candidate;
          break;
        }
        if (!Splittable(candidate, no_split)) continue;
        const std::vector<Item> parts =
            Contents(*candidate.module, candidate.name, /*with_buffers=*/false);
        search.insert(search.begin(), parts.begin(), parts.end());
      }
      if (found) {
        // Open up the queued modules holding it, then move it first.
        for (size_t dot = found->name.find('.'); dot != std::string::npos;
             dot = found->name.find('.', dot + 1)) {
          const std::string parent = found->name.substr(0, dot);
          auto it = std::find_if(
              queue.begin(), queue.end(),
              [&](const Item& i) { return i.name == parent; });
          if (it != queue.end() && it->module != nullptr) open_queued(it);
        }
        queue.erase(std::remove_if(queue.begin(), queue.end(),
                                   [&](const Item& i) {
                                     return i.name == found->name;
                                   }),
                    queue.end());
        queue.push_front(item);
        queue.push_front(*found);
        layers.Add(item);
        continue;
      }
    }
    if (used[device] == 0) {
      minimum_needed.emplace_back(device, size_with_ties + reserved);
    }
    used[device] += reserved;
    ++current;
    queue.push_front(item);
    layers.Add(item);
  }
  Clean(map);

  if (!minimum_needed.empty()) {
    std::string lines;
    for (const auto& [device, bytes] : minimum_needed) {
      absl::StrAppend(&lines, "\n  - ", device, ": ", bytes,
                      " bytes required");
    }
    ACCELERATE_LOG(INFO)
        << "device map: no module could be placed on these devices for "
           "lack of memory:"
        << lines
        << "\nThese minimums hold for this placement; give the devices at "
           "least that much, or change the model.";
  }
  if (!options.offload_buffers && !gpus.empty()) {
    int64_t offloaded_buffers = 0;
    for (const auto& [placed, device] : placed_modules) {
      if (device == "cpu" || device == "disk") {
        offloaded_buffers += BufferBytes(*placed.module, placed.name, sizes);
      }
    }
    bool fits = offloaded_buffers == 0;
    for (const std::string& gpu : gpus) {
      if (max_memory[gpu] >= offloaded_buffers + used[gpu]) fits = true;
    }
    if (!fits) {
      ACCELERATE_LOG(WARNING)
          << "device map: the offloaded modules' buffers take "
          << offloaded_buffers
          << " bytes, which fit no GPU's remaining memory; if you run out "
             "of memory later, offload the buffers too (offload_buffers).";
    }
  }
  return map;
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

namespace {

std::string JsonEscape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", static_cast<int>(c));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string DeviceMapToJson(const DeviceMap& map) {
  std::vector<std::string> entries;
  for (const auto& [name, device] : map) {
    const bool gpu = device != "cpu" && device != "disk";
    entries.push_back(
        absl::StrCat("\"", JsonEscape(name),
                     "\": ", gpu ? device : absl::StrCat("\"", device, "\"")));
  }
  return absl::StrCat("{\"device_map\": {", absl::StrJoin(entries, ", "), "}}");
}

}  // namespace accelerate::bigmodel
