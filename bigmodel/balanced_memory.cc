// Accelerate's get_balanced_memory (see balanced_memory.h).

#include "bigmodel/balanced_memory.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bigmodel/internal/classes_kept_whole.h"
#include "bigmodel/internal/placement_items.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::bigmodel_internal::ClassesKeptWhole;
using ::accelerate::bigmodel_internal::CompileDeviceMapOptions;
using ::accelerate::bigmodel_internal::JoinName;

// Drops the modules under (and including) `module` that hold no tensor;
// returns whether `module` holds one.
bool EraseTensorless(const ModuleTree& module, const std::string& path,
                     std::map<std::string, int64_t>& sizes) {
  bool holds = !module.params.empty() || !module.buffers.empty();
  for (const ModuleTree& child : module.children) {
    holds = EraseTensorless(child, JoinName(path, child.name), sizes) || holds;
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

// The size of the largest module kept whole, taking the first module met of
// each class (as Accelerate takes the first block of each no-split class).
// Modules without tensors have no size (Accelerate never sees them).
int64_t FirstKeptWholeBlock(const ModuleTree& tree,
                            const std::map<std::string, int64_t>& sizes,
                            const ClassesKeptWhole& kept_whole) {
  int64_t block = 0;
  std::vector<std::pair<const ModuleTree*, std::string>> stack = {{&tree, ""}};
  std::set<std::string> classes_seen;
  while (!stack.empty()) {
    auto [module, path] = stack.back();
    stack.pop_back();
    auto size = sizes.find(path);
    if (!path.empty() && size != sizes.end() &&
        kept_whole.KeepsWhole(*module) &&
        classes_seen.insert(module->class_name).second) {
      block = std::max(block, size->second);
    }
    for (auto it = module->children.rbegin(); it != module->children.rend();
         ++it) {
      stack.push_back({&*it, JoinName(path, it->name)});
    }
  }
  return block;
}

// The mean size of the modules that hold tensors directly (the leaves once
// the tensors are taken out of `sizes`).
int64_t MeanModuleSize(std::map<std::string, int64_t> sizes) {
  for (const std::string& tensor : Leaves(sizes)) sizes.erase(tensor);
  const std::set<std::string> final_modules = Leaves(sizes);
  int64_t sum = 0;
  for (const std::string& name : final_modules) sum += sizes[name];
  return sum / std::max<int64_t>(static_cast<int64_t>(final_modules.size()), 1);
}

}  // namespace

absl::StatusOr<MaxMemory> GetBalancedMemory(const ModuleTree& tree,
                                            const DeviceMapOptions& options,
                                            bool low_zero) {
  ACCELERATE_ASSIGN_OR_RETURN(const ClassesKeptWhole kept_whole,
                              CompileDeviceMapOptions(options));
  MaxMemory memory = options.max_memory;
  std::vector<size_t> gpus;  // Indices into `memory`, in GPU order.
  for (size_t i = 0; i < memory.size(); ++i) {
    if (memory[i].first.is_gpu() && memory[i].second > 0) gpus.push_back(i);
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
  const int64_t block = FirstKeptWholeBlock(tree, sizes, kept_whole);
  const int64_t mean = MeanModuleSize(sizes);
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

}  // namespace accelerate::bigmodel
