#include "state/partial_state.h"

#include <signal.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include "state/torch_errors.h"
#include "state/internal/process_group.h"
#include "state/internal/rendezvous.h"
#include "state/internal/work.h"
#include "state/logging.h"
#include "state/status_macros.h"

#ifdef ACCELERATE_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace accelerate::state {

using ::accelerate::state::RunGuarded;

struct PartialState::Group {
  // Declared first so that the process group is destroyed before the store
  // that rank 0 serves.
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> process_group;
};

namespace {

// A peer that dies while this process writes to it raises SIGPIPE, whose
// default action ends this process: gloo and the TCPStore write without
// MSG_NOSIGNAL, relying on Python, which ignores SIGPIPE at start-up. Do as
// Python does (unless the program installed its own handler), so that the
// write fails and the collective reports the lost peer.
void IgnoreSigpipe() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 &&
      current.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }
}

bool CudaAvailable() {
#ifdef ACCELERATE_WITH_CUDA
  return c10::cuda::device_count() > 0;
#else
  return false;
#endif
}

#ifdef ACCELERATE_WITH_CUDA
// GPU `index` as this process claims it for NCCL at the rendezvous: by its
// UUID (as nvidia-smi -L writes it), which stays the same whatever
// CUDA_VISIBLE_DEVICES numbers it; nullopt where CUDA cannot say (NCCL then
// finds a shared GPU itself, later).
std::optional<state_internal::DeviceClaim> NcclDeviceClaim(int index) {
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) {
    (void)cudaGetLastError();  // Clears the error for the next CUDA call.
    return std::nullopt;
  }
  const auto* b = reinterpret_cast<const unsigned char*>(properties.uuid.bytes);
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return state_internal::DeviceClaim{
      .id = absl::StrFormat(
          "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
          "%02x%02x%02x%02x%02x%02x",
          b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
          b[11], b[12], b[13], b[14], b[15]),
      .description = absl::StrCat("cuda:", index, " on host ", host),
      .remedy =
          "NCCL needs a GPU of its own for each process: start at most as "
          "many processes on a machine as it has GPUs, give each process its "
          "own (CUDA_VISIBLE_DEVICES), or use gloo (--cpu)",
  };
}
#endif

}  // namespace

absl::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kNone:
      return "none";
    case Backend::kGloo:
      return "gloo";
    case Backend::kNccl:
      return "nccl";
  }
  return "unknown";
}

absl::string_view DistributedTypeName(DistributedType type) {
  switch (type) {
    case DistributedType::kNo:
      return "NO";
    case DistributedType::kMultiCpu:
      return "MULTI_CPU";
    case DistributedType::kMultiGpu:
      return "MULTI_GPU";
  }
  return "UNKNOWN";
}

absl::StatusOr<Backend> ParseBackend(absl::string_view name) {
  if (name == "gloo") return Backend::kGloo;
  if (name == "nccl") return Backend::kNccl;
  return absl::InvalidArgumentError(
      absl::StrCat("backend \"", name, "\" is not one of gloo, nccl"));
}

PartialState::PartialState(LaunchInfo info, Backend backend,
                           c10::Device device, absl::Duration timeout,
                           bool debug)
    : info_(std::move(info)),
      backend_(backend),
      device_(device),
      timeout_(timeout),
      debug_(debug) {}

PartialState::~PartialState() = default;

absl::StatusOr<std::unique_ptr<PartialState>> PartialState::Create(
    const PartialStateOptions& options, const Environment& env) {
  ACCELERATE_ASSIGN_OR_RETURN(LaunchInfo info, ResolveLaunchInfo(env));
  // Before the rendezvous and the model allocate anything.
  ACCELERATE_ASSIGN_OR_RETURN(HostMallocTuning tuning,
                              TuneHostMalloc(options.tune_malloc, env));
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<PartialState> state,
                              FromLaunchInfo(info, options));
  state->host_malloc_tuning_ = std::move(tuning);
  return state;
}

absl::StatusOr<std::unique_ptr<PartialState>> PartialState::FromLaunchInfo(
    const LaunchInfo& info, const PartialStateOptions& options) {
  if (options.timeout <= absl::ZeroDuration() ||
      options.timeout > absl::Hours(24 * 365)) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout ", absl::FormatDuration(options.timeout),
                     " is not between 0 and a year"));
  }
  if (info.world_size < 1 || info.rank < 0 || info.rank >= info.world_size ||
      (info.world_size > 1 && info.master_addr.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "launch info: rank ", info.rank, " of ", info.world_size,
        " processes with master address \"", info.master_addr,
        "\" is not a valid position"));
  }
  const bool cpu = options.cpu.value_or(info.use_cpu);
  const bool gpu = !cpu && CudaAvailable();
  c10::Device device(c10::kCPU);
#ifdef ACCELERATE_WITH_CUDA
  if (gpu) {
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(
                                         info.local_rank %
                                         c10::cuda::device_count()));
    // Kernels and NCCL's communicator go to this rank's GPU, not GPU 0.
    c10::cuda::set_device(device.index());
  }
#endif
  Backend backend = Backend::kNone;
  if (info.world_size > 1) {
    backend = options.backend.value_or(gpu ? Backend::kNccl : Backend::kGloo);
    if (backend == Backend::kNone) {
      return absl::InvalidArgumentError(
          "backend none cannot serve more than one process");
    }
    if (backend == Backend::kNccl && !gpu) {
      return absl::FailedPreconditionError(
          cpu ? "backend nccl needs a GPU, but the CPU is forced "
                "(ACCELERATE_USE_CPU or options.cpu)"
              : "backend nccl needs a CUDA build with a visible GPU");
    }
  }

  std::unique_ptr<PartialState> state(new PartialState(
      info, backend, device, options.timeout,
      options.debug.value_or(info.debug)));
  if (info.world_size == 1) return state;

  IgnoreSigpipe();
  auto group = std::make_unique<Group>();
  // NCCL refuses two processes on one GPU, late and obscurely: each claims
  // its GPU at the rendezvous, which fails on every rank at once, naming
  // both, when two share one (a machine running more processes than it has
  // GPUs, or CUDA_VISIBLE_DEVICES showing two processes the same one).
  std::optional<state_internal::DeviceClaim> claim;
#ifdef ACCELERATE_WITH_CUDA
  if (backend == Backend::kNccl) claim = NcclDeviceClaim(device.index());
#endif
  ACCELERATE_ASSIGN_OR_RETURN(
      group->store, state_internal::Rendezvous(info, options.timeout, claim));
  const state_internal::ProcessGroupOptions group_options{
      .rank = info.rank,
      .world_size = info.world_size,
      .timeout = options.timeout,
      .gloo_socket_ifname = info.gloo_socket_ifname,
      .master_addr = info.master_addr,
  };
  ACCELERATE_ASSIGN_OR_RETURN(
      group->process_group,
      backend == Backend::kNccl
          ? state_internal::MakeNcclGroup(group->store, group_options)
          : state_internal::MakeGlooGroup(group->store, group_options));
  state->group_ = std::move(group);
  // gloo connects its pairs through the store one by one; until every rank
  // is through, rank 0 must keep serving it. A barrier over the new group
  // (which runs on the pairs, not the store) makes sure of that.
  ACCELERATE_RETURN_IF_ERROR(state->WaitForEveryone());
  return state;
}

absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> PartialState::NewGroup(
    const std::vector<int>& ranks, const std::string& name) const {
  if (group_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("process group ", name, ": a single process has none"));
  }
  int position = -1;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] < 0 || ranks[i] >= info_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "process group ", name, ": rank ", ranks[i], " is not in 0..",
          info_.world_size - 1));
    }
    if (ranks[i] == info_.rank) position = static_cast<int>(i);
  }
  if (position < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "process group ", name, ": process ", info_.rank,
        " is not among its ranks"));
  }
  auto store = c10::make_intrusive<c10d::PrefixStore>(
      absl::StrCat("accelerate/group/", name, "/"), group_->store);
  const state_internal::ProcessGroupOptions options{
      .rank = position,
      .world_size = static_cast<int>(ranks.size()),
      .timeout = timeout_,
      .gloo_socket_ifname = info_.gloo_socket_ifname,
      .master_addr = info_.master_addr,
  };
  return backend_ == Backend::kNccl
             ? state_internal::MakeNcclGroup(store, options)
             : state_internal::MakeGlooGroup(store, options);
}

DistributedType PartialState::distributed_type() const {
  switch (backend_) {
    case Backend::kNone:
      return DistributedType::kNo;
    case Backend::kGloo:
      return DistributedType::kMultiCpu;
    case Backend::kNccl:
      return DistributedType::kMultiGpu;
  }
  return DistributedType::kNo;
}

c10d::ProcessGroup* PartialState::process_group() const {
  return group_ == nullptr ? nullptr : group_->process_group.get();
}

absl::Status PartialState::WaitForEveryone() const {
  if (group_ == nullptr) return absl::OkStatus();
  const std::string op = absl::StrCat("wait_for_everyone on rank ", info_.rank);
  c10d::BarrierOptions options;
  // NCCL's barrier on this process's GPU (else it guesses one from the
  // rank, which differs from ours when machines run fewer processes than
  // they have GPUs).
  if (backend_ == Backend::kNccl) options.device_ids = {device_.index()};
  c10::intrusive_ptr<c10d::Work> work;
  ACCELERATE_RETURN_IF_ERROR(RunGuarded(
      op, [&] { work = group_->process_group->barrier(options); }));
  return state_internal::WaitForWork(work, /*bytes=*/0, op);
}

absl::Status PartialState::MainProcessFirst(
    absl::FunctionRef<void()> fn) const {
  if (!is_main_process()) ACCELERATE_RETURN_IF_ERROR(WaitForEveryone());
  fn();
  if (is_main_process()) ACCELERATE_RETURN_IF_ERROR(WaitForEveryone());
  return absl::OkStatus();
}

absl::Status PartialState::LocalMainProcessFirst(
    absl::FunctionRef<void()> fn) const {
  if (!is_local_main_process()) ACCELERATE_RETURN_IF_ERROR(WaitForEveryone());
  fn();
  if (is_local_main_process()) ACCELERATE_RETURN_IF_ERROR(WaitForEveryone());
  return absl::OkStatus();
}

void PartialState::OnProcess(int process_index,
                             absl::FunctionRef<void()> fn) const {
  ACCELERATE_CHECK(process_index >= 0 && process_index < num_processes())
      << "process_index " << process_index << " is outside [0, "
      << num_processes() << ")";
  if (info_.rank == process_index) fn();
}

void PartialState::OnLocalProcess(int local_process_index,
                                  absl::FunctionRef<void()> fn) const {
  ACCELERATE_CHECK(local_process_index >= 0 &&
                   local_process_index < num_local_processes())
      << "local_process_index " << local_process_index << " is outside [0, "
      << num_local_processes() << ")";
  if (info_.local_rank == local_process_index) fn();
}

absl::Status PartialState::CheckSameLengths(
    const std::vector<std::pair<std::string, int64_t>>& lengths) {
  for (const auto& [key, length] : lengths) {
    if (length != lengths.front().second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "split_between_processes: all values must have the same length, "
          "but \"", lengths.front().first, "\" has ", lengths.front().second,
          " and \"", key, "\" has ", length));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, at::Tensor>>
PartialState::SplitBetweenProcesses(
    const std::map<std::string, at::Tensor>& inputs,
    bool apply_padding) const {
  std::vector<std::pair<std::string, int64_t>> lengths;
  for (const auto& [key, tensor] : inputs) {
    if (tensor.dim() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "split_between_processes: \"", key, "\" is 0-dimensional"));
    }
    lengths.emplace_back(key, tensor.size(0));
  }
  ACCELERATE_RETURN_IF_ERROR(CheckSameLengths(lengths));
  std::map<std::string, at::Tensor> result;
  for (const auto& [key, tensor] : inputs) {
    ACCELERATE_ASSIGN_OR_RETURN(result[key],
                                SplitBetweenProcesses(tensor, apply_padding));
  }
  return result;
}

PartialState::Share PartialState::ShareOf(int64_t length) const {
  const int64_t n = num_processes();
  const int64_t per_process = length / n;
  const int64_t extras = length % n;
  const int64_t rank = process_index();
  Share share;
  share.begin = rank * per_process + std::min(rank, extras);
  share.end = share.begin + per_process + (rank < extras ? 1 : 0);
  share.longest = per_process + (extras > 0 ? 1 : 0);
  return share;
}

absl::StatusOr<at::Tensor> PartialState::SplitBetweenProcesses(
    const at::Tensor& inputs, bool apply_padding) const {
  if (inputs.dim() == 0) {
    return absl::InvalidArgumentError(
        "split_between_processes needs a tensor with at least one dimension, "
        "got a 0-dimensional one");
  }
  if (num_processes() == 1) return inputs;
  const int64_t length = inputs.size(0);
  if (length == 0) return inputs;
  const Share share = ShareOf(length);
  at::Tensor result = share.begin >= length
                          ? inputs.slice(0, length - 1, length)
                          : inputs.slice(0, share.begin, share.end);
  if (apply_padding && result.size(0) < share.longest) {
    at::Tensor last = inputs.slice(0, length - 1, length);
    std::vector<int64_t> repeats(inputs.dim(), 1);
    repeats[0] = share.longest - result.size(0);
    result = at::cat({result, last.repeat(repeats)}, 0);
  }
  return result;
}

}  // namespace accelerate::state
