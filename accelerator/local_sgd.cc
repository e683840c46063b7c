#include "accelerator/local_sgd.h"

#include <vector>

#include <torch/torch.h>
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate {

LocalSgd::LocalSgd(Accelerator& accelerator, torch::nn::Module& model,
                   int local_sgd_steps, bool enabled)
    : accelerator_(accelerator),
      model_(model),
      local_sgd_steps_(local_sgd_steps),
      enabled_(enabled && accelerator.State().use_distributed()) {
  ACCELERATE_CHECK(local_sgd_steps >= 1)
      << "local_sgd_steps " << local_sgd_steps;
  if (enabled_) accelerator_.SetGradientSync(model_, false);
}

LocalSgd::~LocalSgd() {
  if (enabled_) accelerator_.SetGradientSync(model_, true);
}

absl::Status LocalSgd::Step() {
  // Every call counts, as in Accelerate.
  ++steps_;
  if (!enabled_ || steps_ % local_sgd_steps_ != 0) return absl::OkStatus();
  // As Accelerate's _sync_and_avg_model_params: every parameter becomes its
  // mean over the processes.
  torch::NoGradGuard no_grad;
  for (at::Tensor& param : model_.parameters()) {
    at::Tensor data = param.detach();
    ACCELERATE_RETURN_IF_ERROR(state::AllReduceInPlace(
        accelerator_.State(), data, {.reduction = state::Reduction::kMean}));
  }
  return absl::OkStatus();
}

}  // namespace accelerate
