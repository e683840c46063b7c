#include "state/collectives.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include "state/torch_errors.h"
#include "state/internal/work.h"
#include "state/status_macros.h"

namespace accelerate::state {
namespace {

using ::accelerate::state::RunGuarded;
using ::accelerate::state_internal::WaitForWork;

std::string OperationName(const PartialState& state, absl::string_view op) {
  return absl::StrCat(op, " on rank ", state.process_index());
}

// Tensors that carry sizes and bytes live on the state's device: NCCL
// moves only GPU tensors.
at::TensorOptions On(const PartialState& state, at::ScalarType dtype) {
  return at::TensorOptions().dtype(dtype).device(state.device());
}

at::Tensor BytesToTensor(const PartialState& state, const std::string& bytes,
                         int64_t length) {
  at::Tensor tensor = at::zeros({length}, at::kByte);
  std::memcpy(tensor.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return tensor.to(state.device());
}

std::string TensorToBytes(const at::Tensor& tensor, int64_t length) {
  const at::Tensor cpu = tensor.cpu().contiguous();
  return std::string(reinterpret_cast<const char*>(cpu.data_ptr<uint8_t>()),
                     static_cast<size_t>(length));
}

// All-gathers `input` (contiguous, of a type gloo moves: see TransportType)
// from every process into `output`, whose first dimension is the number of
// processes times `input`'s: process r's rows land at [r * rows, (r + 1) *
// rows). Waits for the transfer.
absl::Status AllGatherInto(const PartialState& state, const at::Tensor& input,
                           const at::Tensor& output, absl::string_view name) {
  const int64_t rows = input.size(0);
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int rank = 0; rank < state.num_processes(); ++rank) {
    outputs[0].push_back(output.narrow(0, rank * rows, rows));
  }
  std::vector<at::Tensor> inputs = {input};
  const std::string op = OperationName(state, name);
  c10::intrusive_ptr<c10d::Work> work;
  ACCELERATE_RETURN_IF_ERROR(RunGuarded(op, [&] {
    work = state.process_group()->allgather(outputs, inputs);
  }));
  return WaitForWork(work, input.nbytes(), op);
}

// One int64 per process, all-gathered.
absl::StatusOr<std::vector<int64_t>> AllGatherInts(
    const PartialState& state, const std::vector<int64_t>& values,
    absl::string_view op) {
  const int n = state.num_processes();
  const int64_t width = static_cast<int64_t>(values.size());
  at::Tensor input = at::tensor(values, at::kLong).to(state.device());
  at::Tensor output = at::empty({n * width}, On(state, at::kLong));
  ACCELERATE_RETURN_IF_ERROR(AllGatherInto(state, input, output, op));
  output = output.cpu();
  return std::vector<int64_t>(output.data_ptr<int64_t>(),
                              output.data_ptr<int64_t>() + n * width);
}

std::string DescribeTensor(const at::Tensor& tensor) {
  return absl::StrCat(std::string(c10::toString(tensor.scalar_type())), " [",
                      absl::StrJoin(tensor.sizes(), ", "), "]");
}

// In debug mode, checks that every process passes a tensor of the same shape
// and dtype, and otherwise names each process's.
absl::Status VerifyAcrossProcesses(const PartialState& state,
                                   const at::Tensor& tensor,
                                   absl::string_view op) {
  if (!state.debug() || !state.use_distributed()) return absl::OkStatus();
  ACCELERATE_ASSIGN_OR_RETURN(std::vector<std::string> shapes,
                              GatherObject(state, DescribeTensor(tensor)));
  if (std::all_of(shapes.begin(), shapes.end(),
                  [&](const std::string& s) { return s == shapes[0]; })) {
    return absl::OkStatus();
  }
  std::string listing;
  for (size_t rank = 0; rank < shapes.size(); ++rank) {
    absl::StrAppend(&listing, "\n  - Process ", rank, ": ", shapes[rank]);
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "Cannot apply ", op,
      ": the tensors differ across processes; all must have the same shape "
      "and dtype.\nInput shapes:",
      listing));
}

// gloo moves no bool or bfloat16 tensors; gathers and broadcasts only move
// bits, so such tensors travel as a same-sized type gloo knows and are
// viewed back.
at::ScalarType TransportType(at::ScalarType type) {
  switch (type) {
    case at::kBool:
      return at::kByte;
    case at::kBFloat16:
      return at::kHalf;  // Same size; gloo only copies it.
    default:
      return type;
  }
}

absl::Status CheckProcessIndex(const PartialState& state, int from_process,
                               absl::string_view op) {
  if (from_process < 0 || from_process >= state.num_processes()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": from_process ", from_process, " is outside [0, ",
                     state.num_processes(), ")"));
  }
  return absl::OkStatus();
}

// Broadcasts `buffer` (contiguous, of a type gloo moves: see TransportType)
// from `from_process` into every rank's `buffer`, and waits for it.
absl::Status BroadcastBuffer(const PartialState& state,
                             const at::Tensor& buffer, int from_process,
                             const std::string& op) {
  c10d::BroadcastOptions options;
  options.rootRank = from_process;
  std::vector<at::Tensor> tensors = {buffer};
  c10::intrusive_ptr<c10d::Work> work;
  ACCELERATE_RETURN_IF_ERROR(RunGuarded(op, [&] {
    work = state.process_group()->broadcast(tensors, options);
  }));
  return WaitForWork(work, buffer.nbytes(), op);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> GatherObject(
    const PartialState& state, const std::string& data) {
  if (!state.use_distributed()) return std::vector<std::string>{data};
  ACCELERATE_ASSIGN_OR_RETURN(
      std::vector<int64_t> lengths,
      AllGatherInts(state, {static_cast<int64_t>(data.size())},
                    "gather_object"));
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  const int n = state.num_processes();
  std::vector<std::string> result(n);
  if (longest == 0) return result;

  at::Tensor output = at::empty({n * longest}, On(state, at::kByte));
  ACCELERATE_RETURN_IF_ERROR(AllGatherInto(
      state, BytesToTensor(state, data, longest), output, "gather_object"));
  for (int rank = 0; rank < n; ++rank) {
    result[rank] =
        TensorToBytes(output.narrow(0, rank * longest, longest), lengths[rank]);
  }
  return result;
}

absl::StatusOr<std::vector<std::string>> GatherObject(
    const PartialState& state, const std::vector<std::string>& items) {
  // Length-prefixed encoding: each item as 8 length bytes, then its bytes.
  std::string encoded;
  for (const std::string& item : items) {
    const uint64_t length = item.size();
    encoded.append(reinterpret_cast<const char*>(&length), sizeof(length));
    encoded.append(item);
  }
  ACCELERATE_ASSIGN_OR_RETURN(std::vector<std::string> per_rank,
                              GatherObject(state, encoded));
  std::vector<std::string> result;
  for (const std::string& block : per_rank) {
    size_t pos = 0;
    while (pos + sizeof(uint64_t) <= block.size()) {
      uint64_t length = 0;
      std::memcpy(&length, block.data() + pos, sizeof(length));
      pos += sizeof(length);
      if (length > block.size() - pos) {
        return absl::DataLossError(absl::StrCat(
            "gather_object: an item of ", length, " bytes runs past the ",
            block.size(), " bytes a peer sent"));
      }
      result.push_back(block.substr(pos, length));
      pos += length;
    }
  }
  return result;
}

absl::StatusOr<std::string> BroadcastObject(const PartialState& state,
                                            const std::string& data,
                                            int from_process) {
  ACCELERATE_RETURN_IF_ERROR(
      CheckProcessIndex(state, from_process, "broadcast_object"));
  if (!state.use_distributed()) return data;
  const std::string op = OperationName(state, "broadcast_object");
  at::Tensor length =
      at::tensor({static_cast<int64_t>(data.size())}, at::kLong)
          .to(state.device());
  ACCELERATE_RETURN_IF_ERROR(BroadcastBuffer(state, length, from_process, op));
  const int64_t size = length.item<int64_t>();
  if (size == 0) return std::string();
  at::Tensor bytes = state.process_index() == from_process
                         ? BytesToTensor(state, data, size)
                         : at::empty({size}, On(state, at::kByte));
  ACCELERATE_RETURN_IF_ERROR(BroadcastBuffer(state, bytes, from_process, op));
  return TensorToBytes(bytes, size);
}

absl::StatusOr<at::Tensor> GatherTensor(const PartialState& state,
                                        const at::Tensor& tensor) {
  // 0-dimensional tensors gather into a vector, on one process too, so that
  // the result's shape never depends on the number of processes.
  if (!state.use_distributed()) {
    return tensor.dim() == 0 ? tensor.reshape({1}) : tensor;
  }
  ACCELERATE_RETURN_IF_ERROR(VerifyAcrossProcesses(state, tensor, "gather"));
  const int n = state.num_processes();
  const at::ScalarType transport = TransportType(tensor.scalar_type());
  at::Tensor input = (tensor.dim() == 0 ? tensor.reshape({1}) : tensor)
                         .contiguous()
                         .view(transport);
  std::vector<int64_t> sizes = input.sizes().vec();
  sizes[0] *= n;
  at::Tensor output = at::empty(sizes, input.options());
  ACCELERATE_RETURN_IF_ERROR(AllGatherInto(state, input, output, "gather"));
  return output.view(tensor.scalar_type());
}

absl::StatusOr<at::Tensor> ReduceTensor(const PartialState& state,
                                        const at::Tensor& tensor,
                                        const ReduceOptions& options) {
  ACCELERATE_RETURN_IF_ERROR(VerifyAcrossProcesses(state, tensor, "reduce"));
  at::Tensor result = tensor.contiguous().clone();
  ACCELERATE_RETURN_IF_ERROR(AllReduceInPlace(state, result, options));
  return result;
}

absl::Status AllReduceInPlace(const PartialState& state, at::Tensor& tensor,
                              const ReduceOptions& options) {
  if (options.reduction == Reduction::kMean &&
      !at::isFloatingType(tensor.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reduce: reduction mean needs a floating-point tensor, got ",
        std::string(c10::toString(tensor.scalar_type())),
        "; use sum or convert first"));
  }
  if (!tensor.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "all_reduce: the ", DescribeTensor(tensor),
        " tensor is not contiguous; it cannot be reduced in place"));
  }
  if (options.scale != 1.0 && !at::isFloatingType(tensor.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reduce: scale ", options.scale, " needs a floating-point tensor, got ",
        std::string(c10::toString(tensor.scalar_type()))));
  }
  if (state.use_distributed()) {
    std::vector<at::Tensor> tensors = {tensor};
    c10::intrusive_ptr<c10d::Work> work;
    const std::string op = OperationName(state, "all_reduce");
    ACCELERATE_RETURN_IF_ERROR(RunGuarded(op, [&] {
      work = state.process_group()->allreduce(tensors);
    }));
    ACCELERATE_RETURN_IF_ERROR(WaitForWork(work, tensor.nbytes(), op));
    if (options.reduction == Reduction::kMean) {
      tensor.div_(state.num_processes());
    }
  }
  if (options.scale != 1.0) tensor.mul_(options.scale);
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> BroadcastTensor(const PartialState& state,
                                           const at::Tensor& tensor,
                                           int from_process) {
  ACCELERATE_RETURN_IF_ERROR(
      CheckProcessIndex(state, from_process, "broadcast"));
  ACCELERATE_RETURN_IF_ERROR(
      VerifyAcrossProcesses(state, tensor, "broadcast"));
  at::Tensor result = tensor.contiguous().clone();
  if (!state.use_distributed()) return result;
  ACCELERATE_RETURN_IF_ERROR(
      BroadcastBuffer(state, result.view(TransportType(result.scalar_type())),
                      from_process, OperationName(state, "broadcast")));
  return result;
}

absl::Status BroadcastInPlace(const PartialState& state,
                              const std::vector<at::Tensor>& tensors,
                              int from_process) {
  ACCELERATE_RETURN_IF_ERROR(
      CheckProcessIndex(state, from_process, "broadcast"));
  if (!state.use_distributed()) return absl::OkStatus();
  constexpr int64_t kBucketBytes = int64_t{64} << 20;
  const std::string op = OperationName(state, "broadcast");
  size_t begin = 0;
  while (begin < tensors.size()) {
    // One bucket: consecutive tensors of the first one's dtype and device.
    const at::Tensor& first = tensors[begin];
    size_t end = begin;
    int64_t bytes = 0;
    std::vector<at::Tensor> flat;
    while (end < tensors.size() &&
           tensors[end].scalar_type() == first.scalar_type() &&
           tensors[end].device() == first.device() &&
           (end == begin || bytes + tensors[end].nbytes() <= kBucketBytes)) {
      bytes += tensors[end].nbytes();
      flat.push_back(tensors[end].detach().reshape({-1}));
      ++end;
    }
    at::Tensor bucket;
    ACCELERATE_RETURN_IF_ERROR(RunGuarded(op, [&] {
      bucket = at::cat(flat).view(TransportType(first.scalar_type()));
    }));
    ACCELERATE_RETURN_IF_ERROR(
        VerifyAcrossProcesses(state, bucket, "broadcast"));
    ACCELERATE_RETURN_IF_ERROR(
        BroadcastBuffer(state, bucket, from_process, op));
    ACCELERATE_RETURN_IF_ERROR(RunGuarded(op, [&] {
      at::Tensor values = bucket.view(first.scalar_type());
      int64_t offset = 0;
      for (size_t i = begin; i < end; ++i) {
        const int64_t n = tensors[i].numel();
        tensors[i].detach().copy_(
            values.narrow(0, offset, n).view(tensors[i].sizes()));
        offset += n;
      }
    }));
    begin = end;
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> PadTensorAcrossProcesses(
    const PartialState& state, const at::Tensor& tensor,
    const PadOptions& options) {
  const int64_t ndim = tensor.dim();
  const bool has_dim = options.dim < ndim && options.dim >= -ndim;
  if (!state.use_distributed()) return tensor;
  const int64_t dim = options.dim < 0 ? options.dim + ndim : options.dim;
  // Every process takes part, also one whose tensor lacks the dimension
  // (which then stays unchanged, as in Accelerate), so nobody waits alone.
  ACCELERATE_ASSIGN_OR_RETURN(
      std::vector<int64_t> gathered,
      AllGatherInts(state, {ndim, has_dim ? tensor.size(dim) : -1},
                    "pad_across_processes"));
  if (!has_dim) return tensor;
  int64_t longest = 0;
  for (int rank = 0; rank < state.num_processes(); ++rank) {
    if (gathered[2 * rank] != ndim) {
      std::string listing;
      for (int r = 0; r < state.num_processes(); ++r) {
        absl::StrAppend(&listing, "\n  - Process ", r, ": ",
                        gathered[2 * r], " dimensions");
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "pad_across_processes: the tensors have different numbers of "
          "dimensions across processes:",
          listing));
    }
    longest = std::max(longest, gathered[2 * rank + 1]);
  }
  const int64_t size = tensor.size(dim);
  if (longest == size) return tensor;
  std::vector<int64_t> new_sizes = tensor.sizes().vec();
  new_sizes[dim] = longest;
  at::Tensor padded = at::full(new_sizes, options.pad_index, tensor.options());
  padded.narrow(dim, options.pad_first ? longest - size : 0, size)
      .copy_(tensor);
  return padded;
}

}  // namespace accelerate::state
