// Accelerate's `get_logger`: a named logger that knows the process it runs
// in. By default only the main process writes (`main_process_only`); with
// `in_order` every process writes, one after the other in rank order. The
// level comes from `ACCELERATE_LOG_LEVEL` when not given (WARNING, Python
// logging's default, otherwise). Lines look like Python logging's basic
// format: `INFO:train:epoch 1 done`.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const PartialState& state) {
//     ACCELERATE_ASSIGN_OR_RETURN(MultiProcessLogger logger,
//                                 MultiProcessLogger::Create("train", state));
//     ACCELERATE_RETURN_IF_ERROR(logger.Log(LogLevel::kInfo, "starting"));
//     return logger.Log(LogLevel::kWarning, "every rank, in order",
//                       {.main_process_only = false, .in_order = true});
//   }
// clang-format on
//
// Thread safety: one thread per logger. Ownership: borrows the state and
// the stream, which must outlive the logger.

#ifndef ACCELERATE_STATE_MULTI_PROCESS_LOGGER_H_
#define ACCELERATE_STATE_MULTI_PROCESS_LOGGER_H_

#include <iostream>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "state/environment.h"
#include "state/partial_state.h"

namespace accelerate::state {

enum class LogLevel { kDebug, kInfo, kWarning, kError, kCritical };

// DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL, in any case;
// `InvalidArgument` naming the value otherwise.
[[nodiscard]] absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);

struct LogOptions {
  // Only the main process writes. Default: true.
  bool main_process_only = true;
  // Every process writes in rank order, waiting for the others (a
  // collective; ignored when `main_process_only`). Default: false.
  bool in_order = false;
};

class MultiProcessLogger {
 public:
  // `level`: messages below it are dropped; from `env`'s
  // ACCELERATE_LOG_LEVEL when not given.
  [[nodiscard]] static absl::StatusOr<MultiProcessLogger> Create(
      std::string name, const PartialState& state,
      std::optional<LogLevel> level = std::nullopt,
      const Environment& env = ProcessEnvironment(),
      std::ostream* out = &std::cerr);

  // Writes `message` at `level` as `options` say. Errors: only from the
  // waits of `in_order`.
  [[nodiscard]] absl::Status Log(LogLevel level, absl::string_view message,
                                 const LogOptions& options = {}) const;

  LogLevel level() const { return level_; }

 private:
  MultiProcessLogger(std::string name, const PartialState& state,
                     LogLevel level, std::ostream* out)
      : name_(std::move(name)), state_(&state), level_(level), out_(out) {}
  void Write(LogLevel level, absl::string_view message) const;

  std::string name_;
  const PartialState* state_;
  LogLevel level_;
  std::ostream* out_;
};

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_MULTI_PROCESS_LOGGER_H_
