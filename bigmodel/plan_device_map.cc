// `accelerate plan-device-map MODEL [--max_memory 0=10GiB,cpu=30GB] [...]`:
// prints where Accelerate's infer_auto_device_map would place a model, as
// {"device_map": {"<module path>": <device>, ...}}. Without --max_memory, the
// budgets are what this machine has free now (driver_memory.h: each visible
// GPU's free memory from NVIDIA's driver, the CPU's MemAvailable), as
// Accelerate's get_max_memory(); they are printed on stderr. MODEL is a
// module tree in JSON (module_tree.h) or a local checkpoint, safetensors or
// `pytorch_model.bin` (a file, an index or a folder holding one), whose
// tensor names give the modules.

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bigmodel/device_map.h"
#include "bigmodel/driver_memory.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel {
namespace {

constexpr char kUsage[] =
    "usage: accelerate plan-device-map MODEL [--max_memory DEVICE=SIZE,...] "
    "[--no_split_module_classes CLASS ...] [--dtype DTYPE]\n"
    "    [--device_map {sequential,auto,balanced,balanced_low_0}]\n"
    "    [--offload_buffers] [--fallback_allocation]\n"
    "MODEL is a module tree in JSON (.json) or a local checkpoint, safetensors\n"
    "or pytorch_model.bin (file, index or folder). Devices: GPU indices,\n"
    "cpu, disk; sizes in bytes or with KB/MB/GB/TB (10^3..) or\n"
    "KiB/MiB/GiB/TiB (2^10..). Without --max_memory: what is free now on\n"
    "each visible GPU (NVIDIA's driver, CUDA_VISIBLE_DEVICES honoured) and\n"
    "the CPU (MemAvailable).\n"
    "sequential (the default) fills devices in order; auto and balanced first\n"
    "spread the model evenly over the GPUs (balanced_low_0: GPU 0 kept "
    "free).\n"
    "--offload_buffers: offloaded modules' buffers go with them (no warning\n"
    "when they would fit no GPU). --fallback_allocation: a device the next\n"
    "module does not fit gets a later module that does.\n";

int Fail(const std::string& message) {
  std::cerr << "plan-device-map: " << message << std::endl;
  return 2;
}

int Main(int argc, char** argv) {
  std::string model;
  std::string max_memory;
  std::string strategy = "sequential";
  DeviceMapOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--max_memory" || arg == "--max-memory") {
      if (!value(&max_memory))
        return Fail("--max_memory needs DEVICE=SIZE,...");
    } else if (arg == "--device_map" || arg == "--device-map") {
      if (!value(&strategy)) return Fail("--device_map needs a strategy");
      if (strategy != "sequential" && strategy != "auto" &&
          strategy != "balanced" && strategy != "balanced_low_0") {
        return Fail(
            "--device_map \"" + strategy +
            "\" is not one of sequential, auto, balanced, balanced_low_0");
      }
    } else if (arg == "--dtype") {
      std::string dtype;
      if (!value(&dtype)) return Fail("--dtype needs a dtype");
      options.dtype = dtype;
    } else if (arg == "--no_split_module_classes" ||
               arg == "--no-split-module-classes") {
      const size_t before = options.no_split_module_classes.size();
      while (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        for (absl::string_view c :
             absl::StrSplit(argv[++i], ',', absl::SkipEmpty())) {
          options.no_split_module_classes.emplace_back(c);
        }
      }
      if (options.no_split_module_classes.size() == before) {
        return Fail("--no_split_module_classes needs at least one class name");
      }
    } else if (arg == "--offload_buffers" || arg == "--offload-buffers") {
      options.offload_buffers = true;
    } else if (arg == "--fallback_allocation" ||
               arg == "--fallback-allocation") {
      options.fallback_allocation = true;
    } else if (absl::StartsWith(arg, "-")) {
      return Fail("unknown flag " + arg);
    } else if (model.empty()) {
      model = arg;
    } else {
      return Fail("unexpected argument \"" + arg + "\"");
    }
  }
  if (model.empty())
    return Fail("give a model (module tree JSON or safetensors checkpoint)");
  absl::StatusOr<MaxMemory> memory;
  if (max_memory.empty()) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    memory = DriverMaxMemory(visible ? std::optional<std::string>(visible)
                                     : std::nullopt);
    if (!memory.ok()) {
      return Fail(std::string(memory.status().message()) +
                  " (or give --max_memory)");
    }
    std::string budgets;
    for (const auto& [device, bytes] : *memory) {
      absl::StrAppend(&budgets, budgets.empty() ? "" : ",", device.ToString(),
                      "=", bytes, "B");
    }
    std::cerr << "plan-device-map: no --max_memory; planning with what is "
                 "free now: "
              << budgets << std::endl;
  } else {
    memory = ParseMaxMemory(max_memory);
    if (!memory.ok()) return Fail(std::string(memory.status().message()));
  }
  options.max_memory = *memory;

  absl::StatusOr<ModuleTree> tree;
  if (absl::EndsWith(model, ".json") && !absl::EndsWith(model, ".index.json")) {
    std::ifstream in(model);
    if (!in) return Fail("cannot read module tree \"" + model + "\"");
    std::stringstream text;
    text << in.rdbuf();
    tree = ParseModuleTree(text.str());
  } else {
    tree = ModuleTreeFromCheckpoint(model);
  }
  if (!tree.ok())
    return Fail(model + ": " + std::string(tree.status().message()));
  auto map = PlanDeviceMap(*tree, options, strategy);
  if (!map.ok()) return Fail(std::string(map.status().message()));
  std::cout << DeviceMapToJson(*map) << std::endl;
  return 0;
}

}  // namespace
}  // namespace accelerate::bigmodel

int main(int argc, char** argv) {
  return accelerate::bigmodel::Main(argc, argv);
}
