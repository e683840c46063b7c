#include "bigmodel/internal/staged_upload.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>

#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel_internal {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

// A device stand-in: sends run late on a thread of their own, as a copy
// engine would, and each checks that its source bytes were not written
// while it waited (a buffer reused before its send was done).
class LateTransport : public StagingTransport {
 public:
  explicit LateTransport(std::chrono::microseconds delay) : delay_(delay) {
    worker_ = std::thread([this] { Work(); });
  }
  ~LateTransport() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  absl::StatusOr<at::Tensor> NewBuffer(int64_t bytes) override {
    if (refuse_buffers_) return absl::UnavailableError("no pinned memory");
    return at::full({bytes}, 0xAB, at::kByte);
  }

  void Send(int slot, const at::Tensor& source,
            const at::Tensor& target) override {
    EXPECT_EQ(source.nbytes(), target.nbytes());
    Job job{slot, static_cast<const char*>(source.data_ptr()),
            static_cast<char*>(target.data_ptr()),
            static_cast<int64_t>(source.nbytes()), {}};
    job.snapshot.assign(job.source, job.source + job.bytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++in_flight_[slot];
    ++sends_;
    queue_.push_back(std::move(job));
    cv_.notify_all();
  }

  void WaitSent(int slot) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_[slot] == 0; });
  }

  void Finish() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return queue_.empty() && busy_ == 0; });
    finished_ = true;
  }

  int overwritten() {
    std::lock_guard<std::mutex> lock(mu_);
    return overwritten_;
  }
  int sends() {
    std::lock_guard<std::mutex> lock(mu_);
    return sends_;
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  bool refuse_buffers_ = false;

 private:
  struct Job {
    int slot;
    const char* source;
    char* target;
    int64_t bytes;
    std::vector<char> snapshot;
  };

  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Job job = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      lock.unlock();
      std::this_thread::sleep_for(delay_);
      const bool intact =
          std::memcmp(job.source, job.snapshot.data(), job.bytes) == 0;
      std::memcpy(job.target, job.source, job.bytes);
      lock.lock();
      if (!intact) ++overwritten_;
      --in_flight_[job.slot];
      --busy_;
      cv_.notify_all();
    }
  }

  const std::chrono::microseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::map<int, int> in_flight_;
  int busy_ = 0;
  int sends_ = 0;
  int overwritten_ = 0;
  bool finished_ = false;
  bool stop_ = false;
  std::thread worker_;
};

// Host bytes starting one byte past an aligned address, as a tensor in a
// file can.
struct Unaligned {
  explicit Unaligned(const at::Tensor& values)
      : storage(values.nbytes() + 1) {
    std::memcpy(storage.data() + 1, values.data_ptr(), values.nbytes());
  }
  const void* data() const { return storage.data() + 1; }
  std::vector<char> storage;
};

TEST(StagedUploadTest, CopiesEveryTensorThroughASmallRing) {
  auto owned = std::make_unique<LateTransport>(std::chrono::microseconds(300));
  LateTransport* transport = owned.get();
  auto upload = StagedUpload::Create(
      std::move(owned), {.buffer_bytes = 4096, .buffers = 2, .threads = 1});
  ASSERT_THAT(upload.status(), IsOk());

  // Sizes around the buffer's: smaller, equal, spanning several, empty.
  std::mt19937 random(7);
  std::vector<at::Tensor> expected;
  for (int64_t elements : {3, 1024, 5000, 0, 1, 1023, 9000, 17}) {
    at::manual_seed(random());
    expected.push_back(at::randn({elements}).to(
        expected.size() % 2 ? at::kBFloat16 : at::kFloat));
  }
  expected.push_back(at::tensor(2.5));  // Zero dimensions.
  std::vector<at::Tensor> loaded;
  int64_t bytes = 0;
  for (const at::Tensor& values : expected) {
    const Unaligned source(values);
    loaded.push_back(at::empty_like(values));
    ASSERT_THAT((*upload)->Add(source.data(), loaded.back()), IsOk());
    bytes += values.nbytes();
  }
  ASSERT_THAT((*upload)->Finish(), IsOk());

  EXPECT_TRUE(transport->finished());
  EXPECT_EQ(transport->overwritten(), 0);
  EXPECT_EQ((*upload)->bytes_sent(), bytes);
  EXPECT_GE(transport->sends(), bytes / 4096);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(accelerate::testing::TensorsClose(loaded[i], expected[i], {}))
        << "tensor " << i;
  }
}

TEST(StagedUploadTest, SplitsLargeCopiesAmongItsThreads) {
  auto upload = StagedUpload::Create(
      std::make_unique<LateTransport>(std::chrono::microseconds(2000)),
      {.buffer_bytes = int64_t{8} << 20, .buffers = 2, .threads = 4});
  ASSERT_THAT(upload.status(), IsOk());
  EXPECT_EQ((*upload)->threads(), 4);
  at::manual_seed(3);
  // 21 MiB and a bit: parts of a buffer on 4 threads, a short last piece.
  const at::Tensor values = at::randint(0, 256, {(21 << 20) + 333}, at::kByte);
  const Unaligned source(values);
  at::Tensor loaded = at::zeros_like(values);
  ASSERT_THAT((*upload)->Add(source.data(), loaded), IsOk());
  ASSERT_THAT((*upload)->Finish(), IsOk());
  EXPECT_TRUE(at::equal(loaded, values));
}

TEST(StagedUploadTest, ReusesNoBufferBeforeItsSendsAreDone) {
  // One buffer: each piece must wait for the one before it to leave.
  auto owned = std::make_unique<LateTransport>(std::chrono::microseconds(500));
  LateTransport* transport = owned.get();
  auto upload = StagedUpload::Create(
      std::move(owned), {.buffer_bytes = 4096, .buffers = 1, .threads = 2});
  ASSERT_THAT(upload.status(), IsOk());
  const at::Tensor values = at::arange(10000, at::kInt);
  at::Tensor loaded = at::empty_like(values);
  ASSERT_THAT((*upload)->Add(values.data_ptr(), loaded), IsOk());
  ASSERT_THAT((*upload)->Finish(), IsOk());
  EXPECT_EQ(transport->overwritten(), 0);
  EXPECT_TRUE(at::equal(loaded, values));
}

TEST(StagedUploadTest, ConvertsIntoTheBuffersAsToRounds) {
  auto owned = std::make_unique<LateTransport>(std::chrono::microseconds(200));
  LateTransport* transport = owned.get();
  auto upload = StagedUpload::Create(
      std::move(owned), {.buffer_bytes = 4096, .buffers = 2, .threads = 2});
  ASSERT_THAT(upload.status(), IsOk());
  at::manual_seed(5);
  // Conversions between raw copies of odd sizes (the converted elements
  // start aligned whatever came before), across several buffers.
  const std::vector<std::pair<at::Tensor, at::ScalarType>> cases = {
      {at::randn({3001}), at::kBFloat16},
      {at::randint(0, 256, {13}, at::kByte), at::kByte},
      {at::randn({2, 700}, at::kDouble), at::kFloat},
      {at::randint(-1000, 1000, {999}, at::kLong), at::kHalf},
      {at::randn({0}), at::kHalf},
      {at::randn({5}, at::kBFloat16), at::kFloat},
  };
  std::vector<at::Tensor> loaded;
  for (const auto& [values, dtype] : cases) {
    loaded.push_back(at::empty(values.sizes(), at::TensorOptions(dtype)));
    ASSERT_THAT((*upload)->AddConverted(values, loaded.back()), IsOk());
  }
  ASSERT_THAT((*upload)->Finish(), IsOk());
  EXPECT_EQ(transport->overwritten(), 0);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(accelerate::testing::TensorsClose(
        loaded[i], cases[i].first.to(cases[i].second), {}))
        << "case " << i;
  }
}

TEST(StagedUploadTest, RefusesOptionsOutOfRange) {
  const auto late = [] {
    return std::make_unique<LateTransport>(std::chrono::microseconds(0));
  };
  EXPECT_THAT(StagedUpload::Create(late(), {.buffer_bytes = 100}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("buffer_bytes 100")));
  EXPECT_THAT(StagedUpload::Create(late(), {.buffers = 0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("buffers 0")));
  EXPECT_THAT(StagedUpload::Create(late(), {.threads = -2}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("threads -2")));
}

TEST(StagedUploadTest, SaysWhenTheTransportHasNoBuffers) {
  auto transport =
      std::make_unique<LateTransport>(std::chrono::microseconds(0));
  transport->refuse_buffers_ = true;
  EXPECT_THAT(StagedUpload::Create(std::move(transport)).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("no pinned memory")));
}

TEST(StagedUploadTest, DefaultsToOneThreadPerCoreAtMostEight) {
  auto upload = StagedUpload::Create(
      std::make_unique<LateTransport>(std::chrono::microseconds(0)),
      {.buffer_bytes = 4096});
  ASSERT_THAT(upload.status(), IsOk());
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  EXPECT_EQ((*upload)->threads(), std::clamp(cores, 1, 8));
}

TEST(StagedUploadTest, TheCpuIsNoStagingTarget) {
  EXPECT_THAT(DeviceStaging(c10::Device(c10::kCPU)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not cpu")));
}

}  // namespace
}  // namespace accelerate::bigmodel_internal
