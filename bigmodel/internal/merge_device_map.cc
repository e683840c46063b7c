// Merging fully placed subtrees of a device map (see merge_device_map.h).

#include "bigmodel/internal/merge_device_map.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace accelerate::bigmodel_internal {
namespace {

using ::accelerate::bigmodel::Device;
using ::accelerate::bigmodel::DeviceMap;

// A name segment in the trie of the map's names.
struct Node {
  std::map<std::string, int> children;  // Segment -> node index.
  // Children in order of appearance, with their segments.
  std::vector<std::pair<std::string, int>> order;
  int count = 0;  // Entries at or under this node.
  // The device all those entries share; nullopt when they differ.
  std::optional<Device> device;
  size_t first = 0;  // Index of the first entry under it.
  int entry = -1;    // The map entry named by this node.
};

// The trie of `map`'s names, root first.
std::vector<Node> BuildTrie(const DeviceMap& map) {
  std::vector<Node> nodes(1);
  for (size_t i = 0; i < map.size(); ++i) {
    const auto visit = [&](int n) {
      Node& at = nodes[n];
      if (at.count == 0) {
        at.device = map[i].second;
        at.first = i;
      } else if (at.device != map[i].second) {
        at.device.reset();
      }
      ++at.count;
    };
    int node = 0;
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
  return nodes;
}

}  // namespace

void MergeSubtreesOnOneDevice(DeviceMap& map) {
  const std::vector<Node> nodes = BuildTrie(map);
  // (first index, name, device) of the entries to keep.
  std::vector<std::tuple<size_t, std::string, Device>> kept;
  std::vector<std::pair<int, std::string>> stack = {{0, ""}};
  while (!stack.empty()) {
    auto [n, name] = stack.back();
    stack.pop_back();
    const Node& node = nodes[n];
    if (node.count > 1 && node.device.has_value()) {
      kept.emplace_back(node.first, name, *node.device);
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

}  // namespace accelerate::bigmodel_internal
