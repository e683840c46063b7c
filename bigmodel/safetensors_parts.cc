#include "bigmodel/safetensors_parts.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "re2/re2.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {
namespace {

namespace fs = std::filesystem;

constexpr char kPartKey[] = "part:";

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool DecodePlace(const std::string& text, int64_t* start,
                 std::vector<int64_t>* shape) {
  std::vector<std::string> halves = absl::StrSplit(text, ';');
  if (halves.size() != 2 || !absl::SimpleAtoi(halves[0], start)) return false;
  shape->clear();
  if (halves[1].empty()) return true;
  for (absl::string_view d : absl::StrSplit(halves[1], ',')) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(d, &value) || value < 0) return false;
    shape->push_back(value);
  }
  return true;
}

}  // namespace

std::string PartFileName(const std::string& stem, int process,
                          int num_processes) {
  return absl::StrFormat("%s.rank-%05d-of-%05d.safetensors", stem, process,
                         num_processes);
}

std::pair<std::string, std::string> PartMetadata(
    const std::string& name, int64_t start, const std::vector<int64_t>& shape) {
  return {absl::StrCat(kPartKey, name),
          absl::StrCat(start, ";", absl::StrJoin(shape, ","))};
}

absl::StatusOr<std::unique_ptr<SafetensorsParts>> SafetensorsParts::Open(
    const std::string& folder, const std::string& stem) {
  // Every `<stem>.rank-<p>-of-<n>.safetensors`, by process.
  const RE2 pattern(absl::StrCat(RE2::QuoteMeta(stem),
                                 R"(\.rank-(\d+)-of-(\d+)\.safetensors)"));
  std::map<int, std::string> paths;
  int count = -1;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename();
    int process = 0;
    int of = 0;
    if (!RE2::FullMatch(name, pattern, &process, &of)) continue;
    if (count >= 0 && of != count) {
      return absl::DataLossError(absl::StrCat(
          folder, ": sharded files of ", stem, " disagree on the number of "
          "processes (", count, " and ", of, ")"));
    }
    count = of;
    paths[process] = entry.path().string();
  }
  if (paths.empty()) {
    return absl::NotFoundError(
        absl::StrCat(folder, " holds no sharded files of ", stem));
  }
  for (int p = 0; p < count; ++p) {
    if (paths.count(p) == 0) {
      return absl::DataLossError(absl::StrCat(
          folder, ": ", PartFileName(stem, p, count), " is missing (",
          paths.size(), " of ", count, " files of ", stem, " present)"));
    }
  }
  std::unique_ptr<SafetensorsParts> state(new SafetensorsParts);
  for (int p = 0; p < count; ++p) {
    ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                                SafetensorsFile::Open(paths[p]));
    for (const auto& [key, value] : file->metadata()) {
      if (!absl::StartsWith(key, kPartKey)) continue;
      const std::string name = key.substr(sizeof(kPartKey) - 1);
      int64_t start = 0;
      std::vector<int64_t> shape;
      if (!DecodePlace(value, &start, &shape) || !file->Contains(name)) {
        return absl::DataLossError(absl::StrCat(
            paths[p], ": the place of ", name, " (\"", value,
            "\") is malformed or its tensor is missing"));
      }
      ACCELERATE_ASSIGN_OR_RETURN(at::Tensor values, file->Get(name));
      Entry& entry = state->tensors_[name];
      if (entry.pieces.empty()) {
        entry.shape = shape;
        entry.dtype = values.scalar_type();
      } else if (entry.shape != shape || entry.dtype != values.scalar_type()) {
        return absl::DataLossError(absl::StrCat(
            paths[p], ": ", name, " has another shape or dtype than in the "
            "other processes' files"));
      }
      if (start + values.numel() > Numel(shape)) {
        return absl::DataLossError(absl::StrCat(
            paths[p], ": the part of ", name, " runs past its end"));
      }
      entry.pieces.push_back({p, start, values.numel()});
    }
    state->files_.push_back(std::move(file));
  }
  return state;
}

std::vector<std::string> SafetensorsParts::names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<std::vector<int64_t>> SafetensorsParts::shape(
    const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor ", name));
  }
  return it->second.shape;
}

const std::map<std::string, std::string>& SafetensorsParts::metadata() const {
  return files_.front()->metadata();
}

absl::Status SafetensorsParts::Read(const std::string& name, int64_t begin,
                                at::Tensor dest) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("sharded checkpoint: no tensor ",
                                            name));
  }
  const Entry& entry = it->second;
  const int64_t end = begin + dest.numel();
  if (begin < 0 || end > Numel(entry.shape)) {
    return absl::OutOfRangeError(absl::StrCat(
        "sharded checkpoint: [", begin, ", ", end, ") is outside ", name,
        " (", Numel(entry.shape), " elements)"));
  }
  // Which elements some file held; the range must be covered.
  int64_t covered = 0;
  std::vector<std::pair<int64_t, int64_t>> spans;
  absl::Status copied = state::RunGuarded("reading a sharded tensor", [&] {
    at::Tensor flat = dest.view({-1});
    for (const Piece& piece : entry.pieces) {
      const int64_t low = std::max(begin, piece.start);
      const int64_t high = std::min(end, piece.start + piece.numel);
      if (low >= high) continue;
      bool seen = false;
      for (const auto& [a, b] : spans) seen = seen || (low >= a && high <= b);
      if (seen) continue;  // Another process held the same values.
      absl::StatusOr<at::Tensor> values = files_[piece.file]->Get(name);
      TORCH_CHECK(values.ok(), std::string(values.status().message()));
      flat.narrow(0, low - begin, high - low)
          .copy_(values->narrow(0, low - piece.start, high - low));
      spans.emplace_back(low, high);
      covered += high - low;
    }
  });
  ACCELERATE_RETURN_IF_ERROR(copied);
  if (covered < end - begin) {
    return absl::DataLossError(absl::StrCat(
        "sharded checkpoint: no file holds all of [", begin, ", ", end,
        ") of ", name));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> SafetensorsParts::ReadWhole(
    const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("sharded checkpoint: no tensor ",
                                            name));
  }
  at::Tensor whole = at::empty(it->second.shape, it->second.dtype);
  ACCELERATE_RETURN_IF_ERROR(Read(name, 0, whole));
  return whole;
}

}  // namespace accelerate::bigmodel
