// Tied parameters (one tensor under several names) for the device map
// planner: Accelerate's find_tied_parameters and get_module_size_with_ties,
// so that tied weights land on one device.
//
// Thread safety: immutable after construction.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_TIED_TENSORS_H_
#define ACCELERATE_BIGMODEL_INTERNAL_TIED_TENSORS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "bigmodel/internal/placement_items.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel_internal {

// Groups of full names that are one tensor (find_tied_parameters), in the
// order their first tie is met; a chain (c tied to b, b tied to a) is one
// group, led by a.
std::vector<std::vector<std::string>> TiedGroups(
    const bigmodel::ModuleTree& tree);

// What placing a module brings along because of its ties.
struct Ties {
  std::vector<std::string> params;   // Tied tensors outside the module.
  std::vector<std::string> modules;  // Queued modules holding them.
  // The module's size plus those modules' (less the tied tensors).
  int64_t size_with_ties = 0;
};

// The tied groups of a tree, looked up by module name.
// REQUIRES: `sizes` outlives this.
class TiedTensors {
 public:
  TiedTensors(const bigmodel::ModuleTree& tree,
              const std::map<std::string, int64_t>& sizes);

  // Accelerate's get_module_size_with_ties for the item `name`: the tensors
  // tied to ones inside it but outside it, and the modules among
  // `candidates` holding them, whose sizes count with it.
  Ties TiesOf(const std::string& name,
              const std::deque<Item>& candidates) const;

 private:
  const std::map<std::string, int64_t>& sizes_;
  std::vector<std::vector<std::string>> groups_;
  // Tied name -> its group, to find an item's groups by name range.
  std::map<std::string, size_t> group_of_;
};

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_TIED_TENSORS_H_
