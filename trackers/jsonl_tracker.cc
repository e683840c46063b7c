#include "trackers/jsonl_tracker.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "state/logging.h"
#include "trackers/internal/text.h"

namespace accelerate::trackers {
namespace {

using trackers_internal::AppendCsvField;
using trackers_internal::AppendDouble;
using trackers_internal::AppendJsonNumber;
using trackers_internal::AppendJsonString;
using trackers_internal::BufferedFile;

double Now() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

// Writes `contents` to `path` whole, synced.
absl::Status WriteWhole(const std::string& path, const std::string& contents) {
  auto file = BufferedFile::Open(path);
  if (!file.ok()) return file.status();
  (void)(*file)->Append(contents);
  return (*file)->Close();
}

void AppendJsonValue(std::string& out, const ConfigValue& config_value) {
  struct Visitor {
    std::string& out;
    void operator()(bool value) { out += value ? "true" : "false"; }
    void operator()(int64_t value) { absl::StrAppend(&out, value); }
    void operator()(double value) { AppendJsonNumber(out, value); }
    void operator()(const std::string& value) { AppendJsonString(out, value); }
  };
  std::visit(Visitor{out}, config_value.value());
}

void AppendJsonArray(std::string& out, const std::vector<double>& values) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    AppendJsonNumber(out, values[i]);
  }
  out += ']';
}

// A run killed mid-write may have left its last line unfinished: the
// resumed run starts on a new line.
absl::Status EndTornLine(BufferedFile& file) {
  if (file.initial_size() == 0) return absl::OkStatus();
  const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::OkStatus();  // The appends will say what fails.
  char last = '\n';
  const ssize_t n = ::pread(fd, &last, 1,
                            static_cast<off_t>(file.initial_size()) - 1);
  ::close(fd);
  if (n == 1 && last != '\n') return file.Append("\n");
  return absl::OkStatus();
}

absl::Status NotStarted(const char* tracker) {
  return absl::FailedPreconditionError(
      absl::StrCat("the ", tracker, " run is not started"));
}

}  // namespace

absl::Status JsonlTracker::Start(const RunInfo& run) {
  if (file_ != nullptr) {
    return absl::FailedPreconditionError("the jsonl run already started");
  }
  auto folder = RunFolder(run, "jsonl");
  if (!folder.ok()) return folder.status();
  run_folder_ = *folder;
  process_index_ = run.process_index;
  const std::string name =
      options_.every_process
          ? absl::StrCat("metrics.", run.process_index, ".jsonl")
          : std::string("metrics.jsonl");
  auto file = BufferedFile::Open(absl::StrCat(run_folder_, "/", name),
                                 {.flush_interval = options_.flush_interval,
                                  .append = true});
  if (!file.ok()) return file.status();
  file_ = *std::move(file);
  return EndTornLine(*file_);
}

absl::Status JsonlTracker::StoreInitConfiguration(const Config& config) {
  if (file_ == nullptr) return NotStarted("jsonl");
  // One configuration file for the run, whoever writes metrics.
  if (process_index_ != 0) return absl::OkStatus();
  std::string json = "{";
  for (size_t i = 0; i < config.size(); ++i) {
    if (i > 0) json += ", ";
    AppendJsonString(json, config[i].first);
    json += ": ";
    AppendJsonValue(json, config[i].second);
  }
  json += "}\n";
  return WriteWhole(absl::StrCat(run_folder_, "/config.json"), json);
}

absl::Status JsonlTracker::Log(const LogValues& values,
                               std::optional<int64_t> step) {
  if (file_ == nullptr) return NotStarted("jsonl");
  line_.clear();
  line_ += "{\"step\": ";
  if (step.has_value()) {
    absl::StrAppend(&line_, *step);
  } else {
    line_ += "null";
  }
  line_ += ", \"time\": ";
  AppendDouble(line_, Now());
  for (const auto& [key, value] : values) {
    line_ += ", ";
    AppendJsonString(line_, key);
    line_ += ": ";
    if (const double* scalar = value.scalar()) {
      AppendJsonNumber(line_, *scalar);
    } else if (const std::string* text = value.text()) {
      AppendJsonString(line_, *text);
    } else if (const Histogram* histogram = value.histogram()) {
      line_ += "{\"min\": ";
      AppendJsonNumber(line_, histogram->min);
      line_ += ", \"max\": ";
      AppendJsonNumber(line_, histogram->max);
      line_ += ", \"num\": ";
      AppendJsonNumber(line_, histogram->num);
      line_ += ", \"sum\": ";
      AppendJsonNumber(line_, histogram->sum);
      line_ += ", \"sum_squares\": ";
      AppendJsonNumber(line_, histogram->sum_squares);
      line_ += ", \"bucket_limits\": ";
      AppendJsonArray(line_, histogram->bucket_limits);
      line_ += ", \"bucket_counts\": ";
      AppendJsonArray(line_, histogram->bucket_counts);
      line_ += '}';
    }
  }
  line_ += "}\n";
  return file_->Append(line_);
}

absl::Status JsonlTracker::Finish() {
  if (file_ == nullptr) return NotStarted("jsonl");
  return file_->Close();
}

absl::Status CsvTracker::Start(const RunInfo& run) {
  if (file_ != nullptr) {
    return absl::FailedPreconditionError("the csv run already started");
  }
  auto folder = RunFolder(run, "csv");
  if (!folder.ok()) return folder.status();
  run_folder_ = *folder;
  auto file = BufferedFile::Open(absl::StrCat(run_folder_, "/metrics.csv"),
                                 {.flush_interval = options_.flush_interval,
                                  .append = true});
  if (!file.ok()) return file.status();
  file_ = *std::move(file);
  if (file_->initial_size() > 0) return EndTornLine(*file_);  // Resumed.
  return file_->Append("step,time,name,value\n");
}

absl::Status CsvTracker::StoreInitConfiguration(const Config& config) {
  if (file_ == nullptr) return NotStarted("csv");
  std::string csv = "name,value\n";
  for (const auto& [key, value] : config) {
    AppendCsvField(csv, key);
    csv += ',';
    AppendCsvField(csv, value.ToString());
    csv += '\n';
  }
  return WriteWhole(absl::StrCat(run_folder_, "/config.csv"), csv);
}

absl::Status CsvTracker::Log(const LogValues& values,
                             std::optional<int64_t> step) {
  if (file_ == nullptr) return NotStarted("csv");
  rows_.clear();
  std::string prefix;
  if (step.has_value()) absl::StrAppend(&prefix, *step);
  prefix += ',';
  AppendDouble(prefix, Now());
  prefix += ',';
  for (const auto& [key, value] : values) {
    const double* scalar = value.scalar();
    const std::string* text = value.text();
    if (scalar == nullptr && text == nullptr) {
      if (warned_.insert(key).second) {
        ACCELERATE_LOG(WARNING) << "the csv tracker skips histogram \"" << key
                                << "\" (a CSV row holds one value)";
      }
      continue;
    }
    rows_ += prefix;
    AppendCsvField(rows_, key);
    rows_ += ',';
    if (scalar != nullptr) {
      AppendDouble(rows_, *scalar);
    } else {
      AppendCsvField(rows_, *text);
    }
    rows_ += '\n';
  }
  return file_->Append(rows_);
}

absl::Status CsvTracker::Finish() {
  if (file_ == nullptr) return NotStarted("csv");
  return file_->Close();
}

}  // namespace accelerate::trackers
