#include "data/batch.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include "state/logging.h"

namespace accelerate::data {
namespace {

std::string Join(const std::string& path, std::string_view part) {
  std::string joined = path;
  if (!joined.empty()) joined += '.';
  joined += part;
  return joined;
}

std::string ShapeText(const at::Tensor& t, int64_t from_dim) {
  const auto sizes = t.sizes();
  std::vector<int64_t> kept(sizes.begin() + std::min<int64_t>(from_dim, t.dim()),
                            sizes.end());
  return absl::StrCat(c10::toString(t.scalar_type()), "[",
                      absl::StrJoin(kept, ", "), "]");
}

std::string Kind(const Batch& batch) {
  if (batch.is_tensor()) return "a tensor";
  if (batch.is_list()) return absl::StrCat("a list of ", batch.items().size());
  return "a map";
}

void Walk(const Batch& batch, const std::string& path,
          const std::function<void(const std::string&, const at::Tensor&)>& fn) {
  if (batch.is_tensor()) {
    fn(path, batch.tensor());
  } else if (batch.is_list()) {
    for (size_t i = 0; i < batch.items().size(); ++i) {
      Walk(batch.items()[i], Join(path, std::to_string(i)), fn);
    }
  } else {
    for (const auto& [key, value] : batch.fields()) {
      Walk(value, Join(path, key), fn);
    }
  }
}

absl::StatusOr<Batch> MapAt(
    const Batch& batch, const std::string& path,
    const std::function<absl::StatusOr<at::Tensor>(const std::string&,
                                                   const at::Tensor&)>& fn) {
  if (batch.is_tensor()) {
    absl::StatusOr<at::Tensor> mapped = fn(path, batch.tensor());
    if (!mapped.ok()) return mapped.status();
    return Batch(*std::move(mapped));
  }
  if (batch.is_list()) {
    Batch::Items items;
    items.reserve(batch.items().size());
    for (size_t i = 0; i < batch.items().size(); ++i) {
      absl::StatusOr<Batch> item =
          MapAt(batch.items()[i], Join(path, std::to_string(i)), fn);
      if (!item.ok()) return item.status();
      items.push_back(*std::move(item));
    }
    return Batch::Of(std::move(items));
  }
  Batch::Fields fields;
  for (const auto& [key, value] : batch.fields()) {
    absl::StatusOr<Batch> field = MapAt(value, Join(path, key), fn);
    if (!field.ok()) return field.status();
    fields.emplace(key, *std::move(field));
  }
  return Batch::Named(std::move(fields));
}

// Transform without building paths (the hot path of slicing and moving).
Batch TransformTree(const Batch& batch,
                    const std::function<at::Tensor(const at::Tensor&)>& fn) {
  if (batch.is_tensor()) return Batch(fn(batch.tensor()));
  if (batch.is_list()) {
    Batch::Items items;
    items.reserve(batch.items().size());
    for (const Batch& item : batch.items()) {
      items.push_back(TransformTree(item, fn));
    }
    return Batch::Of(std::move(items));
  }
  Batch::Fields fields;
  for (const auto& [key, value] : batch.fields()) {
    fields.emplace_hint(fields.end(), key, TransformTree(value, fn));
  }
  return Batch::Named(std::move(fields));
}

// Calls `fn` on every tensor, in order, without paths; stops when it
// returns false.
bool VisitTensors(const Batch& batch,
                  const std::function<bool(const at::Tensor&)>& fn) {
  if (batch.is_tensor()) return fn(batch.tensor());
  if (batch.is_list()) {
    for (const Batch& item : batch.items()) {
      if (!VisitTensors(item, fn)) return false;
    }
    return true;
  }
  for (const auto& [key, value] : batch.fields()) {
    if (!VisitTensors(value, fn)) return false;
  }
  return true;
}

std::string DescribeFrom(const Batch& batch, int64_t from_dim) {
  if (batch.is_tensor()) return ShapeText(batch.tensor(), from_dim);
  std::vector<std::string> parts;
  if (batch.is_list()) {
    for (const Batch& item : batch.items()) {
      parts.push_back(DescribeFrom(item, from_dim));
    }
    return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
  }
  for (const auto& [key, value] : batch.fields()) {
    parts.push_back(absl::StrCat(key, ": ", DescribeFrom(value, from_dim)));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

}  // namespace

Batch Batch::Of(Items items) {
  Batch batch;
  batch.value_ = std::move(items);
  return batch;
}

Batch Batch::Named(Fields fields) {
  Batch batch;
  batch.value_ = std::move(fields);
  return batch;
}

Batch Batch::Named(
    std::initializer_list<std::pair<const std::string, Batch>> fields) {
  return Named(Fields(fields.begin(), fields.end()));
}

const at::Tensor& Batch::tensor() const {
  ACCELERATE_CHECK(is_tensor()) << "the batch is " << Kind(*this)
                                << ", not a tensor: " << Describe();
  return std::get<at::Tensor>(value_);
}

at::Tensor& Batch::tensor() {
  ACCELERATE_CHECK(is_tensor()) << "the batch is " << Kind(*this)
                                << ", not a tensor: " << Describe();
  return std::get<at::Tensor>(value_);
}

const Batch::Items& Batch::items() const {
  ACCELERATE_CHECK(is_list()) << "the batch is " << Kind(*this)
                              << ", not a list: " << Describe();
  return std::get<Items>(value_);
}

const Batch::Fields& Batch::fields() const {
  ACCELERATE_CHECK(is_map()) << "the batch is " << Kind(*this)
                             << ", not a map: " << Describe();
  return std::get<Fields>(value_);
}

const Batch& Batch::operator[](std::string_view key) const {
  const Fields& all = fields();
  auto it = all.find(key);
  if (it == all.end()) {
    std::vector<std::string> keys;
    for (const auto& [name, value] : all) keys.push_back(name);
    ACCELERATE_CHECK(false) << "the batch has no field \"" << key
                            << "\"; its fields: " << absl::StrJoin(keys, ", ");
  }
  return it->second;
}

const Batch& Batch::operator[](size_t index) const {
  const Items& all = items();
  ACCELERATE_CHECK(index < all.size())
      << "item " << index << " of a list of " << all.size();
  return all[index];
}

bool Batch::contains(std::string_view key) const {
  return is_map() && fields().find(key) != fields().end();
}

Batch& Batch::Set(std::string key, Batch value) {
  ACCELERATE_CHECK(is_map()) << "Set on " << Kind(*this);
  std::get<Fields>(value_).insert_or_assign(std::move(key), std::move(value));
  return *this;
}

Batch& Batch::Append(Batch value) {
  ACCELERATE_CHECK(is_list()) << "Append on " << Kind(*this);
  std::get<Items>(value_).push_back(std::move(value));
  return *this;
}

void Batch::ForEachTensor(
    const std::function<void(const std::string&, const at::Tensor&)>& fn)
    const {
  Walk(*this, "", fn);
}

absl::StatusOr<Batch> Batch::Map(
    const std::function<absl::StatusOr<at::Tensor>(const std::string&,
                                                   const at::Tensor&)>& fn)
    const {
  return MapAt(*this, "", fn);
}

Batch Batch::Transform(
    const std::function<at::Tensor(const at::Tensor&)>& fn) const {
  return TransformTree(*this, fn);
}

absl::StatusOr<int64_t> Batch::BatchSize() const {
  // Checked without a string first; the message only on trouble.
  int64_t first = -1;
  const bool uniform = VisitTensors(*this, [&](const at::Tensor& t) {
    if (t.dim() == 0) return false;
    if (first == -1) first = t.size(0);
    return t.size(0) == first;
  });
  if (uniform && first >= 0) return first;
  std::vector<std::string> sizes;
  int64_t common = -1;
  bool agree = true;
  ForEachTensor([&](const std::string& path, const at::Tensor& t) {
    const std::string name = path.empty() ? "the tensor" : path;
    if (t.dim() == 0) {
      agree = false;
      sizes.push_back(absl::StrCat(name, " has no batch dimension"));
      return;
    }
    sizes.push_back(absl::StrCat(name, " has ", t.size(0)));
    if (common == -1) common = t.size(0);
    if (t.size(0) != common) agree = false;
  });
  if (sizes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the batch holds no tensor: ", Describe()));
  }
  if (!agree) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch's tensors disagree on the number of samples (dimension "
        "0): ",
        absl::StrJoin(sizes, ", ")));
  }
  return common;
}

std::string Batch::Describe() const { return DescribeFrom(*this, 0); }

std::string Batch::Signature() const { return DescribeFrom(*this, 1); }

Batch Slice(const Batch& batch, int64_t begin, int64_t end) {
  return batch.Transform(
      [&](const at::Tensor& t) { return t.slice(0, begin, end); });
}

absl::StatusOr<Batch> Concat(const std::vector<Batch>& batches) {
  if (batches.empty()) {
    return absl::InvalidArgumentError("nothing to concatenate");
  }
  const std::string signature = batches[0].Signature();
  for (size_t i = 1; i < batches.size(); ++i) {
    if (batches[i].Signature() != signature) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch ", i, " has the structure ", batches[i].Describe(),
          ", batch 0 has ", batches[0].Describe()));
    }
  }
  if (batches.size() == 1) return batches[0];
  // Gather the tensors path by path: every batch walks in the same order.
  std::vector<std::vector<at::Tensor>> columns;
  for (const Batch& batch : batches) {
    size_t column = 0;
    batch.ForEachTensor([&](const std::string&, const at::Tensor& t) {
      if (columns.size() <= column) columns.emplace_back();
      columns[column++].push_back(t);
    });
  }
  size_t column = 0;
  return batches[0].Map([&](const std::string&, const at::Tensor&)
                            -> absl::StatusOr<at::Tensor> {
    return at::cat(columns[column++], 0);
  });
}

Batch ToDevice(Batch batch, c10::Device device) {
  const bool there = VisitTensors(
      batch, [&](const at::Tensor& t) { return t.device() == device; });
  if (there) return batch;
  return batch.Transform([&](const at::Tensor& t) {
    if (t.device() == device) return t;
    if (device.is_cuda() && t.device().is_cpu()) {
      return t.pin_memory().to(device, /*non_blocking=*/true);
    }
    // Only host-to-device copies may return before they are done.
    return t.to(device, /*non_blocking=*/!device.is_cpu());
  });
}

}  // namespace accelerate::data
