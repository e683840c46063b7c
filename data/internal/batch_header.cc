#include "data/internal/batch_header.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <ATen/ATen.h>

namespace accelerate::data_internal {
namespace {

// Grammar: tensor "T<dtype>:<d0>x<d1>...;", list "L<n>;" and its n items,
// map "M<n>;" and n times "<length>:<key>" with the field.
void Encode(const data::Batch& batch, std::string& out) {
  if (batch.is_tensor()) {
    const at::Tensor& t = batch.tensor();
    absl::StrAppend(&out, "T", static_cast<int>(t.scalar_type()), ":",
                    absl::StrJoin(t.sizes(), "x"), ";");
  } else if (batch.is_list()) {
    absl::StrAppend(&out, "L", batch.items().size(), ";");
    for (const data::Batch& item : batch.items()) Encode(item, out);
  } else {
    absl::StrAppend(&out, "M", batch.fields().size(), ";");
    for (const auto& [key, value] : batch.fields()) {
      absl::StrAppend(&out, key.size(), ":", key);
      Encode(value, out);
    }
  }
}

class Reader {
 public:
  explicit Reader(absl::string_view text) : text_(text), rest_(text) {}

  absl::StatusOr<data::Batch> Read() {
    if (rest_.empty()) return Bad();
    const char kind = rest_[0];
    rest_.remove_prefix(1);
    if (kind == 'T') {
      int dtype = 0;
      absl::string_view head = Until(':');
      if (!absl::SimpleAtoi(head, &dtype) || dtype < 0 ||
          dtype >= static_cast<int>(at::ScalarType::NumOptions)) {
        return Bad();
      }
      std::vector<int64_t> sizes;
      absl::string_view dims = Until(';');
      if (!dims.empty()) {
        for (absl::string_view d : absl::StrSplit(dims, 'x')) {
          int64_t v = 0;
          if (!absl::SimpleAtoi(d, &v) || v < 0) return Bad();
          sizes.push_back(v);
        }
      }
      if (failed_) return Bad();
      return data::Batch(at::empty(
          sizes, at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype))));
    }
    size_t n = 0;
    if ((kind != 'L' && kind != 'M') || !absl::SimpleAtoi(Until(';'), &n) ||
        failed_) {
      return Bad();
    }
    if (kind == 'L') {
      data::Batch::Items items;
      for (size_t i = 0; i < n; ++i) {
        absl::StatusOr<data::Batch> item = Read();
        if (!item.ok()) return item.status();
        items.push_back(*std::move(item));
      }
      return data::Batch::Of(std::move(items));
    }
    data::Batch::Fields fields;
    for (size_t i = 0; i < n; ++i) {
      size_t length = 0;
      if (!absl::SimpleAtoi(Until(':'), &length) || failed_ ||
          length > rest_.size()) {
        return Bad();
      }
      std::string key(rest_.substr(0, length));
      rest_.remove_prefix(length);
      absl::StatusOr<data::Batch> value = Read();
      if (!value.ok()) return value.status();
      fields.emplace(std::move(key), *std::move(value));
    }
    return data::Batch::Named(std::move(fields));
  }

  bool done() const { return rest_.empty(); }
  absl::Status Bad() const {
    return absl::DataLossError(
        absl::StrCat("bad batch header \"", text_, "\" at offset ",
                     text_.size() - rest_.size()));
  }

 private:
  absl::string_view Until(char end) {
    const size_t at = rest_.find(end);
    if (at == absl::string_view::npos) {
      failed_ = true;
      return {};
    }
    absl::string_view head = rest_.substr(0, at);
    rest_.remove_prefix(at + 1);
    return head;
  }

  absl::string_view text_;
  absl::string_view rest_;
  bool failed_ = false;
};

}  // namespace

std::string EncodeStructure(const data::Batch& batch) {
  std::string out;
  Encode(batch, out);
  return out;
}

absl::StatusOr<data::Batch> DecodeStructure(absl::string_view header) {
  Reader reader(header);
  absl::StatusOr<data::Batch> batch = reader.Read();
  if (batch.ok() && !reader.done()) return reader.Bad();
  return batch;
}

}  // namespace accelerate::data_internal
