// Collectives over a `PartialState`'s process group, with Accelerate's
// semantics (`accelerate.utils.gather`, `gather_object`, `broadcast`,
// `broadcast_object_list`, `reduce`, `pad_across_processes`).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const PartialState& state, const at::Tensor& predictions,
//                        const std::map<std::string, at::Tensor>& local_metrics) {
//     // Every rank holds a [2, 3] tensor; all get the [2 * n, 3] concatenation.
//     ACCELERATE_ASSIGN_OR_RETURN(at::Tensor all, Gather(state, predictions));
//     // Nested vectors and string-keyed maps of tensors work too; the mean,
//     // as Accelerate's reduce.
//     ACCELERATE_ASSIGN_OR_RETURN(auto metrics, Reduce(state, local_metrics));
//     // One entry per rank, any lengths.
//     ACCELERATE_ASSIGN_OR_RETURN(std::vector<std::string> names,
//                                 GatherObject(state, std::string("me")));
//     state.Print("gathered ", all.size(0), " rows from ", names.size(),
//                 " processes; ", metrics.size(), " metrics");
//     return absl::OkStatus();
//   }
// clang-format on
//
// In a single process every collective is the identity (a copy where the
// operation would produce a new tensor). Every process must call the same
// collectives in the same order. Tensors must live on the state's device.
// With debug mode on (`ACCELERATE_DEBUG_MODE=1`), `Gather`, `Reduce` and
// `Broadcast` first compare shapes and dtypes across processes and fail with
// `FailedPrecondition` listing each process's shape, where a mismatch would
// otherwise hang or corrupt the result.
//
// Errors: `DeadlineExceeded` after the state's timeout, `Unavailable` when a
// peer died, `InvalidArgument` for bad arguments.
//
// Thread safety: as for any c10d process group, one thread at a time per
// state.

#ifndef ACCELERATE_STATE_COLLECTIVES_H_
#define ACCELERATE_STATE_COLLECTIVES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include "state/partial_state.h"

namespace accelerate::state {

enum class Reduction {
  kSum,
  kMean,
};

struct ReduceOptions {
  // The mean over processes (floating-point tensors only), or the sum.
  // Default mean, as `accelerate.utils.reduce`.
  Reduction reduction = Reduction::kMean;
  // Multiplies the result (floating-point tensors only). Default 1.
  // (Accelerate applies it on TPUs only; here it applies everywhere.)
  double scale = 1.0;
};

struct PadOptions {
  // Dimension to pad; negative counts from the end. A dimension the tensor
  // does not have leaves it unchanged, as in Accelerate.
  int64_t dim = 0;
  // Value of the padding elements.
  double pad_index = 0;
  // Pad before the data instead of after it.
  bool pad_first = false;
};

// The single-tensor operations behind the templates below.
[[nodiscard]] absl::StatusOr<at::Tensor> GatherTensor(
    const PartialState& state, const at::Tensor& tensor);
[[nodiscard]] absl::StatusOr<at::Tensor> ReduceTensor(
    const PartialState& state, const at::Tensor& tensor,
    const ReduceOptions& options = {});
[[nodiscard]] absl::StatusOr<at::Tensor> BroadcastTensor(
    const PartialState& state, const at::Tensor& tensor, int from_process = 0);
[[nodiscard]] absl::StatusOr<at::Tensor> PadTensorAcrossProcesses(
    const PartialState& state, const at::Tensor& tensor,
    const PadOptions& options = {});

// Reduces `tensor` across processes in place (no copy; what data-parallel
// gradient averaging needs). `InvalidArgument` for a non-contiguous tensor or
// a mean of integers.
[[nodiscard]] absl::Status AllReduceInPlace(const PartialState& state,
                                            at::Tensor& tensor,
                                            const ReduceOptions& options = {});

// Overwrites every tensor of `tensors` with `from_process`'s values, in
// place (what syncing a model's parameters and buffers from rank 0 needs; the
// tensors keep their identity, so a model's parameters stay its own).
// Consecutive tensors of one dtype and device travel together in buckets of
// up to 64 MiB. Any dtype, contiguous or not; autograd does not see the
// writes. Fails as `BroadcastTensor` does (timeouts, lost peers, shapes in
// debug mode).
[[nodiscard]] absl::Status BroadcastInPlace(
    const PartialState& state, const std::vector<at::Tensor>& tensors,
    int from_process = 0);

// Each rank's `data`, in rank order; the lengths may differ.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> GatherObject(
    const PartialState& state, const std::string& data);
// Every rank's items concatenated in rank order (Accelerate flattens the
// gathered lists the same way).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> GatherObject(
    const PartialState& state, const std::vector<std::string>& items);
// `from_process`'s `data` on every rank.
[[nodiscard]] absl::StatusOr<std::string> BroadcastObject(
    const PartialState& state, const std::string& data, int from_process = 0);

}  // namespace accelerate::state

namespace accelerate::state_internal {

// Applies `fn` to every tensor of a (nested) vector or string-keyed map of
// tensors, keeping the structure. Declared before defined so that nesting in
// any order resolves.
template <typename Fn>
absl::StatusOr<at::Tensor> MapTensors(const at::Tensor& tensor, Fn& fn);
template <typename T, typename Fn>
absl::StatusOr<std::vector<T>> MapTensors(const std::vector<T>& values,
                                          Fn& fn);
template <typename T, typename Fn>
absl::StatusOr<std::map<std::string, T>> MapTensors(
    const std::map<std::string, T>& values, Fn& fn);

template <typename Fn>
absl::StatusOr<at::Tensor> MapTensors(const at::Tensor& tensor, Fn& fn) {
  return fn(tensor);
}

template <typename T, typename Fn>
absl::StatusOr<std::vector<T>> MapTensors(const std::vector<T>& values,
                                          Fn& fn) {
  std::vector<T> result;
  result.reserve(values.size());
  for (const T& value : values) {
    auto mapped = MapTensors(value, fn);
    if (!mapped.ok()) return mapped.status();
    result.push_back(*std::move(mapped));
  }
  return result;
}

template <typename T, typename Fn>
absl::StatusOr<std::map<std::string, T>> MapTensors(
    const std::map<std::string, T>& values, Fn& fn) {
  std::map<std::string, T> result;
  for (const auto& [key, value] : values) {
    auto mapped = MapTensors(value, fn);
    if (!mapped.ok()) return mapped.status();
    result.emplace(key, *std::move(mapped));
  }
  return result;
}

}  // namespace accelerate::state_internal

namespace accelerate::state {

// Concatenates every process's tensors along dimension 0, in rank order, on
// every process. 0-dimensional tensors gather into a vector of n values, on
// one process too (Accelerate returns them unchanged there), so the result's
// shape never depends on the number of processes.
// REQUIRES: the same shapes on every process (checked in debug mode).
template <typename T>
[[nodiscard]] absl::StatusOr<T> Gather(const PartialState& state,
                                       const T& value) {
  auto fn = [&](const at::Tensor& t) { return GatherTensor(state, t); };
  return state_internal::MapTensors(value, fn);
}

// Averages (or sums) every process's tensors; the result is a new tensor on
// every process.
template <typename T>
[[nodiscard]] absl::StatusOr<T> Reduce(const PartialState& state,
                                       const T& value,
                                       const ReduceOptions& options = {}) {
  auto fn = [&](const at::Tensor& t) {
    return ReduceTensor(state, t, options);
  };
  return state_internal::MapTensors(value, fn);
}

// `from_process`'s tensors on every process. Other processes pass tensors of
// the same shapes and dtypes (their values are ignored).
template <typename T>
[[nodiscard]] absl::StatusOr<T> Broadcast(const PartialState& state,
                                          const T& value,
                                          int from_process = 0) {
  auto fn = [&](const at::Tensor& t) {
    return BroadcastTensor(state, t, from_process);
  };
  return state_internal::MapTensors(value, fn);
}

// Pads each tensor along `options.dim` to the largest size any process has
// there, so that the tensors can then be gathered.
template <typename T>
[[nodiscard]] absl::StatusOr<T> PadAcrossProcesses(
    const PartialState& state, const T& value, const PadOptions& options = {}) {
  auto fn = [&](const at::Tensor& t) {
    return PadTensorAcrossProcesses(state, t, options);
  };
  return state_internal::MapTensors(value, fn);
}

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_COLLECTIVES_H_
