// The layers of a module tree still to place, by size, so that the device
// map planner finds the largest one (which the main devices keep room for)
// in logarithmic time instead of walking every remaining module.
//
// Thread safety: not thread-safe.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_LAYER_INDEX_H_
#define ACCELERATE_BIGMODEL_INTERNAL_LAYER_INDEX_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "bigmodel/internal/classes_kept_whole.h"
#include "bigmodel/internal/placement_items.h"

namespace accelerate::bigmodel_internal {

// The layers (Accelerate's get_max_layer_size: modules without children or
// of a class kept whole, found through children; tensors count as
// themselves) of the items added and not yet removed.
// REQUIRES: `sizes` and `kept_whole` outlive the index.
class LayerIndex {
 public:
  LayerIndex(const std::map<std::string, int64_t>& sizes,
             const ClassesKeptWhole& kept_whole)
      : sizes_(sizes), kept_whole_(kept_whole) {}

  // Adds the layers of `item` (itself, or those found through its children).
  void Add(const Item& item);

  // Removes `name` and every layer under it.
  void Remove(const std::string& name);

  // The largest layer size and every layer of that size; tensor items are
  // left out with `modules_only`, as Accelerate does after the first time.
  std::pair<int64_t, std::set<std::string>> Max(bool modules_only) const;

 private:
  const std::map<std::string, int64_t>& sizes_;
  const ClassesKeptWhole& kept_whole_;
  // Layer name -> (size, whether it is a tensor).
  std::map<std::string, std::pair<int64_t, bool>> by_name_;
  std::set<std::pair<int64_t, std::string>> modules_;
  std::set<std::pair<int64_t, std::string>> tensors_;
};

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_LAYER_INDEX_H_
