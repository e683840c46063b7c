#include "launch/companions.h"

#include <unistd.h>

#include <functional>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "launch/command.h"
#include "launch/flags.h"
#include "launch/paths.h"
#include "state/child_process.h"
#include "state/logging.h"

namespace accelerate::launch {
namespace {

struct Companion {
  // The subcommand, e.g. "plan-device-map".
  const char* command;
  // The helper's path relative to this binary's folder (bazel-bin/launch).
  const char* relative;
  // The Bazel target that builds it, for the "missing" message.
  const char* target;
  // The variable that overrides the helper's path.
  const char* variable;
  // The subcommand's flags and positional arguments; every positional
  // argument names a file.
  std::function<FlagParser()> parser;
};

FlagParser PlanShardsParser() {
  FlagParser parser(
      "accelerate plan-shards",
      "Prints, as JSON, the batches each process sees under Accelerate's "
      "data sharding: {\"ranks\": [[batch, ...], ...]}, each batch a list "
      "of sample indices. It calls //data's sharding, so it agrees with the "
      "loader exactly.");
  parser.AddValue("dataset_length", "N", "Samples in the dataset (required).");
  parser.AddValue("batch_size", "N",
                  "Batch size per process (per global batch with "
                  "--split_batches); default 1.");
  parser.AddValue("num_processes", "N",
                  "Processes sharing the data (default 1).");
  parser.AddBool("split_batches",
                 "Split each global batch between the processes.");
  parser.AddBool("even_batches",
                 "Complete the last batches by cycling from the start "
                 "(default true).");
  parser.AddBool("drop_last", "Drop the last incomplete batch.");
  parser.AddBool("shuffle", "Seeded random order (Accelerate's).");
  parser.AddValue("seed", "N", "Seed of the random order (default 0).");
  parser.AddValue("epoch", "N", "Epoch (added to the seed; default 0).");
  parser.AddBool("iterable",
                 "Plan an iterable dataset (a stream of dataset_length "
                 "samples).");
  parser.AddValue("skip_batches", "N",
                  "Plan the loader resumed after this many batches.");
  return parser;
}

FlagParser EstimateMemoryParser() {
  FlagParser parser(
      "accelerate estimate-memory",
      "Prints Accelerate's memory table for a local checkpoint (safetensors "
      "or pytorch_model.bin): the largest layer, the total size and the "
      "training memory with Adam, per dtype, from the headers alone.");
  parser.AddPositional("CHECKPOINT",
                       "A weights file (safetensors or pytorch_model.bin), "
                       "an index, or a folder holding one.");
  parser.AddList("dtypes", "DTYPE", "Dtypes to estimate (default: all).",
                 {"float32", "float16", "int8", "int4"});
  return parser;
}

FlagParser MergeWeightsParser() {
  FlagParser parser(
      "accelerate merge-weights",
      "Merges a sharded checkpoint (safetensors or pytorch_model.bin "
      "shards with their index, or the per-process parts of a "
      "SHARDED_STATE_DICT save) into one safetensors file, written "
      "atomically.");
  parser.AddPositional("CHECKPOINT",
                       "A folder holding the shards' index (or one weights "
                       "file, or the parts), the index, or one weights "
                       "file.");
  parser.AddPositional("OUTPUT",
                       "A .safetensors file, or a folder that receives "
                       "model.safetensors.");
  return parser;
}

FlagParser PlanDeviceMapParser() {
  FlagParser parser(
      "accelerate plan-device-map",
      "Prints where Accelerate's automatic device map (infer_auto_device_map) "
      "puts a model under memory limits, as {\"device_map\": {\"<module "
      "path>\": <device>, ...}}.");
  parser.AddPositional("MODEL",
                       "A module tree in JSON (.json) or a local safetensors "
                       "checkpoint (file, index or folder), whose tensor "
                       "names give the modules.");
  parser.AddValue("max_memory", "DEVICE=SIZE,...",
                  "Memory per device (required), e.g. 0=10GiB,cpu=30GB. "
                  "Devices: GPU indices, cpu, disk; sizes in bytes or with "
                  "KB/MB/GB/TB (10^3..) or KiB/MiB/GiB/TiB (2^10..).");
  parser.AddList("no_split_module_classes", "CLASS",
                 "Module classes kept whole on one device (names may also "
                 "be comma-separated).");
  parser.AddValue("dtype", "DTYPE",
                  "Dtype the weights are counted in (default: their own).");
  parser.AddValue("device_map", "STRATEGY",
                  "sequential (the default) fills devices in order; auto and "
                  "balanced first spread the model evenly over the GPUs "
                  "(balanced_low_0: GPU 0 kept free).",
                  {"sequential", "auto", "balanced", "balanced_low_0"});
  parser.AddSwitch("offload_buffers",
                   "Offloaded modules' buffers go with them (no warning when "
                   "they would fit no GPU).");
  parser.AddSwitch("fallback_allocation",
                   "A device the next module does not fit gets a later "
                   "module that does.");
  return parser;
}

const std::vector<Companion>& Companions() {
  static const auto* const kCompanions = new std::vector<Companion>{
      {"plan-shards", "../data/plan_shards", "//data:plan_shards",
       "ACCELERATE_PLAN_SHARDS", PlanShardsParser},
      {"estimate-memory", "../bigmodel/estimate_memory",
       "//bigmodel:estimate_memory", "ACCELERATE_ESTIMATE_MEMORY",
       EstimateMemoryParser},
      {"merge-weights", "../bigmodel/merge_weights",
       "//bigmodel:merge_weights", "ACCELERATE_MERGE_WEIGHTS",
       MergeWeightsParser},
      {"plan-device-map", "../bigmodel/plan_device_map",
       "//bigmodel:plan_device_map", "ACCELERATE_PLAN_DEVICE_MAP",
       PlanDeviceMapParser},
  };
  return *kCompanions;
}

const Companion* FindCompanion(absl::string_view command) {
  for (const Companion& companion : Companions()) {
    if (command == companion.command) return &companion;
  }
  return nullptr;
}

}  // namespace

bool IsCompanionCommand(absl::string_view command) {
  return FindCompanion(command) != nullptr;
}

int RunCompanionCommand(absl::string_view command,
                        const std::vector<std::string>& args,
                        const state::Environment& env) {
  const Companion* companion = FindCompanion(command);
  ACCELERATE_CHECK(companion != nullptr) << "not a helper command: " << command;
  const FlagParser parser = companion->parser();
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(parser, args, &flags)) {
    return *done;
  }
  for (std::string& path : flags.positional) path = ResolveUserPath(env, path);

  const std::string program =
      env.Get(companion->variable)
          .value_or(absl::StrCat(SelfDirectory(), "/", companion->relative));
  if (::access(program.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("accelerate ", command, ": ", program,
                             " is missing; build ", companion->target,
                             " (or set ", companion->variable, ")"));
  }
  std::vector<std::string> argv = {program};
  for (std::string& arg : parser.CanonicalArgs(flags)) {
    argv.push_back(std::move(arg));
  }
  std::vector<char*> pointers = state::CStringArray(argv);
  std::cout.flush();
  ::execv(program.c_str(), pointers.data());
  return Fail(
      absl::StrCat("accelerate ", command, ": cannot execute ", program));
}

}  // namespace accelerate::launch
