// Accelerate's offload folder, where weights placed on "disk" live: one raw
// little-endian file per tensor (`<name>.dat`, bfloat16 stored as int16) and
// `index.json` with {"<name>": {"dtype": "float32", "shape": [4, 3]}, ...}.
// An entry may instead point into a safetensors file
// ({"safetensors_file": path, "weight_name": name, "dtype": ...}), so weights
// already on disk in that format are not copied. Folders written by Python
// Accelerate's offload_state_dict read here and the other way round (except
// tensors with no elements: numpy cannot map their empty .dat files).
// Dtypes are the offloadable ones of dtype.h, by their PyTorch names.
//
// clang-format off
//   absl::StatusOr<at::Tensor> Example(const at::Tensor& w) {
//     absl::Status written =
//         OffloadTensors("/tmp/offload", {{"lm_head.weight", w}});
//     if (!written.ok()) return written;
//     absl::StatusOr<std::unique_ptr<OffloadedWeights>> weights =
//         OffloadedWeights::Open("/tmp/offload");
//     if (!weights.ok()) return weights.status();
//     return (*weights)->Get("lm_head.weight");  // Maps lm_head.weight.dat.
//   }
// clang-format on
//
// Thread safety: OffloadedWeights::Get may not be called concurrently (it
// caches opened safetensors files); writers of one folder must not overlap.

#ifndef ACCELERATE_BIGMODEL_OFFLOAD_H_
#define ACCELERATE_BIGMODEL_OFFLOAD_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include "bigmodel/safetensors.h"

namespace accelerate::bigmodel {

// Writes each tensor to `<dir>/<name>.dat` and merges their entries into
// `<dir>/index.json` (created with `dir` if missing); every file is written
// atomically. `InvalidArgument` names a tensor whose dtype has no entry in
// Accelerate's format or whose name is not a plain file name.
[[nodiscard]] absl::Status OffloadTensors(const std::string& dir,
                                          const NamedTensors& tensors);

// Records `names` of the safetensors file `file` in `<dir>/index.json` as
// pointers, without copying their data.
[[nodiscard]] absl::Status OffloadPointers(
    const std::string& dir, const std::string& file,
    const std::vector<std::string>& names);

// An offload folder opened for reading: its index, and the weights mapped
// on demand.
class OffloadedWeights {
 public:
  // `NotFound` without index.json; `InvalidArgument` naming the entry for a
  // malformed index.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<OffloadedWeights>> Open(
      const std::string& dir);

  std::vector<std::string> names() const;

  // The tensor, on the CPU, aliasing a private (copy-on-write) mapping of
  // its file: nothing is read before its pages are touched. `DataLoss` when
  // a .dat file's size does not match its entry.
  [[nodiscard]] absl::StatusOr<at::Tensor> Get(const std::string& name);

 private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    std::string safetensors_file;  // Empty for a .dat file.
    std::string weight_name;
  };
  explicit OffloadedWeights(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  std::map<std::string, Entry> entries_;
  // Safetensors files opened so far, each once.
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
};

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_OFFLOAD_H_
