// The memory this machine has free now, read without LibTorch or CUDA (for
// the `accelerate plan-device-map` command, which has neither): the CPU's
// available RAM from /proc/meminfo, and each visible GPU's free bytes from
// NVIDIA's driver through NVML (`libnvidia-ml.so.1`, loaded at run time;
// absent: no GPUs). available_memory.h reads the same through LibTorch.
//
// clang-format off
//   absl::StatusOr<accelerate::bigmodel::MaxMemory> Example() {
//     const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
//     // {{"0", free bytes of GPU 0}, ..., {"cpu", available bytes}}.
//     return accelerate::bigmodel::DriverMaxMemory(
//         visible ? std::optional<std::string>(visible) : std::nullopt);
//   }
// clang-format on
//
// Thread safety: safe to call from any thread.

#ifndef ACCELERATE_BIGMODEL_DRIVER_MEMORY_H_
#define ACCELERATE_BIGMODEL_DRIVER_MEMORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/max_memory.h"

namespace accelerate::bigmodel {

// The CPU's available bytes: `MemAvailable` of `meminfo` (a
// /proc/meminfo-formatted file). `Unavailable` when it cannot be read,
// `DataLoss` when it has no such line.
[[nodiscard]] absl::StatusOr<int64_t> AvailableCpuMemory(
    const std::string& meminfo = "/proc/meminfo");

// One entry of CUDA_VISIBLE_DEVICES: a device index or a UUID (or UUID
// prefix) `GPU-...`.
struct VisibleGpu {
  std::optional<int> index;
  std::string uuid;
};

// What CUDA_VISIBLE_DEVICES (`value`; nullopt when unset) selects, as the
// CUDA runtime reads it: comma-separated entries up to the first that is
// neither an index nor a UUID, so "" and "-1" select none. nullopt: every
// device. `InvalidArgument` for a MIG instance (`MIG-...`), whose memory
// this cannot read.
[[nodiscard]] absl::StatusOr<std::optional<std::vector<VisibleGpu>>>
ParseVisibleDevices(const std::optional<std::string>& value);

// Each visible GPU's free bytes as the driver reports them, numbered as
// CUDA numbers them under `visible_devices` (CUDA_VISIBLE_DEVICES's value).
// The driver lists GPUs in PCI bus order, which is CUDA's unless GPUs of
// different speeds make CUDA put the fastest first (CUDA_DEVICE_ORDER=
// PCI_BUS_ID makes them agree). Empty without NVIDIA's driver; an entry
// naming no GPU ends the list (as in CUDA). Only the selected GPUs are
// read. `Unavailable` when the driver fails, `FailedPrecondition` for a GPU
// in MIG mode (its memory is its instances'), errors of
// ParseVisibleDevices.
[[nodiscard]] absl::StatusOr<std::vector<int64_t>> DriverFreeGpuMemory(
    const std::optional<std::string>& visible_devices);

// DriverFreeGpuMemory's GPUs, then "cpu" with AvailableCpuMemory(meminfo):
// Accelerate's `get_max_memory()` without torch.
[[nodiscard]] absl::StatusOr<MaxMemory> DriverMaxMemory(
    const std::optional<std::string>& visible_devices,
    const std::string& meminfo = "/proc/meminfo");

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DRIVER_MEMORY_H_
