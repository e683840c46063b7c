// SaveState / LoadState / SaveModel on one process and on thread ranks:
// naming, limits, hooks, custom objects, named errors for bad folders.

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"
#include "checkpoint/inspect.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate {
namespace {

namespace fs = std::filesystem;
using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::RunOnRankThreads;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::Each;
using ::testing::HasSubstr;

struct Trainee {
  std::unique_ptr<Accelerator> accelerator;
  std::shared_ptr<torch::nn::Linear::Impl> model;
  std::shared_ptr<torch::optim::Adam> optimizer;
  PreparedOptimizer* prepared_optimizer = nullptr;
};

absl::StatusOr<Trainee> Make(const AcceleratorOptions& options,
                           const state::Environment& env =
                               state::MapEnvironment()) {
  Trainee setup;
  ACCELERATE_ASSIGN_OR_RETURN(setup.accelerator,
                              Accelerator::Create(options, env));
  setup.model = torch::nn::Linear(4, 3).ptr();
  setup.optimizer = std::make_shared<torch::optim::Adam>(
      setup.model->parameters(), torch::optim::AdamOptions(0.1));
  ACCELERATE_RETURN_IF_ERROR(
      setup.accelerator->PrepareModel(setup.model).status());
  setup.prepared_optimizer =
      setup.accelerator->PrepareOptimizer(setup.optimizer);
  return setup;
}

absl::Status TrainStep(Trainee& setup) {
  AccumulateScope step = setup.accelerator->Accumulate(*setup.model);
  ACCELERATE_RETURN_IF_ERROR(step.status());
  ACCELERATE_RETURN_IF_ERROR(setup.accelerator->Backward(
      setup.model->forward(torch::ones({2, 4})).pow(2).sum()));
  ACCELERATE_RETURN_IF_ERROR(setup.prepared_optimizer->step());
  setup.prepared_optimizer->zero_grad();
  return absl::OkStatus();
}

TEST(CheckpointingTest, SaveWithoutAFolderNeedsAutomaticNaming) {
  ASSERT_OK_AND_ASSIGN(Trainee setup, Make({}));
  EXPECT_THAT(setup.accelerator->SaveState(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("automatic_checkpoint_naming is off")));
  EXPECT_THAT(setup.accelerator->LoadState(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  AcceleratorOptions options;
  options.project_config.automatic_checkpoint_naming = true;
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs a project_dir")));
  options.project_config.project_dir = "/tmp";
  options.project_config.save_on_each_node = true;
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("save_on_each_node is not supported")));
  options.project_config.save_on_each_node = false;
  options.project_config.total_limit = 0;
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("total_limit 0")));
}

TEST(CheckpointingTest, AutomaticNamingCountsKeepsTheLimitAndLoadsTheLatest) {
  AcceleratorOptions options;
  options.project_config = {.project_dir = FreshTestDir("automatic"),
                            .automatic_checkpoint_naming = true,
                            .total_limit = 2};
  ASSERT_OK_AND_ASSIGN(Trainee setup, Make(options));
  std::vector<at::Tensor> weights;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(TrainStep(setup));
    ASSERT_OK_AND_ASSIGN(std::string dir, setup.accelerator->SaveState());
    EXPECT_EQ(fs::path(dir).filename(), "checkpoint_" + std::to_string(i));
    weights.push_back(setup.model->weight.detach().clone());
  }
  const std::string checkpoints =
      options.project_config.project_dir + "/checkpoints";
  EXPECT_FALSE(fs::exists(checkpoints + "/checkpoint_0"));
  EXPECT_TRUE(fs::exists(checkpoints + "/checkpoint_1"));
  EXPECT_EQ(setup.accelerator->project_configuration().iteration, 3);

  ASSERT_OK(TrainStep(setup));
  ASSERT_OK_AND_ASSIGN(std::string loaded, setup.accelerator->LoadState());
  EXPECT_EQ(fs::path(loaded).filename(), "checkpoint_2");
  EXPECT_TRUE(torch::equal(setup.model->weight, weights[2]));

  // An existing complete checkpoint is never overwritten by numbering.
  setup.accelerator->project_configuration().iteration = 2;
  EXPECT_THAT(setup.accelerator->SaveState(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("checkpoint_2 (iteration 2) already exists")));
}

TEST(CheckpointingTest, CorruptOrMissingFilesAreNamed) {
  ASSERT_OK_AND_ASSIGN(Trainee setup, Make({}));
  ASSERT_OK(TrainStep(setup));
  const std::string dir = FreshTestDir("corrupt") + "/ckpt";
  ASSERT_OK(setup.accelerator->SaveState(dir).status());
  const std::string optimizer = ReadFileOrDie(dir + "/optimizer.bin");
  WriteFileOrDie(dir + "/optimizer.bin", optimizer.substr(0, 100));
  EXPECT_THAT(setup.accelerator->LoadState(dir),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("optimizer.bin has 100 bytes")));
  WriteFileOrDie(dir + "/optimizer.bin", optimizer);
  ASSERT_OK(setup.accelerator->LoadState(dir).status());

  fs::remove(dir + "/model.safetensors");
  EXPECT_THAT(setup.accelerator->LoadState(dir),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("model.safetensors (written by process 0) "
                                 "is missing")));
  // Without our manifest (a folder as Python writes it), the file's own
  // format catches the damage.
  ASSERT_OK(setup.accelerator->SaveState(dir).status());
  fs::remove(dir + "/" + checkpoint::kManifestName);
  WriteFileOrDie(dir + "/optimizer.bin", optimizer.substr(0, 100));
  EXPECT_THAT(setup.accelerator->LoadState(dir),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("optimizer.bin is not a readable")));
  EXPECT_THAT(setup.accelerator->LoadState(dir + "/absent"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
}

struct Tally {
  int64_t count = 0;
  c10::IValue state_dict() const {
    c10::Dict<std::string, int64_t> state;
    state.insert("count", count);
    return state;
  }
  absl::Status load_state_dict(const c10::IValue& value) {
    count = value.toGenericDict().at("count").toInt();
    return absl::OkStatus();
  }
};

TEST(CheckpointingTest, CustomObjectsAndHooks) {
  ASSERT_OK_AND_ASSIGN(Trainee setup, Make({}));
  auto tally = std::make_shared<Tally>();
  tally->count = 41;
  setup.accelerator->RegisterForCheckpointing(tally);
  setup.accelerator->RegisterSaveStateHook(
      [](const std::vector<std::shared_ptr<torch::nn::Module>>& models,
         std::vector<bigmodel::NamedTensors>& weights,
         const std::string& dir) -> absl::Status {
        EXPECT_EQ(models.size(), 1u);
        weights[0].clear();  // Saved here instead.
        std::ofstream(dir + "/config.json") << "{\"hidden\": 3}";
        return absl::OkStatus();
      });
  const std::string dir = FreshTestDir("hooks") + "/ckpt";
  ASSERT_OK(setup.accelerator->SaveState(dir).status());
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_EQ(ReadFileOrDie(dir + "/config.json"), "{\"hidden\": 3}");
  ASSERT_OK_AND_ASSIGN(checkpoint::CheckpointManifest manifest,
                       checkpoint::ReadManifest(dir));
  std::vector<std::string> names;
  for (const auto& file : manifest.files()) names.push_back(file.name());
  EXPECT_THAT(names, ::testing::UnorderedElementsAre(
                         "optimizer.bin", "custom_checkpoint_0.pkl",
                         "random_states_0.pkl", "config.json"));

  tally->count = 0;
  bool hook_ran = false;
  setup.accelerator->RegisterLoadStateHook(
      [&](std::vector<std::shared_ptr<torch::nn::Module>>& models,
          const std::string&) {
        hook_ran = true;
        models[0] = nullptr;  // Loaded here instead.
        return absl::OkStatus();
      });
  ASSERT_OK(setup.accelerator->LoadState(dir).status());
  EXPECT_TRUE(hook_ran);
  EXPECT_EQ(tally->count, 41);

  // A second registered object finds no file of its own.
  setup.accelerator->RegisterForCheckpointing(std::make_shared<Tally>());
  EXPECT_THAT(setup.accelerator->LoadState(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds 1 custom checkpoints; 2 objects are "
                                 "registered")));
}

TEST(CheckpointingTest, SaveModelShardsWithAnIndexAndRemovesStaleShards) {
  ASSERT_OK_AND_ASSIGN(Trainee setup, Make({}));
  auto big = torch::nn::Sequential(torch::nn::Linear(64, 64),
                                   torch::nn::Linear(64, 64));
  const std::string dir = FreshTestDir("save_model");
  ASSERT_OK(setup.accelerator->SaveModel(*big, dir, 20'000));
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir + "/model-00001-of-00002.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto sharded, bigmodel::ShardedCheckpoint::Open(dir));
  ASSERT_OK_AND_ASSIGN(auto tensors, sharded->Load({"0.weight", "1.bias"}));
  EXPECT_TRUE(torch::equal(tensors["0.weight"], big[0]->as<torch::nn::Linear>()->weight));

  ASSERT_OK(setup.accelerator->SaveModel(*big, dir));
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model-00001-of-00002.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  WriteFileOrDie(dir + "/file", "x");
  EXPECT_THAT(setup.accelerator->SaveModel(*big, dir + "/file"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a file, not a folder")));
}

// Which process wrote each shared file; model.safetensors holds the
// model's own names (as Python Accelerate saves the module it was given).
TEST(CheckpointingTest, TwoProcessesSpreadTheWritesUnlessSyncIsOff) {
  for (bool sync : {true, false}) {
    const std::string dir =
        FreshTestDir(sync ? "spread" : "main_only") + "/ckpt";
    std::vector<absl::Status> statuses = RunOnRankThreads(
        2, {}, [&](int, const state::Environment& env) -> absl::Status {
          ACCELERATE_ASSIGN_OR_RETURN(Trainee setup, Make({}, env));
          auto scheduler = std::make_shared<torch::optim::StepLR>(
              *setup.optimizer, 1, 0.5);
          ACCELERATE_RETURN_IF_ERROR(
              setup.accelerator->PrepareScheduler(scheduler).status());
          if (!sync) setup.accelerator->SetGradientSync(*setup.model, false);
          ACCELERATE_RETURN_IF_ERROR(TrainStep(setup));
          return setup.accelerator->SaveState(dir).status();
        });
    ASSERT_THAT(statuses, Each(IsOk()));
    ASSERT_OK_AND_ASSIGN(checkpoint::CheckpointManifest manifest,
                         checkpoint::ReadManifest(dir));
    std::map<std::string, int> writer;
    for (const auto& file : manifest.files()) writer[file.name()] = file.process();
    EXPECT_EQ(writer["model.safetensors"], 0);
    EXPECT_EQ(writer["optimizer.bin"], sync ? 1 : 0);
    EXPECT_EQ(writer["scheduler.bin"], 0);
    EXPECT_EQ(writer["random_states_1.pkl"], 1);
    ASSERT_OK_AND_ASSIGN(auto file, bigmodel::SafetensorsFile::Open(
                                        dir + "/model.safetensors"));
    EXPECT_THAT(file->names(), ::testing::UnorderedElementsAre(
                                   "weight", "bias"));
  }
}

}  // namespace
}  // namespace accelerate
