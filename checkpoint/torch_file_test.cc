#include "checkpoint/torch_file.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>
#include "checkpoint/internal/pickle_reader.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::checkpoint {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Subprocess;
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

// Writes, with the real Python, Accelerate's random states (what
// `save_accelerator_state` saves: `random.getstate()`, NumPy's state, the
// torch generator's state, the step) to argv[1], and what our reader should
// find in it, in types LibTorch reads, to argv[2].
constexpr char kPythonRandomStates[] = R"PY(
import collections, random, sys
import numpy as np
import torch
# Made before seeding: it draws from the generator.
linear = torch.nn.Linear(2, 3).state_dict()
random.seed(1234); np.random.seed(1234); torch.manual_seed(1234)
states = {
    "step": 7,
    "random_state": random.getstate(),
    "numpy_random_seed": np.random.get_state(),
    "torch_manual_seed": torch.get_rng_state(),
    # Beyond Accelerate's: what else Python's pickle may hold.
    "ordered": collections.OrderedDict([("a", -5), ("b", 2**40)]),
    "bytes": b"\x00\xffab",
    "view": torch.arange(12, dtype=torch.float64).reshape(3, 4)[:, 1:3],
    "dtype": np.dtype("float32"),
    # An OrderedDict with attributes (`_metadata`): pytorch_model.bin's.
    "state_dict": linear,
}
torch.save(states, sys.argv[1])
torch.save({
    "linear_weight": states["state_dict"]["weight"],
    "mt": torch.tensor(random.getstate()[1], dtype=torch.int64),
    "rng": torch.get_rng_state(),
    "view": states["view"].contiguous(),
}, sys.argv[2])
)PY";

// The two files kPythonRandomStates writes, in a fresh folder.
struct PythonFiles {
  std::string states;
  std::string expected;
};

PythonFiles WritePythonRandomStates(const std::string& name) {
  const std::string dir = FreshTestDir(name);
  PythonFiles files{dir + "/random_states_0.pkl", dir + "/expected.pt"};
  Subprocess python(
      {PeerPython(), "-c", kPythonRandomStates, files.states, files.expected},
      {});
  EXPECT_OK(python.Start());
  ProcessResult result = python.Wait(absl::Seconds(120));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return files;
}

TEST(TorchFileTest, ReadsPythonAccelerateRandomStatesNumPyAsNone) {
  const PythonFiles files = WritePythonRandomStates("python_states");
  ASSERT_OK_AND_ASSIGN(c10::IValue expected_value,
                       LoadTorchFile(files.expected));
  auto expected = expected_value.toGenericDict();
  for (const bool map_file : {false, true}) {
    SCOPED_TRACE(map_file ? "mapped" : "read");
    ASSERT_OK_AND_ASSIGN(c10::IValue loaded,
                         LoadTorchFile(files.states, {.map_file = map_file}));
    ASSERT_TRUE(loaded.isGenericDict());
    auto dict = loaded.toGenericDict();
    EXPECT_EQ(dict.at("step").toInt(), 7);
    const at::Tensor rng = dict.at("torch_manual_seed").toTensor();
    EXPECT_EQ(rng.scalar_type(), at::kByte);
    EXPECT_TRUE(torch::equal(rng, expected.at("rng").toTensor()));
    // random.getstate(): (3, 625 ints up to 2**32 - 1, None), exactly.
    const auto& python = dict.at("random_state").toTupleRef().elements();
    ASSERT_EQ(python.size(), 3);
    EXPECT_EQ(python[0].toInt(), 3);
    EXPECT_TRUE(python[2].isNone());
    const at::Tensor mt = expected.at("mt").toTensor();
    const auto& ints = python[1].toTupleRef().elements();
    ASSERT_EQ(static_cast<int64_t>(ints.size()), mt.numel());
    int64_t above_int32 = 0;
    for (size_t i = 0; i < ints.size(); ++i) {
      ASSERT_EQ(ints[i].toInt(), mt[i].item<int64_t>()) << "at " << i;
      above_int32 += ints[i].toInt() > INT32_MAX;
    }
    EXPECT_GT(above_int32, 0);  // LONG1 of 5 bytes were read.
    // NumPy's state: the tuple is kept, the objects in it are None.
    const auto& numpy = dict.at("numpy_random_seed").toTupleRef().elements();
    ASSERT_EQ(numpy.size(), 5);
    EXPECT_EQ(numpy[0].toStringRef(), "MT19937");
    EXPECT_TRUE(numpy[1].isNone());
    EXPECT_EQ(numpy[2].toInt(), 624);
    EXPECT_TRUE(dict.at("dtype").isNone());
    auto ordered = dict.at("ordered").toGenericDict();
    EXPECT_EQ(ordered.at("a").toInt(), -5);
    EXPECT_EQ(ordered.at("b").toInt(), int64_t{1} << 40);
    EXPECT_EQ(dict.at("bytes").toStringRef(), std::string("\x00\xff" "ab", 4));
    const at::Tensor view = dict.at("view").toTensor();
    EXPECT_EQ(view.strides(), at::IntArrayRef({4, 1}));
    EXPECT_TRUE(torch::equal(view, expected.at("view").toTensor()));
    // A state_dict: its items, its `_metadata` attribute dropped.
    auto state_dict = dict.at("state_dict").toGenericDict();
    EXPECT_EQ(state_dict.size(), 2u);
    EXPECT_TRUE(torch::equal(state_dict.at("weight").toTensor(),
                             expected.at("linear_weight").toTensor()));
  }
}

TEST(TorchFileTest, TruncatedPythonFileIsDataLossNamingIt) {
  const PythonFiles files = WritePythonRandomStates("python_truncated");
  const std::string bytes = ReadFileOrDie(files.states);
  WriteFileOrDie(files.states, bytes.substr(0, bytes.size() - 100));
  EXPECT_THAT(LoadTorchFile(files.states),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(files.states)));
}

TEST(TorchFileTest, CutOrCorruptPythonPickleIsAnErrorNotACrash) {
  const PythonFiles files = WritePythonRandomStates("python_corrupt");
  caffe2::serialize::PyTorchStreamReader reader(files.states);
  auto [data, size] = reader.getRecord("data.pkl");
  const std::string pickle(static_cast<const char*>(data.get()), size);
  auto records = [&](const std::string& key) {
    auto [record, record_size] = reader.getRecord("data/" + key);
    return checkpoint_internal::TorchPickleRecord{std::move(record),
                                                  record_size};
  };
  ASSERT_OK(checkpoint_internal::ReadTorchPickle(pickle, records));
  for (size_t cut = 0; cut < pickle.size(); ++cut) {
    EXPECT_THAT(checkpoint_internal::ReadTorchPickle(
                    absl::string_view(pickle).substr(0, cut), records),
                StatusIs(absl::StatusCode::kDataLoss))
        << "cut at " << cut;
  }
  // Any byte flipped: an error or some value, never a crash or a hang.
  for (size_t at = 0; at < pickle.size(); ++at) {
    std::string corrupt = pickle;
    corrupt[at] = static_cast<char>(corrupt[at] ^ 0xA5);
    (void)checkpoint_internal::ReadTorchPickle(corrupt, records);
  }
}

}  // namespace
}  // namespace accelerate::checkpoint
