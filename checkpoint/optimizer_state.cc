#include "checkpoint/optimizer_state.h"

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include "checkpoint/internal/ivalue_fields.h"
#include "state/status_macros.h"

namespace accelerate::checkpoint {
namespace {

using checkpoint_internal::AsBool;
using checkpoint_internal::AsDict;
using checkpoint_internal::AsDouble;
using checkpoint_internal::AsInt;
using checkpoint_internal::AsList;
using checkpoint_internal::AsTensor;
using checkpoint_internal::Dict;
using checkpoint_internal::Field;
using checkpoint_internal::FieldPath;
using checkpoint_internal::NewDict;
using checkpoint_internal::OptionalField;

enum class Kind { kSgd, kAdam, kAdamW };

absl::StatusOr<Kind> KindOf(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return Kind::kSgd;
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return Kind::kAdamW;
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return Kind::kAdam;
  return absl::UnimplementedError(absl::StrCat(
      "optimizer ", typeid(optimizer).name(),
      " has no Python state mapping (SGD, Adam and AdamW have)"));
}

void* Key(const at::Tensor& param) { return param.unsafeGetTensorImpl(); }

// The float32 scalar Python keeps as `step`.
at::Tensor StepTensor(int64_t step) {
  return at::scalar_tensor(static_cast<double>(step),
                           at::TensorOptions().dtype(at::kFloat));
}

c10::IValue GroupDict(Kind kind, const torch::optim::OptimizerOptions& base,
                      c10::List<int64_t> params) {
  Dict group = NewDict();
  if (kind == Kind::kSgd) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(base);
    group.insert("lr", o.lr());
    group.insert("momentum", o.momentum());
    group.insert("dampening", o.dampening());
    group.insert("weight_decay", o.weight_decay());
    group.insert("nesterov", o.nesterov());
    group.insert("maximize", false);
    group.insert("foreach", c10::IValue());
    group.insert("differentiable", false);
    group.insert("fused", c10::IValue());
  } else {
    double lr, eps, weight_decay;
    std::tuple<double, double> betas;
    bool amsgrad;
    if (kind == Kind::kAdam) {
      const auto& o = static_cast<const torch::optim::AdamOptions&>(base);
      lr = o.lr(), eps = o.eps(), weight_decay = o.weight_decay();
      betas = o.betas(), amsgrad = o.amsgrad();
    } else {
      const auto& o = static_cast<const torch::optim::AdamWOptions&>(base);
      lr = o.lr(), eps = o.eps(), weight_decay = o.weight_decay();
      betas = o.betas(), amsgrad = o.amsgrad();
    }
    group.insert("lr", lr);
    group.insert("betas", c10::ivalue::Tuple::create(
                              {std::get<0>(betas), std::get<1>(betas)}));
    group.insert("eps", eps);
    group.insert("weight_decay", weight_decay);
    group.insert("amsgrad", amsgrad);
    group.insert("maximize", false);
    group.insert("foreach", c10::IValue());
    group.insert("capturable", false);
    group.insert("differentiable", false);
    group.insert("fused", c10::IValue());
    group.insert("decoupled_weight_decay", kind == Kind::kAdamW);
  }
  group.insert("params", params);
  return group;
}

// A parameter's state to install, checked.
struct LoadedParamState {
  int64_t step = 0;
  std::map<std::string, at::Tensor> tensors;
};

absl::Status CheckOff(const Dict& group, const std::string& option,
                      const FieldPath& where) {
  std::optional<c10::IValue> value = OptionalField(group, option);
  if (value && value->isBool() && value->toBool()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where.Key(option).ToString(),
        " is True, which LibTorch's optimizers do not support"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<c10::IValue> OptimizerStateDict(
    const torch::optim::Optimizer& optimizer) {
  ACCELERATE_ASSIGN_OR_RETURN(const Kind kind, KindOf(optimizer));
  Dict state(c10::IntType::get(), c10::AnyType::get());
  c10::List<c10::IValue> groups(c10::AnyType::get());
  int64_t index = 0;
  for (const auto& group : optimizer.param_groups()) {
    c10::List<int64_t> params;
    for (const at::Tensor& param : group.params()) {
      params.push_back(index);
      auto found = optimizer.state().find(Key(param));
      if (found != optimizer.state().end()) {
        Dict entry = NewDict();
        if (kind == Kind::kSgd) {
          const auto& s =
              static_cast<const torch::optim::SGDParamState&>(*found->second);
          entry.insert("momentum_buffer",
                       s.momentum_buffer().defined()
                           ? c10::IValue(s.momentum_buffer())
                           : c10::IValue());
        } else {
          int64_t step;
          at::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
          if (kind == Kind::kAdam) {
            const auto& s = static_cast<const torch::optim::AdamParamState&>(
                *found->second);
            step = s.step(), exp_avg = s.exp_avg();
            exp_avg_sq = s.exp_avg_sq(), max_exp_avg_sq = s.max_exp_avg_sq();
          } else {
            const auto& s = static_cast<const torch::optim::AdamWParamState&>(
                *found->second);
            step = s.step(), exp_avg = s.exp_avg();
            exp_avg_sq = s.exp_avg_sq(), max_exp_avg_sq = s.max_exp_avg_sq();
          }
          entry.insert("step", StepTensor(step));
          entry.insert("exp_avg", exp_avg);
          entry.insert("exp_avg_sq", exp_avg_sq);
          if (max_exp_avg_sq.defined()) {
            entry.insert("max_exp_avg_sq", max_exp_avg_sq);
          }
        }
        state.insert(index, entry);
      }
      ++index;
    }
    groups.push_back(GroupDict(kind, group.options(), params));
  }
  Dict top = NewDict();
  top.insert("state", state);
  top.insert("param_groups", groups);
  return c10::IValue(top);
}

absl::Status LoadOptimizerStateDict(torch::optim::Optimizer& optimizer,
                                    const c10::IValue& saved,
                                    const std::string& source) {
  ACCELERATE_ASSIGN_OR_RETURN(const Kind kind, KindOf(optimizer));
  const FieldPath root{source, ""};
  ACCELERATE_ASSIGN_OR_RETURN(Dict top, AsDict(saved, root));
  ACCELERATE_ASSIGN_OR_RETURN(c10::IValue groups_value,
                              Field(top, "param_groups", root));
  ACCELERATE_ASSIGN_OR_RETURN(c10::List<c10::IValue> groups,
                              AsList(groups_value, root.Key("param_groups")));
  ACCELERATE_ASSIGN_OR_RETURN(c10::IValue state_value, Field(top, "state", root));
  ACCELERATE_ASSIGN_OR_RETURN(Dict state, AsDict(state_value, root.Key("state")));
  auto& ours = optimizer.param_groups();
  if (groups.size() != ours.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, " has ", groups.size(), " parameter groups; the optimizer has ",
        ours.size()));
  }
  // Check everything before changing anything.
  std::vector<Dict> group_dicts;
  std::map<int64_t, const at::Tensor*> param_of;  // Saved index -> ours.
  std::map<int64_t, size_t> group_of;              // Saved index -> group.
  for (size_t g = 0; g < groups.size(); ++g) {
    const FieldPath where = root.Key("param_groups").Index(g);
    ACCELERATE_ASSIGN_OR_RETURN(Dict group, AsDict(groups.get(g), where));
    ACCELERATE_ASSIGN_OR_RETURN(c10::IValue params_value,
                                Field(group, "params", where));
    ACCELERATE_ASSIGN_OR_RETURN(c10::List<c10::IValue> params,
                                AsList(params_value, where.Key("params")));
    if (params.size() != ours[g].params().size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where.ToString(), " has ", params.size(),
          " parameters; the optimizer's group has ", ours[g].params().size()));
    }
    const bool adam_like = OptionalField(group, "betas").has_value();
    if (adam_like != (kind != Kind::kSgd)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, " holds the state of ", adam_like ? "an Adam" : "an SGD",
          "-like optimizer; the optimizer is ",
          kind == Kind::kSgd ? "SGD" : (kind == Kind::kAdam ? "Adam" : "AdamW")));
    }
    for (const char* option : {"maximize", "capturable", "differentiable"}) {
      ACCELERATE_RETURN_IF_ERROR(CheckOff(group, option, where));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      ACCELERATE_ASSIGN_OR_RETURN(
          const int64_t id, AsInt(params.get(i), where.Key("params").Index(i)));
      param_of[id] = &ours[g].params()[i];
      group_of[id] = g;
    }
    group_dicts.push_back(std::move(group));
  }
  std::vector<std::pair<const at::Tensor*, LoadedParamState>> loaded;
  for (const auto& item : state) {
    const FieldPath where = root.Key("state").Key(
        item.key().isInt() ? std::to_string(item.key().toInt()) : "?");
    ACCELERATE_ASSIGN_OR_RETURN(const int64_t id, AsInt(item.key(), where));
    auto param = param_of.find(id);
    if (param == param_of.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where.ToString(), " belongs to no parameter of any group"));
    }
    const at::Tensor& p = *param->second;
    ACCELERATE_ASSIGN_OR_RETURN(Dict entry, AsDict(item.value(), where));
    LoadedParamState out;
    for (const auto& field : entry) {
      const std::string name = field.key().toStringRef();
      if (name == "step") {
        ACCELERATE_ASSIGN_OR_RETURN(out.step,
                                    AsInt(field.value(), where.Key(name)));
        continue;
      }
      if (field.value().isNone()) continue;
      ACCELERATE_ASSIGN_OR_RETURN(at::Tensor t,
                                  AsTensor(field.value(), where.Key(name)));
      if (!t.sizes().equals(p.sizes())) {
        return absl::InvalidArgumentError(absl::StrCat(
            where.Key(name).ToString(), " has shape ", c10::str(t.sizes()),
            "; its parameter has ", c10::str(p.sizes())));
      }
      out.tensors[name] = t.to(p.device(), p.scalar_type());
    }
    if (kind != Kind::kSgd) {
      std::vector<const char*> needed = {"exp_avg", "exp_avg_sq"};
      // LibTorch's AMSGrad step reads the running maximum unconditionally.
      std::optional<c10::IValue> amsgrad =
          OptionalField(group_dicts[group_of[id]], "amsgrad");
      if (amsgrad && amsgrad->isBool() && amsgrad->toBool()) {
        needed.push_back("max_exp_avg_sq");
      }
      for (const char* name : needed) {
        if (out.tensors.count(name) == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              where.Key(name).ToString(), " is missing"));
        }
      }
    }
    loaded.emplace_back(param->second, std::move(out));
  }
  // Hyperparameters.
  for (size_t g = 0; g < groups.size(); ++g) {
    const Dict& group = group_dicts[g];
    const FieldPath where = root.Key("param_groups").Index(g);
    auto number = [&](const std::string& key) -> absl::StatusOr<double> {
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue v, Field(group, key, where));
      return AsDouble(v, where.Key(key));
    };
    ACCELERATE_ASSIGN_OR_RETURN(const double lr, number("lr"));
    if (kind == Kind::kSgd) {
      auto& o = static_cast<torch::optim::SGDOptions&>(ours[g].options());
      ACCELERATE_ASSIGN_OR_RETURN(const double momentum, number("momentum"));
      ACCELERATE_ASSIGN_OR_RETURN(const double dampening, number("dampening"));
      ACCELERATE_ASSIGN_OR_RETURN(const double decay, number("weight_decay"));
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue nesterov_value,
                                  Field(group, "nesterov", where));
      ACCELERATE_ASSIGN_OR_RETURN(const bool nesterov,
                                  AsBool(nesterov_value, where.Key("nesterov")));
      o.lr(lr).momentum(momentum).dampening(dampening).weight_decay(decay);
      o.nesterov(nesterov);
    } else {
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue betas_value,
                                  Field(group, "betas", where));
      ACCELERATE_ASSIGN_OR_RETURN(c10::List<c10::IValue> betas,
                                  AsList(betas_value, where.Key("betas")));
      if (betas.size() != 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(where.Key("betas").ToString(), " has ", betas.size(),
                         " values, not 2"));
      }
      ACCELERATE_ASSIGN_OR_RETURN(const double beta1,
                                  AsDouble(betas.get(0), where.Key("betas")));
      ACCELERATE_ASSIGN_OR_RETURN(const double beta2,
                                  AsDouble(betas.get(1), where.Key("betas")));
      ACCELERATE_ASSIGN_OR_RETURN(const double eps, number("eps"));
      ACCELERATE_ASSIGN_OR_RETURN(const double decay, number("weight_decay"));
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue amsgrad_value,
                                  Field(group, "amsgrad", where));
      ACCELERATE_ASSIGN_OR_RETURN(const bool amsgrad,
                                  AsBool(amsgrad_value, where.Key("amsgrad")));
      if (kind == Kind::kAdam) {
        auto& o = static_cast<torch::optim::AdamOptions&>(ours[g].options());
        o.lr(lr).betas({beta1, beta2}).eps(eps).weight_decay(decay);
        o.amsgrad(amsgrad);
      } else {
        auto& o = static_cast<torch::optim::AdamWOptions&>(ours[g].options());
        o.lr(lr).betas({beta1, beta2}).eps(eps).weight_decay(decay);
        o.amsgrad(amsgrad);
      }
    }
  }
  // Per-parameter state: replaced wholesale, as Python's load_state_dict.
  optimizer.state().clear();
  for (auto& [param, s] : loaded) {
    auto tensor = [&](const char* name) {
      auto found = s.tensors.find(name);
      return found == s.tensors.end() ? at::Tensor() : found->second;
    };
    if (kind == Kind::kSgd) {
      auto state_ptr = std::make_unique<torch::optim::SGDParamState>();
      state_ptr->momentum_buffer(tensor("momentum_buffer"));
      optimizer.state()[Key(*param)] = std::move(state_ptr);
    } else if (kind == Kind::kAdam) {
      auto state_ptr = std::make_unique<torch::optim::AdamParamState>();
      state_ptr->step(s.step);
      state_ptr->exp_avg(tensor("exp_avg"));
      state_ptr->exp_avg_sq(tensor("exp_avg_sq"));
      state_ptr->max_exp_avg_sq(tensor("max_exp_avg_sq"));
      optimizer.state()[Key(*param)] = std::move(state_ptr);
    } else {
      auto state_ptr = std::make_unique<torch::optim::AdamWParamState>();
      state_ptr->step(s.step);
      state_ptr->exp_avg(tensor("exp_avg"));
      state_ptr->exp_avg_sq(tensor("exp_avg_sq"));
      state_ptr->max_exp_avg_sq(tensor("max_exp_avg_sq"));
      optimizer.state()[Key(*param)] = std::move(state_ptr);
    }
  }
  return absl::OkStatus();
}

}  // namespace accelerate::checkpoint
