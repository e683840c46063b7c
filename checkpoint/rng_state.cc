#include "checkpoint/rng_state.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include "checkpoint/internal/ivalue_fields.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

#ifdef ACCELERATE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace accelerate::checkpoint {
namespace {

at::Tensor StateOf(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

absl::Status SetState(at::Generator generator, const at::Tensor& bytes,
                      const std::string& what) {
  return state::RunGuarded(what, [&] {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(bytes);
  });
}

}  // namespace

void AddGeneratorStates(c10::Dict<c10::IValue, c10::IValue>& states) {
  states.insert("torch_manual_seed",
                StateOf(at::detail::getDefaultCPUGenerator()));
#ifdef ACCELERATE_WITH_CUDA
  if (at::cuda::is_available()) {
    c10::List<at::Tensor> per_gpu;
    for (int i = 0; i < at::cuda::device_count(); ++i) {
      per_gpu.push_back(StateOf(at::cuda::detail::getDefaultCUDAGenerator(i)));
    }
    states.insert("torch_cuda_manual_seed", per_gpu);
  }
#endif
}

absl::Status RestoreGeneratorStates(
    const c10::Dict<c10::IValue, c10::IValue>& states,
    const std::string& source) {
  using checkpoint_internal::AsTensor;
  using checkpoint_internal::Field;
  using checkpoint_internal::FieldPath;
  const FieldPath root{source, ""};
  ACCELERATE_ASSIGN_OR_RETURN(c10::IValue cpu_value,
                              Field(states, "torch_manual_seed", root));
  ACCELERATE_ASSIGN_OR_RETURN(
      at::Tensor cpu, AsTensor(cpu_value, root.Key("torch_manual_seed")));
  ACCELERATE_RETURN_IF_ERROR(
      SetState(at::detail::getDefaultCPUGenerator(), cpu,
               absl::StrCat(root.Key("torch_manual_seed").ToString(),
                            ": setting the CPU generator")));
#ifdef ACCELERATE_WITH_CUDA
  if (at::cuda::is_available()) {
    if (auto found = states.find("torch_cuda_manual_seed");
        found != states.end() && found->value().isList()) {
      c10::List<c10::IValue> per_gpu = found->value().toList();
      for (size_t i = 0;
           i < per_gpu.size() && i < static_cast<size_t>(at::cuda::device_count());
           ++i) {
        if (!per_gpu.get(i).isTensor()) continue;
        ACCELERATE_RETURN_IF_ERROR(SetState(
            at::cuda::detail::getDefaultCUDAGenerator(i),
            per_gpu.get(i).toTensor(),
            absl::StrCat(source, ": setting GPU ", i, "'s generator")));
      }
    }
  }
#endif
  return absl::OkStatus();
}

}  // namespace accelerate::checkpoint
