// Reading and writing LibTorch tensors in the safetensors format, single
// files and Hugging Face sharded checkpoints
// (`model.safetensors.index.json` with a `weight_map`).
//
// clang-format off
//   absl::Status Example(const at::Tensor& w, const at::Tensor& b) {
//     absl::Status saved =
//         SaveSafetensors("/tmp/wb.safetensors", {{"w", w}, {"b", b}});
//     if (!saved.ok()) return saved;
//     absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
//         SafetensorsFile::Open("/tmp/wb.safetensors");
//     if (!file.ok()) return file.status();
//     absl::StatusOr<at::Tensor> w2 = (*file)->Get("w");  // zero-copy
//     if (!w2.ok()) return w2.status();
//
//     return SaveShardedSafetensors("/tmp/ckpt", {{"w", w}, {"b", b}},
//                                   {.max_shard_bytes = 1 << 30});
//   }
// clang-format on
//
// Reading maps the file: CPU tensors asked for without a copy alias the
// mapping (copy-on-write, so writing to them never changes the file) and keep
// it alive. Writing is atomic: a temporary file is written, synced and
// renamed over the target. Files are untrusted input (see
// safetensors_header.h).
//
// Thread safety: a SafetensorsFile is immutable after Open and may be read
// from several threads. Reading a sharded checkpoint (of safetensors or
// `torch.save` shards): sharded_checkpoint.h.

#ifndef ACCELERATE_BIGMODEL_SAFETENSORS_H_
#define ACCELERATE_BIGMODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/Device.h>

#include "bigmodel/safetensors_header.h"

namespace accelerate::bigmodel {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes `parts` to `path` through a synced temporary file in the same
// folder and a rename: readers see the old file or the new one, never part.
[[nodiscard]] absl::Status WriteFileAtomically(
    const std::string& path, const std::vector<absl::string_view>& parts);

// A whole regular file mapped privately and writable: tensors aliasing it
// may be written to (copy on write) while the file never changes. Nothing is
// read before its pages are touched. Shared by the tensors that alias it.
struct MappedFile {
  // `NotFound` for a missing file, `InvalidArgument` for one that is not a
  // regular file (a FIFO named by a hostile index never hangs the open).
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const MappedFile>> Map(
      const std::string& path);
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  char* base = nullptr;  // Null for an empty file.
  size_t size = 0;
};

// A CPU tensor of `shape` and `type` over the bytes at `data`, inside
// `mapping`, which it keeps alive (views of it too).
at::Tensor AliasMapping(std::shared_ptr<const MappedFile> mapping,
                        const char* data, c10::IntArrayRef shape,
                        at::ScalarType type);

// A CPU data pointer to `data`, inside `mapping`, holding a share of it: the
// storage of AliasMapping's tensors, for storages built elsewhere (the
// records of a mapped `torch.save` archive).
c10::DataPtr ShareMapping(std::shared_ptr<const MappedFile> mapping,
                          const char* data);

// Whether `tensor`'s bytes are a file mapping's (made by AliasMapping or
// over ShareMapping, as every zero-copy tensor read here is), rather than
// memory of its own.
bool AliasesMapping(const at::Tensor& tensor);

// The safetensors dtype name of `type` ("F32", ...; the table of dtype.h);
// `InvalidArgument` for a type outside it (complex128, quantized).
[[nodiscard]] absl::StatusOr<std::string> SafetensorsDtype(at::ScalarType type);
// The LibTorch type of `entry`'s dtype; `InvalidArgument` naming the tensor
// for one LibTorch lacks.
[[nodiscard]] absl::StatusOr<at::ScalarType> SafetensorsScalarType(
    const TensorEntry& entry);

// A safetensors file of `tensors` before it is written: the header, then
// the tensors (on the CPU, contiguous) whose bytes follow it, in file
// order: larger elements first, then by name, so that every tensor starts
// aligned to its element size. `InvalidArgument` naming an undefined tensor
// or a dtype safetensors lacks.
struct SafetensorsLayout {
  std::string header;
  NamedTensors order;
};
[[nodiscard]] absl::StatusOr<SafetensorsLayout> LayOutSafetensors(
    const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata = {});

// Writes `tensors` (any device, any layout) to `path`, with `metadata`.
[[nodiscard]] absl::Status SaveSafetensors(
    const std::string& path, const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata = {});

struct ReadOptions {
  // Where the tensor goes. CPU tensors alias the mapping unless `copy`.
  c10::Device device = c10::kCPU;
  // Copy the bytes instead of aliasing the file.
  bool copy = false;
  // Onto a GPU, bytes travel through page-locked staging buffers filled by
  // this many host threads while earlier buffers are on their way (all of a
  // `Load`; a `Get` of 64 MiB or more). 0: one per core, at most 8.
  int staging_threads = 0;
};

class SafetensorsFile {
 public:
  // `NotFound` for a missing file, `DataLoss`/`InvalidArgument` for a bad
  // one.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const {
    return header_.metadata;
  }
  std::vector<std::string> names() const;
  bool Contains(const std::string& name) const;

  // The tensor `name`. `NotFound` for an unknown name, `InvalidArgument` for
  // a dtype LibTorch lacks.
  [[nodiscard]] absl::StatusOr<at::Tensor> Get(
      const std::string& name, const ReadOptions& options = {}) const;
  // The tensors `names`, as `Get` gives them; onto a GPU in one staged
  // upload (usable on the current stream when this returns). Without
  // page-locked memory, plain copies.
  [[nodiscard]] absl::StatusOr<std::map<std::string, at::Tensor>> Load(
      const std::vector<std::string>& names,
      const ReadOptions& options = {}) const;

 private:
  struct Located {
    const TensorEntry* entry;
    at::ScalarType type;
    const char* data;
  };
  absl::StatusOr<Located> Locate(const std::string& name) const;
  // `Get` without staging. May throw `c10::Error`.
  at::Tensor GetDirect(const Located& located,
                       const ReadOptions& options) const;

  SafetensorsFile(std::string path, SafetensorsHeader header,
                  std::shared_ptr<const MappedFile> mapping);

  std::string path_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<const MappedFile> mapping_;
};

struct SaveShardedOptions {
  // A shard is closed before it would pass this many tensor bytes (a tensor
  // larger than this gets a shard of its own). Default 5 GB, as
  // transformers' `save_pretrained`.
  uint64_t max_shard_bytes = 5'000'000'000;
  // File names: `<prefix>.safetensors` for one shard, else
  // `<prefix>-00001-of-0000N.safetensors` and
  // `<prefix>.safetensors.index.json`.
  std::string prefix = "model";
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
};

// Writes `tensors` into `dir` as one file or as shards with an index, in the
// order given.
[[nodiscard]] absl::Status SaveShardedSafetensors(
    const std::string& dir, const NamedTensors& tensors,
    const SaveShardedOptions& options = {});

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_SAFETENSORS_H_
