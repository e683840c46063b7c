#include "checkpoint/model_state.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <torch/torch.h>
#include "bigmodel/torch_file.h"
#include "checkpoint/internal/direct_writer.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::checkpoint {
namespace {

constexpr char kDataParallelPrefix[] = "module.";

// At most a few names, for messages.
std::string Some(const std::vector<std::string>& names) {
  std::vector<std::string> shown(
      names.begin(), names.begin() + std::min<size_t>(names.size(), 5));
  return absl::StrCat(absl::StrJoin(shown, ", "),
                      names.size() > shown.size() ? ", ..." : "");
}

// The tensors of a weights file by name: a safetensors file (aliasing its
// mapping), or a `torch.save`d `state_dict()` (`pytorch_model.bin`, mapped
// too).
absl::StatusOr<std::map<std::string, at::Tensor>> ReadWeights(
    const std::string& path) {
  if (!absl::EndsWith(path, ".bin")) {
    ACCELERATE_ASSIGN_OR_RETURN(
        std::unique_ptr<bigmodel::SafetensorsFile> file,
        bigmodel::SafetensorsFile::Open(path));
    return file->Load(file->names());
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      bigmodel::NamedTensors named,
      bigmodel::LoadTorchStateDict(path, {.map_file = true}));
  return std::map<std::string, at::Tensor>(named.begin(), named.end());
}

}  // namespace

bigmodel::NamedTensors ModelStateDict(const torch::nn::Module& model,
                                      const std::string& prefix) {
  bigmodel::NamedTensors tensors;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    tensors.emplace_back(prefix + item.key(), item.value().detach());
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    tensors.emplace_back(prefix + item.key(), item.value().detach());
  }
  return tensors;
}

absl::Status SaveModelState(
    const std::string& path, const bigmodel::NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<bigmodel::SafetensorsLayout> layout =
      bigmodel::LayOutSafetensors(tensors, metadata);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        absl::StrCat(path, ": ", layout.status().message()));
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      std::unique_ptr<checkpoint_internal::DirectWriter> file,
      checkpoint_internal::DirectWriter::Create(path));
  ACCELERATE_RETURN_IF_ERROR(file->Append(layout->header));
  for (const auto& [name, tensor] : layout->order) {
    ACCELERATE_RETURN_IF_ERROR(file->Append(absl::string_view(
        static_cast<const char*>(tensor.data_ptr()), tensor.nbytes())));
  }
  return file->Close();
}

absl::Status LoadModelState(torch::nn::Module& model,
                            const std::string& path) {
  ACCELERATE_ASSIGN_OR_RETURN(auto stored, ReadWeights(path));
  // The model's own tensors by name (detached aliases: copied into below).
  std::map<std::string, at::Tensor> targets;
  for (auto& [name, tensor] : ModelStateDict(model)) targets[name] = tensor;
  // The file's name for each of ours.
  std::map<std::string, std::string> source;
  std::vector<std::string> unexpected;
  for (const auto& [name, tensor] : stored) {
    std::string ours = name;
    if (targets.count(ours) == 0 &&
        absl::StartsWith(name, kDataParallelPrefix)) {
      ours = name.substr(sizeof(kDataParallelPrefix) - 1);
    }
    if (targets.count(ours) == 0) {
      unexpected.push_back(name);
    } else {
      source[ours] = name;
    }
  }
  std::vector<std::string> missing;
  for (const auto& [name, tensor] : targets) {
    if (source.count(name) == 0) missing.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " does not match the model: ",
        missing.empty() ? "" : absl::StrCat(missing.size(), " missing (",
                                            Some(missing), ")"),
        !missing.empty() && !unexpected.empty() ? "; " : "",
        unexpected.empty() ? "" : absl::StrCat(unexpected.size(),
                                               " unexpected (",
                                               Some(unexpected), ")")));
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  for (const auto& [name, target] : targets) {
    const at::Tensor& loaded = stored.at(source[name]);
    if (!loaded.sizes().equals(target.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", source[name], " has shape ", c10::str(loaded.sizes()),
          "; the model's ", name, " has ", c10::str(target.sizes())));
    }
    copies.emplace_back(target, loaded);
  }
  return state::RunGuarded(absl::StrCat("loading ", path), [&] {
    torch::NoGradGuard no_grad;
    for (auto& [target, loaded] : copies) target.copy_(loaded);
  });
}

}  // namespace accelerate::checkpoint
