#include "trackers/trackers.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "state/logging.h"

namespace accelerate::trackers {
namespace {

bool IsKnown(absl::string_view name) {
  for (const std::string& known : TrackerNames()) {
    if (known == name) return true;
  }
  return false;
}

// The built-in tracker named `name`. REQUIRES: `name` was resolved
// (ResolveTrackersOptions).
absl::StatusOr<std::shared_ptr<Tracker>> MakeBuiltIn(
    const std::string& name, const TrackersOptions& options,
    const state::Environment& env) {
  if (name == "tensorboard") {
    return std::make_shared<TensorBoardTracker>(options.tensorboard);
  }
  if (name == "jsonl") return std::make_shared<JsonlTracker>(options.jsonl);
  if (name == "csv") return std::make_shared<CsvTracker>(options.csv);
  if (name == "mlflow") {
    auto tracker = MakeMlflowTracker(options.mlflow, env);
    if (!tracker.ok()) return tracker.status();
    return std::shared_ptr<Tracker>(*std::move(tracker));
  }
  ACCELERATE_CHECK(false) << "an unresolved tracker name: " << name;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& TrackerNames() {
  static const auto* names =
      new std::vector<std::string>{"tensorboard", "mlflow", "jsonl", "csv"};
  return *names;
}

absl::StatusOr<std::vector<std::string>> ParseLogWith(absl::string_view text) {
  std::vector<std::string> names;
  for (absl::string_view name :
       absl::StrSplit(text, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    if (name != "all" && !IsKnown(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("log_with: \"", name, "\" is not one of ",
                       absl::StrJoin(TrackerNames(), ", "), ", all"));
    }
    names.emplace_back(name);
  }
  return names;
}

absl::StatusOr<TrackersOptions> ResolveTrackersOptions(
    const TrackersOptions& options, const state::Environment& env) {
  TrackersOptions resolved = options;
  std::vector<std::string>& names = resolved.log_with;
  names.clear();
  const auto add = [&](const std::string& name) {
    for (const std::string& seen : names) {
      if (seen == name) return;
    }
    names.push_back(name);
  };
  for (const std::string& entry : options.log_with) {
    auto parsed = ParseLogWith(entry);
    if (!parsed.ok()) return parsed.status();
    for (const std::string& name : *parsed) {
      if (name != "all") {
        add(name);
        continue;
      }
      add("tensorboard");
      add("jsonl");
      add("csv");
      if (options.mlflow.tracking_uri.has_value() ||
          env.Get("MLFLOW_TRACKING_URI").has_value()) {
        add("mlflow");
      } else {
        ACCELERATE_LOG(WARNING) << "log_with \"all\" leaves mlflow out: no "
                                   "MLFLOW_TRACKING_URI is set";
      }
    }
  }
  for (const std::string& name : names) {
    if (name != "mlflow") continue;
    auto mlflow = ResolveMlflowOptions(options.mlflow, env);
    if (!mlflow.ok()) {
      return absl::Status(mlflow.status().code(),
                          absl::StrCat("the mlflow tracker: ",
                                       mlflow.status().message()));
    }
    resolved.mlflow = *std::move(mlflow);
  }
  return resolved;
}

absl::StatusOr<std::unique_ptr<Trackers>> Trackers::Start(
    const TrackersOptions& given, RunInfo run, const Config& config,
    const state::PartialState* state, const state::Environment& env) {
  auto resolved = ResolveTrackersOptions(given, env);
  if (!resolved.ok()) return resolved.status();
  const TrackersOptions& options = *resolved;
  const bool main_process = state == nullptr || state->is_main_process();
  if (state != nullptr) {
    run.process_index = state->process_index();
    run.num_processes = state->num_processes();
  }
  std::unique_ptr<Trackers> trackers(new Trackers);
  trackers->fail_on_error_ = options.fail_on_error;
  // A failed start finishes the trackers already started.
  const auto fail = [&](absl::Status status) {
    (void)trackers->Finish();
    return status;
  };
  std::vector<std::shared_ptr<Tracker>> candidates;
  for (const std::string& name : options.log_with) {
    if (!main_process) {
      // Built-in trackers run on the main process, but for JSON Lines when
      // every process writes.
      if (!(name == "jsonl" && options.jsonl.every_process)) continue;
    }
    auto tracker = MakeBuiltIn(name, options, env);
    if (!tracker.ok()) return tracker.status();
    candidates.push_back(*std::move(tracker));
  }
  for (const std::shared_ptr<Tracker>& tracker : options.custom) {
    ACCELERATE_CHECK(tracker != nullptr) << "a null custom tracker";
    if (tracker->main_process_only() && !main_process) continue;
    candidates.push_back(tracker);
  }
  for (std::shared_ptr<Tracker>& tracker : candidates) {
    if (tracker->requires_logging_directory()) {
      // Users' trackers too, as Accelerate checks.
      absl::Status folder = RunFolder(run, tracker->name()).status();
      if (!folder.ok()) return fail(folder);
    }
    absl::Status started = tracker->Start(run);
    if (!started.ok()) {
      return fail(absl::Status(
          started.code(), absl::StrCat("the ", tracker->name(),
                                       " tracker cannot start: ",
                                       started.message())));
    }
    trackers->entries_.push_back({.tracker = std::move(tracker)});
  }
  if (!config.empty()) {
    for (Entry& entry : trackers->entries_) {
      absl::Status stored = entry.tracker->StoreInitConfiguration(config);
      if (!stored.ok()) {
        return fail(absl::Status(
            stored.code(),
            absl::StrCat("the ", entry.tracker->name(),
                         " tracker cannot store the configuration: ",
                         stored.message())));
      }
    }
  }
  return trackers;
}

Trackers::~Trackers() {
  absl::Status finished = Finish();
  if (!finished.ok()) ACCELERATE_LOG(ERROR) << finished;
}

absl::Status Trackers::Log(const LogValues& values,
                           std::optional<int64_t> step) {
  if (finished_) {
    return absl::FailedPreconditionError(
        "Log after the trackers finished (EndTraining)");
  }
  absl::Status first = absl::OkStatus();
  for (Entry& entry : entries_) {
    absl::Status logged = entry.tracker->Log(values, step);
    if (logged.ok()) continue;
    if (fail_on_error_) {
      if (first.ok()) {
        first = absl::Status(logged.code(),
                             absl::StrCat("the ", entry.tracker->name(),
                                          " tracker: ", logged.message()));
      }
      continue;
    }
    if (!entry.warned) {
      entry.warned = true;
      ACCELERATE_LOG(WARNING)
          << "the " << entry.tracker->name() << " tracker: " << logged
          << " (training goes on; further errors of this tracker are not "
             "shown)";
    }
  }
  return first;
}

Tracker* Trackers::Get(absl::string_view name) const {
  for (const Entry& entry : entries_) {
    if (entry.tracker->name() == name) return entry.tracker.get();
  }
  return nullptr;
}

absl::Status Trackers::Finish() {
  if (finished_) return absl::OkStatus();
  finished_ = true;
  std::vector<std::string> errors;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (Entry& entry : entries_) {
    absl::Status finished = entry.tracker->Finish();
    if (finished.ok()) continue;
    if (code == absl::StatusCode::kOk) code = finished.code();
    errors.push_back(
        absl::StrCat("the ", entry.tracker->name(), " tracker: ",
                     finished.message()));
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::Status(code, absl::StrJoin(errors, "; "));
}

std::vector<std::string> Trackers::names() const {
  std::vector<std::string> names;
  for (const Entry& entry : entries_) names.push_back(entry.tracker->name());
  return names;
}

}  // namespace accelerate::trackers
