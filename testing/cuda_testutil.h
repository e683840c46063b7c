// GPU tests (tag `gpu`) skip, saying why, where there is no CUDA device: on
// CPU machines, and in builds without `--config=cuda`.
//
// clang-format off
//   TEST(MyGpuTest, SeesAGpu) {
//     ACCELERATE_SKIP_WITHOUT_CUDA();
//     EXPECT_GT(torch::cuda::device_count(), 0u);
//   }
// clang-format on

#ifndef ACCELERATE_TESTING_CUDA_TESTUTIL_H_
#define ACCELERATE_TESTING_CUDA_TESTUTIL_H_

#include <torch/cuda.h>

#include "gtest/gtest.h"

// In a test body or fixture's SetUp: ends the test as skipped without a
// CUDA device.
#define ACCELERATE_SKIP_WITHOUT_CUDA()                                     \
  if (!torch::cuda::is_available())                                        \
  GTEST_SKIP() << "no CUDA device (a --config=cuda build, or the CMake "   \
                  "build against a CUDA LibTorch, on a machine with a GPU " \
                  "runs this: tools/gpu_check)"

#endif  // ACCELERATE_TESTING_CUDA_TESTUTIL_H_
