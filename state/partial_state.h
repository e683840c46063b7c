// `PartialState`: this process's place in a distributed job and its process
// group, the C++ counterpart of Accelerate's `PartialState`.
//
// clang-format off
//   #include <iostream>
//   int Example(const std::vector<int>& all_items) {
//     // Reads RANK/WORLD_SIZE/... (or SLURM, Open MPI, MPICH variables), joins
//     // the process group, and answers rank questions.
//     absl::StatusOr<std::unique_ptr<PartialState>> state = PartialState::Create();
//     if (!state.ok()) { std::cerr << state.status() << "\n"; return 1; }
//     (*state)->Print("running on ", (*state)->num_processes(), " processes");
//     std::vector<int> mine = (*state)->SplitBetweenProcesses(all_items);
//     absl::Status done = (*state)->WaitForEveryone();
//     return done.ok() && !mine.empty() ? 0 : 1;
//   }
// clang-format on
//
// Without launcher variables the state is a single process with no process
// group, and every operation still works (collectives are identities).
// Collectives over the group are in "state/collectives.h".
//
// Thread safety: the accessors are safe to call from any thread. Operations
// that talk to other processes (`WaitForEveryone`, the `*First` scopes and the
// collectives) must be called in the same order on every process, from one
// thread at a time, as with any c10d process group.
//
// Ownership: the caller owns the returned object. Rank 0's object also serves
// the rendezvous store; destroying it leaves the process group (peers that are
// still running then see their next collective fail instead of hanging).

#ifndef ACCELERATE_STATE_PARTIAL_STATE_H_
#define ACCELERATE_STATE_PARTIAL_STATE_H_

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>
#include "state/environment.h"
#include "state/host_malloc.h"
#include "state/launch_info.h"

namespace c10d {
class ProcessGroup;
}  // namespace c10d

namespace accelerate::state {

// The communication backend of the process group.
enum class Backend {
  kNone,  // Single process: no process group.
  kGloo,  // CPU tensors over TCP.
  kNccl,  // CUDA tensors; only in `--config=cuda` builds.
};

// Accelerate's `DistributedType`, restricted to what we run.
enum class DistributedType {
  kNo,        // One process.
  kMultiCpu,  // Several processes on CPU (gloo).
  kMultiGpu,  // Several processes, one GPU each (NCCL).
};

// "none", "gloo", "nccl".
absl::string_view BackendName(Backend backend);
// "NO", "MULTI_CPU", "MULTI_GPU" (Accelerate's spelling).
absl::string_view DistributedTypeName(DistributedType type);
// Parses "gloo" or "nccl"; `InvalidArgument` names the value otherwise.
[[nodiscard]] absl::StatusOr<Backend> ParseBackend(absl::string_view name);

struct PartialStateOptions {
  // Backend of the process group. Default: NCCL when this is a CUDA build with
  // a GPU and the CPU is not forced, gloo otherwise. Asking for NCCL in a
  // build without it is `FailedPrecondition`.
  std::optional<Backend> backend;
  // Limit for the rendezvous (every peer must arrive within it) and for each
  // collective. Default 30 minutes, as in Accelerate and torch.distributed.
  absl::Duration timeout = absl::Minutes(30);
  // Run on CPU even when a GPU is present. Default: ACCELERATE_USE_CPU.
  std::optional<bool> cpu;
  // Verify collective inputs across processes before each collective, and
  // fail with every process's shapes instead of hanging on a mismatch.
  // Default: ACCELERATE_DEBUG_MODE.
  std::optional<bool> debug;
  // Tune glibc's malloc for tensor workloads ("state/host_malloc.h"), once
  // for the process. Default: ACCELERATE_TUNE_MALLOC, itself true; the
  // user's own malloc settings in the environment win.
  std::optional<bool> tune_malloc;
};

class PartialState {
 public:
  // Reads the launcher variables from `env` and, for more than one process,
  // joins the process group: rank 0 serves a c10d TCPStore at MASTER_ADDR:
  // MASTER_PORT, every rank checks in, then the gloo (or NCCL) group forms.
  // Like Python, a multi-process state ignores SIGPIPE (unless the program
  // set a handler), so that a peer dying mid-write fails the collective
  // instead of killing this process. It also tunes glibc's malloc for tensor
  // workloads unless told not to (`tune_malloc`, "state/host_malloc.h").
  // Errors: `InvalidArgument` for bad variables or options,
  // `DeadlineExceeded` when some peer does not arrive within the timeout
  // (the message names the missing ranks), `Unavailable` when the store
  // cannot be served or reached, `FailedPrecondition` for NCCL without a GPU
  // build.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PartialState>> Create(
      const PartialStateOptions& options = {},
      const Environment& env = ProcessEnvironment());

  // As `Create`, from already resolved launcher variables; leaves malloc as
  // it is (`host_malloc_tuning().applied` is false).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PartialState>>
  FromLaunchInfo(const LaunchInfo& info,
                 const PartialStateOptions& options = {});

  PartialState(const PartialState&) = delete;
  PartialState& operator=(const PartialState&) = delete;
  ~PartialState();

  // Rank questions.
  int num_processes() const { return info_.world_size; }
  int process_index() const { return info_.rank; }
  int local_process_index() const { return info_.local_rank; }
  int num_local_processes() const { return info_.local_world_size; }
  int node_rank() const { return info_.node_rank; }
  bool is_main_process() const { return info_.rank == 0; }
  bool is_local_main_process() const { return info_.local_rank == 0; }
  bool is_last_process() const {
    return info_.rank == info_.world_size - 1;
  }
  bool use_distributed() const { return info_.world_size > 1; }

  // CPU, or this process's GPU (cuda:LOCAL_RANK modulo the GPU count) in CUDA
  // builds unless the CPU is forced.
  c10::Device device() const { return device_; }
  Backend backend() const { return backend_; }
  DistributedType distributed_type() const;
  bool debug() const { return debug_; }
  absl::Duration timeout() const { return timeout_; }
  const LaunchInfo& launch_info() const { return info_; }
  // Whether `Create` tuned this process's malloc, and why not.
  const HostMallocTuning& host_malloc_tuning() const {
    return host_malloc_tuning_;
  }

  // The process group; nullptr for a single process. For the collectives in
  // "state/collectives.h" and for libraries that issue their own.
  c10d::ProcessGroup* process_group() const;

  // A process group of the processes `ranks` (global ranks, ascending),
  // named `name` (its store keys), over the same rendezvous store and
  // backend: this process's rank in it is its position in `ranks`.
  // REQUIRES: every process of `ranks` calls it with the same arguments;
  // this process is one of them. `FailedPrecondition` on one process,
  // `InvalidArgument` for ranks out of range or not containing this one.
  [[nodiscard]] absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>>
  NewGroup(const std::vector<int>& ranks, const std::string& name) const;

  // Blocks until every process has reached this call. `DeadlineExceeded`
  // after the timeout; `Unavailable` when a peer died.
  [[nodiscard]] absl::Status WaitForEveryone() const;

  // Runs `fn` on the main process first, then on all others (e.g. download or
  // preprocess once, then read the cache everywhere). Every process must call
  // it. Returns the barrier's error, if any.
  [[nodiscard]] absl::Status MainProcessFirst(
      absl::FunctionRef<void()> fn) const;
  // As `MainProcessFirst`, with the first process of each machine.
  [[nodiscard]] absl::Status LocalMainProcessFirst(
      absl::FunctionRef<void()> fn) const;

  // Run `fn` only on the named process; no synchronization.
  void OnMainProcess(absl::FunctionRef<void()> fn) const {
    if (is_main_process()) fn();
  }
  void OnLocalMainProcess(absl::FunctionRef<void()> fn) const {
    if (is_local_main_process()) fn();
  }
  void OnLastProcess(absl::FunctionRef<void()> fn) const {
    if (is_last_process()) fn();
  }
  // REQUIRES: 0 <= process_index < num_processes().
  void OnProcess(int process_index, absl::FunctionRef<void()> fn) const;
  // Only on the process with this index on each machine.
  // REQUIRES: 0 <= local_process_index < num_local_processes().
  void OnLocalProcess(int local_process_index,
                      absl::FunctionRef<void()> fn) const;

  // Prints the arguments and a newline to stdout, once per machine (on the
  // local main process), as Accelerate's `print` does.
  template <typename... Args>
  void Print(const Args&... args) const {
    if (!is_local_main_process()) return;
    (std::cout << ... << args) << std::endl;
  }

  // This process's share of `inputs`, split in order as Accelerate's
  // `split_between_processes` does: the first `size % n` processes get one
  // item more. A process past the end gets the last item. With
  // `apply_padding`, every share is padded with copies of its last item to the
  // longest share's length, so all processes hold the same count.
  template <typename T>
  std::vector<T> SplitBetweenProcesses(const std::vector<T>& inputs,
                                       bool apply_padding = false) const;

  // As above along dimension 0 of `inputs`; the result is a view when no
  // padding is added. Padding repeats the last row of `inputs`, as
  // Accelerate's padding with `pad_index=inputs[-1]` does. `InvalidArgument`
  // for a 0-dimensional tensor.
  [[nodiscard]] absl::StatusOr<at::Tensor> SplitBetweenProcesses(
      const at::Tensor& inputs, bool apply_padding = false) const;

  // Each value split as above, by the same shares (a batch of named
  // columns). `InvalidArgument` when the values' lengths differ, naming the
  // keys and lengths.
  template <typename T>
  [[nodiscard]] absl::StatusOr<std::map<std::string, std::vector<T>>>
  SplitBetweenProcesses(const std::map<std::string, std::vector<T>>& inputs,
                        bool apply_padding = false) const;
  [[nodiscard]] absl::StatusOr<std::map<std::string, at::Tensor>>
  SplitBetweenProcesses(const std::map<std::string, at::Tensor>& inputs,
                        bool apply_padding = false) const;

 private:
  struct Group;
  // [begin, end) of this process's share of `length` items and the longest
  // share's length.
  struct Share {
    int64_t begin;
    int64_t end;
    int64_t longest;
  };

  PartialState(LaunchInfo info, Backend backend, c10::Device device,
               absl::Duration timeout, bool debug);
  // `InvalidArgument` unless every value of a map has `length` items.
  static absl::Status CheckSameLengths(
      const std::vector<std::pair<std::string, int64_t>>& lengths);
  Share ShareOf(int64_t length) const;

  LaunchInfo info_;
  Backend backend_;
  c10::Device device_;
  absl::Duration timeout_;
  bool debug_;
  HostMallocTuning host_malloc_tuning_ = {
      .applied = false, .reason = "created from resolved launch info"};
  std::unique_ptr<Group> group_;  // nullptr for a single process.
};

template <typename T>
std::vector<T> PartialState::SplitBetweenProcesses(
    const std::vector<T>& inputs, bool apply_padding) const {
  if (num_processes() == 1) return inputs;
  const Share share = ShareOf(static_cast<int64_t>(inputs.size()));
  std::vector<T> result;
  if (inputs.empty()) return result;
  if (share.begin >= static_cast<int64_t>(inputs.size())) {
    result.push_back(inputs.back());
  } else {
    result.assign(inputs.begin() + share.begin, inputs.begin() + share.end);
  }
  if (apply_padding) {
    while (static_cast<int64_t>(result.size()) < share.longest) {
      result.push_back(result.back());
    }
  }
  return result;
}

template <typename T>
absl::StatusOr<std::map<std::string, std::vector<T>>>
PartialState::SplitBetweenProcesses(
    const std::map<std::string, std::vector<T>>& inputs,
    bool apply_padding) const {
  std::vector<std::pair<std::string, int64_t>> lengths;
  for (const auto& [key, values] : inputs) {
    lengths.emplace_back(key, static_cast<int64_t>(values.size()));
  }
  if (absl::Status same = CheckSameLengths(lengths); !same.ok()) return same;
  std::map<std::string, std::vector<T>> result;
  for (const auto& [key, values] : inputs) {
    result[key] = SplitBetweenProcesses(values, apply_padding);
  }
  return result;
}

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_PARTIAL_STATE_H_
