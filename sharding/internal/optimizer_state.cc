#include "sharding/internal/optimizer_state.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

namespace accelerate::sharding_internal {

// Optimizers whose update of each value depends on that value's own
// gradient and state only (so a slice steps as the whole would).
bool IsElementwise(const torch::optim::Optimizer& optimizer) {
  return dynamic_cast<const torch::optim::SGD*>(&optimizer) != nullptr ||
         dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr ||
         dynamic_cast<const torch::optim::AdamW*>(&optimizer) != nullptr ||
         dynamic_cast<const torch::optim::RMSprop*>(&optimizer) != nullptr ||
         dynamic_cast<const torch::optim::Adagrad*>(&optimizer) != nullptr;
}

int64_t Bytes(const at::Tensor& tensor) {
  return tensor.defined() ? static_cast<int64_t>(tensor.nbytes()) : 0;
}

namespace {

template <typename State>
StateKind AdamLike() {
  return {{"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
          [](const torch::optim::OptimizerParamState& s) {
            const auto& state = static_cast<const State&>(s);
            return std::vector<at::Tensor>{state.exp_avg(), state.exp_avg_sq(),
                                           state.max_exp_avg_sq()};
          },
          [](const torch::optim::OptimizerParamState& s) {
            return static_cast<const State&>(s).step();
          },
          [](int64_t step, const std::vector<at::Tensor>& fields) {
            auto state = std::make_unique<State>();
            state->step(step);
            state->exp_avg(fields[0]);
            state->exp_avg_sq(fields[1]);
            state->max_exp_avg_sq(fields[2]);
            return std::unique_ptr<torch::optim::OptimizerParamState>(
                std::move(state));
          }};
}

}  // namespace

std::optional<StateKind> KindOf(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer) != nullptr) {
    return AdamLike<torch::optim::AdamWParamState>();
  }
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer) != nullptr) {
    return AdamLike<torch::optim::AdamParamState>();
  }
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer) != nullptr) {
    return StateKind{
        {"momentum_buffer"},
        [](const torch::optim::OptimizerParamState& s) {
          return std::vector<at::Tensor>{
              static_cast<const torch::optim::SGDParamState&>(s)
                  .momentum_buffer()};
        },
        [](const torch::optim::OptimizerParamState&) { return int64_t{0}; },
        [](int64_t, const std::vector<at::Tensor>& fields) {
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(fields[0]);
          return std::unique_ptr<torch::optim::OptimizerParamState>(
              std::move(state));
        }};
  }
  return std::nullopt;
}

}  // namespace accelerate::sharding_internal
