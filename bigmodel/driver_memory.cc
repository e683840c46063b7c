#include "bigmodel/driver_memory.h"

#include <dlfcn.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

// The few NVML declarations used (nvml.h, stable since CUDA 5).
using NvmlReturn = int;  // 0: success.
using NvmlDevice = void*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr unsigned kNvmlUuidLength = 96;

constexpr NvmlReturn kNvmlDriverNotLoaded = 9;
constexpr NvmlReturn kNvmlLibraryNotFound = 12;
constexpr unsigned kNvmlMigEnabled = 1;

// NVML loaded and initialized for one reading; shut down and unloaded when
// it goes.
class Nvml {
 public:
  // nullptr when there is no NVIDIA driver (no library, or not loaded).
  static absl::StatusOr<std::unique_ptr<Nvml>> Open() {
    void* library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return nullptr;
    auto nvml = std::unique_ptr<Nvml>(new Nvml(library));
    const auto symbol = [&](const char* name, auto* out) {
      *out = reinterpret_cast<std::remove_pointer_t<decltype(out)>>(
          dlsym(library, name));
      return *out != nullptr;
    };
    if (!symbol("nvmlInit_v2", &nvml->init_) ||
        !symbol("nvmlShutdown", &nvml->shutdown_) ||
        !symbol("nvmlErrorString", &nvml->error_string_) ||
        !symbol("nvmlDeviceGetCount_v2", &nvml->count_) ||
        !symbol("nvmlDeviceGetHandleByIndex_v2", &nvml->by_index_) ||
        !symbol("nvmlDeviceGetUUID", &nvml->uuid_) ||
        !symbol("nvmlDeviceGetMemoryInfo", &nvml->memory_)) {
      return absl::UnavailableError(
          "libnvidia-ml.so.1 lacks the NVML functions for free memory");
    }
    symbol("nvmlDeviceGetMigMode", &nvml->mig_mode_);  // Older drivers: none.
    const NvmlReturn started = nvml->init_();
    if (started == kNvmlDriverNotLoaded || started == kNvmlLibraryNotFound) {
      return nullptr;
    }
    ACCELERATE_RETURN_IF_ERROR(nvml->Check("nvmlInit", started));
    nvml->initialized_ = true;
    return nvml;
  }

  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  ~Nvml() {
    if (initialized_) shutdown_();
    dlclose(library_);
  }

  absl::StatusOr<int> Count() const {
    unsigned count = 0;
    ACCELERATE_RETURN_IF_ERROR(Check("nvmlDeviceGetCount", count_(&count)));
    return static_cast<int>(count);
  }

  // The UUID of GPU `index` (in the driver's, PCI bus, order); empty when
  // it cannot be read.
  std::string Uuid(int index) const {
    NvmlDevice device = nullptr;
    char uuid[kNvmlUuidLength] = {};
    if (by_index_(index, &device) != 0 ||
        uuid_(device, uuid, kNvmlUuidLength) != 0) {
      return "";
    }
    return uuid;
  }

  // GPU `index`'s free bytes. `FailedPrecondition` for a GPU in MIG mode,
  // whose memory belongs to its instances.
  absl::StatusOr<int64_t> FreeBytes(int index) const {
    NvmlDevice device = nullptr;
    ACCELERATE_RETURN_IF_ERROR(
        Check("nvmlDeviceGetHandleByIndex", by_index_(index, &device)));
    unsigned current = 0, pending = 0;
    if (mig_mode_ != nullptr && mig_mode_(device, &current, &pending) == 0 &&
        current == kNvmlMigEnabled) {
      return absl::FailedPreconditionError(absl::StrCat(
          "GPU ", index, " (", Uuid(index),
          ") is in MIG mode: its memory belongs to its instances, which "
          "cannot be read here; give --max_memory"));
    }
    NvmlMemory memory{};
    ACCELERATE_RETURN_IF_ERROR(
        Check("nvmlDeviceGetMemoryInfo", memory_(device, &memory)));
    return static_cast<int64_t>(memory.free);
  }

 private:
  explicit Nvml(void* library) : library_(library) {}

  absl::Status Check(const char* what, NvmlReturn result) const {
    if (result == 0) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(
        "reading free GPU memory from NVIDIA's driver: ", what, " failed: ",
        error_string_ != nullptr ? error_string_(result) : "", " (", result,
        ")"));
  }

  void* library_;
  bool initialized_ = false;
  NvmlReturn (*init_)() = nullptr;
  NvmlReturn (*shutdown_)() = nullptr;
  const char* (*error_string_)(NvmlReturn) = nullptr;
  NvmlReturn (*count_)(unsigned*) = nullptr;
  NvmlReturn (*by_index_)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*uuid_)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*memory_)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*mig_mode_)(NvmlDevice, unsigned*, unsigned*) = nullptr;
};

}  // namespace

absl::StatusOr<int64_t> AvailableCpuMemory(const std::string& meminfo) {
  std::ifstream file(meminfo);
  if (!file) {
    return absl::UnavailableError(
        absl::StrCat("cannot read the available memory from ", meminfo));
  }
  std::string line;
  while (std::getline(file, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    int64_t kib = 0;
    if (!absl::ConsumeSuffix(&rest, " kB") ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib) || kib < 0) {
      return absl::DataLossError(
          absl::StrCat(meminfo, ": unreadable line \"", line, "\""));
    }
    return kib * 1024;
  }
  return absl::DataLossError(absl::StrCat(meminfo, " has no MemAvailable"));
}

absl::StatusOr<std::optional<std::vector<VisibleGpu>>> ParseVisibleDevices(
    const std::optional<std::string>& value) {
  if (!value) return std::nullopt;
  std::vector<VisibleGpu> gpus;
  for (absl::string_view entry : absl::StrSplit(*value, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (absl::StartsWith(entry, "MIG-")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CUDA_VISIBLE_DEVICES names MIG instance \"", entry,
          "\", whose free memory cannot be read here; give --max_memory"));
    }
    int index = 0;
    if (absl::SimpleAtoi(entry, &index) && index >= 0) {
      gpus.push_back({index, ""});
    } else if (absl::StartsWith(entry, "GPU-") && entry.size() > 4) {
      gpus.push_back({std::nullopt, std::string(entry)});
    } else {
      break;  // CUDA ignores this entry and all after it.
    }
  }
  return gpus;
}

absl::StatusOr<std::vector<int64_t>> DriverFreeGpuMemory(
    const std::optional<std::string>& visible_devices) {
  ACCELERATE_ASSIGN_OR_RETURN(const auto visible,
                              ParseVisibleDevices(visible_devices));
  if (visible && visible->empty()) return std::vector<int64_t>();
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<Nvml> nvml, Nvml::Open());
  if (nvml == nullptr) return std::vector<int64_t>();
  ACCELERATE_ASSIGN_OR_RETURN(const int count, nvml->Count());
  // The driver's indices of the GPUs selected, in CUDA's numbering.
  std::vector<int> selected;
  if (!visible) {
    for (int i = 0; i < count; ++i) selected.push_back(i);
  } else {
    std::vector<std::string> uuids;
    for (const VisibleGpu& wanted : *visible) {
      int found = -1;
      if (wanted.index) {
        if (*wanted.index < count) found = *wanted.index;
      } else {
        if (uuids.empty()) {
          for (int i = 0; i < count; ++i) uuids.push_back(nvml->Uuid(i));
        }
        for (int i = 0; i < count; ++i) {
          if (uuids[i].empty() || !absl::StartsWith(uuids[i], wanted.uuid)) {
            continue;
          }
          if (found >= 0) {  // An ambiguous prefix: CUDA stops there too.
            found = -1;
            break;
          }
          found = i;
        }
      }
      if (found < 0) break;
      selected.push_back(found);
    }
  }
  // Only the selected GPUs are read: one the process does not use may be
  // unreadable (lost, not permitted) without harm.
  std::vector<int64_t> free;
  for (int index : selected) {
    ACCELERATE_ASSIGN_OR_RETURN(const int64_t bytes, nvml->FreeBytes(index));
    free.push_back(bytes);
  }
  return free;
}

absl::StatusOr<MaxMemory> DriverMaxMemory(
    const std::optional<std::string>& visible_devices,
    const std::string& meminfo) {
  ACCELERATE_ASSIGN_OR_RETURN(const std::vector<int64_t> gpus,
                              DriverFreeGpuMemory(visible_devices));
  MaxMemory memory;
  for (size_t i = 0; i < gpus.size(); ++i) {
    memory.emplace_back(Device::Gpu(static_cast<int>(i)), gpus[i]);
  }
  ACCELERATE_ASSIGN_OR_RETURN(const int64_t cpu, AvailableCpuMemory(meminfo));
  memory.emplace_back(Device::Cpu(), cpu);
  return memory;
}

}  // namespace accelerate::bigmodel
