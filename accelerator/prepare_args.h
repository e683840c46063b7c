// What `Accelerator::Prepare` takes, and what it gives back for each: models
// (`std::shared_ptr` of a module, or a module holder such as
// `torch::nn::Linear`) come back as they are, optimizers as
// `PreparedOptimizer*`, schedulers as `PreparedScheduler*`, and loaders
// described by `DataLoaderSpec` / `StreamLoaderSpec` as prepared loaders.
//
// clang-format off
//   #include <torch/torch.h>
//   void Example(std::shared_ptr<const data::MapDataset> dataset,
//                torch::nn::Linear generator, torch::nn::Linear critic) {
//     auto g_opt = std::make_shared<torch::optim::Adam>(generator->parameters());
//     auto d_opt = std::make_shared<torch::optim::Adam>(critic->parameters());
//     auto g_sched = std::make_shared<torch::optim::StepLR>(*g_opt, 10);
//     // Two optimizers: each scheduler names the one it drives.
//     SchedulerFor g_sched_for{g_sched, g_opt};
//     DataLoaderSpec loader{dataset, {.batch_size = 16, .shuffle = true}};
//     (void)g_sched_for, (void)loader, (void)d_opt;
//   }
// clang-format on
//
// Thread safety: plain values.

#ifndef ACCELERATE_ACCELERATOR_PREPARE_ARGS_H_
#define ACCELERATE_ACCELERATOR_PREPARE_ARGS_H_

#include <memory>
#include <type_traits>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/schedulers/lr_scheduler.h>
#include "accelerator/prepared_optimizer.h"
#include "accelerator/prepared_scheduler.h"
#include "data/data_loader.h"
#include "data/stream_loader.h"

namespace accelerate {

// A map-style loader to prepare: the dataset and how to batch it (what a
// PyTorch `DataLoader` holds). The Accelerator's data configuration
// (split/even/dispatch batches, data seed) is applied over `options`.
struct DataLoaderSpec {
  std::shared_ptr<const data::MapDataset> dataset;
  data::DataLoaderOptions options;
};

// A stream (iterable dataset) to prepare, likewise.
struct StreamLoaderSpec {
  std::shared_ptr<data::SampleStream> stream;
  data::DataLoaderOptions options;
};

// A scheduler and the optimizer it drives (LibTorch's schedulers do not say
// which one); needed when several optimizers are prepared.
struct SchedulerFor {
  std::shared_ptr<torch::optim::LRScheduler> scheduler;
  std::shared_ptr<torch::optim::Optimizer> optimizer;
};

}  // namespace accelerate

namespace accelerate::accelerator_internal {

enum class PrepareKind {
  kModel,
  kModuleHolder,
  kOptimizer,
  kScheduler,
  kSchedulerFor,
  kDataLoader,
  kStreamLoader,
};

template <typename T>
struct PrepareTraits {
  static_assert(sizeof(T) == 0,
                "Prepare takes std::shared_ptr of modules, optimizers and "
                "schedulers, module holders, SchedulerFor, DataLoaderSpec and "
                "StreamLoaderSpec");
};

template <typename T>
  requires std::is_base_of_v<torch::nn::Module, T>
struct PrepareTraits<std::shared_ptr<T>> {
  using Result = std::shared_ptr<T>;
  static constexpr PrepareKind kKind = PrepareKind::kModel;
};

template <typename T>
  requires std::is_base_of_v<torch::detail::ModuleHolderIndicator, T>
struct PrepareTraits<T> {
  using Result = T;
  static constexpr PrepareKind kKind = PrepareKind::kModuleHolder;
};

template <typename T>
  requires std::is_base_of_v<torch::optim::Optimizer, T>
struct PrepareTraits<std::shared_ptr<T>> {
  using Result = PreparedOptimizer*;
  static constexpr PrepareKind kKind = PrepareKind::kOptimizer;
};

template <typename T>
  requires std::is_base_of_v<torch::optim::LRScheduler, T>
struct PrepareTraits<std::shared_ptr<T>> {
  using Result = PreparedScheduler*;
  static constexpr PrepareKind kKind = PrepareKind::kScheduler;
};

template <>
struct PrepareTraits<SchedulerFor> {
  using Result = PreparedScheduler*;
  static constexpr PrepareKind kKind = PrepareKind::kSchedulerFor;
};

template <>
struct PrepareTraits<DataLoaderSpec> {
  using Result = std::shared_ptr<data::PreparedDataLoader>;
  static constexpr PrepareKind kKind = PrepareKind::kDataLoader;
};

template <>
struct PrepareTraits<StreamLoaderSpec> {
  using Result = std::shared_ptr<data::PreparedStreamLoader>;
  static constexpr PrepareKind kKind = PrepareKind::kStreamLoader;
};

template <typename T>
using PreparedResult = typename PrepareTraits<std::decay_t<T>>::Result;

template <typename T>
constexpr bool IsScheduler() {
  constexpr PrepareKind kind = PrepareTraits<std::decay_t<T>>::kKind;
  return kind == PrepareKind::kScheduler || kind == PrepareKind::kSchedulerFor;
}

template <typename T>
constexpr bool IsModel() {
  constexpr PrepareKind kind = PrepareTraits<std::decay_t<T>>::kKind;
  return kind == PrepareKind::kModel || kind == PrepareKind::kModuleHolder;
}

}  // namespace accelerate::accelerator_internal

#endif  // ACCELERATE_ACCELERATOR_PREPARE_ARGS_H_
