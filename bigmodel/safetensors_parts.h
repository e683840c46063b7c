// Per-process part files of a sharded checkpoint (FSDP's SHARDED_STATE_DICT,
// in our own layout): each process writes the part of every tensor it
// holds, a contiguous range of the flattened tensor, to its own
// safetensors file `<stem>.rank-<p>-of-<n>.safetensors`; each part's place
// (its start in the flattened tensor and the whole tensor's shape) is in
// the file's metadata under "part:<name>". Read back through
// `SafetensorsParts`, any range of any tensor is assembled from the files
// that hold it, so a checkpoint written by N processes loads on any number
// (resharding), and `accelerate merge-weights` turns one into a single
// safetensors file. (checkpoint/sharded_state.h writes them.)
//
// clang-format off
//   #include <ATen/ATen.h>
//   absl::StatusOr<at::Tensor> Example(const std::string& dir) {
//     auto parts = SafetensorsParts::Open(dir, "model");  // model.rank-*-of-*
//     if (!parts.ok()) return parts.status();
//     return (*parts)->ReadWhole("layer.weight");
//   }
// clang-format on
//
// Thread safety: a SafetensorsParts is immutable after Open; Read may run
// on several threads.

#ifndef ACCELERATE_BIGMODEL_SAFETENSORS_PARTS_H_
#define ACCELERATE_BIGMODEL_SAFETENSORS_PARTS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bigmodel/safetensors.h"

namespace accelerate::bigmodel {

// "model.rank-00001-of-00004.safetensors" for ("model", 1, 4).
std::string PartFileName(const std::string& stem, int process,
                         int num_processes);

// The metadata entry that places a part: key "part:<name>", value
// "<start>;<d0>,<d1>,...".
std::pair<std::string, std::string> PartMetadata(
    const std::string& name, int64_t start, const std::vector<int64_t>& shape);

// The metadata "format" of part files.
inline constexpr char kPartFilesFormat[] = "accelerate-cpp-sharded";

class SafetensorsParts {
 public:
  // The files `<stem>.rank-*-of-<n>.safetensors` of `folder`. `NotFound`
  // when there are none; `DataLoss` when one of the n is missing or the
  // files disagree (process counts, shapes, dtypes).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsParts>> Open(
      const std::string& folder, const std::string& stem);
  SafetensorsParts(const SafetensorsParts&) = delete;
  SafetensorsParts& operator=(const SafetensorsParts&) = delete;

  // How many processes wrote it.
  int num_processes() const { return static_cast<int>(files_.size()); }
  // The tensors' names, sorted.
  std::vector<std::string> names() const;
  bool Contains(const std::string& name) const {
    return tensors_.count(name) > 0;
  }
  // `NotFound` for an unknown name.
  [[nodiscard]] absl::StatusOr<std::vector<int64_t>> shape(
      const std::string& name) const;
  // The first file's metadata (what every process wrote alike).
  const std::map<std::string, std::string>& metadata() const;

  // Copies elements [begin, begin + dest.numel()) of the flattened tensor
  // `name` into `dest` (contiguous; converting dtype). `NotFound` for an
  // unknown name, `OutOfRange` past its end, `DataLoss` where no file
  // holds part of the range.
  [[nodiscard]] absl::Status Read(const std::string& name, int64_t begin,
                                  at::Tensor dest) const;
  // The whole tensor, in its shape.
  [[nodiscard]] absl::StatusOr<at::Tensor> ReadWhole(
      const std::string& name) const;

 private:
  struct Piece {
    int file;
    int64_t start;
    int64_t numel;
  };
  struct Entry {
    std::vector<int64_t> shape;
    at::ScalarType dtype;
    std::vector<Piece> pieces;
  };
  SafetensorsParts() = default;

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> tensors_;
};

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_SAFETENSORS_PARTS_H_
