// Accelerate's clean_device_map: a device map with every fully placed
// subtree written as one entry.
//
// Thread safety: a pure function.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_MERGE_DEVICE_MAP_H_
#define ACCELERATE_BIGMODEL_INTERNAL_MERGE_DEVICE_MAP_H_

#include "bigmodel/device.h"

namespace accelerate::bigmodel_internal {

// Replaces, in `map`, the outermost name prefixes whose (two or more)
// entries all share one device by one entry each, placed where their first
// entry was. One pass over a trie of the names.
void MergeSubtreesOnOneDevice(bigmodel::DeviceMap& map);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_MERGE_DEVICE_MAP_H_
