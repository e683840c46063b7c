#include "data/batch_collectives.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <ATen/ATen.h>
#include "data/internal/broadcast_batch.h"
#include "state/status_macros.h"

namespace accelerate::data {
namespace {

// One line per tensor: "path=Dtype/dims" and, with sizes, the shape.
std::string Fingerprint(const Batch& batch, bool compare_sizes) {
  std::vector<std::string> lines;
  batch.ForEachTensor([&](const std::string& path, const at::Tensor& t) {
    std::string line = absl::StrCat(path.empty() ? "(tensor)" : path, "=",
                                     c10::toString(t.scalar_type()), "/",
                                     t.dim(), "d");
    if (compare_sizes) {
      absl::StrAppend(&line, "[", absl::StrJoin(t.sizes(), ", "), "]");
    }
    lines.push_back(std::move(line));
  });
  return absl::StrJoin(lines, "\n");
}

}  // namespace

absl::Status CheckSameStructure(const state::PartialState& state,
                                const Batch& batch, bool compare_sizes) {
  if (state.num_processes() == 1) return absl::OkStatus();
  ACCELERATE_ASSIGN_OR_RETURN(
      std::vector<std::string> all,
      state::GatherObject(state, Fingerprint(batch, compare_sizes)));
  const std::vector<std::string> first = absl::StrSplit(all[0], '\n');
  for (size_t p = 1; p < all.size(); ++p) {
    if (all[p] == all[0]) continue;
    const std::vector<std::string> mine = absl::StrSplit(all[p], '\n');
    for (size_t i = 0; i < std::max(first.size(), mine.size()); ++i) {
      const std::string a = i < first.size() ? first[i] : "(nothing)";
      const std::string b = i < mine.size() ? mine[i] : "(nothing)";
      if (a == b) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          "the batch differs between processes: process ", p, " has ", b,
          " where process 0 has ", a));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Batch> Gather(const state::PartialState& state,
                             const Batch& batch) {
  ACCELERATE_RETURN_IF_ERROR(
      CheckSameStructure(state, batch, /*compare_sizes=*/true));
  return batch.Map([&](const std::string&, const at::Tensor& t) {
    return state::GatherTensor(state, t);
  });
}

absl::StatusOr<Batch> Broadcast(const state::PartialState& state,
                                const Batch& batch, int from_process) {
  if (from_process < 0 || from_process >= state.num_processes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("broadcast from process ", from_process, " of ",
                     state.num_processes()));
  }
  std::string extra;
  return data_internal::BroadcastBatch(state, batch, &extra, from_process);
}

absl::StatusOr<Batch> PadAcrossProcesses(const state::PartialState& state,
                                         const Batch& batch,
                                         const state::PadOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(
      CheckSameStructure(state, batch, /*compare_sizes=*/false));
  return batch.Map([&](const std::string&, const at::Tensor& t) {
    return state::PadTensorAcrossProcesses(state, t, options);
  });
}

}  // namespace accelerate::data
