#include "data/sampler.h"

#include <algorithm>
#include <cstdio>
#include <tuple>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace accelerate::data {
namespace {

std::vector<int64_t> Values(const IndexOrder& order) {
  std::vector<int64_t> values;
  for (int64_t i = 0; i < order.size(); ++i) values.push_back(order[i]);
  return values;
}

// What Python's torch (2.13 in .venv, the same LibTorch) draws for
// Accelerate's SeedableRandomSampler at `seed` and `epoch`.
std::string PythonPermutation(int64_t length, uint64_t seed, int64_t epoch) {
  const std::string command = absl::StrCat(
      "'", testing::PeerPython(), "' -c \"import torch; g = torch.Generator(); "
      "g.manual_seed(",
      seed, " + ", epoch, "); print(','.join(map(str, torch.randperm(", length,
      ", generator=g).tolist())))\" 2>&1");
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) {
    output.append(buffer, n);
  }
  ::pclose(pipe);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

TEST(IndexOrderTest, SequentialOrderIsTheIdentity) {
  EXPECT_THAT(Values(IndexOrder::Create(5)), ::testing::ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ(IndexOrder::Create(0).size(), 0);
}

TEST(IndexOrderTest, ShuffleMatchesPythonTorchForSeedAndEpoch) {
  for (const auto& [length, seed, epoch] :
       std::vector<std::tuple<int64_t, uint64_t, int64_t>>{
           {10, 42, 0}, {10, 42, 1}, {1000, 0, 3}, {37, 1234567, 2}}) {
    const IndexOrder order = IndexOrder::Create(
        length, {.shuffle = true, .seed = seed, .epoch = epoch});
    EXPECT_EQ(absl::StrJoin(Values(order), ","),
              PythonPermutation(length, seed, epoch))
        << "length " << length << " seed " << seed << " epoch " << epoch;
  }
}

TEST(IndexOrderTest, EpochChangesTheOrderAndSeedReproducesIt) {
  const auto order = [](uint64_t seed, int64_t epoch) {
    return Values(IndexOrder::Create(
        100, {.shuffle = true, .seed = seed, .epoch = epoch}));
  };
  EXPECT_EQ(order(5, 1), order(5, 1));
  EXPECT_NE(order(5, 1), order(5, 2));
  // Accelerate seeds with seed + epoch.
  EXPECT_EQ(order(5, 1), order(6, 0));
  std::vector<int64_t> sorted = order(5, 1);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
}

}  // namespace
}  // namespace accelerate::data
