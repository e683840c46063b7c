// Our side of checkpoint_interop_test: the same small model, optimizer and
// StepLR as checkpoint_interop_peer.py (Python Accelerate 1.15), trained on
// the same data, and either
//
//   checkpoint_interop save <sgd|adam|adamw> <processes> <dir> <out>
//     trains `kTrainSteps` steps, `SaveState(dir)`, writes what it saved to
//     `<out>/rank<r>.pt`, then takes one more step and adds its result;
//   checkpoint_interop load <sgd|adam|adamw> <processes> <dir> <out>
//     builds everything afresh (other weights, other hyperparameters),
//     `LoadState(dir)`, writes what it restored to `<out>/rank<r>.pt`, then
//     takes the same next step and adds its result.
//
// `<processes>` is 1, or 2 (ranks as threads over gloo, as sync_trace).
// The dump (`torch.save` format, read by the peer) is taken from LibTorch's
// own objects, not through checkpoint/'s mappings, so that a mapping that
// mislabels a value shows:
//   {"params": {name: tensor},
//    "state": {name: {"step": int, "exp_avg": t, ... | "momentum_buffer": t}},
//    "groups": [{"lr", "momentum", "betas", ...}],
//    "scheduler": {"last_epoch": int, "base_lrs": [..], "last_lr": [..]},
//    "custom": {"batches": int}, "accumulation_step": int,
//    "cpu_generator": the CPU generator's state (uint8 tensor),
//    "next_params": {name: tensor}, "next_lr": [..]}

#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "checkpoint/scheduler_state.h"
#include "checkpoint/torch_file.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"

namespace accelerate {
namespace {

using Dict = c10::Dict<c10::IValue, c10::IValue>;

// Steps before the save. With StepLR(step_size=3, gamma=0.5): Python's
// StepLR decays on its 3rd call, LibTorch's on its 4th (LibTorch's
// `get_lrs` reads the step count before incrementing it, Python's after),
// so after 4 steps both have decayed once, and neither decays on the 5th
// (the next step compared); with 2 processes (2 scheduler calls per step)
// both have decayed twice after 8 calls and three times after 10.
constexpr int kTrainSteps = 4;
constexpr int kStepSize = 3;
constexpr double kGamma = 0.5;

Dict NewDict() { return Dict(c10::AnyType::get(), c10::AnyType::get()); }

// The twin of the peer's `Net`: the same parameter names and shapes.
struct Net : torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", torch::nn::Linear(4, 8));
    fc2 = register_module("fc2", torch::nn::Linear(8, 3));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

// Deterministic weights, as the peer's `init_weights`: parameter i (in
// registration order) is 0.5 * sin(0.37 * arange + offset + i).
void InitWeights(Net& net, double offset) {
  torch::NoGradGuard no_grad;
  int i = 0;
  for (auto& param : net.parameters()) {
    const at::Tensor values =
        torch::sin(torch::arange(param.numel(), torch::kFloat) * 0.37 +
                   (offset + i)) *
        0.5;
    param.copy_(values.reshape(param.sizes()));
    ++i;
  }
}

// The batch of step `k` on `rank`, as the peer's `batch`.
std::pair<at::Tensor, at::Tensor> Batch(int rank, int k) {
  const at::Tensor x =
      torch::sin(torch::arange(24, torch::kFloat).reshape({6, 4}) * 0.7 +
                 rank) +
      0.1 * k;
  const at::Tensor y =
      torch::cos(torch::arange(18, torch::kFloat).reshape({6, 3}) * 0.3 - rank);
  return {x, y};
}

// The hyperparameters the saving side trains with (`fresh`: the other ones
// a loading side starts from, which loading must replace). As the peer's
// `make_optimizer`.
absl::StatusOr<std::shared_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const std::string& kind, std::vector<at::Tensor> params, bool fresh) {
  if (kind == "sgd") {
    return std::make_shared<torch::optim::SGD>(
        params, fresh ? torch::optim::SGDOptions(0.5).momentum(0.5)
                      : torch::optim::SGDOptions(0.05)
                            .momentum(0.9)
                            .dampening(0.1)
                            .weight_decay(0.01));
  }
  if (kind == "adam") {
    return std::make_shared<torch::optim::Adam>(
        params, fresh
                    ? torch::optim::AdamOptions(0.3).betas({0.5, 0.6}).eps(1e-3)
                    : torch::optim::AdamOptions(0.01)
                          .betas({0.85, 0.995})
                          .eps(1e-7)
                          .weight_decay(0.02));
  }
  if (kind == "adamw") {
    return std::make_shared<torch::optim::AdamW>(
        params, fresh ? torch::optim::AdamWOptions(0.3)
                            .betas({0.5, 0.6})
                            .eps(1e-3)
                            .weight_decay(0.0)
                      : torch::optim::AdamWOptions(0.01)
                            .betas({0.9, 0.98})
                            .eps(1e-6)
                            .weight_decay(0.05)
                            .amsgrad(true));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("optimizer \"", kind, "\" is not one of sgd, adam, adamw"));
}

// Batches trained, saved with the checkpoint (the peer's `Counter`).
struct Counter {
  int64_t batches = 0;
  c10::IValue state_dict() const {
    Dict state = NewDict();
    state.insert("batches", batches);
    return state;
  }
  absl::Status load_state_dict(const c10::IValue& value) {
    if (!value.isGenericDict()) {
      return absl::InvalidArgumentError("counter state is not a dict");
    }
    batches = value.toGenericDict().at("batches").toInt();
    return absl::OkStatus();
  }
};

c10::IValue Params(const Net& net) {
  Dict out = NewDict();
  for (const auto& item : net.named_parameters()) {
    out.insert(item.key(), item.value().detach().clone());
  }
  return out;
}

c10::IValue Lrs(const torch::optim::Optimizer& optimizer) {
  c10::List<double> lrs;
  for (const auto& group : optimizer.param_groups()) {
    lrs.push_back(group.options().get_lr());
  }
  return lrs;
}

void Put(Dict& entry, const char* key, const at::Tensor& t) {
  if (t.defined()) entry.insert(key, t.clone());
}

// The optimizer's state by parameter name, straight from LibTorch's
// per-parameter state objects.
c10::IValue OptimizerState(const Net& net, torch::optim::Optimizer& optimizer,
                           const std::string& kind) {
  Dict out = NewDict();
  for (const auto& item : net.named_parameters()) {
    auto found = optimizer.state().find(item.value().unsafeGetTensorImpl());
    if (found == optimizer.state().end()) continue;
    Dict entry = NewDict();
    if (kind == "sgd") {
      const auto& s =
          static_cast<const torch::optim::SGDParamState&>(*found->second);
      Put(entry, "momentum_buffer", s.momentum_buffer());
    } else if (kind == "adam") {
      const auto& s =
          static_cast<const torch::optim::AdamParamState&>(*found->second);
      entry.insert("step", s.step());
      Put(entry, "exp_avg", s.exp_avg());
      Put(entry, "exp_avg_sq", s.exp_avg_sq());
      Put(entry, "max_exp_avg_sq", s.max_exp_avg_sq());
    } else {
      const auto& s =
          static_cast<const torch::optim::AdamWParamState&>(*found->second);
      entry.insert("step", s.step());
      Put(entry, "exp_avg", s.exp_avg());
      Put(entry, "exp_avg_sq", s.exp_avg_sq());
      Put(entry, "max_exp_avg_sq", s.max_exp_avg_sq());
    }
    out.insert(item.key(), entry);
  }
  return out;
}

// The hyperparameters of each group, under Python's names.
c10::IValue Groups(torch::optim::Optimizer& optimizer,
                   const std::string& kind) {
  c10::List<c10::IValue> groups(c10::AnyType::get());
  for (auto& group : optimizer.param_groups()) {
    Dict out = NewDict();
    if (kind == "sgd") {
      const auto& o =
          static_cast<const torch::optim::SGDOptions&>(group.options());
      out.insert("lr", o.lr());
      out.insert("momentum", o.momentum());
      out.insert("dampening", o.dampening());
      out.insert("weight_decay", o.weight_decay());
      out.insert("nesterov", o.nesterov());
    } else {
      double lr, eps, weight_decay;
      std::tuple<double, double> betas;
      bool amsgrad;
      if (kind == "adam") {
        const auto& o =
            static_cast<const torch::optim::AdamOptions&>(group.options());
        lr = o.lr(), eps = o.eps(), weight_decay = o.weight_decay();
        betas = o.betas(), amsgrad = o.amsgrad();
      } else {
        const auto& o =
            static_cast<const torch::optim::AdamWOptions&>(group.options());
        lr = o.lr(), eps = o.eps(), weight_decay = o.weight_decay();
        betas = o.betas(), amsgrad = o.amsgrad();
      }
      out.insert("lr", lr);
      c10::List<double> b;
      b.push_back(std::get<0>(betas));
      b.push_back(std::get<1>(betas));
      out.insert("betas", b);
      out.insert("eps", eps);
      out.insert("weight_decay", weight_decay);
      out.insert("amsgrad", amsgrad);
    }
    groups.push_back(out);
  }
  return groups;
}

absl::Status Run(const std::string& mode, const std::string& kind,
                 const std::string& dir, const std::string& out,
                 const state::Environment& env) {
  AcceleratorOptions options;
  options.cpu = true;
  // A rank that fails must not leave the other waiting for long.
  options.timeout = absl::Seconds(60);
  ACCELERATE_ASSIGN_OR_RETURN(auto accelerator,
                              Accelerator::Create(options, env));
  const int rank = accelerator->State().process_index();
  const bool fresh = mode == "load";

  auto net = std::make_shared<Net>();
  InitWeights(*net, fresh ? 5.0 : 1.0);
  ACCELERATE_ASSIGN_OR_RETURN(
      std::shared_ptr<torch::optim::Optimizer> optimizer,
      MakeOptimizer(kind, net->parameters(), fresh));
  auto scheduler =
      std::make_shared<torch::optim::StepLR>(*optimizer, kStepSize, kGamma);
  ACCELERATE_ASSIGN_OR_RETURN(auto prepared,
                              accelerator->Prepare(net, optimizer, scheduler));
  auto& [model, opt, sched] = prepared;
  auto counter = std::make_shared<Counter>();
  accelerator->RegisterForCheckpointing(counter);

  auto step = [&](int k) -> absl::Status {
    AccumulateScope scope = accelerator->Accumulate(*model);
    ACCELERATE_RETURN_IF_ERROR(scope.status());
    auto [x, y] = Batch(rank, k);
    const at::Tensor loss = torch::mse_loss(model->forward(x), y);
    ACCELERATE_RETURN_IF_ERROR(accelerator->Backward(loss));
    ACCELERATE_RETURN_IF_ERROR(opt->step());
    sched->step();
    opt->zero_grad();
    ++counter->batches;
    return absl::OkStatus();
  };

  if (mode == "save") {
    for (int k = 0; k < kTrainSteps; ++k) ACCELERATE_RETURN_IF_ERROR(step(k));
    ACCELERATE_RETURN_IF_ERROR(accelerator->SaveState(dir).status());
  } else {
    ACCELERATE_RETURN_IF_ERROR(accelerator->LoadState(dir).status());
  }
  Dict dump = NewDict();
  dump.insert("params", Params(*model));
  dump.insert("state", OptimizerState(*model, *optimizer, kind));
  dump.insert("groups", Groups(*optimizer, kind));
  Dict sched_dump = NewDict();
  sched_dump.insert("last_epoch",
                    checkpoint::SchedulerSteps(sched->scheduler()));
  c10::List<double> base_lrs;
  for (double lr : sched->base_lrs()) base_lrs.push_back(lr);
  sched_dump.insert("base_lrs", base_lrs);
  sched_dump.insert("last_lr", Lrs(*optimizer));
  dump.insert("scheduler", sched_dump);
  dump.insert("custom", counter->state_dict());
  dump.insert("accumulation_step",
              static_cast<int64_t>(accelerator->gradient_state().step()));
  {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(cpu.mutex());
    dump.insert("cpu_generator", cpu.get_state());
  }

  // The step after the checkpoint, on the batch the saving run had next.
  ACCELERATE_RETURN_IF_ERROR(step(kTrainSteps));
  dump.insert("next_params", Params(*model));
  dump.insert("next_lr", Lrs(*optimizer));
  return checkpoint::SaveTorchFile(
      (std::filesystem::path(out) / absl::StrCat("rank", rank, ".pt")).string(),
      dump);
}

int Main(int argc, char** argv) {
  int processes = 0;
  if (argc != 6 ||
      (std::string(argv[1]) != "save" && std::string(argv[1]) != "load") ||
      !absl::SimpleAtoi(argv[3], &processes) || processes < 1 ||
      processes > 2) {
    std::fprintf(stderr,
                 "usage: checkpoint_interop save|load sgd|adam|adamw 1|2 "
                 "<checkpoint dir> <dump dir>\n");
    return 2;
  }
  // One intra-op thread, as the peer: the same kernels in the same order.
  torch::set_num_threads(1);
  const std::string mode = argv[1], kind = argv[2], dir = argv[4],
                    out = argv[5];
  std::vector<absl::Status> statuses;
  if (processes == 1) {
    statuses.push_back(Run(mode, kind, dir, out, state::ProcessEnvironment()));
  } else {
    statuses =
        testing::RunOnRankThreads(processes, {{"OMP_NUM_THREADS", "1"}},
                                  [&](int rank, const state::Environment& env) {
                                    return Run(mode, kind, dir, out, env);
                                  });
  }
  int rc = 0;
  for (size_t rank = 0; rank < statuses.size(); ++rank) {
    if (!statuses[rank].ok()) {
      std::fprintf(stderr, "checkpoint_interop: rank %zu: %s\n", rank,
                   statuses[rank].ToString().c_str());
      rc = 1;
    }
  }
  return rc;
}

}  // namespace
}  // namespace accelerate

int main(int argc, char** argv) { return accelerate::Main(argc, argv); }
