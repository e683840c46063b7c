// Our side of the gradient-accumulation trace that sync_trace_peer.py records
// from Python Accelerate: the same 48 configurations (accumulation steps,
// split/dispatch batches, sync_each_batch, sync_with_dataloader) on 2 ranks
// (threads over gloo), batch by batch, printed as the same JSON on stdout.
//
//   bazel run //accelerator:sync_trace > ours.json

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "data/data_loader.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"

namespace accelerate {
namespace {

struct Config {
  int num_steps;
  bool split_batches;
  bool dispatch_batches;
  bool sync_each_batch;
  bool sync_with_dataloader;
};

// SGD that counts the steps it really takes.
class CountingSgd final : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  at::Tensor step(LossClosure closure = nullptr) override {
    ++steps;
    return torch::optim::SGD::step(std::move(closure));
  }
  int steps = 0;
};

std::string Bool(bool b) { return b ? "true" : "false"; }

absl::StatusOr<std::string> Run(const Config& config,
                                const state::Environment& env) {
  AcceleratorOptions options;
  options.cpu = true;
  // A rank that fails must not leave the other waiting for long.
  options.timeout = absl::Seconds(60);
  options.split_batches = config.split_batches;
  options.dispatch_batches = config.dispatch_batches;
  options.gradient_accumulation_plugin = {
      .num_steps = config.num_steps,
      .adjust_scheduler = true,
      .sync_with_dataloader = config.sync_with_dataloader,
      .sync_each_batch = config.sync_each_batch};
  ACCELERATE_ASSIGN_OR_RETURN(auto acc, Accelerator::Create(options, env));

  const at::Tensor i = torch::arange(14, torch::kFloat);
  const at::Tensor x = torch::stack({i, torch::ones({14})}, 1);
  const at::Tensor y = torch::remainder(i, 3).unsqueeze(1);
  auto model = torch::nn::Linear(2, 1);
  {
    torch::NoGradGuard no_grad;
    model->weight.copy_(torch::tensor({{0.5f, -0.25f}}));
    model->bias.fill_(0.1);
  }
  auto sgd = std::make_shared<CountingSgd>(model->parameters(),
                                           torch::optim::SGDOptions(0.1));
  // A learning rate that never moves: only the steps are counted.
  auto scheduler = std::make_shared<torch::optim::StepLR>(*sgd, 1 << 30);
  ACCELERATE_ASSIGN_OR_RETURN(
      auto prepared,
      acc->Prepare(model, sgd,
                   DataLoaderSpec{std::make_shared<data::TensorDataset>(x, y),
                                  {.batch_size = config.split_batches ? 4 : 2}},
                   scheduler));
  auto& [module, opt, loader, sched] = prepared;

  std::vector<std::string> batches;
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int index = 0;; ++index) {
      ACCELERATE_ASSIGN_OR_RETURN(auto batch, loader->Next());
      if (!batch.has_value()) break;
      auto scope = acc->Accumulate(*module);
      ACCELERATE_RETURN_IF_ERROR(scope.status());
      const at::Tensor loss =
          torch::mse_loss(module->forward(batch->tensor(0)), batch->tensor(1));
      ACCELERATE_RETURN_IF_ERROR(acc->Backward(loss));
      ACCELERATE_ASSIGN_OR_RETURN(
          const at::Tensor grads,
          acc->Gather(module->weight.grad().flatten().unsqueeze(0)));
      const bool reduced = torch::allclose(grads[0], grads[1], 0, 1e-7);
      const GradientState& gradients = acc->gradient_state();
      std::string record = absl::StrCat(
          "{\"epoch\": ", epoch, ", \"index\": ", index,
          ", \"samples\": ", batch->tensor(0).size(0),
          ", \"sync\": ", Bool(acc->sync_gradients()),
          ", \"reduced\": ", Bool(reduced),
          ", \"end\": ", Bool(gradients.end_of_dataloader()),
          ", \"remainder\": ", gradients.remainder());
      ACCELERATE_RETURN_IF_ERROR(opt->step());
      sched->step();
      opt->zero_grad();
      const at::Tensor grad = module->weight.grad();
      absl::StrAppend(&record, ", \"opt_steps\": ", sgd->steps,
                      ", \"sched_steps\": ", sched->scheduler_steps(),
                      ", \"grad_zero\": ",
                      Bool(!grad.defined() || grad.eq(0).all().item<bool>()),
                      "}");
      batches.push_back(std::move(record));
    }
  }
  const at::Tensor w = module->weight.detach().flatten();
  return absl::StrCat(
      "{\"num_steps\": ", config.num_steps,
      ", \"split_batches\": ", Bool(config.split_batches),
      ", \"dispatch_batches\": ", Bool(config.dispatch_batches),
      ", \"sync_each_batch\": ", Bool(config.sync_each_batch),
      ", \"sync_with_dataloader\": ", Bool(config.sync_with_dataloader),
      ", \"batches\": [", absl::StrJoin(batches, ", "), "], \"weight\": [",
      absl::StrFormat("%.9g, %.9g", w[0].item<double>(), w[1].item<double>()),
      "], \"bias\": ",
      absl::StrFormat("%.9g", module->bias.detach().item<double>()), "}");
}

int Main() {
  std::vector<Config> configs;
  for (int steps : {1, 2, 3}) {
    for (bool split : {false, true}) {
      for (bool dispatch : {false, true}) {
        for (bool each : {false, true}) {
          for (bool with_loader : {true, false}) {
            configs.push_back({steps, split, dispatch, each, with_loader});
          }
        }
      }
    }
  }
  std::vector<std::string> traces;
  for (const Config& config : configs) {
    // A fresh process group (and port) for each configuration.
    std::string trace;
    std::vector<absl::Status> statuses = testing::RunOnRankThreads(
        2, {{"OMP_NUM_THREADS", "1"}},
        [&](int rank, const state::Environment& env) -> absl::Status {
          ACCELERATE_ASSIGN_OR_RETURN(std::string mine, Run(config, env));
          if (rank == 0) trace = std::move(mine);
          return absl::OkStatus();
        });
    for (size_t rank = 0; rank < statuses.size(); ++rank) {
      if (!statuses[rank].ok()) {
        std::fprintf(stderr, "rank %zu: %s\n", rank,
                     std::string(statuses[rank].message()).c_str());
        return 1;
      }
    }
    traces.push_back(std::move(trace));
  }
  std::printf("{\"configs\": [%s]}\n", absl::StrJoin(traces, ", ").c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace accelerate

int main() { return accelerate::Main(); }
