#include "state/multi_process_logger.h"

#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "state/status_macros.h"

namespace accelerate::state {
namespace {

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kCritical:
      return "CRITICAL";
  }
  return "INFO";
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  if (upper == "WARN") return LogLevel::kWarning;
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError, LogLevel::kCritical}) {
    if (upper == LevelName(level)) return level;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("log level \"", text,
                   "\" is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"));
}

absl::StatusOr<MultiProcessLogger> MultiProcessLogger::Create(
    std::string name, const PartialState& state, std::optional<LogLevel> level,
    const Environment& env, std::ostream* out) {
  if (!level.has_value()) {
    level = LogLevel::kWarning;
    if (std::optional<std::string> text = env.Get("ACCELERATE_LOG_LEVEL")) {
      absl::StatusOr<LogLevel> parsed = ParseLogLevel(*text);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("ACCELERATE_LOG_LEVEL: ", parsed.status().message()));
      }
      level = *parsed;
    }
  }
  return MultiProcessLogger(std::move(name), state, *level, out);
}

void MultiProcessLogger::Write(LogLevel level,
                               absl::string_view message) const {
  // One write per line, so that lines of different processes do not mix.
  const std::string line =
      absl::StrCat(LevelName(level), ":", name_, ":", message, "\n");
  out_->write(line.data(), static_cast<std::streamsize>(line.size()));
  out_->flush();
}

absl::Status MultiProcessLogger::Log(LogLevel level, absl::string_view message,
                                     const LogOptions& options) const {
  if (level < level_) return absl::OkStatus();
  if (options.main_process_only) {
    if (state_->is_main_process()) Write(level, message);
    return absl::OkStatus();
  }
  if (!options.in_order) {
    Write(level, message);
    return absl::OkStatus();
  }
  for (int rank = 0; rank < state_->num_processes(); ++rank) {
    if (rank == state_->process_index()) Write(level, message);
    ACCELERATE_RETURN_IF_ERROR(state_->WaitForEveryone());
  }
  return absl::OkStatus();
}

}  // namespace accelerate::state
