#include "launch/host.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "state/environment.h"

namespace accelerate::launch {
namespace {

TEST(LocalHostTest, AnEmptyCudaVisibleDevicesFromTheEnvironmentHidesEveryGpu) {
  // Read through the injected environment, not the process's: on a machine
  // with GPUs, reading getenv would count them.
  state::MapEnvironment env;
  env.Set("CUDA_VISIBLE_DEVICES", "");
  const LaunchHost host = LocalHost(env);
  EXPECT_EQ(host.gpu_count, 0);
  EXPECT_GE(host.cpu_cores, 1);
  ASSERT_TRUE(host.pick_free_port);
  ASSERT_TRUE(host.port_is_free);
  const int port = host.pick_free_port();
  EXPECT_GT(port, 0);
  EXPECT_TRUE(host.port_is_free(port));
}

TEST(LocalHostTest, CudaVisibleDevicesCapsTheGpuCount) {
  const LaunchHost all = LocalHost(state::MapEnvironment());
  state::MapEnvironment first_only;
  first_only.Set("CUDA_VISIBLE_DEVICES", "0");
  const LaunchHost one = LocalHost(first_only);
  EXPECT_EQ(one.gpu_count, std::min(all.gpu_count, 1));
}

}  // namespace
}  // namespace accelerate::launch
