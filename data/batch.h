// A batch of any structure: a tensor, or a list or a string-keyed map of
// batches, nested to any depth, as the batches PyTorch's data loaders yield
// (`{"input_ids": ..., "attention_mask": ..., "labels": ...}`, `(x, y)`, or
// nests of both). Every tensor of a batch is batched along dimension 0 with
// the same number of samples; one sample is the same structure without that
// dimension.
//
// clang-format off
//   #include <ATen/ATen.h>
//   void Example() {
//     Batch batch = Batch::Named({
//         {"input_ids", at::zeros({4, 12}, at::kLong)},
//         {"attention_mask", at::ones({4, 12}, at::kLong)},
//         {"pair", Batch::Of({at::zeros({4}), at::ones({4, 3})})}});
//     const at::Tensor& ids = batch.tensor("input_ids");
//     const at::Tensor& second = batch["pair"].tensor(1);
//     absl::StatusOr<int64_t> samples = batch.BatchSize();  // 4
//     Batch half = Slice(batch, 0, 2);
//     // "{attention_mask: Long[4, 12], input_ids: Long[4, 12], pair: [Float[4], Float[4, 3]]}"
//     std::string text = batch.Describe();
//     (void)ids, (void)second, (void)samples, (void)half, (void)text;
//   }
// clang-format on
//
// Thread safety: a value type; concurrent reads are safe. Copies share their
// tensors (as copies of `at::Tensor` do).

#ifndef ACCELERATE_DATA_BATCH_H_
#define ACCELERATE_DATA_BATCH_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace accelerate::data {

class Batch {
 public:
  using Items = std::vector<Batch>;
  using Fields = std::map<std::string, Batch, std::less<>>;

  // An empty map, to fill with `Set`.
  Batch() : value_(Fields()) {}
  // A tensor.
  Batch(at::Tensor tensor) : value_(std::move(tensor)) {}  // NOLINT: implicit
  // A list (a tuple in Python).
  static Batch Of(Items items);
  // A map of named batches.
  static Batch Named(Fields fields);
  static Batch Named(std::initializer_list<std::pair<const std::string, Batch>>
                         fields);

  bool is_tensor() const { return value_.index() == 0; }
  bool is_list() const { return value_.index() == 1; }
  bool is_map() const { return value_.index() == 2; }

  // REQUIRES (CHECKed, naming what the batch is): the matching kind, and for
  // `operator[]` a key the map has or an index the list has.
  const at::Tensor& tensor() const;
  at::Tensor& tensor();
  const Items& items() const;
  const Fields& fields() const;
  const Batch& operator[](std::string_view key) const;
  const Batch& operator[](size_t index) const;
  const at::Tensor& tensor(std::string_view key) const {
    return (*this)[key].tensor();
  }
  const at::Tensor& tensor(size_t index) const {
    return (*this)[index].tensor();
  }
  bool contains(std::string_view key) const;

  // Adds (or replaces) a field of a map. REQUIRES: a map.
  Batch& Set(std::string key, Batch value);
  // Adds an item to a list. REQUIRES: a list.
  Batch& Append(Batch value);

  // Calls `fn(path, tensor)` for every tensor in order (list items in order,
  // map fields by key). Paths name the field: "input_ids", "pair.1", "" for
  // a lone tensor.
  void ForEachTensor(
      const std::function<void(const std::string& path,
                               const at::Tensor& tensor)>& fn) const;
  // The same structure with every tensor replaced by `fn(path, tensor)`; the
  // first error stops it.
  [[nodiscard]] absl::StatusOr<Batch> Map(
      const std::function<absl::StatusOr<at::Tensor>(
          const std::string& path, const at::Tensor& tensor)>& fn) const;
  // The same structure with every tensor replaced by `fn(tensor)`.
  Batch Transform(
      const std::function<at::Tensor(const at::Tensor& tensor)>& fn) const;

  // The number of samples: the common size of dimension 0.
  // `InvalidArgument` naming the fields when tensors disagree, when one has
  // no dimension 0, or when the batch holds no tensor.
  [[nodiscard]] absl::StatusOr<int64_t> BatchSize() const;

  // The structure with each tensor's dtype and shape, for messages:
  // "{input_ids: Long[4, 12], pair: [Float[4], Float[4, 3]]}".
  std::string Describe() const;
  // The structure with each tensor's dtype and its shape past dimension 0:
  // equal for batches that differ only in their number of samples.
  std::string Signature() const;

 private:
  std::variant<at::Tensor, Items, Fields> value_;
};

// Samples [begin, end) of every tensor (views, no copy).
Batch Slice(const Batch& batch, int64_t begin, int64_t end);

// The batches concatenated sample-wise. `InvalidArgument` naming the field
// when their structures differ.
[[nodiscard]] absl::StatusOr<Batch> Concat(const std::vector<Batch>& batches);

// Every tensor on `device`; to a GPU from pinned memory without waiting for
// the copy (the stream orders it before the kernels that read it).
Batch ToDevice(Batch batch, c10::Device device);

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_BATCH_H_
