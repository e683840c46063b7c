#include "data/collate.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

namespace accelerate::data {
namespace {

// Same kinds, keys and list lengths.
bool SameTree(const Batch& a, const Batch& b) {
  if (a.is_tensor() || b.is_tensor()) return a.is_tensor() && b.is_tensor();
  if (a.is_list() != b.is_list()) return false;
  if (a.is_list()) {
    if (a.items().size() != b.items().size()) return false;
    for (size_t i = 0; i < a.items().size(); ++i) {
      if (!SameTree(a.items()[i], b.items()[i])) return false;
    }
    return true;
  }
  if (a.fields().size() != b.fields().size()) return false;
  auto it = b.fields().begin();
  for (const auto& [key, value] : a.fields()) {
    if (key != it->first || !SameTree(value, it->second)) return false;
    ++it;
  }
  return true;
}

// The tensors of a batch, in order, by address (no reference counting: the
// samples outlive the collate).
using Column = std::vector<const at::Tensor*>;

void Leaves(const Batch& batch, Column& out) {
  if (batch.is_tensor()) {
    out.push_back(&batch.tensor());
  } else if (batch.is_list()) {
    for (const Batch& item : batch.items()) Leaves(item, out);
  } else {
    for (const auto& [key, value] : batch.fields()) Leaves(value, out);
  }
}

std::string ShapeText(const at::Tensor& t) {
  return absl::StrCat(c10::toString(t.scalar_type()), "[",
                      absl::StrJoin(t.sizes(), ", "), "]");
}

// The tensors of every sample, path by path (column c holds each sample's
// c-th tensor), after checking that the samples share sample 0's structure
// and dtypes; shapes are compared when `same_shapes`.
absl::StatusOr<std::vector<Column>> Columns(const std::vector<Batch>& samples,
                                            bool same_shapes) {
  if (samples.empty()) {
    return absl::InvalidArgumentError("no samples to collate");
  }
  Column first;
  Leaves(samples[0], first);
  std::vector<Column> columns(first.size());
  for (size_t c = 0; c < first.size(); ++c) {
    columns[c].reserve(samples.size());
    columns[c].push_back(first[c]);
  }
  Column leaves;
  for (size_t s = 1; s < samples.size(); ++s) {
    if (!SameTree(samples[s], samples[0])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot collate: sample ", s, " is ", samples[s].Describe(),
          ", sample 0 is ", samples[0].Describe()));
    }
    leaves.clear();
    Leaves(samples[s], leaves);
    for (size_t c = 0; c < leaves.size(); ++c) {
      const at::Tensor& t = *leaves[c];
      const at::Tensor& like = *first[c];
      // Padding pads dimension 0 only: the rest must agree too.
      const bool shapes_differ =
          same_shapes ? t.sizes() != like.sizes()
                      : t.dim() > 0 && t.sizes().slice(1) != like.sizes().slice(1);
      if (t.scalar_type() != like.scalar_type() || t.dim() != like.dim() ||
          shapes_differ) {
        std::vector<std::string> paths;
        samples[0].ForEachTensor([&](const std::string& path,
                                     const at::Tensor&) {
          paths.push_back(path.empty() ? "the tensor" : path);
        });
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot collate: ", paths[c], " of sample ", s, " is ",
            ShapeText(t), ", of sample 0 ", ShapeText(like)));
      }
      columns[c].push_back(&t);
    }
  }
  return columns;
}

// Whether `PlaceRow` copies every sample with a memcpy.
bool Memcpyable(const Column& column) {
  return std::all_of(column.begin(), column.end(), [&](const at::Tensor* t) {
    return t->is_cpu() && t->is_contiguous() &&
           t->scalar_type() == column[0]->scalar_type();
  });
}

// The padded output for `column`: on CPU only its padding is written here
// (the samples are copied in by `PlaceRow`), elsewhere all of it.
at::Tensor EmptyPadded(const std::vector<int64_t>& shape, double pad,
                       const Column& column, bool pad_first) {
  const at::ScalarType dtype = column[0]->scalar_type();
  const bool dispatchable = at::isIntegralType(dtype, /*includeBool=*/true) ||
                            dtype == at::kFloat || dtype == at::kDouble ||
                            dtype == at::kHalf || dtype == at::kBFloat16;
  if (!Memcpyable(column) || !dispatchable) {
    return at::full(shape, pad, column[0]->options());
  }
  at::Tensor out = at::empty(shape, column[0]->options());
  if (out.numel() == 0) return out;
  const int64_t longest = shape[1];
  const int64_t inner = longest == 0 ? 0 : out.stride(1);
  AT_DISPATCH_ALL_TYPES_AND3(
      at::kHalf, at::kBFloat16, at::kBool, out.scalar_type(), "pad", [&] {
        auto* data = out.data_ptr<scalar_t>();
        const auto value = static_cast<scalar_t>(pad);
        for (size_t s = 0; s < column.size(); ++s) {
          const int64_t n = column[s]->size(0);
          scalar_t* row = data + static_cast<int64_t>(s) * longest * inner;
          // The padding is before the data or after it.
          scalar_t* gap = pad_first ? row : row + n * inner;
          std::fill_n(gap, (longest - n) * inner, value);
        }
      });
  return out;
}

// Sample `s` of `out` (dimension 0 padded to `longest`) takes `t` at
// `begin`: a memcpy for contiguous CPU tensors, a copy_ otherwise.
void PlaceRow(at::Tensor& out, int64_t s, int64_t begin, const at::Tensor& t) {
  const int64_t n = t.size(0);
  if (n == 0) return;
  if (out.is_cpu() && t.is_cpu() && t.is_contiguous() &&
      t.scalar_type() == out.scalar_type()) {
    const int64_t row = out.stride(0) * out.element_size();
    const int64_t inner = t.numel() / n * out.element_size();
    auto* base = static_cast<char*>(out.data_ptr());
    std::memcpy(base + s * row + begin * inner, t.data_ptr(),
                static_cast<size_t>(n * inner));
    return;
  }
  out[s].slice(0, begin, begin + n).copy_(t);
}

// The column's tensors stacked along a new dimension 0.
at::Tensor StackColumn(const Column& column) {
  std::vector<at::Tensor> tensors;
  tensors.reserve(column.size());
  for (const at::Tensor* t : column) tensors.push_back(*t);
  return at::stack(tensors, 0);
}

// `samples[0]`'s structure holding the column results in order.
Batch Rebuild(const Batch& like, std::vector<at::Tensor> tensors) {
  size_t next = 0;
  return like.Transform([&](const at::Tensor&) { return tensors[next++]; });
}

}  // namespace

absl::StatusOr<Batch> Stack(const std::vector<Batch>& samples) {
  absl::StatusOr<std::vector<Column>> columns =
      Columns(samples, /*same_shapes=*/true);
  if (!columns.ok()) return columns.status();
  std::vector<at::Tensor> stacked;
  stacked.reserve(columns->size());
  for (const Column& column : *columns) stacked.push_back(StackColumn(column));
  return Rebuild(samples[0], std::move(stacked));
}

absl::StatusOr<Batch> PadAndStack(const std::vector<Batch>& samples,
                                  const PadCollateOptions& options) {
  if (options.pad_to_multiple_of < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pad_to_multiple_of ", options.pad_to_multiple_of,
                     ": must be at least 1"));
  }
  absl::StatusOr<std::vector<Column>> columns =
      Columns(samples, /*same_shapes=*/false);
  if (!columns.ok()) return columns.status();
  std::vector<std::string> paths;
  if (!options.pad_values.empty()) {
    samples[0].ForEachTensor([&](const std::string& path, const at::Tensor&) {
      paths.push_back(path);
    });
  }
  std::vector<at::Tensor> stacked;
  at::Tensor mask;
  for (size_t c = 0; c < columns->size(); ++c) {
    const Column& column = (*columns)[c];
    if (column[0]->dim() == 0) {
      stacked.push_back(StackColumn(column));
      continue;
    }
    int64_t longest = 0;
    for (const at::Tensor* t : column) longest = std::max(longest, t->size(0));
    const int64_t m = options.pad_to_multiple_of;
    longest = (longest + m - 1) / m * m;
    auto value = paths.empty() ? options.pad_values.end()
                               : options.pad_values.find(paths[c]);
    const double pad =
        value == options.pad_values.end() ? options.pad_value : value->second;
    std::vector<int64_t> shape = column[0]->sizes().vec();
    shape.insert(shape.begin(), static_cast<int64_t>(column.size()));
    shape[1] = longest;
    at::Tensor out = EmptyPadded(shape, pad, column, options.pad_first);
    const bool first_padded = !mask.defined();
    if (first_padded) {
      mask = at::empty({shape[0], longest}, at::kLong);
    }
    int64_t* mask_data = first_padded ? mask.data_ptr<int64_t>() : nullptr;
    for (size_t s = 0; s < column.size(); ++s) {
      const int64_t n = column[s]->size(0);
      const int64_t begin = options.pad_first ? longest - n : 0;
      PlaceRow(out, static_cast<int64_t>(s), begin, *column[s]);
      if (mask_data != nullptr) {
        int64_t* row = mask_data + static_cast<int64_t>(s) * longest;
        std::fill_n(row, longest, int64_t{0});
        std::fill_n(row + begin, n, int64_t{1});
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
