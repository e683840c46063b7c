// `accelerate estimate-memory` for a local checkpoint: Accelerate's table of
// the largest layer, the total size and the memory for training with Adam,
// per dtype (float32, float16, int8, int4), computed from the tensors'
// names and shapes alone (nothing is loaded).
//
// The model is taken as Accelerate's empty model would be: floating-point
// tensors in float32, others in their own dtype (dtype.h's `floating` and
// `bytes`; bool as a byte, where Accelerate counts an eighth); modules are the
// dotted prefixes of the tensor names, and a layer is a module with no child
// modules, a top-level tensor, or one numbered block of a list (`layers.7`),
// standing in for the no-split block classes transformers models declare.
//
// clang-format off
//   // `entries` from a checkpoint's headers (ShardedCheckpoint::Entries).
//   absl::StatusOr<std::string> Example(
//       const std::vector<TensorEntry>& entries) {
//     absl::StatusOr<std::vector<MemoryRow>> rows =
//         EstimateMemory(entries, {"float32", "int8"});
//     if (!rows.ok()) return rows.status();
//     return MemoryTable(*rows, "Memory Usage for loading `./ckpt`");
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_ESTIMATE_H_
#define ACCELERATE_BIGMODEL_ESTIMATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/safetensors_header.h"

namespace accelerate::bigmodel {

// One line of the table: the sizes for one dtype, in bytes.
struct MemoryRow {
  std::string dtype;
  double largest_layer_bytes = 0;
  double total_bytes = 0;
  // -1 where Accelerate prints N/A (int8, int4).
  double training_bytes = -1;
};

// A model's size and its largest layers, in bytes as float32.
struct ModelSizes {
  int64_t total_bytes = 0;
  int64_t largest_layer_bytes = 0;
  std::vector<std::string> largest_layers;
};

// Sizes of the model the tensors describe (float32 basis, see above).
ModelSizes ComputeModelSizes(const std::vector<TensorEntry>& tensors);

// One row per dtype, in the order given. `InvalidArgument` for a dtype other
// than float32, float16, int8, int4.
[[nodiscard]] absl::StatusOr<std::vector<MemoryRow>> EstimateMemory(
    const std::vector<TensorEntry>& tensors,
    const std::vector<std::string>& dtypes);

// Accelerate's `convert_bytes`: "418.18 MB", "512 bytes".
std::string ConvertBytes(double bytes, bool integral = false);

// Accelerate's box-drawn table of the rows under `title`.
std::string MemoryTable(const std::vector<MemoryRow>& rows,
                        const std::string& title);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_ESTIMATE_H_
