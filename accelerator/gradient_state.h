// Where the training loop stands in gradient accumulation (Accelerate's
// `GradientState`): which step of the `gradient_accumulation_steps` this is,
// whether it synchronizes gradients, and which prepared data loader is being
// iterated (the end of its epoch always synchronizes).
//
// clang-format off
//   void Example(std::shared_ptr<data::PreparedDataLoader> loader) {
//     GradientState gradients(/*accumulation_steps=*/2);
//     gradients.AddLoader(loader);
//     gradients.BeginStep();  // step 1 of 2: accumulates
//     gradients.BeginStep();  // step 2 of 2: synchronizes
//     bool sync = gradients.sync_gradients();  // true
//     (void)sync;
//   }
// clang-format on
//
// Thread safety: one training thread. Ownership: loaders are watched, not
// owned; one that is destroyed is forgotten.

#ifndef ACCELERATE_ACCELERATOR_GRADIENT_STATE_H_
#define ACCELERATE_ACCELERATOR_GRADIENT_STATE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "data/data_loader.h"

namespace accelerate {

class GradientState {
 public:
  // REQUIRES: accumulation_steps >= 1.
  explicit GradientState(int accumulation_steps);

  // Watches `loader`: when it is the loader used last and its epoch has
  // ended, the step synchronizes (Accelerate's `sync_with_dataloader`).
  void AddLoader(std::weak_ptr<data::PreparedDataLoader> loader);

  // Starts the next step: it synchronizes every `accumulation_steps` steps
  // and at the end of the active loader's epoch (which also restarts the
  // count).
  void BeginStep();

  // The live loader whose `Next()` ran last; null when none has run.
  std::shared_ptr<data::PreparedDataLoader> ActiveLoader() const;

  bool sync_gradients() const { return sync_gradients_; }
  int accumulation_steps() const { return accumulation_steps_; }

 private:
  int accumulation_steps_;
  int64_t step_ = 0;
  bool sync_gradients_ = true;
  std::vector<std::weak_ptr<data::PreparedDataLoader>> loaders_;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_GRADIENT_STATE_H_
