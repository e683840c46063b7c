// Reading what the real Python's `torch.save` wrote (the .venv's torch):
// Accelerate's random states with NumPy's objects, views, an OrderedDict
// with attributes (a `state_dict()`'s), truncated and corrupt files.

#include "bigmodel/torch_file.h"

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>
#include "bigmodel/internal/pickle_reader.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::HasSubstr;

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
    return bigmodel_internal::TorchPickleRecord{std::move(record),
                                                  record_size};
  };
  ASSERT_OK(bigmodel_internal::ReadTorchPickle(pickle, records));
  for (size_t cut = 0; cut < pickle.size(); ++cut) {
    EXPECT_THAT(bigmodel_internal::ReadTorchPickle(
                    absl::string_view(pickle).substr(0, cut), records),
                StatusIs(absl::StatusCode::kDataLoss))
        << "cut at " << cut;
  }
  // Any byte flipped: an error or some value, never a crash or a hang.
  for (size_t at = 0; at < pickle.size(); ++at) {
    std::string corrupt = pickle;
    corrupt[at] = static_cast<char>(corrupt[at] ^ 0xA5);
    (void)bigmodel_internal::ReadTorchPickle(corrupt, records);
  }
}

}  // namespace
}  // namespace accelerate::bigmodel
