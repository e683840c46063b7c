// The memory this machine has free now, as Accelerate's `get_max_memory()`
// measures it when no `max_memory` is given: each visible GPU's free bytes
// (what `torch.cuda.mem_get_info` reports) and the CPU's available RAM
// (`psutil.virtual_memory().available`, MemAvailable on Linux). Device maps
// planned without a `max_memory` use it.
//
// clang-format off
//   absl::StatusOr<accelerate::bigmodel::MaxMemory> Example() {
//     // {{"0", free bytes of GPU 0}, ..., {"cpu", available bytes}}.
//     return accelerate::bigmodel::AvailableMaxMemory();
//   }
// clang-format on
//
// Thread safety: safe to call from any thread.

#ifndef ACCELERATE_BIGMODEL_AVAILABLE_MEMORY_H_
#define ACCELERATE_BIGMODEL_AVAILABLE_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "bigmodel/driver_memory.h"
#include "bigmodel/max_memory.h"

namespace accelerate::bigmodel {

// (AvailableCpuMemory, the CPU's share, is in driver_memory.h.)

// Every visible GPU's free bytes, in index order (each GPU initialized
// first, as Accelerate does, so that the figure counts CUDA's context),
// then "cpu". GPUs only in a CUDA build (`--config=cuda`) on a machine that
// has them; CUDA_VISIBLE_DEVICES decides which are visible.
[[nodiscard]] absl::StatusOr<MaxMemory> AvailableMaxMemory();

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_AVAILABLE_MEMORY_H_
