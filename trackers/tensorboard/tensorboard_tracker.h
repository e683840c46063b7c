// The TensorBoard tracker (Accelerate's `TensorBoardTracker`): one event
// file under `<logging_dir>/<project_name>/`; scalars as `simple_value`
// summaries, texts through the text plugin (tag `<name>/text_summary`, as
// PyTorch's `add_text`), histograms as `HistogramProto`; the configuration
// through the HParams plugin (a session-start summary with every
// hyperparameter, a session-end summary with the run's status on
// `Finish`), so that the run shows in TensorBoard's HParams table with
// the scalars it logged as metric columns, and as `hparams.yml` beside the
// event file. All values of one `Log` call are one event, written in the
// background.
//
// clang-format off
//   absl::Status Example() {
//     TensorBoardTracker tracker({.flush_interval = absl::Seconds(5)});
//     absl::Status started =
//         tracker.Start({.project_name = "demo", .logging_dir = "/tmp/runs"});
//     if (!started.ok()) return started;
//     (void)tracker.StoreInitConfiguration({{"lr", 1e-3}, {"batch_size", 32}});
//     (void)tracker.Log({{"loss", 0.25}}, /*step=*/1);
//     return tracker.Finish();
//   }
// clang-format on
//
// Thread safety: as `Tracker`. Ownership: owns its event file.

#ifndef ACCELERATE_TRACKERS_TENSORBOARD_TENSORBOARD_TRACKER_H_
#define ACCELERATE_TRACKERS_TENSORBOARD_TENSORBOARD_TRACKER_H_

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "trackers/tensorboard/event.pb.h"
#include "trackers/tensorboard/event_file_writer.h"
#include "trackers/tracker.h"

namespace accelerate::trackers {

struct TensorBoardOptions {
  // How long logged values may wait in memory. Default 2 s.
  absl::Duration flush_interval = absl::Seconds(2);
  // Appended to the event file's name. Default none.
  std::string filename_suffix;
};

class TensorBoardTracker final : public Tracker {
 public:
  explicit TensorBoardTracker(TensorBoardOptions options = {})
      : options_(std::move(options)) {}

  std::string name() const override { return "tensorboard"; }
  bool requires_logging_directory() const override { return true; }

  // Creates `<logging_dir>/<project_name>/` and the event file in it.
  absl::Status Start(const RunInfo& run) override;
  absl::Status StoreInitConfiguration(const Config& config) override;
  absl::Status Log(const LogValues& values,
                   std::optional<int64_t> step) override;
  // Writes the session's end (success), flushes and closes the file.
  absl::Status Finish() override;

  // The run's folder and the event file; empty before `Start`.
  const std::string& run_folder() const { return run_folder_; }
  std::string event_file() const {
    return writer_ ? writer_->path() : std::string();
  }
  // Writes what is queued (Accelerate flushes after every `log`).
  absl::Status Flush();

 private:
  TensorBoardOptions options_;
  std::string run_folder_;
  std::unique_ptr<EventFileWriter> writer_;
  bool has_session_ = false;
  // Reused for every `Log`.
  tensorboard::Event event_;
};

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_TENSORBOARD_TENSORBOARD_TRACKER_H_
