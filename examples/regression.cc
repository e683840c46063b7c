// The equivalence check of the Accelerator: fits y = a*x + b (double
// precision, a = b = 0 at the start) to 64 points x_k = -1 + 2k/63,
// y_k = 2 x_k + 3 with plain SGD on the mean squared error, no shuffling.
// Two processes with a per-process batch of 8 must end where one process
// with a batch of 16 ends, with and without gradient accumulation.
//
//   accelerate launch --num_processes 2 bazel-bin/examples/regression
//       --batch_size 8 --epochs 3 --gradient_accumulation_steps 2
//   (one command line)
//
// On exit the main process prints {"a": <a>, "b": <b>} with full precision.

#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "data/data_loader.h"

ABSL_FLAG(int64_t, batch_size, 16, "Batch size per process.");
ABSL_FLAG(int, epochs, 3, "Passes over the 64 points.");
ABSL_FLAG(int, gradient_accumulation_steps, 1,
          "Batches per optimizer step (overrides the launcher's value).");
ABSL_FLAG(double, lr, 0.1, "SGD learning rate.");
ABSL_FLAG(int, fail_rank, -1, "For tests: this rank throws ...");
ABSL_FLAG(int, fail_at_step, -1, "... before this step.");

namespace {

struct LineImpl : torch::nn::Module {
  LineImpl() {
    a = register_parameter("a", torch::zeros({1}, torch::kDouble));
    b = register_parameter("b", torch::zeros({1}, torch::kDouble));
  }
  torch::Tensor forward(const torch::Tensor& x) { return a * x + b; }
  torch::Tensor a, b;
};
TORCH_MODULE(Line);

int Run() {
  accelerate::AcceleratorOptions options;
  options.gradient_accumulation_steps =
      absl::GetFlag(FLAGS_gradient_accumulation_steps);
  auto accelerator = accelerate::Accelerator::Create(options);
  if (!accelerator.ok()) {
    std::cerr << "regression: " << accelerator.status() << std::endl;
    return 1;
  }
  auto& acc = **accelerator;

  const torch::Tensor x =
      -1 + 2 * torch::arange(64, torch::kDouble).unsqueeze(1) / 63;
  const torch::Tensor y = 2 * x + 3;
  Line model;
  auto optimizer = std::make_shared<torch::optim::SGD>(
      model->parameters(), torch::optim::SGDOptions(absl::GetFlag(FLAGS_lr)));
  accelerate::data::DataLoaderOptions loader_options;
  loader_options.batch_size = absl::GetFlag(FLAGS_batch_size);
  auto prepared_model = acc.PrepareModel(model.ptr());
  auto loader = acc.PrepareDataLoader(
      std::make_shared<accelerate::data::TensorDataset>(x, y), loader_options);
  if (!prepared_model.ok() || !loader.ok()) {
    std::cerr << "regression: "
              << (prepared_model.ok() ? loader.status() : prepared_model.status())
              << std::endl;
    return 1;
  }
  accelerate::PreparedOptimizer* opt = acc.PrepareOptimizer(optimizer);

  int64_t step = 0;
  for (int epoch = 0; epoch < absl::GetFlag(FLAGS_epochs); ++epoch) {
    while (true) {
      auto batch = (*loader)->Next();
      if (!batch.ok()) {
        std::cerr << "regression: " << batch.status() << std::endl;
        return 1;
      }
      if (!batch->has_value()) break;
      if (acc.State().process_index() == absl::GetFlag(FLAGS_fail_rank) &&
          step == absl::GetFlag(FLAGS_fail_at_step)) {
        throw std::runtime_error("injected failure");
      }
      auto scope = acc.Accumulate(*model);
      if (!scope.status().ok()) {
        std::cerr << "regression: " << scope.status() << std::endl;
        return 1;
      }
      const torch::Tensor loss =
          torch::mse_loss(model->forward((**batch).tensor(0)), (**batch).tensor(1));
      if (absl::Status done = acc.Backward(loss); !done.ok()) {
        std::cerr << "regression: rank " << acc.State().process_index() << ": "
                  << done << std::endl;
        return 1;
      }
      if (absl::Status stepped = opt->step(); !stepped.ok()) {
        std::cerr << "regression: " << stepped << std::endl;
        return 1;
      }
      opt->zero_grad();
      ++step;
    }
  }
  if (acc.IsMainProcess()) {
    std::printf("{\"a\": %.17g, \"b\": %.17g}\n", model->a.item<double>(),
                model->b.item<double>());
  }
  return acc.WaitForEveryone().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
