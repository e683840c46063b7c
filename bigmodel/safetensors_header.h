// The safetensors container format, without LibTorch: parsing and
// validating a file's header, and writing one. A file is an 8-byte
// little-endian header length N, N bytes of JSON
//   {"__metadata__": {"k": "v"},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
// (padded with spaces), then the tensors' bytes, each little-endian and in
// C order, `data_offsets` counted from the start of that byte buffer.
//
// Files are untrusted input: every length, offset, shape and dtype is
// checked, with `DataLoss` for a damaged file and `InvalidArgument` for one
// beyond our limits, naming the tensor and the problem; nothing allocates
// more than the header length (itself capped) before the checks pass.
// Dtypes are the safetensors names of dtype.h.
//
// clang-format off
//   // The names of the tensors in `file_bytes`, a whole file read in memory.
//   absl::StatusOr<std::vector<std::string>> Example(
//       absl::string_view file_bytes) {
//     absl::StatusOr<SafetensorsHeader> header = ParseSafetensors(file_bytes);
//     if (!header.ok()) return header.status();  // DataLoss: damaged
//     std::vector<std::string> names;
//     for (const TensorEntry& entry : header->tensors) {
//       names.push_back(entry.name);
//     }
//     return names;
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_SAFETENSORS_HEADER_H_
#define ACCELERATE_BIGMODEL_SAFETENSORS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::bigmodel {

// Header lengths above this are refused (as the reference implementation).
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// One tensor of a file, as its header describes it.
struct TensorEntry {
  std::string name;
  std::string dtype;  // A safetensors name of dtype.h: "F32", "BF16", ...
  std::vector<int64_t> shape;
  // [begin, end) in the byte buffer after the header.
  uint64_t begin = 0;
  uint64_t end = 0;
};

// A file's parsed and validated header.
struct SafetensorsHeader {
  // In data order (by `begin`).
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
  // Offset of the byte buffer in the file: 8 + header length.
  uint64_t data_start = 0;
};

// Validates the first `prefix.size()` bytes of a file of `file_size` bytes
// (the prefix must hold the length and the whole header; more is ignored).
[[nodiscard]] absl::StatusOr<SafetensorsHeader> ParseSafetensorsPrefix(
    absl::string_view prefix, uint64_t file_size);

// As above for a whole file held in memory.
[[nodiscard]] absl::StatusOr<SafetensorsHeader> ParseSafetensors(
    absl::string_view file);

// The 8-byte length and the JSON header (padded to a multiple of 8 bytes)
// for `tensors` laid out back to back in the given order; their offsets are
// filled in. `InvalidArgument` for an unknown dtype, a duplicate or reserved
// name, or bytes that do not match the shape.
[[nodiscard]] absl::StatusOr<std::string> SerializeSafetensorsHeader(
    std::vector<TensorEntry>& tensors,
    const std::map<std::string, std::string>& metadata);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_SAFETENSORS_HEADER_H_
