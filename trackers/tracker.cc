#include "trackers/tracker.h"

#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "trackers/internal/text.h"

namespace accelerate::trackers {

std::string ConfigValue::ToString() const {
  struct Visitor {
    std::string operator()(bool value) const {
      return value ? "True" : "False";
    }
    std::string operator()(int64_t value) const {
      return absl::StrCat(value);
    }
    // As Python's `str` (absl's StrCat keeps only 6 digits).
    std::string operator()(double value) const {
      return trackers_internal::FormatPythonFloat(value);
    }
    std::string operator()(const std::string& value) const { return value; }
  };
  return std::visit(Visitor{}, value_);
}

absl::StatusOr<std::string> RunFolder(const RunInfo& run,
                                      absl::string_view tracker) {
  if (run.logging_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ", tracker,
        " tracker needs a logging folder: set ProjectConfiguration's "
        "project_dir or logging_dir (the examples' --project_dir)"));
  }
  if (run.project_name.empty()) return run.logging_dir;
  return absl::StrCat(run.logging_dir, "/", run.project_name);
}

}  // namespace accelerate::trackers
