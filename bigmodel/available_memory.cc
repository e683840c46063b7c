#include "bigmodel/available_memory.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#ifdef ACCELERATE_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {

absl::StatusOr<MaxMemory> AvailableMaxMemory() {
  MaxMemory memory;
#ifdef ACCELERATE_WITH_CUDA
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("reading free GPU memory", [&] {
    const int count = c10::cuda::device_count();
    for (int i = 0; i < count; ++i) {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(i));
      C10_CUDA_CHECK(cudaFree(nullptr));  // Creates the context first.
      size_t free = 0, total = 0;
      C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
      memory.emplace_back(Device::Gpu(i), static_cast<int64_t>(free));
    }
  }));
#endif
  ACCELERATE_ASSIGN_OR_RETURN(const int64_t cpu, AvailableCpuMemory());
  memory.emplace_back(Device::Cpu(), cpu);
  return memory;
}

}  // namespace accelerate::bigmodel
