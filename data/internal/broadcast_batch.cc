#include "data/internal/broadcast_batch.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include "data/internal/batch_header.h"
#include "state/collectives.h"
#include "state/status_macros.h"

namespace accelerate::data_internal {

absl::StatusOr<data::Batch> BroadcastBatch(const state::PartialState& state,
                                           const data::Batch& batch,
                                           std::string* extra,
                                           int from_process) {
  const bool sender = state.process_index() == from_process;
  std::string header;
  if (sender) {
    const std::string structure = EncodeStructure(batch);
    header = absl::StrCat(structure.size(), ":", structure, *extra);
  }
  ACCELERATE_ASSIGN_OR_RETURN(header,
                              state::BroadcastObject(state, header, from_process));
  const size_t colon = header.find(':');
  size_t length = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(header.substr(0, colon), &length) ||
      length > header.size() - colon - 1) {
    return absl::DataLossError(absl::StrCat("bad batch header \"", header, "\""));
  }
  *extra = header.substr(colon + 1 + length);
  data::Batch out = batch;
  if (!sender) {
    ACCELERATE_ASSIGN_OR_RETURN(out,
                                DecodeStructure(header.substr(colon + 1, length)));
  }
  // On the state's device: NCCL moves only GPU tensors.
  return out.Map([&](const std::string&, const at::Tensor& t) {
    return state::BroadcastTensor(state, t.to(state.device()), from_process);
  });
}

}  // namespace accelerate::data_internal
