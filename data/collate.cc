#include "data/collate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>

namespace accelerate::data {
namespace {

// The tensors of every sample, path by path (column c holds each sample's
// c-th tensor), after checking that the samples share sample 0's structure
// and dtypes; shapes are compared when `same_shapes`.
absl::StatusOr<std::vector<std::vector<at::Tensor>>> Columns(
    const std::vector<Batch>& samples, bool same_shapes) {
  if (samples.empty()) {
    return absl::InvalidArgumentError("no samples to collate");
  }
  std::vector<std::string> paths;
  std::vector<std::vector<at::Tensor>> columns;
  samples[0].ForEachTensor([&](const std::string& path, const at::Tensor& t) {
    paths.push_back(path);
    columns.push_back({t});
  });
  for (size_t s = 1; s < samples.size(); ++s) {
    std::vector<std::string> sample_paths;
    std::string problem;
    samples[s].ForEachTensor([&](const std::string& path, const at::Tensor& t) {
      const size_t c = sample_paths.size();
      sample_paths.push_back(path);
      if (!problem.empty() || c >= columns.size() || paths[c] != path) return;
      const at::Tensor& first = columns[c][0];
      const std::string name = path.empty() ? "the tensor" : path;
      if (t.scalar_type() != first.scalar_type() || t.dim() != first.dim() ||
          (same_shapes && t.sizes() != first.sizes())) {
        problem = absl::StrCat(
            name, " of sample ", s, " is ", c10::toString(t.scalar_type()),
            "[", absl::StrJoin(t.sizes(), ", "), "], of sample 0 ",
            c10::toString(first.scalar_type()), "[",
            absl::StrJoin(first.sizes(), ", "), "]");
        return;
      }
      columns[c].push_back(t);
    });
    if (problem.empty() && sample_paths != paths) {
      problem = absl::StrCat("sample ", s, " is ", samples[s].Describe(),
                             ", sample 0 is ", samples[0].Describe());
    }
    if (!problem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot collate: ", problem));
    }
  }
  return columns;
}

// `samples[0]`'s structure holding the column results in order.
Batch Rebuild(const Batch& like, std::vector<at::Tensor> tensors) {
  size_t next = 0;
  return like.Transform([&](const at::Tensor&) { return tensors[next++]; });
}

}  // namespace

absl::StatusOr<Batch> Stack(const std::vector<Batch>& samples) {
  absl::StatusOr<std::vector<std::vector<at::Tensor>>> columns =
      Columns(samples, /*same_shapes=*/true);
  if (!columns.ok()) return columns.status();
  std::vector<at::Tensor> stacked;
  stacked.reserve(columns->size());
  for (const std::vector<at::Tensor>& column : *columns) {
    stacked.push_back(at::stack(column, 0));
  }
  return Rebuild(samples[0], std::move(stacked));
}

absl::StatusOr<Batch> PadAndStack(const std::vector<Batch>& samples,
                                  const PadCollateOptions& options) {
  if (options.pad_to_multiple_of < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pad_to_multiple_of ", options.pad_to_multiple_of,
                     ": must be at least 1"));
  }
  absl::StatusOr<std::vector<std::vector<at::Tensor>>> columns =
      Columns(samples, /*same_shapes=*/false);
  if (!columns.ok()) return columns.status();
  std::vector<std::string> paths;
  samples[0].ForEachTensor(
      [&](const std::string& path, const at::Tensor&) { paths.push_back(path); });
  std::vector<at::Tensor> stacked;
  at::Tensor mask;
  for (size_t c = 0; c < columns->size(); ++c) {
    const std::vector<at::Tensor>& column = (*columns)[c];
    if (column[0].dim() == 0) {
      stacked.push_back(at::stack(column, 0));
      continue;
    }
    int64_t longest = 0;
    for (const at::Tensor& t : column) longest = std::max(longest, t.size(0));
    const int64_t m = options.pad_to_multiple_of;
    longest = (longest + m - 1) / m * m;
    auto value = options.pad_values.find(paths[c]);
    const double pad =
        value == options.pad_values.end() ? options.pad_value : value->second;
    std::vector<int64_t> shape = column[0].sizes().vec();
    shape.insert(shape.begin(), static_cast<int64_t>(column.size()));
    shape[1] = longest;
    at::Tensor out = at::full(shape, pad, column[0].options());
    const bool first_padded = !mask.defined();
    if (first_padded) {
      mask = at::zeros({shape[0], longest}, at::kLong);
    }
    for (size_t s = 0; s < column.size(); ++s) {
      const int64_t n = column[s].size(0);
      const int64_t begin = options.pad_first ? longest - n : 0;
      out[static_cast<int64_t>(s)].slice(0, begin, begin + n).copy_(column[s]);
      if (first_padded) {
        mask[static_cast<int64_t>(s)].slice(0, begin, begin + n).fill_(1);
      }
    }
    stacked.push_back(out);
  }
  Batch batch = Rebuild(samples[0], std::move(stacked));
  // A mask the samples bring themselves is kept.
  if (!options.attention_mask.empty() && mask.defined() &&
      !batch.contains(options.attention_mask)) {
    if (!batch.is_map()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention_mask \"", options.attention_mask,
          "\" needs samples that are maps; they are ", samples[0].Describe()));
    }
    batch.Set(options.attention_mask, mask);
  }
  return batch;
}

}  // namespace accelerate::data
