// Uses `//accelerator`: fits y = 2x + 1 data-parallel and checks that every
// process ends with the same weights, close to the answer.

#include <iostream>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "state/collectives.h"
#include "state/status_macros.h"

namespace {

absl::Status Run() {
  ACCELERATE_ASSIGN_OR_RETURN(auto accelerator,
                              accelerate::Accelerator::Create());
  torch::manual_seed(0);
  const at::Tensor x = torch::rand({256, 1});
  const at::Tensor y = 2 * x + 1;
  auto model = torch::nn::Linear(1, 1);
  auto optimizer = std::make_shared<torch::optim::SGD>(
      model->parameters(), torch::optim::SGDOptions(0.5));
  auto scheduler =
      std::make_shared<torch::optim::StepLR>(*optimizer, /*step_size=*/1000);
  ACCELERATE_ASSIGN_OR_RETURN(
      auto prepared,
      accelerator->Prepare(
          model, optimizer,
          accelerate::DataLoaderSpec{
              std::make_shared<accelerate::data::TensorDataset>(x, y),
              {.batch_size = 16, .shuffle = true}},
          scheduler));
  auto& [module, opt, loader, sched] = prepared;
  for (int epoch = 0; epoch < 30; ++epoch) {
    loader->SetEpoch(epoch);
    while (true) {
      ACCELERATE_ASSIGN_OR_RETURN(auto batch, loader->Next());
      if (!batch) break;
      auto step = accelerator->Accumulate(*module);
      ACCELERATE_RETURN_IF_ERROR(step.status());
      at::Tensor loss =
          torch::mse_loss(model->forward(batch->tensor(0)), batch->tensor(1));
      ACCELERATE_RETURN_IF_ERROR(accelerator->Backward(loss));
      ACCELERATE_RETURN_IF_ERROR(opt->step());
      sched->step();
      opt->zero_grad();
    }
  }
  const at::Tensor weights =
      torch::cat({model->weight.flatten(), model->bias.flatten()}).detach();
  ACCELERATE_ASSIGN_OR_RETURN(
      at::Tensor all, accelerate::state::Gather(accelerator->State(), weights));
  const at::Tensor per_rank = all.view({-1, 2});
  if (!torch::allclose(per_rank, per_rank[0].expand_as(per_rank))) {
    return absl::InternalError("the processes' weights differ");
  }
  const double w = weights[0].item<double>(), b = weights[1].item<double>();
  if (std::abs(w - 2) > 0.05 || std::abs(b - 1) > 0.05) {
    return absl::InternalError(absl::StrCat("fitted y = ", w, "x + ", b));
  }
  accelerator->Print("trainer: ", accelerator->State().num_processes(),
                     " processes fitted y = ", w, "x + ", b);
  return absl::OkStatus();
}

}  // namespace

int main() {
  if (absl::Status status = Run(); !status.ok()) {
    std::cerr << status << "\n";
    return 1;
  }
  return 0;
}
