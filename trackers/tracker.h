// The tracker interface, Accelerate's `GeneralTracker`: a run is started
// with a project name, its configuration stored once, values logged per
// step, and the run finished. TensorBoard, MLflow, JSON Lines and CSV
// implement it (`MakeTracker`); so can a user's own tracker, which the
// `Accelerator` then drives like the others.
//
// clang-format off
//   class PrintTracker : public Tracker {
//    public:
//     std::string name() const override { return "print"; }
//     absl::Status Start(const RunInfo& run) override { return absl::OkStatus(); }
//     absl::Status StoreInitConfiguration(const Config& config) override {
//       return absl::OkStatus();
//     }
//     absl::Status Log(const LogValues& values,
//                      std::optional<int64_t> step) override {
//       for (const auto& [key, value] : values) {
//         if (const double* scalar = value.scalar()) std::printf("%s=%g\n", key.c_str(), *scalar);
//       }
//       return absl::OkStatus();
//     }
//     absl::Status Finish() override { return absl::OkStatus(); }
//   };
//   void Example(Tracker& tracker) {
//     (void)tracker.Log({{"loss", 0.25}, {"epoch", 2}, {"note", "warm-up"}}, 10);
//   }
// clang-format on
//
// Thread safety: a tracker is driven by one thread at a time (the training
// loop); implementations may work in background threads of their own.
// Ownership: values are borrowed for the duration of a call.

#ifndef ACCELERATE_TRACKERS_TRACKER_H_
#define ACCELERATE_TRACKERS_TRACKER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::trackers {

// A histogram of a tensor's values, as TensorBoard draws them: bucket `i`
// counts `bucket_counts[i]` values between the previous limit (`min` for
// the first) and `bucket_limits[i]`. `HistogramOf` (histogram.h) computes
// one from a tensor.
struct Histogram {
  double min = 0;
  double max = 0;
  double num = 0;
  double sum = 0;
  double sum_squares = 0;
  std::vector<double> bucket_limits;
  std::vector<double> bucket_counts;
};

// One logged value: a scalar (any arithmetic type, held as a double), a
// text, or a histogram. Accelerate logs ints and floats as scalars and
// strings as text; trackers that cannot show a kind skip it (with a
// warning once per name).
class LogValue {
 public:
  template <typename T>
    requires std::is_arithmetic_v<T>
  LogValue(T scalar) : value_(static_cast<double>(scalar)) {}
  LogValue(std::string text) : value_(std::move(text)) {}
  LogValue(const char* text) : value_(std::string(text)) {}
  LogValue(Histogram histogram) : value_(std::move(histogram)) {}

  // The scalar, or null when this is not one.
  const double* scalar() const { return std::get_if<double>(&value_); }
  // The text, or null.
  const std::string* text() const { return std::get_if<std::string>(&value_); }
  // The histogram, or null.
  const Histogram* histogram() const {
    return std::get_if<Histogram>(&value_);
  }

 private:
  std::variant<double, std::string, Histogram> value_;
};

// The values of one `Log` call, in order: `{{"loss", 0.25}, {"lr", 1e-3}}`.
using LogValues = std::vector<std::pair<std::string, LogValue>>;

// One hyperparameter of the run's configuration: a bool, an integer, a
// floating-point number or a string (Accelerate's `store_init_configuration`
// types, `None` aside).
class ConfigValue {
 public:
  using Variant = std::variant<bool, int64_t, double, std::string>;

  ConfigValue(bool value) : value_(value) {}
  template <typename T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
  ConfigValue(T value) : value_(static_cast<int64_t>(value)) {}
  template <typename T>
    requires std::is_floating_point_v<T>
  ConfigValue(T value) : value_(static_cast<double>(value)) {}
  ConfigValue(std::string value) : value_(std::move(value)) {}
  ConfigValue(const char* value) : value_(std::string(value)) {}

  const Variant& value() const { return value_; }
  // The value as Python's `str` writes it, so that runs logged from
  // Python and from C++ compare: "True", "3", "0.001", "3.0", "1e-05",
  // the string itself. MLflow's params and the CSV tracker use it.
  std::string ToString() const;

 private:
  Variant value_;
};

// The run's configuration, in order: `{{"lr", 1e-3}, {"batch_size", 32}}`.
using Config = std::vector<std::pair<std::string, ConfigValue>>;

// What a tracker learns when its run starts.
struct RunInfo {
  // `InitTrackers`' project name: the TensorBoard subfolder, the MLflow
  // experiment (unless MLFLOW_EXPERIMENT_NAME), the JSONL/CSV file name.
  std::string project_name;
  // The project's logging folder (`ProjectConfiguration::logging_dir`);
  // empty when none was given. Trackers whose
  // `requires_logging_directory()` is true are refused without one.
  std::string logging_dir;
  // This process's index and the number of processes, for trackers that
  // run on every process.
  int process_index = 0;
  int num_processes = 1;
};

// Where a tracker named `tracker` writes: `<logging_dir>/<project_name>`
// (`logging_dir` alone without a project name). InvalidArgument naming the
// tracker when `run` has no logging folder.
[[nodiscard]] absl::StatusOr<std::string> RunFolder(const RunInfo& run,
                                                    absl::string_view tracker);

// Accelerate's `GeneralTracker`.
class Tracker {
 public:
  virtual ~Tracker() = default;

  // The name `log_with` and `GetTracker` use ("tensorboard").
  virtual std::string name() const = 0;
  // Whether the tracker writes under `RunInfo::logging_dir`.
  virtual bool requires_logging_directory() const { return false; }
  // Whether only the main process runs it (Accelerate's
  // `@on_main_process`). A tracker that returns false is started, fed and
  // finished on every process.
  virtual bool main_process_only() const { return true; }

  // Starts the run. Called once, before everything else.
  [[nodiscard]] virtual absl::Status Start(const RunInfo& run) = 0;
  // Stores the run's hyperparameters. Called at most once, after `Start`.
  [[nodiscard]] virtual absl::Status StoreInitConfiguration(
      const Config& config) = 0;
  // Logs `values` at `step` (none: the tracker's default, 0 for most).
  // Should return quickly: a tracker that talks to a server or a disk does
  // so in the background.
  [[nodiscard]] virtual absl::Status Log(const LogValues& values,
                                         std::optional<int64_t> step) = 0;
  // Ends the run: everything logged is written or sent when it returns OK;
  // an error says what was lost. Called once; nothing is called after.
  [[nodiscard]] virtual absl::Status Finish() = 0;
};

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_TRACKER_H_
