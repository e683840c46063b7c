#include "checkpoint/inspect.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/folder.h"
#include "google/protobuf/util/json_util.h"
#include "re2/re2.h"

namespace accelerate::checkpoint {
namespace {

namespace fs = std::filesystem;

// `random_states_<i>.pkl` gives i; -1 otherwise.
int RandomStatesProcess(const std::string& name) {
  static const re2::RE2 kPattern(R"(random_states_(\d+)\.pkl)");
  int process = -1;
  if (!re2::RE2::FullMatch(name, kPattern, &process)) return -1;
  return process;
}

}  // namespace

std::string KindOfFile(const std::string& name) {
  // Sharded files (SHARDED_STATE_DICT) carry ".rank-<p>-of-<n>".
  static const re2::RE2 kModel(
      R"((model(_\d+)?(\.rank-\d+-of-\d+)?\.safetensors)|)"
      R"((pytorch_model(_\d+)?\.bin))");
  static const re2::RE2 kOptimizer(
      R"(optimizer(_\d+)?(\.bin|\.rank-\d+-of-\d+\.safetensors))");
  static const re2::RE2 kScheduler(R"(scheduler(_\d+)?\.bin)");
  static const re2::RE2 kSampler(R"((sampler|dl_state_dict)(_\d+)?\.bin)");
  static const re2::RE2 kCustom(R"(custom_checkpoint_\d+\.pkl)");
  if (re2::RE2::FullMatch(name, kModel)) return "model";
  if (re2::RE2::FullMatch(name, kOptimizer)) return "optimizer";
  if (re2::RE2::FullMatch(name, kScheduler)) return "scheduler";
  if (re2::RE2::FullMatch(name, kSampler)) return "sampler";
  if (re2::RE2::FullMatch(name, kCustom)) return "custom";
  if (name == "scaler.pt") return "scaler";
  if (RandomStatesProcess(name) >= 0) return "random_states";
  return "other";
}

absl::StatusOr<CheckpointManifest> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifestName).string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " is missing"));
  std::stringstream text;
  text << in.rdbuf();
  CheckpointManifest manifest;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(text.str(), &manifest);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat(path, " does not parse: ",
                                            parsed.message().as_string()));
  }
  if (manifest.format() != kManifestFormat) {
    return absl::DataLossError(absl::StrCat(path, ": format is \"",
                                            manifest.format(), "\", not \"",
                                            kManifestFormat, "\""));
  }
  if (manifest.version() != 1) {
    return absl::DataLossError(absl::StrCat(
        path, ": layout version ", manifest.version(),
        " is not one this build reads (1)"));
  }
  return manifest;
}

absl::Status WriteManifest(const std::string& dir,
                           const CheckpointManifest& manifest) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  const auto printed =
      google::protobuf::util::MessageToJsonString(manifest, &json, options);
  if (!printed.ok()) {
    return absl::InternalError(printed.message().as_string());
  }
  return WriteFileSynced((fs::path(dir) / kManifestName).string(), json);
}

absl::StatusOr<CheckpointReport> InspectCheckpoint(const std::string& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint folder ", dir, " does not exist"));
  }
  CheckpointReport report;
  report.dir = dir;
  std::map<std::string, uint64_t> on_disk;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename();
    if (name == kManifestName) continue;
    on_disk[name] = entry.file_size();
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot list ", dir, ": ", error.message()));
  }
  absl::StatusOr<CheckpointManifest> manifest = ReadManifest(dir);
  if (!manifest.ok() && !absl::IsNotFound(manifest.status())) {
    report.problems.push_back(std::string(manifest.status().message()));
    for (const auto& [name, bytes] : on_disk) {
      report.files.push_back({name, KindOfFile(name), RandomStatesProcess(name),
                              std::nullopt, bytes});
    }
    return report;
  }
  if (manifest.ok()) {
    report.has_manifest = true;
    report.num_processes = manifest->num_processes();
    std::set<std::string> listed;
    for (const CheckpointFile& file : manifest->files()) {
      listed.insert(file.name());
      CheckpointFileReport item{file.name(), file.kind(), file.process(),
                                file.bytes(), std::nullopt};
      auto found = on_disk.find(file.name());
      if (found == on_disk.end()) {
        report.problems.push_back(
            absl::StrCat(file.name(), " (written by process ", file.process(),
                         ") is missing"));
      } else {
        item.bytes = found->second;
        if (found->second != file.bytes()) {
          report.problems.push_back(absl::StrCat(
              file.name(), " has ", found->second, " bytes, not the ",
              file.bytes(), " written (truncated or changed)"));
        }
      }
      report.files.push_back(std::move(item));
    }
    for (int p = 0; p < report.num_processes; ++p) {
      const std::string name = absl::StrCat("random_states_", p, ".pkl");
      if (listed.count(name) == 0) {
        report.problems.push_back(
            absl::StrCat(name, " (process ", p, ") is not in the manifest"));
      }
    }
    for (const auto& [name, bytes] : on_disk) {
      if (listed.count(name) == 0 && KindOfFile(name) != "other") {
        report.files.push_back({name, KindOfFile(name),
                                RandomStatesProcess(name), std::nullopt,
                                bytes});
      }
    }
    report.complete = report.problems.empty();
    return report;
  }
  // No manifest: Python Accelerate's folder, or one cut short before ours
  // was written.
  bool has_model = false;
  std::set<int> processes;
  for (const auto& [name, bytes] : on_disk) {
    const std::string kind = KindOfFile(name);
    if (kind == "model") has_model = true;
    const int process = RandomStatesProcess(name);
    if (process >= 0) processes.insert(process);
    report.files.push_back({name, kind, process, std::nullopt, bytes});
  }
  report.num_processes = static_cast<int>(processes.size());
  if (!has_model) {
    report.problems.push_back(
        "no model.safetensors (or pytorch_model.bin): not a checkpoint");
  }
  for (int p = 0; p < report.num_processes; ++p) {
    if (processes.count(p) == 0) {
      report.problems.push_back(
          absl::StrCat("random_states_", p, ".pkl is missing"));
    }
  }
  if (processes.empty()) {
    report.problems.push_back("random_states_0.pkl is missing");
  }
  report.complete = report.problems.empty();
  return report;
}

}  // namespace accelerate::checkpoint
