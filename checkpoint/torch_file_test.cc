#include "checkpoint/torch_file.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>
#include "bigmodel/torch_file.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::checkpoint {
namespace {

using ::accelerate::bigmodel::LoadTorchFile;
using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;

c10::IValue Sample() {
  c10::Dict<c10::IValue, c10::IValue> dict(c10::AnyType::get(),
                                           c10::AnyType::get());
  dict.insert("weight", torch::arange(12, torch::kFloat32).reshape({3, 4}));
  dict.insert("step", torch::scalar_tensor(3.0));
  dict.insert("lr", 0.25);
  dict.insert("name", std::string("adam"));
  dict.insert("none", c10::IValue());
  dict.insert("pair", c10::ivalue::Tuple::create({0.9, 0.999}));
  c10::Dict<c10::IValue, c10::IValue> by_index(c10::IntType::get(),
                                               c10::AnyType::get());
  by_index.insert(int64_t{7}, torch::ones({2}, torch::kBFloat16));
  dict.insert("state", by_index);
  return dict;
}

TEST(TorchFileTest, RoundTripsDictsListsNumbersAndTensors) {
  const std::string path = FreshTestDir("roundtrip") + "/state.bin";
  ASSERT_OK(SaveTorchFile(path, Sample()));
  ASSERT_OK_AND_ASSIGN(c10::IValue loaded, LoadTorchFile(path));
  ASSERT_TRUE(loaded.isGenericDict());
  auto dict = loaded.toGenericDict();
  EXPECT_TRUE(torch::equal(dict.at("weight").toTensor(),
                           torch::arange(12, torch::kFloat32).reshape({3, 4})));
  EXPECT_EQ(dict.at("lr").toDouble(), 0.25);
  EXPECT_EQ(dict.at("name").toStringRef(), "adam");
  EXPECT_TRUE(dict.at("none").isNone());
  EXPECT_EQ(dict.at("pair").toTupleRef().elements()[1].toDouble(), 0.999);
  auto state = dict.at("state").toGenericDict();
  EXPECT_EQ(state.at(int64_t{7}).toTensor().scalar_type(), at::kBFloat16);
}

TEST(TorchFileTest, MappedLoadAliasesTheFileCopyOnWrite) {
  const std::string path = FreshTestDir("mapped") + "/state.bin";
  ASSERT_OK(SaveTorchFile(path, Sample()));
  const std::string before = ReadFileOrDie(path);
  ASSERT_OK_AND_ASSIGN(c10::IValue mapped,
                       LoadTorchFile(path, {.map_file = true}));
  ASSERT_OK_AND_ASSIGN(c10::IValue read, LoadTorchFile(path));
  at::Tensor weight = mapped.toGenericDict().at("weight").toTensor();
  EXPECT_TRUE(torch::equal(weight, read.toGenericDict().at("weight").toTensor()));
  EXPECT_TRUE(torch::equal(
      mapped.toGenericDict().at("state").toGenericDict().at(int64_t{7}).toTensor(),
      torch::ones({2}, torch::kBFloat16)));
  // The tensor's data lies in a mapping of the file (/proc/self/maps).
  const auto address = reinterpret_cast<uintptr_t>(weight.data_ptr());
  bool inside = false;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find(path) == std::string::npos) continue;
    uintptr_t begin = 0, end = 0;
    std::sscanf(line.c_str(), "%zx-%zx", &begin, &end);
    inside = inside || (begin <= address && address < end);
  }
  EXPECT_TRUE(inside) << "the tensor does not alias " << path;
  // Writing copies the page; the file stays as it was.
  weight.add_(1);
  EXPECT_EQ(ReadFileOrDie(path), before);
  EXPECT_THAT(LoadTorchFile(path + ".absent", {.map_file = true}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(TorchFileTest, SharedStorageIsWrittenOnce) {
  const std::string dir = FreshTestDir("shared");
  const at::Tensor big = torch::zeros({1 << 16});
  c10::List<at::Tensor> twice({big, big});
  ASSERT_OK(SaveTorchFile(dir + "/twice.bin", twice));
  ASSERT_OK(SaveTorchFile(dir + "/once.bin", c10::List<at::Tensor>({big})));
  EXPECT_LT(std::filesystem::file_size(dir + "/twice.bin"),
            std::filesystem::file_size(dir + "/once.bin") + 1024);
}

// LibTorch's pickler writes typed lists through TorchScript globals
// (`torch.jit._pickle.build_intlist`, ...) that Python's weights-only
// unpickler refuses; ours must be plain pickle lists.
TEST(TorchFileTest, TypedListsAreWrittenAsPlainLists) {
  const std::string path = FreshTestDir("typed_lists") + "/optimizer.bin";
  c10::Dict<c10::IValue, c10::IValue> group(c10::AnyType::get(),
                                            c10::AnyType::get());
  group.insert("params", c10::List<int64_t>({0, 1, 2}));
  group.insert("base_lrs", c10::List<double>({0.5, 0.25}));
  group.insert("flags", c10::List<bool>({true, false}));
  group.insert("tensors", c10::List<at::Tensor>({torch::ones({2})}));
  c10::List<c10::IValue> groups(c10::AnyType::get());
  groups.push_back(group);
  c10::Dict<c10::IValue, c10::IValue> top(c10::AnyType::get(),
                                          c10::AnyType::get());
  top.insert("param_groups", groups);
  top.insert("pair", c10::ivalue::Tuple::create(
                         {c10::IValue(c10::List<int64_t>({3, 4}))}));
  ASSERT_OK(SaveTorchFile(path, top));

  caffe2::serialize::PyTorchStreamReader reader(path);
  auto [data, size] = reader.getRecord("data.pkl");
  const std::string pickle(static_cast<const char*>(data.get()), size);
  EXPECT_THAT(pickle, Not(HasSubstr("torch.jit")));

  ASSERT_OK_AND_ASSIGN(c10::IValue loaded, LoadTorchFile(path));
  auto read = loaded.toGenericDict()
                  .at("param_groups")
                  .toList()
                  .get(0)
                  .toGenericDict();
  const c10::List<c10::IValue> params = read.at("params").toList();
  ASSERT_EQ(params.size(), 3);
  EXPECT_EQ(params.get(2).toInt(), 2);
  EXPECT_EQ(read.at("base_lrs").toList().get(1).toDouble(), 0.25);
  EXPECT_FALSE(read.at("flags").toList().get(1).toBool());
  EXPECT_TRUE(torch::equal(read.at("tensors").toList().get(0).toTensor(),
                           torch::ones({2})));
}

TEST(TorchFileTest, TruncatedFileIsDataLossNamingIt) {
  const std::string path = FreshTestDir("truncated") + "/optimizer.bin";
  ASSERT_OK(SaveTorchFile(path, Sample()));
  const std::string bytes = ReadFileOrDie(path);
  WriteFileOrDie(path, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(LoadTorchFile(path),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path)));
}

TEST(TorchFileTest, ForeignAndMissingFiles) {
  const std::string dir = FreshTestDir("foreign");
  WriteFileOrDie(dir + "/notes.bin", "not a zip archive at all");
  EXPECT_THAT(LoadTorchFile(dir + "/notes.bin"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("notes.bin")));
  EXPECT_THAT(LoadTorchFile(dir + "/absent.bin"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.bin")));
}

TEST(TorchFileTest, UnwritableFolderIsAnErrorNamingThePath) {
  EXPECT_THAT(SaveTorchFile("/nonexistent-folder/x.bin", Sample()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent-folder/x.bin")));
}

}  // namespace
}  // namespace accelerate::checkpoint
