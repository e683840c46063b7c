// What the launcher needs to know about this machine (GPUs, cores, ports),
// injectable so that tests can describe another machine.
//
// clang-format off
//   int RendezvousPort() {
//     const LaunchHost host = LocalHost(state::ProcessEnvironment());
//     return host.port_is_free(29500) ? 29500 : host.pick_free_port();
//   }
// clang-format on
//
// Thread safety: `LocalHost` reads /proc and the environment and keeps no
// state; a `LaunchHost` is a plain value.

#ifndef ACCELERATE_LAUNCH_HOST_H_
#define ACCELERATE_LAUNCH_HOST_H_

#include <functional>
#include <string>

#include "state/environment.h"

namespace accelerate::launch {

struct LaunchHost {
  // Visible NVIDIA GPUs.
  int gpu_count = 0;
  // The model of the first NVIDIA GPU ("NVIDIA H200"), as the driver reports
  // it; empty when unknown.
  std::string gpu_model;
  // Physical CPU cores.
  int cpu_cores = 1;
  // Whether `port` can be listened on here.
  std::function<bool(int port)> port_is_free;
  // A port that is free right now.
  std::function<int()> pick_free_port;
};

// This machine: GPUs from /proc/driver/nvidia/gpus, of which only as many as
// `env`'s CUDA_VISIBLE_DEVICES lists are visible (as torch.cuda.device_count
// counts them; an empty value hides them all), physical cores from
// /proc/cpuinfo, and real socket checks.
LaunchHost LocalHost(const state::Environment& env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_HOST_H_
