// Writing sharded checkpoints (FSDP's SHARDED_STATE_DICT): each process's
// part of every tensor, in the part files bigmodel/safetensors_parts.h
// describes and reads back (on any number of processes).
//
// clang-format off
//   absl::Status Example(const std::string& dir, at::Tensor part) {
//     TensorPart mine{"layer.weight", {4, 4}, /*start=*/8, part};
//     return SaveShardFile(dir + "/" + bigmodel::PartFileName("model", 1, 2), {mine});
//   }
// clang-format on
//
// Thread safety: a pure function of its arguments (and the file it writes).

#ifndef ACCELERATE_CHECKPOINT_SHARDED_STATE_H_
#define ACCELERATE_CHECKPOINT_SHARDED_STATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include "absl/status/status.h"
#include "bigmodel/safetensors_parts.h"

namespace accelerate::checkpoint {

// One process's part of a tensor.
struct TensorPart {
  std::string name;
  std::vector<int64_t> shape;  // of the whole tensor
  int64_t start = 0;           // where the part starts, flattened
  at::Tensor values;           // the part, flattened (may be empty)
};

// Writes `parts` to `path` (synced, in place, as SaveModelState), with
// `metadata` added to the parts' places. `InvalidArgument` for a part that
// does not fit its shape.
[[nodiscard]] absl::Status SaveShardFile(
    const std::string& path, const std::vector<TensorPart>& parts,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_SHARDED_STATE_H_
