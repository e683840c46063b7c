// A small classifier trained with the Accelerator: the README's main job.
//
//   accelerate launch --cpu --num_processes 2 bazel-bin/examples/train_classifier
//
// The data are three Gaussian clouds in 2-D (made here with a fixed seed, so
// every process has the same dataset); the model is a 2-64-64-3 MLP trained
// with SGD and momentum, the learning rate stepped down halfway. The main
// process shows each epoch's training loss and evaluation accuracy
// (gathered from every process, without the padding duplicates), then prints
// the final metrics as one JSON line.
//
// Checkpoints, with Accelerate's example flags: `--checkpointing_steps N`
// (every N batches, as `step_<n>`) or `epoch` (as `epoch_<e>`), under
// `--output_dir`; `--resume_from_checkpoint <folder>` or `latest` picks up
// where that checkpoint stood (mid-epoch too), and the run ends with the
// same JSON line as one that never stopped. `--stop_after_steps N` ends the
// run after N batches, as an interruption would.
//
// Tracking, with Accelerate's example flags: `--with_tracking` logs the
// training loss and learning rate every batch and the evaluation accuracy
// every epoch (steps counted in batches) to the trackers `--report_to`
// names (`tensorboard`, `mlflow`, `jsonl`, `csv`, `all`), under
// `--project_dir` (`<project_dir>/train_classifier/`).

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "data/data_loader.h"
#include "examples/checkpointing_flags.h"
#include "examples/tracking_flags.h"
#include "precision/fp8_linear.h"
#include "trackers/progress_bar.h"

ABSL_FLAG(int, epochs, 8, "Passes over the training set.");
ABSL_FLAG(int64_t, batch_size, 32, "Batch size per process.");
ABSL_FLAG(double, lr, 0.05, "SGD learning rate.");
ABSL_FLAG(int64_t, samples, 3000, "Training samples (as many for evaluation).");
ABSL_FLAG(std::string, checkpointing_steps, "",
          "Save a checkpoint every this many batches, or \"epoch\".");
ABSL_FLAG(std::string, output_dir, "", "Where checkpoints go.");
ABSL_FLAG(std::string, resume_from_checkpoint, "",
          "A checkpoint folder to resume from, or \"latest\".");
ABSL_FLAG(bool, with_tracking, false,
          "Log losses, learning rate and accuracy to --report_to.");
ABSL_FLAG(std::string, report_to, "all",
          "Trackers: tensorboard, mlflow, jsonl, csv, all (or several, "
          "comma-separated).");
ABSL_FLAG(std::string, project_dir, "logs", "Where the trackers' logs go.");
ABSL_FLAG(int64_t, stop_after_steps, -1,
          "End after this many batches (an interruption, to resume).");

namespace {

// Where the loop stands, saved with each checkpoint: the batches so far and
// the running loss of the epoch in progress.
struct Progress {
  int64_t step = 0;
  double loss_sum = 0;
  int64_t batches = 0;
  c10::IValue state_dict() const {
    c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
    state.insert("step", step);
    state.insert("loss_sum", loss_sum);
    state.insert("batches", batches);
    return state;
  }
  absl::Status load_state_dict(const c10::IValue& value) {
    if (!value.isGenericDict()) {
      return absl::InvalidArgumentError("progress: not a dict");
    }
    auto state = value.toGenericDict();
    step = state.at("step").toInt();
    loss_sum = state.at("loss_sum").toDouble();
    batches = state.at("batches").toInt();
    return absl::OkStatus();
  }
};

// torch::nn::Linear's drop-in that computes in float8 under
// `--mixed_precision fp8` (and as torch::nn::Linear otherwise).
using Linear = accelerate::precision::Fp8Linear;

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    l1 = register_module("l1", Linear(2, 64));
    l2 = register_module("l2", Linear(64, 64));
    l3 = register_module("l3", Linear(64, 3));
  }
  torch::Tensor forward(torch::Tensor x) {
    return l3(torch::relu(l2(torch::relu(l1(x)))));
  }
  Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
};
TORCH_MODULE(Mlp);

// Three clouds around (-2, 0), (2, 0) and (0, 2.5), labels 0, 1, 2.
std::shared_ptr<accelerate::data::TensorDataset> Clouds(int64_t n,
                                                        uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor labels = torch::randint(0, 3, {n}, generator, torch::kLong);
  const torch::Tensor centers =
      torch::tensor({{-2.0f, 0.0f}, {2.0f, 0.0f}, {0.0f, 2.5f}});
  const torch::Tensor points =
      centers.index_select(0, labels) + torch::randn({n, 2}, generator);
  return std::make_shared<accelerate::data::TensorDataset>(points, labels);
}

#define CHECK_OK_OR_RETURN(expr)                          \
  do {                                                    \
    const absl::Status status_ = (expr);                  \
    if (!status_.ok()) {                                  \
      std::cerr << "train_classifier: " << status_ << "\n"; \
      return 1;                                           \
    }                                                     \
  } while (false)

int Run() {
  auto checkpointing = accelerate::examples::ParseCheckpointingSteps(
      absl::GetFlag(FLAGS_checkpointing_steps));
  CHECK_OK_OR_RETURN(checkpointing.status());
  const std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  accelerate::AcceleratorOptions options;
  CHECK_OK_OR_RETURN(accelerate::examples::ApplyTrackingFlags(
      {.with_tracking = absl::GetFlag(FLAGS_with_tracking),
       .report_to = absl::GetFlag(FLAGS_report_to),
       .project_dir = absl::GetFlag(FLAGS_project_dir)},
      options));
  auto created = accelerate::Accelerator::Create(options);
  CHECK_OK_OR_RETURN(created.status());
  accelerate::Accelerator& acc = **created;
  if (absl::GetFlag(FLAGS_with_tracking)) {
    CHECK_OK_OR_RETURN(acc.InitTrackers(
        "train_classifier",
        {{"lr", absl::GetFlag(FLAGS_lr)},
         {"epochs", absl::GetFlag(FLAGS_epochs)},
         {"batch_size", absl::GetFlag(FLAGS_batch_size)},
         {"samples", absl::GetFlag(FLAGS_samples)},
         {"num_processes", acc.State().num_processes()},
         {"mixed_precision", acc.mixed_precision()}}));
  }

  torch::manual_seed(0);  // The same initial model everywhere (rank 0's wins).
  Mlp model;
  auto optimizer = std::make_shared<torch::optim::SGD>(
      model->parameters(),
      torch::optim::SGDOptions(absl::GetFlag(FLAGS_lr)).momentum(0.9));
  // A tenth of the learning rate for the second half of the optimizer steps
  // (the scheduler counts num_processes per step, so this holds for any
  // number of processes).
  const int64_t steps_per_epoch =
      (absl::GetFlag(FLAGS_samples) + absl::GetFlag(FLAGS_batch_size) - 1) /
      absl::GetFlag(FLAGS_batch_size);
  auto scheduler = std::make_shared<torch::optim::StepLR>(
      *optimizer,
      /*step_size=*/std::max<int64_t>(1, absl::GetFlag(FLAGS_epochs) *
                                             steps_per_epoch / 2),
      0.1);
  accelerate::data::DataLoaderOptions train_options;
  train_options.batch_size = absl::GetFlag(FLAGS_batch_size);
  train_options.shuffle = true;
  train_options.seed = 42;
  auto prepared = acc.Prepare(
      model, optimizer,
      accelerate::DataLoaderSpec{Clouds(absl::GetFlag(FLAGS_samples), 1),
                                 train_options},
      scheduler);
  CHECK_OK_OR_RETURN(prepared.status());
  auto& [module, opt, train, sched] = *prepared;
  accelerate::data::DataLoaderOptions eval_options;
  eval_options.batch_size = 256;

  auto progress = std::make_shared<Progress>();
  acc.RegisterForCheckpointing(progress);
  auto save = [&](const std::string& name) {
    return acc
        .SaveState((std::filesystem::path(output_dir) / name).string())
        .status();
  };
  if (!absl::GetFlag(FLAGS_resume_from_checkpoint).empty()) {
    auto folder = accelerate::examples::ResolveResumeFolder(
        absl::GetFlag(FLAGS_resume_from_checkpoint), output_dir);
    CHECK_OK_OR_RETURN(folder.status());
    CHECK_OK_OR_RETURN(
        acc.LoadState(*folder, {.progress_bar = true}).status());
    acc.Print("resumed from ", *folder, " at step ", progress->step,
              ", epoch ", train->epoch() + 1);
  }

  double accuracy = 0;
  double last_loss = 0;
  // A resumed loader stands in the epoch it was saved in.
  for (int epoch = static_cast<int>(train->epoch());
       epoch < absl::GetFlag(FLAGS_epochs); ++epoch) {
    model->train();
    // On the main process's standard error (a resumed epoch starts where
    // it stood).
    accelerate::trackers::ProgressBar bar(
        train->size(), &acc.State(),
        {.description = absl::StrCat("epoch ", epoch + 1)});
    bar.Update(train->state().batches_done);
    while (true) {
      auto batch = train->Next();
      CHECK_OK_OR_RETURN(batch.status());
      if (!batch->has_value()) break;
      auto scope = acc.Accumulate(*module);
      CHECK_OK_OR_RETURN(scope.status());
      const torch::Tensor loss = torch::cross_entropy_loss(
          model->forward((**batch).tensor(0)), (**batch).tensor(1));
      CHECK_OK_OR_RETURN(acc.Backward(loss));
      const double lr = optimizer->param_groups()[0].options().get_lr();
      CHECK_OK_OR_RETURN(opt->step());
      sched->step();
      opt->zero_grad();
      const double loss_value = loss.item<double>();
      progress->loss_sum += loss_value;
      bar.SetPostfix(absl::StrFormat("loss=%.4f", loss_value));
      bar.Update();
      ++progress->batches;
      ++progress->step;
      // Nothing happens on processes that run no tracker.
      CHECK_OK_OR_RETURN(
          acc.Log({{"train_loss", loss_value}, {"lr", lr}}, progress->step));
      if (checkpointing->every > 0 &&
          progress->step % checkpointing->every == 0) {
        CHECK_OK_OR_RETURN(save(absl::StrCat("step_", progress->step)));
      }
      if (progress->step == absl::GetFlag(FLAGS_stop_after_steps)) {
        acc.Print("stopping after step ", progress->step);
        CHECK_OK_OR_RETURN(acc.EndTraining());
        return 0;
      }
    }
    bar.Close();
    // Evaluation: every process scores its shard; the main process counts
    // each sample once.
    auto eval = acc.PrepareDataLoader(Clouds(absl::GetFlag(FLAGS_samples), 2),
                                      eval_options);
    CHECK_OK_OR_RETURN(eval.status());
    model->eval();
    torch::NoGradGuard no_grad;
    int64_t correct = 0, total = 0;
    accelerate::trackers::ProgressBar eval_bar(
        (*eval)->size(), &acc.State(), {.description = "evaluation"});
    while (true) {
      auto batch = (*eval)->Next();
      CHECK_OK_OR_RETURN(batch.status());
      if (!batch->has_value()) break;
      eval_bar.Update();
      const torch::Tensor hits =
          model->forward((**batch).tensor(0)).argmax(1).eq((**batch).tensor(1));
      auto all = acc.GatherForMetrics(hits);
      CHECK_OK_OR_RETURN(all.status());
      correct += all->sum().item<int64_t>();
      total += all->numel();
    }
    eval_bar.Close();
    accuracy = static_cast<double>(correct) / static_cast<double>(total);
    last_loss = progress->loss_sum /
                static_cast<double>(std::max<int64_t>(progress->batches, 1));
    progress->loss_sum = 0;
    progress->batches = 0;
    acc.Print("epoch ", epoch + 1, "/", absl::GetFlag(FLAGS_epochs),
              ": train loss ", last_loss, ", eval accuracy ", accuracy,
              " (", total, " samples)");
    CHECK_OK_OR_RETURN(acc.Log({{"eval_accuracy", accuracy},
                                {"epoch_train_loss", last_loss},
                                {"epoch", epoch + 1}},
                               progress->step));
    if (checkpointing->each_epoch) {
      CHECK_OK_OR_RETURN(save(absl::StrCat("epoch_", epoch)));
    }
  }
  if (acc.IsMainProcess()) {
    std::printf(
        "{\"processes\": %d, \"mixed_precision\": \"%s\", "
        "\"eval_accuracy\": %.4f, \"train_loss\": %.4f, "
        "\"sharding\": \"%s\", \"state_bytes_per_rank\": %lld, "
        "\"recomputed_units\": %lld}\n",
        acc.State().num_processes(), acc.mixed_precision().c_str(), accuracy,
        last_loss, acc.sharding_strategy().c_str(),
        static_cast<long long>(acc.StateBytesPerProcess().total()),
        static_cast<long long>(acc.RecomputedUnits()));
  }
  // Trackers finished (everything logged written or sent), then everyone
  // waits.
  CHECK_OK_OR_RETURN(acc.EndTraining());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
