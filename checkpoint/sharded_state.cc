#include "checkpoint/sharded_state.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/model_state.h"

namespace accelerate::checkpoint {

absl::Status SaveShardFile(const std::string& path,
                           const std::vector<TensorPart>& parts,
                           const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> all = metadata;
  all["format"] = bigmodel::kPartFilesFormat;
  bigmodel::NamedTensors tensors;
  for (const TensorPart& part : parts) {
    int64_t whole = 1;
    for (int64_t d : part.shape) whole *= d;
    const int64_t numel = part.values.defined() ? part.values.numel() : 0;
    if (part.start < 0 || part.start + numel > whole) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": part of ", part.name, " [", part.start, ", ",
          part.start + numel, ") does not fit its shape [",
          absl::StrJoin(part.shape, ", "), "]"));
    }
    all.insert(bigmodel::PartMetadata(part.name, part.start, part.shape));
    tensors.emplace_back(part.name, part.values.reshape({-1}));
  }
  return SaveModelState(path, tensors, all);
}

}  // namespace accelerate::checkpoint
