#include "data/internal/broadcast_batch.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/status_macros.h"

namespace accelerate::data_internal {
namespace {

std::string DescribeShape(const at::Tensor& t) {
  return absl::StrCat(static_cast<int>(t.scalar_type()), ":",
                      absl::StrJoin(t.sizes(), "x"));
}

absl::StatusOr<at::Tensor> EmptyFromShape(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  int dtype = 0;
  const auto bad = [&] {
    return absl::DataLossError(absl::StrCat("bad batch header \"", text, "\""));
  };
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &dtype) || dtype < 0 ||
      dtype >= static_cast<int>(at::ScalarType::NumOptions)) {
    return bad();
  }
  std::vector<int64_t> sizes;
  for (absl::string_view s : absl::StrSplit(parts[1], 'x', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < 0) return bad();
    sizes.push_back(v);
  }
  return at::empty(sizes, at::TensorOptions().dtype(
                              static_cast<at::ScalarType>(dtype)));
}

}  // namespace

absl::StatusOr<data::Batch> BroadcastBatch(const state::PartialState& state,
                                           data::Batch batch,
                                           std::string* extra) {
  std::string header;
  if (state.is_main_process()) {
    header = absl::StrCat(DescribeShape(batch.data), ";",
                          DescribeShape(batch.target), ";", *extra);
  }
  ACCELERATE_ASSIGN_OR_RETURN(header, state::BroadcastObject(state, header));
  std::vector<std::string> parts =
      absl::StrSplit(header, absl::MaxSplits(';', 2));
  if (parts.size() != 3) {
    return absl::DataLossError(absl::StrCat("bad batch header \"", header, "\""));
  }
  *extra = parts[2];
  if (!state.is_main_process()) {
    ACCELERATE_ASSIGN_OR_RETURN(batch.data, EmptyFromShape(parts[0]));
    ACCELERATE_ASSIGN_OR_RETURN(batch.target, EmptyFromShape(parts[1]));
  }
  // On the state's device: NCCL moves only GPU tensors.
  batch.data = batch.data.to(state.device());
  batch.target = batch.target.to(state.device());
  ACCELERATE_ASSIGN_OR_RETURN(batch.data, state::Broadcast(state, batch.data));
  ACCELERATE_ASSIGN_OR_RETURN(batch.target, state::Broadcast(state, batch.target));
  return batch;
}

}  // namespace accelerate::data_internal
