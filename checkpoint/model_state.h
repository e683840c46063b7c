// A module's weights as Python's `state_dict()` names them (parameters and
// buffers, dotted paths), saved to and restored from safetensors files.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(torch::nn::Module& model, const std::string& path) {
//     ACCELERATE_RETURN_IF_ERROR(bigmodel::SaveSafetensors(path, ModelStateDict(model)));
//     return LoadModelState(model, path);
//   }
// clang-format on
//
// Thread safety: not while the module trains.

#ifndef ACCELERATE_CHECKPOINT_MODEL_STATE_H_
#define ACCELERATE_CHECKPOINT_MODEL_STATE_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include <torch/nn/module.h>
#include "bigmodel/safetensors.h"

namespace accelerate::checkpoint {

// Parameters then buffers, each name prefixed with `prefix` ("module." for
// the names a DDP-wrapped model has in Python). The tensors are the
// module's own, detached.
bigmodel::NamedTensors ModelStateDict(const torch::nn::Module& model,
                                      const std::string& prefix = "");

// Writes `tensors` (`ModelStateDict`'s) to `path` as a safetensors file,
// the same bytes as `bigmodel::SaveSafetensors`, and syncs it; written in
// place (not through a temporary file: for a staging folder) and, where the
// file system allows, bypassing the page cache. Errors name the file
// (`ResourceExhausted` for a full disk, `InvalidArgument` for an undefined
// tensor or a dtype safetensors lacks).
[[nodiscard]] absl::Status SaveModelState(
    const std::string& path, const bigmodel::NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Copies the tensors of the weights file `path` into `model`'s parameters
// and buffers (converting dtype, onto their devices): a safetensors file,
// or, for a name ending in ".bin", a `torch.save`d `state_dict()` (Python's
// `pytorch_model.bin`, `save_state(safe_serialization=False)`). Names may
// carry a "module." prefix (a DDP model's `state_dict()`, or a checkpoint
// that earlier versions of ours saved on several processes).
// Strict, as Python's `load_model`: `InvalidArgument` naming the file and
// the names when some are missing or unexpected, or a shape differs;
// `NotFound`/`DataLoss` for a missing or corrupt file. Nothing changes on
// error.
[[nodiscard]] absl::Status LoadModelState(torch::nn::Module& model,
                                          const std::string& path);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_MODEL_STATE_H_
