// One process of the checkpoint tests (checkpoint_resume_test.cc): trains a
// small model with dropout (so the generators matter), AdamW and a StepLR on
// a shuffled loader whose epochs do not divide into accumulation cycles,
// and then, by `mode`:
//   full      trains `total` batches and writes the final weights;
//   save      trains `save_at` batches, saves a checkpoint, trains on to
//             `crash_at` batches and saves another, where process
//             `crash_rank` kills itself at stage `crash_stage` (none: no
//             crash), then trains to `total` and writes the final weights;
//   resume    builds everything afresh from another seed, loads the latest
//             checkpoint of the project (or `dir`; `map=1` maps the
//             optimizer's file instead of reading it) and trains to `total`.
// Arguments are key=value; the weights go to `<out>/final_<rank>.safetensors`.

#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "bigmodel/safetensors.h"
#include "checkpoint/model_state.h"
#include "precision/fp8_linear.h"
#include "state/status_macros.h"

namespace accelerate {
namespace {

// Fp8Linear: plain linear layers but under fp8, where their delayed
// scaling histories are part of the checkpoint.
struct Net : torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", precision::Fp8Linear(6, 16));
    fc2 = register_module("fc2", precision::Fp8Linear(16, 2));
  }
  at::Tensor forward(const at::Tensor& x) {
    return fc2(torch::dropout(torch::relu(fc1(x)), 0.3, is_training()));
  }
  precision::Fp8Linear fc1{nullptr}, fc2{nullptr};
};

// Batches trained so far, saved with the checkpoint as a custom object.
struct Counter {
  int64_t batches = 0;
  c10::IValue state_dict() const {
    c10::Dict<std::string, int64_t> state;
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

absl::Status Run(std::map<std::string, std::string> args) {
  auto arg = [&](const std::string& key, const std::string& fallback = "") {
    auto found = args.find(key);
    return found == args.end() ? fallback : found->second;
  };
  auto number = [&](const std::string& key, int64_t fallback) {
    int64_t value = fallback;
    if (args.count(key)) (void)absl::SimpleAtoi(args[key], &value);
    return value;
  };
  const std::string mode = arg("mode", "full");
  const int64_t total = number("total", 30);
  const int64_t save_at = number("save_at", -1);
  const int64_t crash_at = number("crash_at", -1);
  const int crash_rank = static_cast<int>(number("crash_rank", -1));
  const std::string crash_stage = arg("crash_stage");

  torch::manual_seed(mode == "resume" ? 999 : 1234);
  AcceleratorOptions options;
  options.cpu = true;
  options.gradient_accumulation_steps = 3;
  options.mixed_precision = arg("precision", "no");
  if (*options.mixed_precision == "fp16") {
    // The scale grows every other step until gradients overflow and steps
    // are skipped: the scaler's state matters to the result.
    options.grad_scaler.growth_interval = 2;
    options.grad_scaler.growth_factor = 4;
  }
  if (*options.mixed_precision == "fp8") {
    // Transformer Engine's delayed scaling, with a short history.
    options.fp8.backend = "TE";
    options.fp8.amax_history_len = 4;
  }
  if (!arg("project").empty()) {
    options.project_config.project_dir = arg("project");
    options.project_config.automatic_checkpoint_naming = true;
    if (args.count("total_limit")) {
      options.project_config.total_limit =
          static_cast<int>(number("total_limit", 1));
    }
  }
  ACCELERATE_ASSIGN_OR_RETURN(auto accelerator, Accelerator::Create(options));
  const int rank = accelerator->State().process_index();

  auto model = std::make_shared<Net>();
  auto optimizer = std::make_shared<torch::optim::AdamW>(
      model->parameters(), torch::optim::AdamWOptions(0.01));
  auto scheduler =
      std::make_shared<torch::optim::StepLR>(*optimizer, 4, 0.7);
  torch::manual_seed(7);  // The data is the same in every mode.
  const at::Tensor inputs = torch::randn({37, 6});
  const at::Tensor targets = (inputs.sum(1) > 0).to(at::kLong);
  torch::manual_seed(mode == "resume" ? 555 : 4321);
  auto dataset = std::make_shared<data::TensorDataset>(inputs, targets);
  ACCELERATE_ASSIGN_OR_RETURN(
      auto prepared,
      accelerator->Prepare(std::shared_ptr<torch::nn::Module>(model), optimizer,
                           scheduler,
                           DataLoaderSpec{dataset, {.batch_size = 4,
                                                    .shuffle = true,
                                                    .seed = 11}}));
  auto& [module, opt, sched, loader] = prepared;
  auto counter = std::make_shared<Counter>();
  accelerator->RegisterForCheckpointing(counter);

  if (mode == "resume") {
    ACCELERATE_ASSIGN_OR_RETURN(std::string loaded,
                                accelerator->LoadState(
                                    arg("dir"), {.map_files = arg("map") == "1"}));
    std::cout << "RESULT loaded " << loaded << " at " << counter->batches
              << std::endl;
  }
  auto save = [&](const std::string& name, bool crash) -> absl::Status {
    SaveStateOptions save_options;
    if (crash) {
      save_options.on_stage = [&](const std::string& stage) {
        if (rank == crash_rank && stage == crash_stage) ::raise(SIGKILL);
      };
    }
    const std::string dir =
        arg("project").empty() ? absl::StrCat(arg("dir"), "/", name) : "";
    return accelerator->SaveState(dir, save_options).status();
  };

  for (int64_t epoch = loader->epoch(); counter->batches < total; ++epoch) {
    loader->SetEpoch(epoch);
    while (counter->batches < total) {
      ACCELERATE_ASSIGN_OR_RETURN(std::optional<data::Batch> batch,
                                  loader->Next());
      if (!batch) break;
      {
        AccumulateScope step = accelerator->Accumulate(*model);
        ACCELERATE_RETURN_IF_ERROR(step.status());
        at::Tensor loss = torch::cross_entropy_loss(
            accelerator->Forward(model, batch->tensor(0)), batch->tensor(1));
        ACCELERATE_RETURN_IF_ERROR(accelerator->Backward(loss));
        ACCELERATE_RETURN_IF_ERROR(opt->step());
        sched->step();
        opt->zero_grad();
      }
      ++counter->batches;
      if (mode == "save" && counter->batches == save_at) {
        ACCELERATE_RETURN_IF_ERROR(save("first", false));
      }
      if (mode == "save" && counter->batches == crash_at) {
        ACCELERATE_RETURN_IF_ERROR(save("second", !crash_stage.empty()));
      }
    }
  }
  if (!arg("out").empty()) {
    ACCELERATE_RETURN_IF_ERROR(bigmodel::SaveSafetensors(
        absl::StrCat(arg("out"), "/final_", rank, ".safetensors"),
        checkpoint::ModelStateDict(*model)));
  }
  std::cout << "RESULT batches " << counter->batches;
  if (accelerator->scaler() != nullptr) {
    std::cout << " scale " << accelerator->scaler()->scale() << " steps_taken "
              << opt->steps_taken();
  }
  std::cout << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace accelerate

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(argv[i], absl::MaxSplits('=', 1));
    args[kv.first] = kv.second;
  }
  absl::Status status = accelerate::Run(args);
  if (!status.ok()) {
    std::cerr << "checkpoint_worker: " << status << std::endl;
    return 1;
  }
  return 0;
}
