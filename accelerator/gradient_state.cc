#include "accelerator/gradient_state.h"

#include <memory>
#include <utility>

#include "state/logging.h"

namespace accelerate {

GradientState::GradientState(const GradientAccumulationPlugin& plugin)
    : plugin_(plugin) {
  ACCELERATE_CHECK(plugin_.num_steps.has_value() && *plugin_.num_steps >= 1)
      << "num_steps " << plugin_.num_steps.value_or(0);
}

void GradientState::AddLoader(std::weak_ptr<data::TrackedLoader> loader) {
  loaders_.push_back(std::move(loader));
}

void GradientState::BeginStep() {
  if (plugin_.sync_with_dataloader && end_of_dataloader()) {
    step_ = 0;
    sync_gradients_ = true;
    return;
  }
  ++step_;
  sync_gradients_ = step_ % *plugin_.num_steps == 0;
}

std::shared_ptr<data::TrackedLoader> GradientState::ActiveLoader() const {
  std::shared_ptr<data::TrackedLoader> active;
  for (const auto& weak : loaders_) {
    std::shared_ptr<data::TrackedLoader> loader = weak.lock();
    if (loader != nullptr && loader->epoch_begun_at() > 0 &&
        (active == nullptr ||
         loader->epoch_begun_at() > active->epoch_begun_at())) {
      active = loader;
    }
  }
  return active;
}

bool GradientState::end_of_dataloader() const {
  std::shared_ptr<data::TrackedLoader> loader = ActiveLoader();
  return loader != nullptr && loader->end_of_epoch();
}

int64_t GradientState::remainder() const {
  std::shared_ptr<data::TrackedLoader> loader = ActiveLoader();
  return loader == nullptr ? -1 : loader->remainder();
}

}  // namespace accelerate
