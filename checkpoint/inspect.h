// What a checkpoint folder holds and whether it is complete, without
// LibTorch (the `accelerate checkpoint` command uses it): our folders carry
// a manifest (`accelerate_cpp_checkpoint.json`, see manifest.proto) written
// last, so a folder is complete when its manifest is there and every file
// it lists has the size it was written with; folders written by Python
// Accelerate carry none and are recognized by their file names.
//
// clang-format off
//   #include <iostream>
//   #include "state/status_macros.h"
//   absl::Status Example(const std::string& dir) {
//     ACCELERATE_ASSIGN_OR_RETURN(CheckpointReport report, InspectCheckpoint(dir));
//     if (!report.complete) std::cerr << report.problems.front() << "\n";
//     return absl::OkStatus();
//   }
// clang-format on
//
// Thread safety: the functions are safe to call concurrently.

#ifndef ACCELERATE_CHECKPOINT_INSPECT_H_
#define ACCELERATE_CHECKPOINT_INSPECT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoint/manifest.pb.h"

namespace accelerate::checkpoint {

// The manifest's file name inside a checkpoint folder.
inline constexpr char kManifestName[] = "accelerate_cpp_checkpoint.json";
inline constexpr char kManifestFormat[] = "accelerate-cpp-checkpoint";

// Reads `<dir>/accelerate_cpp_checkpoint.json`. `NotFound` when it is
// missing, `DataLoss` (naming the file) when it does not parse or is not
// ours.
[[nodiscard]] absl::StatusOr<CheckpointManifest> ReadManifest(
    const std::string& dir);
// Writes it, synced to disk.
[[nodiscard]] absl::Status WriteManifest(const std::string& dir,
                                         const CheckpointManifest& manifest);

struct CheckpointFileReport {
  std::string name;
  // "model", "optimizer", "scheduler", "scaler", "random_states", "custom",
  // "sampler", "other".
  std::string kind;
  // The process that wrote it (from the manifest, or the name of a
  // `random_states_<i>.pkl`); -1 when unknown.
  int process = -1;
  // The size the manifest gives; unset for a folder without one.
  std::optional<uint64_t> expected_bytes;
  // The size on disk; unset when missing.
  std::optional<uint64_t> bytes;
};

struct CheckpointReport {
  std::string dir;
  // Written by accelerate-cpp (it has a manifest), else by Python
  // Accelerate or by hand.
  bool has_manifest = false;
  // Every file is there with its size (ours), or the files Accelerate
  // always writes are there (a model and random_states_0.pkl).
  bool complete = false;
  // Processes that saved it: the manifest's, else the count of
  // random_states_<i>.pkl.
  int num_processes = 0;
  std::vector<CheckpointFileReport> files;
  // Why it is not complete, one line each, naming the file.
  std::vector<std::string> problems;
};

// Inspects the checkpoint folder `dir`. `NotFound` when `dir` is not a
// folder; an incomplete checkpoint is a report, not an error.
[[nodiscard]] absl::StatusOr<CheckpointReport> InspectCheckpoint(
    const std::string& dir);

// What Accelerate's file name `name` holds ("other" when none).
std::string KindOfFile(const std::string& name);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_INSPECT_H_
