// Minimal logging and CHECK macros. Abseil 20220623 has no `absl/log`, so the
// project keeps this one small copy.
//
// clang-format off
//   void Example(int rank, int world_size, const char* backend) {
//     ACCELERATE_CHECK(rank < world_size) << "rank " << rank;
//     ACCELERATE_LOG(WARNING) << "falling back to " << backend;
//   }
// clang-format on
//
// A failed CHECK is a bug in the caller (a violated precondition): it prints
// the condition, the location and the streamed message, then aborts. Run-time
// failures return `absl::Status` instead.
//
// Thread safety: each message is written to stderr with one write call.

#ifndef ACCELERATE_STATE_LOGGING_H_
#define ACCELERATE_STATE_LOGGING_H_

#include <sstream>

namespace accelerate::state_internal {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

// Collects one message and emits it on destruction; `kFatal` aborts after.
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();

  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Turns the streamed expression into `void` so it fits in a conditional.
struct LogMessageVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace accelerate::state_internal

#define ACCELERATE_LOG_SEVERITY_INFO \
  ::accelerate::state_internal::LogSeverity::kInfo
#define ACCELERATE_LOG_SEVERITY_WARNING \
  ::accelerate::state_internal::LogSeverity::kWarning
#define ACCELERATE_LOG_SEVERITY_ERROR \
  ::accelerate::state_internal::LogSeverity::kError
#define ACCELERATE_LOG_SEVERITY_FATAL \
  ::accelerate::state_internal::LogSeverity::kFatal

#define ACCELERATE_LOG(severity)                                      \
  ::accelerate::state_internal::LogMessage(                           \
      ACCELERATE_LOG_SEVERITY_##severity, __FILE__, __LINE__)         \
      .stream()

#define ACCELERATE_CHECK(condition)                                   \
  (condition) ? (void)0                                               \
              : ::accelerate::state_internal::LogMessageVoidify() &   \
                    ACCELERATE_LOG(FATAL) << "CHECK failed: " #condition " "

#define ACCELERATE_CHECK_OK(status_expr)                              \
  do {                                                                \
    const auto& accelerate_check_status_ = (status_expr);             \
    ACCELERATE_CHECK(accelerate_check_status_.ok())                   \
        << accelerate_check_status_;                                  \
  } while (false)

#endif  // ACCELERATE_STATE_LOGGING_H_
