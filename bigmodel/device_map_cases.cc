// Test tool: plans many device maps in one process, for comparison with
// Python Accelerate (device_map_peer_test.py). Reads cases from the file
// named by argv[1], four lines each:
//
//   <strategy: sequential, balanced, ...>
//   <max_memory: 0=1000,cpu=2000,...>
//   <no_split_module_classes, comma-separated, possibly empty>
//   <the module tree as one line of JSON (module_tree.h)>
//
// and prints one line per case: the map as DeviceMapToJson prints it, or
// "error: <status>".

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bigmodel/device_map.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel {
namespace {

absl::StatusOr<DeviceMap> Plan(const std::string& strategy,
                               const std::string& memory,
                               const std::string& no_split,
                               const std::string& tree_json) {
  absl::StatusOr<ModuleTree> tree = ParseModuleTree(tree_json);
  if (!tree.ok()) return tree.status();
  DeviceMapOptions options;
  absl::StatusOr<MaxMemory> max_memory = ParseMaxMemory(memory);
  if (!max_memory.ok()) return max_memory.status();
  options.max_memory = *max_memory;
  options.no_split_module_classes =
      absl::StrSplit(no_split, ',', absl::SkipEmpty());
  return PlanDeviceMap(*tree, options, strategy);
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: device_map_cases CASES_FILE\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  std::string strategy, memory, no_split, tree;
  while (std::getline(in, strategy) && std::getline(in, memory) &&
         std::getline(in, no_split) && std::getline(in, tree)) {
    absl::StatusOr<DeviceMap> map = Plan(strategy, memory, no_split, tree);
    if (map.ok()) {
      std::cout << DeviceMapToJson(*map) << "\n";
    } else {
      std::cout << "error: " << map.status() << "\n";
    }
  }
  return 0;
}

}  // namespace
}  // namespace accelerate::bigmodel

int main(int argc, char** argv) {
  return accelerate::bigmodel::Main(argc, argv);
}
