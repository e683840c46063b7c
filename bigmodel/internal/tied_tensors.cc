// Tied parameters for the device map planner (see tied_tensors.h).

#include "bigmodel/internal/tied_tensors.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

#include "absl/strings/match.h"

namespace accelerate::bigmodel_internal {

using ::accelerate::bigmodel::ModuleTree;
using ::accelerate::bigmodel::TensorSpec;

std::vector<std::vector<std::string>> TiedGroups(const ModuleTree& tree) {
  std::map<std::string, std::vector<std::string>> groups;
  std::map<std::string, std::string> key_of;  // Tied name -> its group's key.
  std::vector<std::string> order;
  std::vector<std::pair<const ModuleTree*, std::string>> stack = {{&tree, ""}};
  while (!stack.empty()) {
    auto [module, path] = stack.back();
    stack.pop_back();
    for (const TensorSpec& param : module->params) {
      if (param.tied_to.empty()) continue;
      // A chain (c tied to b, b tied to a) is one group, keyed by a.
      auto known = key_of.find(param.tied_to);
      const std::string key =
          known == key_of.end() ? param.tied_to : known->second;
      auto& group = groups[key];
      if (group.empty()) {
        group.push_back(key);
        order.push_back(key);
      }
      const std::string name = JoinName(path, param.name);
      group.push_back(name);
      key_of[name] = key;
    }
    for (auto it = module->children.rbegin(); it != module->children.rend();
         ++it) {
      stack.push_back({&*it, JoinName(path, it->name)});
    }
  }
  std::vector<std::vector<std::string>> result;
  for (const std::string& key : order) result.push_back(groups[key]);
  return result;
}

TiedTensors::TiedTensors(const ModuleTree& tree,
                         const std::map<std::string, int64_t>& sizes)
    : sizes_(sizes), groups_(TiedGroups(tree)) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (const std::string& name : groups_[g]) group_of_[name] = g;
  }
}

Ties TiedTensors::TiesOf(const std::string& name,
                         const std::deque<Item>& candidates) const {
  Ties ties;
  ties.size_with_ties = SizeOf(sizes_, name);
  std::set<size_t> touched;  // Groups with a name inside `name`.
  auto add = [&](auto first, auto last) {
    for (auto it = first; it != last; ++it) touched.insert(it->second);
  };
  auto exact = group_of_.find(name);
  if (exact != group_of_.end()) add(exact, std::next(exact));
  add(group_of_.lower_bound(name + "."), group_of_.lower_bound(name + "/"));
  for (size_t g : touched) {
    for (const std::string& param : groups_[g]) {
      if (!IsUnder(param, name)) ties.params.push_back(param);
    }
  }
  for (const std::string& param : ties.params) {
    for (const Item& other : candidates) {
      if (absl::StartsWith(param, other.name + ".")) {
        // A module holding several tied tensors counts once (Accelerate
        // counts it once per tensor and lists it twice).
        if (std::find(ties.modules.begin(), ties.modules.end(), other.name) ==
            ties.modules.end()) {
          ties.modules.push_back(other.name);
          ties.size_with_ties += SizeOf(sizes_, other.name);
        }
        ties.size_with_ties -= SizeOf(sizes_, param);
        break;
      }
    }
  }
  return ties;
}

}  // namespace accelerate::bigmodel_internal
