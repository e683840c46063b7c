#include "launch/checkpoint_command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "checkpoint/folder.h"
#include "checkpoint/inspect.h"
#include "checkpoint/project.h"
#include "launch/command.h"
#include "launch/flags.h"
#include "launch/paths.h"

namespace accelerate::launch {
namespace {

namespace fs = std::filesystem;

FlagParser CheckpointParser() {
  FlagParser parser(
      "accelerate checkpoint",
      "Lists and checks checkpoint folders (accelerate-cpp's, with their "
      "manifest, and Python Accelerate's) without loading them. Each "
      "subcommand takes --json and --help.");
  parser.AddRest(
      "{check,list} FOLDER",
      "check FOLDER: what one checkpoint folder holds and whether it is "
      "complete (exit code 0), or why not (1). list FOLDER: the "
      "checkpoint_<n> folders of a project folder (holding checkpoints/) or "
      "of a checkpoints folder, the latest complete one, and interrupted "
      "saves.");
  return parser;
}

FlagParser CheckParser() {
  FlagParser parser(
      "accelerate checkpoint check",
      "Inspects one checkpoint folder: written by accelerate-cpp (it has "
      "accelerate_cpp_checkpoint.json, whose sizes every file must have) or "
      "by Python Accelerate (judged by its file names), the processes that "
      "saved it, each file with its kind, process and size, and the "
      "problems. Exit code 0 when it is complete, 1 when it is not, 2 for a "
      "bad invocation or a missing folder.");
  parser.AddPositional("FOLDER",
                       "A checkpoint folder, e.g. "
                       "project/checkpoints/checkpoint_3.");
  parser.AddSwitch(
      "json",
      "Print one JSON object instead: {\"folder\": PATH, \"has_manifest\": "
      "BOOL, \"complete\": BOOL, \"num_processes\": N, \"files\": "
      "[{\"name\", \"kind\", \"process\", \"bytes\", \"expected_bytes\"}, "
      "...], \"problems\": [TEXT, ...]}; an unknown process or size (a "
      "missing file, no manifest) is null.");
  return parser;
}

FlagParser ListParser() {
  FlagParser parser(
      "accelerate checkpoint list",
      "Lists the checkpoint folders (checkpoint_<n>, by number) of a "
      "project, says which are complete, marks the latest complete one "
      "(the one automatic naming resumes from), and names the staging "
      "folders (.checkpoint_<n>.partial) interrupted saves left.");
  parser.AddPositional("FOLDER",
                       "A project folder (holding checkpoints/) or a folder "
                       "of checkpoints.");
  parser.AddSwitch(
      "json",
      "Print one JSON object instead: {\"folder\": PATH, \"checkpoints\": "
      "[{\"name\", \"path\", \"number\", \"complete\", \"latest\"}, ...], "
      "\"latest\": PATH or null, \"interrupted_saves\": [PATH, ...]}.");
  return parser;
}

// `value` as a JSON string.
std::string JsonString(absl::string_view value) {
  std::string out = "\"";
  for (const char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  out += "\"";
  return out;
}

std::string JsonBool(bool value) { return value ? "true" : "false"; }

std::string JsonSize(const std::optional<uint64_t>& bytes) {
  return bytes.has_value() ? absl::StrCat(*bytes) : "null";
}

// OK when `path` is a folder; otherwise an error naming it as `what`
// ("checkpoint folder").
absl::Status CheckFolderExists(absl::string_view what,
                               const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(
          absl::StrCat(what, " ", path, " does not exist"));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot read ", what, " ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is not a folder"));
  }
  return absl::OkStatus();
}

// Rows of text in columns two spaces apart (the last column unpadded).
std::string Table(const std::vector<std::vector<std::string>>& rows,
                  absl::string_view indent) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

// --- check -----------------------------------------------------------------

std::string CheckReportJson(const checkpoint::CheckpointReport& report) {
  std::vector<std::string> files;
  for (const checkpoint::CheckpointFileReport& file : report.files) {
    files.push_back(absl::StrCat(
        "{\"name\": ", JsonString(file.name),
        ", \"kind\": ", JsonString(file.kind), ", \"process\": ",
        file.process >= 0 ? absl::StrCat(file.process) : "null",
        ", \"bytes\": ", JsonSize(file.bytes),
        ", \"expected_bytes\": ", JsonSize(file.expected_bytes), "}"));
  }
  std::vector<std::string> problems;
  for (const std::string& problem : report.problems) {
    problems.push_back(JsonString(problem));
  }
  return absl::StrCat(
      "{\"folder\": ", JsonString(report.dir),
      ", \"has_manifest\": ", JsonBool(report.has_manifest),
      ", \"complete\": ", JsonBool(report.complete),
      ", \"num_processes\": ", report.num_processes, ", \"files\": [",
      absl::StrJoin(files, ", "), "], \"problems\": [",
      absl::StrJoin(problems, ", "), "]}\n");
}

std::string CheckReportText(const checkpoint::CheckpointReport& report) {
  std::string out = absl::StrCat("Checkpoint folder: ", report.dir, "\n");
  const std::string manifest =
      (fs::path(report.dir) / checkpoint::kManifestName).string();
  std::string written_by;
  if (report.has_manifest) {
    written_by = absl::StrCat("accelerate-cpp (manifest ",
                              checkpoint::kManifestName, ")");
  } else if (::access(manifest.c_str(), F_OK) == 0) {
    written_by = absl::StrCat("accelerate-cpp, but its manifest ",
                              checkpoint::kManifestName,
                              " cannot be read (see the problems)");
  } else {
    written_by = absl::StrCat("Python Accelerate or by hand (no ",
                              checkpoint::kManifestName,
                              "; judged by the file names)");
  }
  absl::StrAppend(&out, "Written by: ", written_by, "\n");
  absl::StrAppend(&out, "Processes: ", report.num_processes, "\n");
  if (report.files.empty()) {
    absl::StrAppend(&out, "Files: none\n");
  } else {
    absl::StrAppend(&out, "Files:\n");
    std::vector<std::vector<std::string>> rows;
    if (report.has_manifest) {
      rows.push_back({"NAME", "KIND", "PROCESS", "BYTES", "EXPECTED"});
    } else {
      rows.push_back({"NAME", "KIND", "PROCESS", "BYTES"});
    }
    for (const checkpoint::CheckpointFileReport& file : report.files) {
      std::vector<std::string> row = {
          file.name, file.kind,
          file.process >= 0 ? absl::StrCat(file.process) : "?",
          file.bytes.has_value() ? absl::StrCat(*file.bytes) : "missing"};
      if (report.has_manifest) {
        // A file not in the manifest (found beside it) has no expected size.
        row.push_back(file.expected_bytes.has_value()
                          ? absl::StrCat(*file.expected_bytes)
                          : "-");
      }
      rows.push_back(std::move(row));
    }
    absl::StrAppend(&out, Table(rows, "  "));
  }
  absl::StrAppend(&out, "Complete: ", report.complete ? "yes" : "no", "\n");
  if (!report.problems.empty()) {
    absl::StrAppend(&out, "Problems:\n");
    for (const std::string& problem : report.problems) {
      absl::StrAppend(&out, "  ", problem, "\n");
    }
  }
  return out;
}

int Check(const std::vector<std::string>& args,
          const state::Environment& env) {
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(CheckParser(), args, &flags)) {
    return *done;
  }
  const std::string folder = ResolveUserPath(env, flags.positional[0]);
  if (absl::Status exists = CheckFolderExists("checkpoint folder", folder);
      !exists.ok()) {
    return Fail(
        absl::StrCat("accelerate checkpoint check: ", exists.message()));
  }
  absl::StatusOr<checkpoint::CheckpointReport> report =
      checkpoint::InspectCheckpoint(folder);
  if (!report.ok()) {
    return Fail(absl::StrCat("accelerate checkpoint check: ",
                             report.status().message()));
  }
  std::cout << (flags.Switch("json") ? CheckReportJson(*report)
                                     : CheckReportText(*report));
  std::cout.flush();
  return report->complete ? 0 : kIncompleteCheckpointExitCode;
}

// --- list ------------------------------------------------------------------

// The staging folders in `dir`, by name.
absl::StatusOr<std::vector<std::string>> StagingFolders(
    const std::string& dir) {
  std::vector<std::string> found;
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code type_error;
    if (!it->is_directory(type_error)) continue;
    if (checkpoint::IsStagingName(it->path().filename().string())) {
      found.push_back(it->path().string());
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot list ", dir, ": ", error.message()));
  }
  std::sort(found.begin(), found.end());
  return found;
}

// `.checkpoint_3.partial` -> `checkpoint_3`.
std::string StagedName(const std::string& path) {
  const std::string filename = fs::path(path).filename().string();
  absl::string_view name = filename;
  absl::ConsumePrefix(&name, ".");
  absl::ConsumeSuffix(&name, ".partial");
  return std::string(name);
}

int List(const std::vector<std::string>& args, const state::Environment& env) {
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(ListParser(), args, &flags)) {
    return *done;
  }
  const std::string folder = ResolveUserPath(env, flags.positional[0]);
  if (absl::Status exists = CheckFolderExists("folder", folder);
      !exists.ok()) {
    return Fail(absl::StrCat("accelerate checkpoint list: ", exists.message()));
  }
  // A project folder holds checkpoints/; anything else is taken as the
  // folder of checkpoints itself.
  const std::string in_project = (fs::path(folder) / "checkpoints").string();
  const std::string checkpoints_dir =
      CheckFolderExists("folder", in_project).ok() ? in_project : folder;
  absl::StatusOr<std::vector<checkpoint::ListedCheckpoint>> listed =
      checkpoint::ListCheckpoints(checkpoints_dir);
  if (!listed.ok()) {
    return Fail(absl::StrCat("accelerate checkpoint list: ",
                             listed.status().message()));
  }
  std::optional<std::string> latest;
  absl::StatusOr<std::string> found =
      checkpoint::LatestCheckpoint(checkpoints_dir);
  if (found.ok()) {
    latest = *found;
  } else if (!absl::IsNotFound(found.status())) {
    return Fail(absl::StrCat("accelerate checkpoint list: ",
                             found.status().message()));
  }
  absl::StatusOr<std::vector<std::string>> staging =
      StagingFolders(checkpoints_dir);
  if (!staging.ok()) {
    return Fail(absl::StrCat("accelerate checkpoint list: ",
                             staging.status().message()));
  }

  if (flags.Switch("json")) {
    std::vector<std::string> items;
    for (const checkpoint::ListedCheckpoint& item : *listed) {
      items.push_back(absl::StrCat(
          "{\"name\": ", JsonString(fs::path(item.path).filename().string()),
          ", \"path\": ", JsonString(item.path), ", \"number\": ", item.number,
          ", \"complete\": ", JsonBool(item.complete),
          ", \"latest\": ", JsonBool(latest == item.path), "}"));
    }
    std::vector<std::string> interrupted;
    for (const std::string& path : *staging) {
      interrupted.push_back(JsonString(path));
    }
    std::cout << "{\"folder\": " << JsonString(checkpoints_dir)
              << ", \"checkpoints\": [" << absl::StrJoin(items, ", ")
              << "], \"latest\": "
              << (latest.has_value() ? JsonString(*latest) : "null")
              << ", \"interrupted_saves\": ["
              << absl::StrJoin(interrupted, ", ") << "]}" << std::endl;
    return 0;
  }

  std::vector<std::vector<std::string>> rows;
  bool any_incomplete = false;
  for (const checkpoint::ListedCheckpoint& item : *listed) {
    std::string state = item.complete ? "complete" : "incomplete";
    if (latest == item.path) absl::StrAppend(&state, " (latest)");
    any_incomplete = any_incomplete || !item.complete;
    rows.push_back({fs::path(item.path).filename().string(), state});
  }
  for (const std::string& path : *staging) {
    rows.push_back({fs::path(path).filename().string(),
                    absl::StrCat("interrupted save of ", StagedName(path))});
  }
  std::string out;
  if (rows.empty()) {
    absl::StrAppend(&out, "No checkpoints in ", checkpoints_dir, "\n");
  } else {
    absl::StrAppend(&out, "Checkpoints in ", checkpoints_dir, ":\n",
                    Table(rows, "  "));
  }
  absl::StrAppend(&out, "Latest complete: ", latest.value_or("none"), "\n");
  if (any_incomplete) {
    absl::StrAppend(&out,
                    "`accelerate checkpoint check FOLDER` says why one is "
                    "incomplete.\n");
  }
  std::cout << out;
  std::cout.flush();
  return 0;
}

}  // namespace

int RunCheckpointCommand(const std::vector<std::string>& args,
                         const state::Environment& env) {
  const FlagParser parser = CheckpointParser();
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(parser, args, &flags)) {
    return *done;
  }
  if (flags.positional.empty()) {
    std::cerr << parser.Help();
    return kFailureExitCode;
  }
  const std::string& command = flags.positional[0];
  const std::vector<std::string> rest(flags.positional.begin() + 1,
                                      flags.positional.end());
  if (command == "check") return Check(rest, env);
  if (command == "list") return List(rest, env);
  return Fail(absl::StrCat("accelerate checkpoint: unknown command \"",
                           command, "\" (one of check, list)"));
}

}  // namespace accelerate::launch
