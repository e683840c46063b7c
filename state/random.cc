#include "state/random.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include "state/collectives.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"
#ifdef ACCELERATE_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace accelerate::state {
namespace {

absl::Status Synchronize(const PartialState& state, at::Generator generator,
                         const char* name) {
  at::Tensor bytes;
  ACCELERATE_RETURN_IF_ERROR(RunGuarded(absl::StrCat("reading the ", name,
                                                     " generator's state"),
                                        [&] {
    std::lock_guard<std::mutex> lock(generator.mutex());
    bytes = generator.get_state().to(state.device());
  }));
  ACCELERATE_ASSIGN_OR_RETURN(bytes, Broadcast(state, bytes));
  return RunGuarded(absl::StrCat("setting the ", name, " generator's state"),
                    [&] {
                      std::lock_guard<std::mutex> lock(generator.mutex());
                      generator.set_state(bytes.cpu());
                    });
}

}  // namespace

absl::StatusOr<RngType> ParseRngType(const std::string& name) {
  if (name == "torch") return RngType::kTorch;
  if (name == "cuda") return RngType::kCuda;
  if (name == "generator") return RngType::kGenerator;
  return absl::InvalidArgumentError(absl::StrCat(
      "rng_types: \"", name, "\" is not one of torch, cuda, generator"));
}

absl::Status SynchronizeRngStates(const PartialState& state,
                                  const std::vector<RngType>& types) {
  if (state.num_processes() == 1) return absl::OkStatus();
  for (RngType type : types) {
    switch (type) {
      case RngType::kTorch:
        ACCELERATE_RETURN_IF_ERROR(
            Synchronize(state, at::detail::getDefaultCPUGenerator(), "torch"));
        break;
      case RngType::kCuda:
        if (!state.device().is_cuda()) {
          return absl::FailedPreconditionError(
              "rng_types cuda: this process does not run on a GPU");
        }
#ifdef ACCELERATE_WITH_CUDA
        ACCELERATE_RETURN_IF_ERROR(Synchronize(
            state, at::cuda::detail::getDefaultCUDAGenerator(state.device().index()),
            "cuda"));
#endif
        break;
      case RngType::kGenerator:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace accelerate::state
