#include "state/internal/process_group.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include "state/torch_errors.h"

#ifdef ACCELERATE_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace accelerate::state_internal {

using ::accelerate::state::RunGuarded;

namespace {

using BackendType = c10d::ProcessGroup::BackendType;

bool IsLoopback(absl::string_view address) {
  return absl::StartsWith(address, "127.") || address == "localhost" ||
         address == "::1";
}

// LibTorch 2: a ProcessGroup routes each device type to a Backend, as
// Python's `_new_process_group_helper` sets it up.
c10::intrusive_ptr<c10d::ProcessGroup> GroupOverBackend(
    const c10::intrusive_ptr<c10d::Store>& store,
    const ProcessGroupOptions& options, BackendType type,
    const c10::intrusive_ptr<c10d::Backend>& backend,
    std::initializer_list<c10::DeviceType> devices) {
  auto group = c10::make_intrusive<c10d::ProcessGroup>(
      store, options.rank, options.world_size);
  group->setDefaultBackend(type);
  backend->setSequenceNumberForGroup();
  for (c10::DeviceType device : devices) {
    group->setBackend(device, type, backend);
  }
  return group;
}

}  // namespace

absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> MakeGlooGroup(
    const c10::intrusive_ptr<c10d::Store>& store,
    const ProcessGroupOptions& options) {
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(
      absl::ToChronoMilliseconds(options.timeout));
  if (!options.gloo_socket_ifname.empty()) {
    absl::Status device = RunGuarded("GLOO_SOCKET_IFNAME", [&] {
      gloo_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(
              options.gloo_socket_ifname));
    });
    if (!device.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GLOO_SOCKET_IFNAME=\"", options.gloo_socket_ifname,
          "\" is not a usable network interface: ", device.message()));
    }
  }
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  absl::Status status = RunGuarded("joining the gloo process group", [&] {
    if (gloo_options->devices.empty()) {  // Else GLOO_SOCKET_IFNAME's.
      gloo_options->devices.push_back(
          IsLoopback(options.master_addr)
              ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
              : c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // Two threads are enough for the collectives one training step issues
    // and keep the start-up cheap.
    gloo_options->threads = 2;
    auto prefixed =
        c10::make_intrusive<c10d::PrefixStore>("accelerate/gloo", store);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
        prefixed, options.rank, options.world_size, gloo_options);
    group = GroupOverBackend(prefixed, options, BackendType::GLOO, backend,
#ifdef ACCELERATE_WITH_CUDA
                             {c10::DeviceType::CPU, c10::DeviceType::CUDA}
#else
                             {c10::DeviceType::CPU}
#endif
    );
  });
  if (!status.ok()) return status;
  return group;
}

absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> MakeNcclGroup(
    const c10::intrusive_ptr<c10d::Store>& store,
    const ProcessGroupOptions& options) {
#ifdef ACCELERATE_WITH_CUDA
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  absl::Status status = RunGuarded("joining the NCCL process group", [&] {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = absl::ToChronoMilliseconds(options.timeout);
    auto prefixed =
        c10::make_intrusive<c10d::PrefixStore>("accelerate/nccl", store);
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        prefixed, options.rank, options.world_size, nccl_options);
    group = GroupOverBackend(prefixed, options, BackendType::NCCL, backend,
                             {c10::DeviceType::CUDA});
  });
  if (!status.ok()) return status;
  return group;
#else
  (void)store;
  (void)options;
  return absl::FailedPreconditionError(
      "backend nccl needs a CUDA build (bazel build --config=cuda)");
#endif
}

}  // namespace accelerate::state_internal
