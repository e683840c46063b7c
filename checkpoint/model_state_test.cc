#include "checkpoint/model_state.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "checkpoint/torch_file.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::checkpoint {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

struct Net : torch::nn::Module {
  explicit Net(int64_t hidden) {
    fc = register_module("fc", torch::nn::Linear(3, hidden));
    norm = register_module("norm", torch::nn::BatchNorm1d(hidden));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d norm{nullptr};
};

TEST(ModelStateTest, NamesAreStateDictNamesWithBuffers) {
  Net net(4);
  bigmodel::NamedTensors tensors = ModelStateDict(net, "module.");
  std::vector<std::string> names;
  for (const auto& [name, tensor] : tensors) names.push_back(name);
  EXPECT_THAT(names, ::testing::UnorderedElementsAre(
                         "module.fc.weight", "module.fc.bias",
                         "module.norm.weight", "module.norm.bias",
                         "module.norm.running_mean", "module.norm.running_var",
                         "module.norm.num_batches_tracked"));
}

TEST(ModelStateTest, LoadsWithOrWithoutTheDataParallelPrefix) {
  const std::string dir = FreshTestDir("model_state");
  torch::manual_seed(0);
  Net saved(4);
  saved.norm->running_mean.fill_(0.5);
  ASSERT_OK(bigmodel::SaveSafetensors(dir + "/plain.safetensors",
                                      ModelStateDict(saved)));
  ASSERT_OK(bigmodel::SaveSafetensors(dir + "/ddp.safetensors",
                                      ModelStateDict(saved, "module.")));
  for (const char* file : {"/plain.safetensors", "/ddp.safetensors"}) {
    torch::manual_seed(1);
    Net loaded(4);
    ASSERT_OK(LoadModelState(loaded, dir + file));
    EXPECT_TRUE(torch::equal(loaded.fc->weight, saved.fc->weight)) << file;
    EXPECT_TRUE(torch::equal(loaded.norm->running_mean,
                             saved.norm->running_mean))
        << file;
  }
}

TEST(ModelStateTest, LoadsATorchSavedStateDictAndRefusesOtherContents) {
  // Python's pytorch_model.bin is `torch.save(model.state_dict())`; the
  // interop test (accelerator/checkpoint_interop_test.py) reads Python's.
  const std::string dir = FreshTestDir("model_state_bin");
  torch::manual_seed(0);
  Net saved(4);
  saved.norm->running_var.fill_(2.5);
  c10::Dict<std::string, at::Tensor> state_dict;
  for (const auto& [name, tensor] : ModelStateDict(saved)) {
    state_dict.insert(name, tensor);
  }
  ASSERT_OK(SaveTorchFile(dir + "/pytorch_model.bin", state_dict));
  torch::manual_seed(1);
  Net loaded(4);
  ASSERT_OK(LoadModelState(loaded, dir + "/pytorch_model.bin"));
  EXPECT_TRUE(torch::equal(loaded.fc->weight, saved.fc->weight));
  EXPECT_TRUE(
      torch::equal(loaded.norm->running_var, saved.norm->running_var));

  c10::List<at::Tensor> list;
  list.push_back(torch::ones({2}));
  ASSERT_OK(SaveTorchFile(dir + "/list.bin", list));
  EXPECT_THAT(LoadModelState(loaded, dir + "/list.bin"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("list.bin holds a GenericList")));
  c10::Dict<std::string, int64_t> numbers;
  numbers.insert("fc.weight", 3);
  ASSERT_OK(SaveTorchFile(dir + "/numbers.bin", numbers));
  EXPECT_THAT(LoadModelState(loaded, dir + "/numbers.bin"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("maps fc.weight to a Int")));
  EXPECT_TRUE(torch::equal(loaded.fc->weight, saved.fc->weight));
}

TEST(ModelStateTest, SavesTheBytesOfSaveSafetensors) {
  const std::string dir = FreshTestDir("model_save");
  torch::manual_seed(0);
  Net net(1000);  // Mixed element sizes (num_batches_tracked is int64).
  const bigmodel::NamedTensors tensors = ModelStateDict(net);
  ASSERT_OK(SaveModelState(dir + "/ours.safetensors", tensors));
  ASSERT_OK(bigmodel::SaveSafetensors(dir + "/bigmodel.safetensors", tensors,
                                      {{"format", "pt"}}));
  EXPECT_EQ(testing::ReadFileOrDie(dir + "/ours.safetensors"),
            testing::ReadFileOrDie(dir + "/bigmodel.safetensors"));
  torch::manual_seed(1);
  Net loaded(1000);
  ASSERT_OK(LoadModelState(loaded, dir + "/ours.safetensors"));
  EXPECT_TRUE(torch::equal(loaded.fc->weight, net.fc->weight));

  EXPECT_THAT(SaveModelState(dir + "/undefined.safetensors",
                             {{"w", at::Tensor()}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"w\" is undefined")));
}

TEST(ModelStateTest, MismatchesAreNamedAndChangeNothing) {
  const std::string dir = FreshTestDir("model_mismatch");
  Net saved(4);
  ASSERT_OK(bigmodel::SaveSafetensors(dir + "/model.safetensors",
                                      ModelStateDict(saved)));
  Net wider(5);
  const at::Tensor before = wider.fc->weight.clone();
  EXPECT_THAT(LoadModelState(wider, dir + "/model.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("fc.bias has shape [4]; the model's fc.bias has [5]")));
  EXPECT_TRUE(torch::equal(wider.fc->weight, before));

  torch::nn::Linear other(3, 4);
  EXPECT_THAT(LoadModelState(*other, dir + "/model.safetensors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 missing (bias, weight); 7 unexpected")));
  EXPECT_THAT(LoadModelState(*other, dir + "/absent.safetensors"),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accelerate::checkpoint
