// Writing files in PyTorch's own serialization (`torch.save`'s zip archive
// with a pickle and one record per storage), which Python reads with
// `torch.load` (`weights_only=True` too): dicts, lists, tuples, strings,
// numbers, booleans, None and tensors. Tensors are streamed to the file from
// their own memory (no copy of the whole archive is built), past the page
// cache where the file system allows (`O_DIRECT`), and the file is synced to
// disk before `SaveTorchFile` returns. Reading them back (and what Python's
// `torch.save` wrote): `bigmodel::LoadTorchFile` (bigmodel/torch_file.h).
//
// clang-format off
//   #include <ATen/ATen.h>
//   #include "state/status_macros.h"
//   absl::Status Example(const std::string& path) {
//     c10::Dict<std::string, at::Tensor> values;
//     values.insert("weight", at::ones({2, 2}));
//     return SaveTorchFile(path, values);
//   }
// clang-format on
//
// Thread safety: safe to call concurrently on different files.

#ifndef ACCELERATE_CHECKPOINT_TORCH_FILE_H_
#define ACCELERATE_CHECKPOINT_TORCH_FILE_H_

#include <string>

#include "absl/status/status.h"
#include <ATen/core/ivalue.h>

namespace accelerate::checkpoint {

// Writes `value` to `path` (replacing it) as `torch.save` would, synced.
// Errors name the file (`ResourceExhausted` for a full disk).
[[nodiscard]] absl::Status SaveTorchFile(const std::string& path,
                                         const c10::IValue& value);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_TORCH_FILE_H_
