#include "bigmodel/available_memory.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#ifdef ACCELERATE_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {

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
