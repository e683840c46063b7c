// Accelerate's `LocalSGD`: each process steps on its own gradients (no
// all-reduce in backward) and every `local_sgd_steps` optimizer steps the
// processes average their parameters, trading some convergence per step for
// far less communication.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(Accelerator& accelerator, torch::nn::Module& model,
//                        PreparedOptimizer& optimizer, const at::Tensor& x) {
//     LocalSgd local_sgd(accelerator, model, /*local_sgd_steps=*/8);
//     for (int step = 0; step < 100; ++step) {
//       auto scope = accelerator.Accumulate(model);
//       at::Tensor loss = x.sum();  // the model's loss
//       ACCELERATE_RETURN_IF_ERROR(accelerator.Backward(loss));
//       ACCELERATE_RETURN_IF_ERROR(optimizer.step());
//       optimizer.zero_grad();
//       ACCELERATE_RETURN_IF_ERROR(local_sgd.Step());
//     }
//     return absl::OkStatus();  // gradient averaging resumes
//   }
// clang-format on
//
// Thread safety: the training thread. Ownership: borrows the Accelerator and
// the model, which must outlive it.

#ifndef ACCELERATE_ACCELERATOR_LOCAL_SGD_H_
#define ACCELERATE_ACCELERATOR_LOCAL_SGD_H_

#include <cstdint>

#include "absl/status/status.h"
#include <torch/nn/module.h>
#include "accelerator/accelerator.h"

namespace accelerate {

class LocalSgd {
 public:
  // Disabled (`enabled` false), it changes nothing: gradients are averaged
  // as usual and `Step` does nothing.
  // REQUIRES: `model` prepared by `accelerator`; local_sgd_steps >= 1.
  LocalSgd(Accelerator& accelerator, torch::nn::Module& model,
           int local_sgd_steps, bool enabled = true);
  LocalSgd(const LocalSgd&) = delete;
  LocalSgd& operator=(const LocalSgd&) = delete;
  // Gradient averaging resumes.
  ~LocalSgd();

  // After each optimizer step: every `local_sgd_steps`-th call (all calls
  // count, as in Accelerate) the model's parameters become their mean over
  // the processes (a collective then).
  [[nodiscard]] absl::Status Step();

 private:
  Accelerator& accelerator_;
  torch::nn::Module& model_;
  int local_sgd_steps_;
  bool enabled_;
  int64_t steps_ = 0;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_LOCAL_SGD_H_
