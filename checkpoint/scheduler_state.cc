#include "checkpoint/scheduler_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "checkpoint/internal/ivalue_fields.h"
#include "state/status_macros.h"

namespace accelerate::checkpoint {
namespace {

using checkpoint_internal::AsDict;
using checkpoint_internal::AsDouble;
using checkpoint_internal::AsInt;
using checkpoint_internal::AsList;
using checkpoint_internal::Dict;
using checkpoint_internal::Field;
using checkpoint_internal::FieldPath;
using checkpoint_internal::NewDict;
using checkpoint_internal::OptionalField;

// LibTorch keeps the count protected; a member pointer formed through a
// derived class reaches it without touching the object's layout.
struct StepCountAccess : torch::optim::LRScheduler {
  static unsigned torch::optim::LRScheduler::*Member() {
    return &StepCountAccess::step_count_;
  }
};

c10::List<double> GroupLrs(const torch::optim::Optimizer& optimizer) {
  c10::List<double> lrs;
  for (const auto& group : optimizer.param_groups()) {
    lrs.push_back(group.options().get_lr());
  }
  return lrs;
}

}  // namespace

int64_t SchedulerSteps(const torch::optim::LRScheduler& scheduler) {
  return scheduler.*StepCountAccess::Member();
}

c10::IValue SchedulerStateDict(const torch::optim::LRScheduler& scheduler,
                               const torch::optim::Optimizer& optimizer,
                               const SchedulerCounts& counts) {
  const int64_t steps = SchedulerSteps(scheduler);
  const c10::List<double> current = GroupLrs(optimizer);
  c10::List<double> base;
  if (counts.base_lrs.size() == current.size()) {
    for (double lr : counts.base_lrs) base.push_back(lr);
  } else {
    base = current.copy();
  }
  Dict state = NewDict();
  state.insert("base_lrs", base);
  state.insert("last_epoch", steps);
  state.insert("_step_count", steps + 1 + counts.skipped_calls);
  state.insert("_is_initial", steps == 0);
  state.insert("_get_lr_called_within_step", false);
  state.insert("_last_lr", current);
  c10::List<c10::IValue> lambdas(c10::AnyType::get());
  for (size_t i = 0; i < current.size(); ++i) lambdas.push_back(c10::IValue());
  state.insert("lr_lambdas", lambdas);
  return c10::IValue(state);
}

absl::StatusOr<SchedulerCounts> LoadSchedulerStateDict(
    torch::optim::LRScheduler& scheduler, const c10::IValue& saved,
    const std::string& source) {
  const FieldPath root{source, ""};
  ACCELERATE_ASSIGN_OR_RETURN(Dict state, AsDict(saved, root));
  ACCELERATE_ASSIGN_OR_RETURN(c10::IValue last_value,
                              Field(state, "last_epoch", root));
  ACCELERATE_ASSIGN_OR_RETURN(const int64_t last_epoch,
                              AsInt(last_value, root.Key("last_epoch")));
  if (last_epoch < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(root.Key("last_epoch").ToString(), " is ", last_epoch,
                     ", not a step count"));
  }
  SchedulerCounts counts;
  if (std::optional<c10::IValue> count = OptionalField(state, "_step_count")) {
    ACCELERATE_ASSIGN_OR_RETURN(const int64_t step_count,
                                AsInt(*count, root.Key("_step_count")));
    counts.skipped_calls = std::max<int64_t>(0, step_count - 1 - last_epoch);
  }
  if (std::optional<c10::IValue> base = OptionalField(state, "base_lrs")) {
    ACCELERATE_ASSIGN_OR_RETURN(c10::List<c10::IValue> lrs,
                                AsList(*base, root.Key("base_lrs")));
    for (size_t i = 0; i < lrs.size(); ++i) {
      ACCELERATE_ASSIGN_OR_RETURN(
          const double lr, AsDouble(lrs.get(i), root.Key("base_lrs").Index(i)));
      counts.base_lrs.push_back(lr);
    }
  }
  scheduler.*StepCountAccess::Member() = static_cast<unsigned>(last_epoch);
  return counts;
}

}  // namespace accelerate::checkpoint
