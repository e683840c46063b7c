#include "sharding/sharded_optimizer.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <memory>
#include <typeinfo>
#include <utility>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "state/status_macros.h"
#include "sharding/internal/optimizer_state.h"
#include "sharding/internal/slice_broadcasts.h"
#include "state/torch_errors.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::sharding_internal::Bytes;
using ::accelerate::sharding_internal::IsElementwise;
using ::accelerate::sharding_internal::KindOf;
using ::accelerate::sharding_internal::StateKind;


// Every process's `slice` into `full` (one slice after the other, in
// process order). REQUIRES: `full` holds num_processes slices, contiguous.
void AllGatherSlices(const state::PartialState& state, const at::Tensor& slice,
                     at::Tensor& full) {
  const int64_t world = state.num_processes();
  if (world == 1) {
    full.copy_(slice);
    return;
  }
  const int64_t size = slice.numel();
  if (full.device().is_cpu()) {
    // Broadcasts into place: gloo's all-gather copies through a buffer.
    at::Tensor own = full.narrow(0, state.process_index() * size, size);
    if (own.data_ptr() != slice.data_ptr()) own.copy_(slice);
    for (const auto& work : sharding_internal::BroadcastSlices(
             *state.process_group(), full, size)) {
      work->wait();
    }
    return;
  }
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int64_t r = 0; r < world; ++r) {
    outputs[0].push_back(full.narrow(0, r * size, size));
  }
  std::vector<at::Tensor> inputs = {slice.contiguous()};
  state.process_group()->allgather(outputs, inputs)->wait();
}

}  // namespace

int64_t OptimizerStateBytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    const torch::optim::OptimizerParamState* s = state.get();
    if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(s)) {
      bytes += Bytes(adam->exp_avg()) + Bytes(adam->exp_avg_sq()) +
               Bytes(adam->max_exp_avg_sq());
    } else if (const auto* adamw =
                   dynamic_cast<const torch::optim::AdamWParamState*>(s)) {
      bytes += Bytes(adamw->exp_avg()) + Bytes(adamw->exp_avg_sq()) +
               Bytes(adamw->max_exp_avg_sq());
    } else if (const auto* sgd =
                   dynamic_cast<const torch::optim::SGDParamState*>(s)) {
      bytes += Bytes(sgd->momentum_buffer());
    } else if (const auto* rms =
                   dynamic_cast<const torch::optim::RMSpropParamState*>(s)) {
      bytes += Bytes(rms->square_avg()) + Bytes(rms->momentum_buffer()) +
               Bytes(rms->grad_avg());
    } else if (const auto* adagrad =
                   dynamic_cast<const torch::optim::AdagradParamState*>(s)) {
      bytes += Bytes(adagrad->sum());
    }
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<ShardedOptimizer>> ShardedOptimizer::Create(
    std::shared_ptr<torch::optim::Optimizer> optimizer,
    const state::PartialState& state, const ShardedOptimizerOptions& options) {
  if (optimizer == nullptr) {
    return absl::InvalidArgumentError("ShardedOptimizer needs an optimizer");
  }
  if (!IsElementwise(*optimizer)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharding the optimizer state needs an elementwise optimizer (SGD, "
        "Adam, AdamW, RMSprop, Adagrad); ",
        typeid(*optimizer).name(), " is not one"));
  }
  if (!optimizer->state().empty()) {
    return absl::FailedPreconditionError(
        "the optimizer already has state: shard it before its first step");
  }
  std::unique_ptr<ShardedOptimizer> sharded(
      new ShardedOptimizer(optimizer, state, options));
  const int64_t world = state.num_processes();
  const int64_t rank = state.process_index();
  for (size_t g = 0; g < optimizer->param_groups().size(); ++g) {
    torch::optim::OptimizerParamGroup& param_group =
        optimizer->param_groups()[g];
    Group group;
    group.params = param_group.params();
    if (group.params.empty()) {
      sharded->groups_.push_back(std::move(group));
      continue;
    }
    const at::TensorOptions options = group.params[0].options();
    int64_t total = 0;
    for (size_t i = 0; i < group.params.size(); ++i) {
      const at::Tensor& p = group.params[i];
      if (p.scalar_type() != options.dtype().toScalarType() ||
          p.device() != options.device()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "param group ", g, " mixes ", c10::toString(p.scalar_type()),
            " on ", p.device().str(), " with ",
            c10::toString(options.dtype().toScalarType()), " on ",
            options.device().str(),
            ": a sharded group needs one dtype and one device"));
      }
      if (!p.requires_grad()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "param group ", g, ", parameter ", i,
            " does not require gradients: a sharded group holds trainable "
            "parameters only (leave frozen ones out of the optimizer)"));
      }
      group.offsets.push_back(total);
      total += p.numel();
    }
    group.shard_size = (total + world - 1) / world;
    absl::Status laid_out = state::RunGuarded("sharding the parameters", [&] {
      torch::NoGradGuard no_grad;
      group.flat = at::zeros({group.shard_size * world}, options);
      for (size_t i = 0; i < group.params.size(); ++i) {
        at::Tensor& p = group.params[i];
        at::Tensor view = group.flat.narrow(0, group.offsets[i], p.numel());
        view.copy_(p.detach().reshape({-1}));
        p.set_data(view.view(p.sizes()));
      }
      group.shard = group.flat.narrow(0, rank * group.shard_size,
                                      group.shard_size)
                        .detach()
                        .clone()
                        .requires_grad_(true);
      param_group.params() = {group.shard};
    });
    if (!laid_out.ok()) return laid_out;
    sharded->parameters_.insert(sharded->parameters_.end(),
                                group.params.begin(), group.params.end());
    sharded->groups_.push_back(std::move(group));
  }
  return sharded;
}

absl::Status ShardedOptimizer::BeforeStep() {
  const int64_t rank = state_.process_index();
  return state::RunGuarded("sharding the gradients", [&] {
    torch::NoGradGuard no_grad;
    for (Group& group : groups_) {
      if (!group.shard.defined()) continue;
      // The buffer holds the truth (weights loaded or broadcast into the
      // model since the last step land there): the slice starts from it.
      group.shard.detach().copy_(group.flat.narrow(
          0, rank * group.shard_size, group.shard_size));
      at::Tensor grad = group.shard.mutable_grad();
      if (!grad.defined()) {
        grad = at::zeros_like(group.shard);
      } else {
        grad.zero_();
      }
      const int64_t low = rank * group.shard_size;
      const int64_t high = low + group.shard_size;
      for (size_t i = 0; i < group.params.size(); ++i) {
        at::Tensor& p = group.params[i];
        const int64_t begin = std::max(low, group.offsets[i]);
        const int64_t end = std::min(high, group.offsets[i] + p.numel());
        if (begin < end && p.grad().defined()) {
          grad.narrow(0, begin - low, end - begin)
              .copy_(p.grad().reshape({-1}).narrow(
                  0, begin - group.offsets[i], end - begin));
        }
        // Only the slice's gradient is kept (ZeRO-2).
        if (!options_.keep_whole_gradients) p.mutable_grad().reset();
      }
      group.shard.mutable_grad() = grad;
    }
  });
}

absl::Status ShardedOptimizer::AfterStep() {
  return state::RunGuarded("gathering the updated parameters", [&] {
    torch::NoGradGuard no_grad;
    for (Group& group : groups_) {
      if (group.shard.defined()) {
        AllGatherSlices(state_, group.shard.detach(), group.flat);
      }
    }
  });
}

absl::Status ShardedOptimizer::Unshard() {
  if (unsharded_) return absl::OkStatus();
  const std::optional<StateKind> kind = KindOf(*optimizer_);
  if (!kind.has_value()) {
    return absl::UnimplementedError(absl::StrCat(
        "gathering the sharded state of ", typeid(*optimizer_).name(),
        " (only SGD, Adam and AdamW)"));
  }
  auto& states = optimizer_->state();
  absl::Status gathered = state::RunGuarded("gathering the optimizer state", [&] {
    torch::NoGradGuard no_grad;
    for (size_t g = 0; g < groups_.size(); ++g) {
      Group& group = groups_[g];
      if (!group.shard.defined()) continue;
      auto found = states.find(group.shard.unsafeGetTensorImpl());
      // Every process has stepped as often: all have state, or none.
      if (found != states.end()) {
        const torch::optim::OptimizerParamState& shard_state = *found->second;
        const std::vector<at::Tensor> fields = kind->fields(shard_state);
        std::vector<std::vector<at::Tensor>> per_param(group.params.size());
        for (const at::Tensor& field : fields) {
          at::Tensor full;
          if (field.defined()) {
            full = at::zeros({group.flat.numel()}, field.options());
            AllGatherSlices(state_, field, full);
          }
          for (size_t i = 0; i < group.params.size(); ++i) {
            const at::Tensor& p = group.params[i];
            per_param[i].push_back(
                full.defined() ? full.narrow(0, group.offsets[i], p.numel())
                                     .view(p.sizes())
                                     .clone()
                               : at::Tensor());
          }
        }
        for (size_t i = 0; i < group.params.size(); ++i) {
          states[group.params[i].unsafeGetTensorImpl()] =
              kind->make(shard_state, per_param[i]);
        }
        states.erase(group.shard.unsafeGetTensorImpl());
      }
      optimizer_->param_groups()[g].params() = group.params;
    }
  });
  unsharded_ = gathered.ok();
  return gathered;
}

absl::Status ShardedOptimizer::Reshard() {
  if (!unsharded_) return absl::OkStatus();
  const std::optional<StateKind> kind = KindOf(*optimizer_);
  const int64_t rank = state_.process_index();
  auto& states = optimizer_->state();
  absl::Status cut = state::RunGuarded("cutting the optimizer state", [&] {
    torch::NoGradGuard no_grad;
    for (size_t g = 0; g < groups_.size(); ++g) {
      Group& group = groups_[g];
      if (!group.shard.defined()) continue;
      optimizer_->param_groups()[g].params() = {group.shard};
      const auto first = states.find(group.params[0].unsafeGetTensorImpl());
      if (first == states.end()) continue;  // No state (no step yet).
      const size_t count = kind->fields(*first->second).size();
      std::vector<at::Tensor> shard_fields;
      for (size_t f = 0; f < count; ++f) {
        at::Tensor flat;
        for (size_t i = 0; i < group.params.size(); ++i) {
          const auto found = states.find(group.params[i].unsafeGetTensorImpl());
          if (found == states.end()) continue;
          const at::Tensor field = kind->fields(*found->second)[f];
          if (!field.defined()) continue;
          if (!flat.defined()) {
            flat = at::zeros({group.flat.numel()}, field.options());
          }
          flat.narrow(0, group.offsets[i], field.numel())
              .copy_(field.reshape({-1}));
        }
        shard_fields.push_back(
            flat.defined()
                ? flat.narrow(0, rank * group.shard_size, group.shard_size)
                      .clone()
                : at::Tensor());
      }
      auto shard_state = kind->make(*first->second, shard_fields);
      for (const at::Tensor& p : group.params) {
        states.erase(p.unsafeGetTensorImpl());
      }
      states[group.shard.unsafeGetTensorImpl()] = std::move(shard_state);
    }
  });
  unsharded_ = false;
  return cut;
}

void ShardedOptimizer::ZeroGrad() {
  for (Group& group : groups_) {
    if (group.shard.defined()) group.shard.mutable_grad().reset();
    for (at::Tensor& p : group.params) p.mutable_grad().reset();
  }
}

int64_t ShardedOptimizer::SliceGradientBytes() const {
  int64_t bytes = 0;
  for (const Group& group : groups_) {
    if (group.shard.defined()) bytes += sharding_internal::Bytes(group.shard.grad());
  }
  return bytes;
}

StateBytes ShardedOptimizer::Bytes() const {
  StateBytes bytes;
  bytes.gradients = SliceGradientBytes();
  for (const Group& group : groups_) {
    bytes.parameters += sharding_internal::Bytes(group.flat);
    for (const at::Tensor& p : group.params) {
      bytes.gradients += sharding_internal::Bytes(p.grad());
    }
  }
  bytes.optimizer_state = OptimizerStateBytes(*optimizer_);
  return bytes;
}

}  // namespace accelerate::sharding
