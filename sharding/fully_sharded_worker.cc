// One rank of fully_sharded_failure_test: trains a small model under
// FULL_SHARD (two units) for a few steps; with CRASH_RANK set, that rank
// dies (exit code 3) just before the forward of step CRASH_STEP, while its
// peers wait in that forward's all-gather (or, with CRASH_BEFORE=backward,
// just before that step's backward, while its peers reduce gradients).
// Prints "DONE" after the last step, or the error that ended the run (exit
// code 2). WORKER_DEVICE=gpu puts the model and batches on the process's
// device (its GPU, over NCCL: fully_sharded_gpu_test).

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include "sharding/fully_sharded_model.h"
#include "state/partial_state.h"
#include "state/torch_errors.h"

namespace {

int EnvInt(const char* name, int fallback) {
  const char* text = std::getenv(name);
  int value = fallback;
  if (text != nullptr && !absl::SimpleAtoi(text, &value)) return fallback;
  return value;
}

}  // namespace

int main() {
  using namespace accelerate;  // NOLINT: a small program.
  state::PartialStateOptions options;
  options.timeout = absl::Seconds(60);
  auto state = state::PartialState::Create(options);
  if (!state.ok()) {
    std::cerr << "create: " << state.status() << std::endl;
    return 1;
  }
  torch::nn::Sequential model(torch::nn::Linear(8, 32), torch::nn::Tanh(),
                              torch::nn::Linear(32, 4));
  const char* where = std::getenv("WORKER_DEVICE");
  const c10::Device device = where != nullptr && std::string(where) == "gpu"
                                 ? (*state)->device()
                                 : c10::Device(c10::kCPU);
  model->to(device);
  auto sharded = sharding::FullyShardedModel::Create(
      model.ptr(), **state, {.units = {"0", "2"}});
  if (!sharded.ok()) {
    std::cerr << "shard: " << sharded.status() << std::endl;
    return 1;
  }
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  if (absl::Status taken = (*sharded)->ShardOptimizer(optimizer); !taken.ok()) {
    std::cerr << "optimizer: " << taken << std::endl;
    return 1;
  }
  const int crash_rank = EnvInt("CRASH_RANK", -1);
  const int crash_step = EnvInt("CRASH_STEP", 2);
  const int rank = (*state)->process_index();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(rank);
  const char* crash_before = std::getenv("CRASH_BEFORE");
  const bool in_backward =
      crash_before != nullptr && std::string(crash_before) == "backward";
  const auto crash = [&](int step, bool backward) {
    if (rank == crash_rank && step == crash_step && backward == in_backward) {
      std::cout << "CRASHING" << std::endl;
      ::_exit(3);
    }
  };
  for (int step = 0; step < 4; ++step) {
    crash(step, /*backward=*/false);
    absl::Status ran = state::RunGuarded("training step", [&] {
      optimizer.zero_grad();
      at::Tensor loss =
          model->forward(torch::randn({5, 8}, generator).to(device))
              .square()
              .mean();
      crash(step, /*backward=*/true);
      loss.backward();
      optimizer.step();
    });
    if (!ran.ok()) {
      std::cout << "ERROR " << ran.message() << std::endl;
      return 2;
    }
  }
  std::cout << "DONE" << std::endl;
  return 0;
}
