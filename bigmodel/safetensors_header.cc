// Parsing, validating and writing safetensors headers (see
// safetensors_header.h).

#include "bigmodel/safetensors_header.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bigmodel/dtype.h"
#include "bigmodel/internal/json_string.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::bigmodel_internal::AppendJsonString;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;

absl::Status Damaged(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("safetensors: ", what));
}

// A JSON number that is a non-negative integer below 2^53 (exact in the
// double the JSON parser gives).
std::optional<uint64_t> AsIndex(const Value& value) {
  if (value.kind_case() != Value::kNumberValue) return std::nullopt;
  const double d = value.number_value();
  // Below 2^53: larger JSON integers arrive rounded and cannot be trusted.
  if (!(d >= 0) || d >= 9007199254740992.0 || std::floor(d) != d) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(d);
}

uint64_t ReadLength(absl::string_view bytes) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) {
    length = (length << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return length;
}

absl::StatusOr<TensorEntry> ParseEntry(const std::string& name,
                                       const Value& value) {
  if (value.kind_case() != Value::kStructValue) {
    return Damaged(absl::StrCat("tensor \"", name, "\" is not a JSON object"));
  }
  const auto& fields = value.struct_value().fields();
  TensorEntry entry;
  entry.name = name;
  auto dtype = fields.find("dtype");
  if (dtype == fields.end() ||
      dtype->second.kind_case() != Value::kStringValue) {
    return Damaged(absl::StrCat("tensor \"", name, "\" has no dtype string"));
  }
  entry.dtype = dtype->second.string_value();
  const Dtype* known = DtypeBySafetensorsName(entry.dtype);
  if (known == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: tensor \"", name, "\" has unknown dtype \"",
                     entry.dtype, "\""));
  }
  auto shape = fields.find("shape");
  if (shape == fields.end() || shape->second.kind_case() != Value::kListValue) {
    return Damaged(absl::StrCat("tensor \"", name, "\" has no shape list"));
  }
  // Element count with overflow checks.
  unsigned __int128 elements = 1;
  for (const Value& dim : shape->second.list_value().values()) {
    std::optional<uint64_t> d = AsIndex(dim);
    if (!d.has_value()) {
      return Damaged(absl::StrCat("tensor \"", name,
                                  "\" has a shape entry that is not a "
                                  "non-negative integer"));
    }
    entry.shape.push_back(static_cast<int64_t>(*d));
    elements *= *d;
    if (elements > (static_cast<unsigned __int128>(1) << 62)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors: tensor \"", name, "\" has an impossibly large shape"));
    }
  }
  auto offsets = fields.find("data_offsets");
  if (offsets == fields.end() ||
      offsets->second.kind_case() != Value::kListValue ||
      offsets->second.list_value().values_size() != 2) {
    return Damaged(
        absl::StrCat("tensor \"", name, "\" has no [begin, end] data_offsets"));
  }
  std::optional<uint64_t> begin =
      AsIndex(offsets->second.list_value().values(0));
  std::optional<uint64_t> end = AsIndex(offsets->second.list_value().values(1));
  if (!begin.has_value() || !end.has_value() || *end < *begin) {
    return Damaged(absl::StrCat("tensor \"", name,
                                "\" has data_offsets that are not two "
                                "ascending non-negative integers"));
  }
  entry.begin = *begin;
  entry.end = *end;
  const unsigned __int128 bytes =
      elements * static_cast<unsigned>(known->bytes);
  if (bytes != *end - *begin) {
    return Damaged(absl::StrCat(
        "tensor \"", name, "\": shape [", absl::StrJoin(entry.shape, ", "),
        "] of ", entry.dtype, " needs ", static_cast<uint64_t>(bytes),
        " bytes, but data_offsets hold ", *end - *begin));
  }
  for (const auto& [key, unused] : fields) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Damaged(absl::StrCat("tensor \"", name, "\" has unknown field \"",
                                  key, "\""));
    }
  }
  return entry;
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsPrefix(
    absl::string_view prefix, uint64_t file_size) {
  if (file_size < 8 || prefix.size() < 8) {
    return Damaged(absl::StrCat("a file of ", file_size,
                                " bytes is shorter than the 8-byte header "
                                "length"));
  }
  const uint64_t length = ReadLength(prefix);
  if (length > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: header length ", length,
                     " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  if (length > file_size - 8) {
    return Damaged(absl::StrCat("header length ", length,
                                " runs past the end of the ", file_size,
                                "-byte file"));
  }
  if (prefix.size() < 8 + length) {
    return absl::InvalidArgumentError(
        "safetensors: the prefix given does not hold the whole header");
  }
  absl::string_view json = prefix.substr(8, length);
  // Writers pad with spaces; the JSON itself must be an object.
  while (!json.empty() && json.back() == ' ') json.remove_suffix(1);
  if (json.empty() || json.front() != '{') {
    return Damaged("the header is not a JSON object");
  }
  Struct root;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(std::string(json), &root);
  if (!parsed.ok()) {
    return Damaged(absl::StrCat("the header is not valid JSON: ",
                                std::string(parsed.message())));
  }
  SafetensorsHeader header;
  header.data_start = 8 + length;
  const uint64_t buffer = file_size - header.data_start;
  for (const auto& [name, value] : root.fields()) {
    if (name == "__metadata__") {
      if (value.kind_case() != Value::kStructValue) {
        return Damaged("__metadata__ is not a JSON object");
      }
      for (const auto& [key, item] : value.struct_value().fields()) {
        if (item.kind_case() != Value::kStringValue) {
          return Damaged(absl::StrCat("__metadata__ value of \"", key,
                                      "\" is not a string"));
        }
        header.metadata[key] = item.string_value();
      }
      continue;
    }
    ACCELERATE_ASSIGN_OR_RETURN(TensorEntry entry, ParseEntry(name, value));
    header.tensors.push_back(std::move(entry));
  }
  // The tensors must tile the byte buffer: in order, without gaps or
  // overlaps, ending at the end of the file.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  for (const TensorEntry& entry : header.tensors) {
    if (entry.begin != expected) {
      return Damaged(absl::StrCat(
          "tensor \"", entry.name, "\" starts at byte ", entry.begin,
          entry.begin < expected ? ", overlapping the tensor before it"
                                 : ", leaving a gap after the tensor before it",
          " (expected ", expected, ")"));
    }
    expected = entry.end;
  }
  if (expected != buffer) {
    return Damaged(absl::StrCat(
        "the tensors hold ", expected, " bytes but the file has ", buffer,
        " after its header", expected > buffer ? " (truncated?)" : ""));
  }
  return header;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::string_view file) {
  return ParseSafetensorsPrefix(file, file.size());
}

absl::StatusOr<std::string> SerializeSafetensorsHeader(
    std::vector<TensorEntry>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json.append("\"__metadata__\":{");
    bool first_item = true;
    for (const auto& [key, value] : metadata) {
      if (!first_item) json.push_back(',');
      first_item = false;
      AppendJsonString(&json, key);
      json.push_back(':');
      AppendJsonString(&json, value);
    }
    json.push_back('}');
    first = false;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (TensorEntry& entry : tensors) {
    if (entry.name == "__metadata__" || !names.insert(entry.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor name \"", entry.name,
                       "\" is reserved or used twice"));
    }
    const Dtype* dtype = DtypeBySafetensorsName(entry.dtype);
    if (dtype == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", entry.name,
                       "\" has unknown dtype \"", entry.dtype, "\""));
    }
    uint64_t bytes = static_cast<uint64_t>(dtype->bytes);
    for (int64_t d : entry.shape) bytes *= static_cast<uint64_t>(d);
    if (entry.end - entry.begin != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors: tensor \"", entry.name, "\" has ",
          entry.end - entry.begin, " bytes for ", bytes, " expected"));
    }
    entry.begin = offset;
    entry.end = offset + bytes;
    offset = entry.end;
    if (!first) json.push_back(',');
    first = false;
    AppendJsonString(&json, entry.name);
    absl::StrAppend(&json, ":{\"dtype\":\"", entry.dtype, "\",\"shape\":[",
                    absl::StrJoin(entry.shape, ","), "],\"data_offsets\":[",
                    entry.begin, ",", entry.end, "]}");
  }
  json.push_back('}');
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(length & 0xff);
    length >>= 8;
  }
  out.append(json);
  return out;
}

}  // namespace accelerate::bigmodel
