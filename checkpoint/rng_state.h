// This process's LibTorch generator states under the keys Python
// Accelerate's `random_states_<i>.pkl` uses: `torch_manual_seed` (the CPU
// generator's state, the same bytes as Python's `torch.get_rng_state()`) and,
// in CUDA builds on a GPU, `torch_cuda_manual_seed` (one state per GPU).
// Python's and NumPy's generators (`random_state`, `numpy_random_seed`) have
// no LibTorch counterpart and are neither written nor read.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example() {
//     c10::Dict<c10::IValue, c10::IValue> states(c10::AnyType::get(), c10::AnyType::get());
//     AddGeneratorStates(states);
//     return RestoreGeneratorStates(states, "random_states_0.pkl");
//   }
// clang-format on
//
// Thread safety: takes each generator's lock.

#ifndef ACCELERATE_CHECKPOINT_RNG_STATE_H_
#define ACCELERATE_CHECKPOINT_RNG_STATE_H_

#include <string>

#include "absl/status/status.h"
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

namespace accelerate::checkpoint {

void AddGeneratorStates(c10::Dict<c10::IValue, c10::IValue>& states);

// Sets the generators from `states` (`source` names it in errors):
// `InvalidArgument` naming the key when `torch_manual_seed` is missing or
// not a generator state.
[[nodiscard]] absl::Status RestoreGeneratorStates(
    const c10::Dict<c10::IValue, c10::IValue>& states,
    const std::string& source);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_RNG_STATE_H_
