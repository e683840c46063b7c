// The JSON Lines and CSV trackers, for scripts and spreadsheets: each
// writes under `<logging_dir>/<project_name>/`, in the background (as the
// event files: on a timer, on `Finish`, on SIGTERM/SIGINT/SIGHUP).
//
// JSON Lines: `metrics.jsonl`, one object per `Log` call:
//   {"step": 3, "time": 1764560000.25, "loss": 0.25, "note": "text"}
// (`step` null when none was given, `time` seconds since the epoch;
// histograms as objects with min, max, num, sum, sum_squares,
// bucket_limits, bucket_counts; NaN and infinities as Python's `json`
// writes them: NaN, Infinity, -Infinity). The configuration goes to
// `config.json` (by process 0). Every process can write its own file
// (`metrics.<process>.jsonl`) when asked.
//
// CSV: `metrics.csv` in long form, one row per value, so that names that
// appear late (evaluation metrics) need no new column:
//   step,time,name,value
// (texts quoted as RFC 4180 wants; histograms skipped with a warning). The
// configuration goes to `config.csv` (name,value).
//
// clang-format off
//   absl::Status Example() {
//     JsonlTracker tracker;
//     absl::Status started =
//         tracker.Start({.project_name = "demo", .logging_dir = "/tmp/runs"});
//     if (!started.ok()) return started;
//     (void)tracker.Log({{"loss", 0.25}}, 1);
//     return tracker.Finish();
//   }
// clang-format on
//
// Thread safety: as `Tracker`. Ownership: each owns its files.

#ifndef ACCELERATE_TRACKERS_JSONL_TRACKER_H_
#define ACCELERATE_TRACKERS_JSONL_TRACKER_H_

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "trackers/internal/buffered_file.h"
#include "trackers/tracker.h"

namespace accelerate::trackers {

struct TextTrackerOptions {
  // How long logged lines may wait in memory. Default 2 s.
  absl::Duration flush_interval = absl::Seconds(2);
  // JSON Lines only: every process writes `metrics.<process>.jsonl`
  // instead of the main process alone writing `metrics.jsonl`. Default
  // false.
  bool every_process = false;
};

class JsonlTracker final : public Tracker {
 public:
  explicit JsonlTracker(TextTrackerOptions options = {})
      : options_(options) {}

  std::string name() const override { return "jsonl"; }
  bool requires_logging_directory() const override { return true; }
  bool main_process_only() const override { return !options_.every_process; }

  absl::Status Start(const RunInfo& run) override;
  absl::Status StoreInitConfiguration(const Config& config) override;
  absl::Status Log(const LogValues& values,
                   std::optional<int64_t> step) override;
  absl::Status Finish() override;

  // The metrics file; empty before `Start`.
  std::string path() const { return file_ ? file_->path() : std::string(); }

 private:
  TextTrackerOptions options_;
  std::string run_folder_;
  int process_index_ = 0;
  std::unique_ptr<trackers_internal::BufferedFile> file_;
  std::string line_;  // Reused for every `Log`.
};

class CsvTracker final : public Tracker {
 public:
  explicit CsvTracker(TextTrackerOptions options = {}) : options_(options) {}

  std::string name() const override { return "csv"; }
  bool requires_logging_directory() const override { return true; }

  absl::Status Start(const RunInfo& run) override;
  absl::Status StoreInitConfiguration(const Config& config) override;
  absl::Status Log(const LogValues& values,
                   std::optional<int64_t> step) override;
  absl::Status Finish() override;

  // The metrics file; empty before `Start`.
  std::string path() const { return file_ ? file_->path() : std::string(); }

 private:
  TextTrackerOptions options_;
  std::string run_folder_;
  std::unique_ptr<trackers_internal::BufferedFile> file_;
  std::set<std::string> warned_;
  std::string rows_;  // Reused for every `Log`.
};

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_JSONL_TRACKER_H_
