#include "accelerator/gradient_state.h"

#include <memory>
#include <utility>

#include "state/logging.h"

namespace accelerate {

GradientState::GradientState(int accumulation_steps)
    : accumulation_steps_(accumulation_steps) {
  ACCELERATE_CHECK(accumulation_steps >= 1)
      << "accumulation_steps " << accumulation_steps;
}

void GradientState::AddLoader(std::weak_ptr<data::PreparedDataLoader> loader) {
  loaders_.push_back(std::move(loader));
}

void GradientState::BeginStep() {
  std::shared_ptr<data::PreparedDataLoader> loader = ActiveLoader();
  if (loader != nullptr && loader->end_of_epoch()) {
    step_ = 0;
    sync_gradients_ = true;
    return;
  }
  ++step_;
  sync_gradients_ = step_ % accumulation_steps_ == 0;
}

std::shared_ptr<data::PreparedDataLoader> GradientState::ActiveLoader() const {
  std::shared_ptr<data::PreparedDataLoader> active;
  for (const auto& weak : loaders_) {
    std::shared_ptr<data::PreparedDataLoader> loader = weak.lock();
    if (loader != nullptr && loader->last_used() > 0 &&
        (active == nullptr || loader->last_used() > active->last_used())) {
      active = loader;
    }
  }
  return active;
}

}  // namespace accelerate
