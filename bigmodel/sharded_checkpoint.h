// Hugging Face model checkpoints as Accelerate's `load_checkpoint_in_model`
// finds them: one weights file, or shards named by an index
// (`model.safetensors.index.json`, `pytorch_model.bin.index.json`: a
// `weight_map` from tensor to file), each shard a safetensors file or a
// `torch.save`d `state_dict()` (`pytorch_model.bin`,
// `pytorch_model-00001-of-00002.bin`).
//
// clang-format off
//   absl::Status Example() {
//     // A folder, an index or one file.
//     absl::StatusOr<std::unique_ptr<ShardedCheckpoint>> checkpoint =
//         ShardedCheckpoint::Open("/tmp/ckpt");
//     if (!checkpoint.ok()) return checkpoint.status();
//     return (*checkpoint)->Load({"w"}).status();  // opens one shard
//   }
// clang-format on
//
// CPU tensors alias a private mapping of their shard (copy-on-write: writing
// to them never changes the file) unless a copy is asked for. Files are
// untrusted input: an index naming files outside its folder, a shard that
// lacks what the index puts in it, a corrupt shard are errors naming them.
//
// Thread safety: a ShardedCheckpoint opens shards lazily and is not
// thread-safe.

#ifndef ACCELERATE_BIGMODEL_SHARDED_CHECKPOINT_H_
#define ACCELERATE_BIGMODEL_SHARDED_CHECKPOINT_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <ATen/core/Tensor.h>

#include "bigmodel/safetensors.h"
#include "bigmodel/safetensors_header.h"

namespace accelerate::bigmodel {

class ShardedCheckpoint {
 public:
  // `path` is one of:
  // - a folder: its `model.safetensors`, else `pytorch_model.bin`, else
  //   `model.safetensors.index.json`, else `pytorch_model.bin.index.json`,
  //   else its one other `*.index.json` (several: `InvalidArgument` naming
  //   them). Python's `load_checkpoint_in_model` tries `pytorch_model.bin`
  //   before `model.safetensors`; in a folder holding both, the safetensors
  //   file is read here, as transformers does (the same weights, read
  //   without a pickle).
  // - a file whose name ends in `.json`: an index, shards beside it;
  // - any other file: the one weights file.
  // A weights file is safetensors when its name ends in `.safetensors`,
  // else a `torch.save` archive (as Python's `load_state_dict` decides).
  // Only the index (or the one file's header or pickle) is read here; shards
  // open when a tensor in them is asked for. `NotFound` naming what is
  // missing, `DataLoss` for a corrupt index or file.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ShardedCheckpoint>> Open(
      const std::string& path);

  ShardedCheckpoint(const ShardedCheckpoint&) = delete;
  ShardedCheckpoint& operator=(const ShardedCheckpoint&) = delete;
  ~ShardedCheckpoint();

  std::vector<std::string> names() const;
  // The folder holding the shards.
  const std::string& dir() const { return dir_; }
  // The shard file holding `name` (a name inside `dir()`).
  [[nodiscard]] absl::StatusOr<std::string> FileOf(
      const std::string& name) const;
  // Whether shard `file` (as FileOf names it) is a safetensors file, whose
  // tensors lie whole at offsets its header gives; else a `torch.save`
  // archive.
  static bool IsSafetensors(absl::string_view file);
  // The tensors `names`, opening only the shards that hold them, as
  // SafetensorsFile::Load gives them (from a `torch.save` shard the same:
  // aliasing its mapping on the CPU unless `options.copy`, through the
  // staged upload onto a GPU, the shape and strides Python saved).
  [[nodiscard]] absl::StatusOr<std::map<std::string, at::Tensor>> Load(
      const std::vector<std::string>& names, const ReadOptions& options = {});
  // Every tensor's name, dtype and shape (shard by shard, in data order),
  // reading only the headers (of a `torch.save` shard, its pickle; the
  // tensors' bytes are mapped, not read). Entries of a `torch.save` shard
  // have `begin` 0 and `end` the tensor's size in bytes. `InvalidArgument`
  // for a tensor whose dtype safetensors has no name for (complex128).
  [[nodiscard]] absl::StatusOr<std::vector<TensorEntry>> Entries();
  // Shards opened so far.
  int files_opened() const { return static_cast<int>(open_.size()); }

 private:
  struct Shard;

  ShardedCheckpoint();
  // Opens shard `file` (a name inside `dir()`) once.
  absl::StatusOr<Shard*> OpenShard(const std::string& file);

  std::string dir_;
  std::map<std::string, std::string> weight_map_;  // tensor -> file name
  std::map<std::string, std::unique_ptr<Shard>> open_;
};

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_SHARDED_CHECKPOINT_H_
