// Where the training loop stands in gradient accumulation (Accelerate's
// `GradientState` and `GradientAccumulationPlugin`): which batch of the
// `num_steps` this is, whether it synchronizes gradients (and so steps the
// optimizer), and which prepared data loader is being iterated (whose end
// always synchronizes unless `sync_with_dataloader` is off).
//
// clang-format off
//   void Example(std::shared_ptr<data::TrackedLoader> loader) {
//     GradientState gradients({.num_steps = 2});
//     gradients.AddLoader(loader);
//     gradients.BeginStep();  // batch 1 of 2: accumulates
//     gradients.BeginStep();  // batch 2 of 2: synchronizes
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
#include <optional>
#include <vector>

#include "data/tracked_loader.h"

namespace accelerate {

// Accelerate's `GradientAccumulationPlugin`, with its defaults.
struct GradientAccumulationPlugin {
  // Batches per optimizer step. Default: the Accelerator's
  // `gradient_accumulation_steps` (giving both is an error), else 1.
  std::optional<int> num_steps;
  // On batches that only accumulate, a scheduler call is counted as a
  // skipped step (Accelerate bumps the scheduler's `_step_count`, which moves
  // no learning rate); see `PreparedScheduler::skipped_calls`. Default true.
  bool adjust_scheduler = true;
  // The last batch of the loader being iterated always synchronizes and
  // restarts the count; off, the count carries across epochs. Default true.
  bool sync_with_dataloader = true;
  // Gradients are all-reduced on every batch (no `no_sync` accumulation,
  // which saves the memory of unreduced gradient buckets), the optimizer
  // still steps every `num_steps` batches. Default false.
  bool sync_each_batch = false;
};

class GradientState {
 public:
  // REQUIRES: `plugin.num_steps` set and >= 1.
  explicit GradientState(const GradientAccumulationPlugin& plugin);

  // Watches `loader` (see `data::TrackedLoader`).
  void AddLoader(std::weak_ptr<data::TrackedLoader> loader);

  // Starts the next batch (Accelerate's `_do_sync`): at the end of the active
  // loader with `sync_with_dataloader`, it synchronizes and the count
  // restarts; otherwise the count advances and every `num_steps`-th batch
  // synchronizes.
  void BeginStep();

  // The live loader whose epoch is being iterated and began last (an
  // evaluation loop nested in a training loop is active until it ends); null
  // when none is.
  std::shared_ptr<data::TrackedLoader> ActiveLoader() const;
  bool in_dataloader() const { return ActiveLoader() != nullptr; }
  // The active loader has handed out its last batch; false outside one.
  bool end_of_dataloader() const;
  // The active loader's `remainder()` (the real samples of its last global
  // batch when padding completed it, see data::TrackedLoader); -1 outside a
  // loader (as Accelerate's, whose gather_for_metrics then drops nothing).
  int64_t remainder() const;

  bool sync_gradients() const { return sync_gradients_; }
  int accumulation_steps() const { return *plugin_.num_steps; }
  // Batches since the last synchronized one (Accelerate's `Accelerator.step`).
  int64_t step() const { return step_; }
  const GradientAccumulationPlugin& plugin() const { return plugin_; }
  // Puts the count back where a checkpoint saved it. REQUIRES: step >= 0.
  void Restore(int64_t step, bool sync_gradients) {
    step_ = step;
    sync_gradients_ = sync_gradients;
  }

 private:
  GradientAccumulationPlugin plugin_;
  int64_t step_ = 0;
  bool sync_gradients_ = true;
  std::vector<std::weak_ptr<data::TrackedLoader>> loaders_;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_GRADIENT_STATE_H_
