// The layers still to place, by size (see layer_index.h).

#include "bigmodel/internal/layer_index.h"

#include <algorithm>
#include <vector>

namespace accelerate::bigmodel_internal {

using ::accelerate::bigmodel::ModuleTree;

void LayerIndex::Add(const Item& item) {
  std::vector<Item> stack = {item};
  while (!stack.empty()) {
    Item next = stack.back();
    stack.pop_back();
    if (next.module == nullptr || next.module->children.empty() ||
        kept_whole_.KeepsWhole(*next.module)) {
      const int64_t size = SizeOf(sizes_, next.name);
      const bool tensor = next.module == nullptr;
      by_name_[next.name] = {size, tensor};
      (tensor ? tensors_ : modules_).insert({size, next.name});
      continue;
    }
    for (const ModuleTree& child : next.module->children) {
      stack.push_back({JoinName(next.name, child.name), &child});
    }
  }
}

void LayerIndex::Remove(const std::string& name) {
  EraseUnder(by_name_, name, [&](const auto& entry) {
    const auto& [size, tensor] = entry.second;
    (tensor ? tensors_ : modules_).erase({size, entry.first});
  });
}

std::pair<int64_t, std::set<std::string>> LayerIndex::Max(
    bool modules_only) const {
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

}  // namespace accelerate::bigmodel_internal
