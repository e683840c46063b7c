// Memory budgets per device, as Accelerate's `max_memory`: bytes that
// InferAutoDeviceMap (device_map.h) may place on each GPU, the CPU and the
// disk, parsed from text such as "0=10GiB,1=10GiB,cpu=30GB,disk=1TB".
//
// clang-format off
//   absl::StatusOr<int64_t> Example() {
//     absl::StatusOr<MaxMemory> memory = ParseMaxMemory("cpu=30GB,0=10GiB");
//     if (!memory.ok()) return memory.status();  // InvalidArgument
//     // GPUs first, then the CPU: {{"0", 10 << 30}, {"cpu", 30'000'000'000}}.
//     const MaxMemory written_in_code = {{"0", int64_t{10} << 30},
//                                        {"cpu", 1 << 20}};
//     return (*memory)[0].second + written_in_code[1].second;
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_MAX_MEMORY_H_
#define ACCELERATE_BIGMODEL_MAX_MEMORY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/device.h"

namespace accelerate::bigmodel {

// Devices with their byte budgets, in placement order: GPUs by index, then
// "cpu", then "disk".
using MaxMemory = std::vector<std::pair<Device, int64_t>>;

// Parses "0=10GiB,1=10GiB,cpu=30GB,disk=1TB": devices as Device::Parse
// reads them, each named once; sizes in bytes or with Accelerate's units
// (KB/MB/GB/TB = 10^3.., KiB/MiB/GiB/TiB = 2^10..; a lowercase "b" after a
// decimal unit means bits). The result is in placement order.
// `InvalidArgument` names the bad entry.
[[nodiscard]] absl::StatusOr<MaxMemory> ParseMaxMemory(const std::string& text);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_MAX_MEMORY_H_
