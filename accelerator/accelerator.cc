#include "accelerator/accelerator.h"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>
#include <torch/nn/utils/clip_grad.h>
#include "accelerator/internal/data_parallel.h"
#ifdef ACCELERATE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include "precision/autocast.h"
#include "precision/fp8_linear.h"
#include "sharding/sharded_optimizer.h"
#include "sharding/sharding_config.h"
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate {

using accelerator_internal::TrainableParameters;

Accelerator::Accelerator(std::unique_ptr<state::PartialState> state,
                         AcceleratorOptions options,
                         precision::MixedPrecision mixed_precision,
                         std::optional<precision::Fp8Recipe> fp8_recipe)
    : state_(std::move(state)),
      options_(std::move(options)),
      gradients_(options_.gradient_accumulation_plugin),
      precision_(mixed_precision),
      fp8_recipe_(std::move(fp8_recipe)) {
  if (precision_ == precision::MixedPrecision::kFp16) {
    // With several processes the found-inf flag is all-reduced, so that
    // every rank skips the same steps.
    scaler_ = std::make_unique<precision::GradScaler>(
        options_.grad_scaler, state_.get());
  }
}

Accelerator::~Accelerator() {
  // Reducers unregister their hooks before the models go.
  models_.clear();
  // Layers that outlive us stop reducing over our processes.
  for (const std::weak_ptr<torch::nn::Module>& weak : fp8_layers_) {
    if (std::shared_ptr<torch::nn::Module> layer = weak.lock()) {
      static_cast<precision::Fp8LinearImpl*>(layer.get())->DetachProcesses();
    }
  }
}

absl::StatusOr<std::unique_ptr<Accelerator>> Accelerator::Create(
    const AcceleratorOptions& options, const state::Environment& env) {
  ACCELERATE_ASSIGN_OR_RETURN(AcceleratorOptions resolved,
                              ResolveAcceleratorOptions(options, env));
  // Resolved, so it parses.
  const precision::MixedPrecision mixed_precision =
      *precision::ParseMixedPrecision(*resolved.mixed_precision);
  std::optional<precision::Fp8Recipe> fp8_recipe;
  if (mixed_precision == precision::MixedPrecision::kFp8) {
    ACCELERATE_ASSIGN_OR_RETURN(fp8_recipe,
                                precision::ResolveFp8Recipe(resolved.fp8, env));
  }
  state::PartialStateOptions state_options;
  state_options.timeout = resolved.timeout;
  state_options.cpu = resolved.cpu;
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<state::PartialState> state,
                              state::PartialState::Create(state_options, env));
  if (mixed_precision == precision::MixedPrecision::kFp16 &&
      state->device().is_cpu() && state->is_local_main_process() &&
      !precision::CpuHasFastFloat16Matmul()) {
    // Honoured (the loss scaler runs), but the user should know the cost.
    // Python Accelerate keeps fp16 runs on CPU in float32 instead.
    ACCELERATE_LOG(WARNING)
        << "mixed_precision fp16 on a CPU without AVX512-FP16 or AMX-FP16: "
           "LibTorch computes float16 matrix products in a scalar loop, "
           "typically 10-40x slower than float32; bf16 is the fast "
           "mixed precision on this CPU";
  }
  return std::unique_ptr<Accelerator>(
      new Accelerator(std::move(state), std::move(resolved), mixed_precision,
                      std::move(fp8_recipe)));
}

void Accelerator::EnableFp8Layers(torch::nn::Module& model) {
  // The linear layers in definition order, torch::nn::Linear included (for
  // the first and the last).
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>
      linears;
  for (const auto& item : model.named_modules()) {
    if (dynamic_cast<precision::Fp8LinearImpl*>(item.value().get()) ||
        dynamic_cast<torch::nn::LinearImpl*>(item.value().get())) {
      linears.emplace_back(item.key(), item.value());
    }
  }
  // Accelerate's default for torchao: the first and the last linear layers
  // stay in high precision (for stability), and so do layers whose sizes are
  // not multiples of 16. Transformer Engine converts every layer.
  const bool ao_default = !options_.fp8_module_filter &&
                          fp8_recipe_->scaling != precision::Fp8Scaling::kDelayed;
  int converted = 0;
  for (size_t i = 0; i < linears.size(); ++i) {
    auto* layer =
        dynamic_cast<precision::Fp8LinearImpl*>(linears[i].second.get());
    if (layer == nullptr) continue;
    if (options_.fp8_module_filter &&
        !options_.fp8_module_filter(linears[i].first)) {
      continue;
    }
    if (ao_default &&
        (i == 0 || i + 1 == linears.size() ||
         layer->options.in_features() % 16 != 0 ||
         layer->options.out_features() % 16 != 0)) {
      continue;
    }
    layer->EnableFp8(*fp8_recipe_, state_.get());
    fp8_layers_.push_back(linears[i].second);
    ++converted;
  }
  if (converted == 0) {
    ACCELERATE_LOG(WARNING)
        << "mixed_precision fp8: no precision::Fp8Linear layer of the model "
           "was converted (none, or the filter kept them all in high "
           "precision); it trains in bf16 autocast";
  }
}

absl::StatusOr<std::shared_ptr<torch::nn::Module>> Accelerator::PrepareModel(
    std::shared_ptr<torch::nn::Module> model) {
  if (model == nullptr) {
    return absl::InvalidArgumentError("PrepareModel needs a model");
  }
  if (precision_ == precision::MixedPrecision::kFp16) {
    for (const auto& item : model->named_parameters()) {
      if (item.value().scalar_type() == at::kHalf) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mixed_precision fp16: parameter \"", item.key(),
            "\" is already float16; keep the model in float32 (autocast "
            "computes in float16 and the loss scaler needs float32 "
            "gradients)"));
      }
    }
  }
  if (fp8_recipe_.has_value()) EnableFp8Layers(*model);
  const sharding::ShardingConfig& sharding = *options_.sharding;
  sharding::FullyShardedOptions full_shard = sharding.full_shard;
  if (precision_ == precision::MixedPrecision::kBf16) {
    // As Accelerate's FSDP plugin under bf16: units gathered and gradients
    // reduced in bf16 (the slices and the optimizer stay float32).
    full_shard.param_dtype = at::kBFloat16;
    full_shard.reduce_dtype = at::kBFloat16;
    // FSDP 1's policy casts the buffers too (FSDP 2's has no buffer dtype).
    if (sharding.fsdp_version == 1) full_shard.buffer_dtype = at::kBFloat16;
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      std::unique_ptr<DataParallel> dp,
      DataParallel::Create(
          model, *state_,
          {.bucket_cap_bytes = options_.bucket_cap_mb << 20,
           .find_unused_parameters = options_.find_unused_parameters,
           .broadcast_buffers = options_.broadcast_buffers,
           .shard_parameters = sharding.shards_parameters(),
           .auto_wrap = sharding.auto_wrap,
           .full_shard = full_shard}));
  if (sharding::FullyShardedModel* sharded = dp->fully_sharded()) {
    // Optimizers prepared before their model step on its parts too.
    for (const auto& optimizer : optimizers_) {
      absl::Status taken = sharded->ShardOptimizer(optimizer->optimizer());
      if (!taken.ok()) return ShardingError(taken);
    }
  }
  models_[model.get()] = std::move(dp);
  model_order_.push_back(model);
  return model;
}

sharding::FullyShardedModel* Accelerator::FullyShardedFor(
    const torch::nn::Module& model) const {
  auto it = models_.find(&model);
  return it == models_.end() ? nullptr : it->second->fully_sharded();
}

absl::Status Accelerator::ShardingError(const absl::Status& status) const {
  return absl::Status(
      status.code(),
      absl::StrCat("sharding ",
                   sharding::ShardingStrategyName(options_.sharding->strategy),
                   ": ", status.message()));
}

sharding::StateBytes Accelerator::StateBytesPerProcess() {
  sharding::StateBytes bytes;
  std::set<const void*> seen;
  const auto count = [&](const at::Tensor& p) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) return;
    bytes.parameters += static_cast<int64_t>(p.nbytes());
    if (p.grad().defined()) {
      bytes.gradients += static_cast<int64_t>(p.grad().nbytes());
    }
  };
  for (const auto& model : model_order_) {
    if (sharding::FullyShardedModel* sharded =
            models_.at(model.get())->fully_sharded()) {
      // Slices, gathered units, gradient parts (the parameters themselves
      // are placeholders).
      sharded->ReleaseGathered();
      const sharding::StateBytes held = sharded->Bytes();
      bytes.parameters += held.parameters;
      bytes.gradients += held.gradients;
      continue;
    }
    for (const at::Tensor& p : model->parameters()) count(p);
  }
  for (const auto& optimizer : optimizers_) {
    // The slices' gradients (the whole ones are counted above).
    if (const sharding::ShardedOptimizer* sharded = optimizer->sharded()) {
      bytes.gradients += sharded->SliceGradientBytes();
    }
    bytes.optimizer_state +=
        sharding::OptimizerStateBytes(optimizer->optimizer());
  }
  return bytes;
}

int64_t Accelerator::RecomputedUnits() const {
  int64_t recomputed = 0;
  for (const auto& [module, dp] : models_) {
    if (const sharding::FullyShardedModel* sharded = dp->fully_sharded()) {
      recomputed += sharded->stats().recomputed;
    }
  }
  return recomputed;
}

PreparedOptimizer* Accelerator::PrepareOptimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer) {
  std::unique_ptr<sharding::ShardedOptimizer> sharded;
  absl::Status setup_error;
  if (options_.sharding->shards_optimizer_state() && optimizer != nullptr) {
    auto made = sharding::ShardedOptimizer::Create(
        optimizer, *state_,
        {.keep_whole_gradients = !options_.sharding->shards_gradients()});
    if (made.ok()) {
      sharded = *std::move(made);
    } else {
      setup_error = ShardingError(made.status());
    }
  }
  if (optimizer != nullptr) {
    for (const auto& [module, dp] : models_) {
      sharding::FullyShardedModel* model = dp->fully_sharded();
      if (model == nullptr || !setup_error.ok()) continue;
      absl::Status taken = model->ShardOptimizer(*optimizer);
      if (!taken.ok()) setup_error = ShardingError(taken);
    }
  }
  optimizers_.push_back(std::make_unique<PreparedOptimizer>(
      &gradients_, scaler_.get(), std::move(optimizer),
      [this](const PreparedOptimizer& stepped) {
        return AfterOptimizerStep(stepped);
      },
      std::move(sharded), std::move(setup_error)));
  return optimizers_.back().get();
}

absl::StatusOr<PreparedScheduler*> Accelerator::PrepareScheduler(
    std::shared_ptr<torch::optim::LRScheduler> scheduler) {
  return PrepareSchedulerFor({std::move(scheduler), nullptr}, std::nullopt);
}

absl::StatusOr<PreparedScheduler*> Accelerator::PrepareSchedulerFor(
    const SchedulerFor& pair, std::optional<size_t> index) {
  const std::string which =
      index.has_value() ? absl::StrCat("scheduler (argument ", *index, ")")
                        : std::string("scheduler");
  if (pair.scheduler == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(which, " is null"));
  }
  if (pair.optimizer != nullptr) {
    for (const auto& mine : optimizers_) {
      if (&mine->optimizer() == pair.optimizer.get()) {
        return PrepareScheduler(pair.scheduler, mine.get());
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        which, ": its optimizer was not prepared by this Accelerator; "
               "prepare the optimizer too"));
  }
  if (optimizers_.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        which, " without its optimizer: ", optimizers_.size(),
        " optimizers are prepared, so which one it follows is unknown; pass "
        "SchedulerFor{scheduler, optimizer}"));
  }
  return PrepareScheduler(pair.scheduler, optimizers_[0].get());
}

PreparedScheduler* Accelerator::PrepareScheduler(
    std::shared_ptr<torch::optim::LRScheduler> scheduler,
    const PreparedOptimizer* optimizer) {
  ACCELERATE_CHECK(optimizer == nullptr ||
                   std::any_of(optimizers_.begin(), optimizers_.end(),
                               [&](const auto& mine) {
                                 return mine.get() == optimizer;
                               }))
      << "PrepareScheduler: the optimizer was not prepared by this "
         "Accelerator";
  const SchedulerStepping stepping = {
      .with_optimizer = options_.step_scheduler_with_optimizer,
      .steps_per_optimizer_step =
          options_.split_batches ? 1 : state_->num_processes(),
      .adjust_scheduler =
          options_.gradient_accumulation_plugin.adjust_scheduler};
  schedulers_.push_back(std::make_unique<PreparedScheduler>(
      &gradients_, stepping, std::move(scheduler), optimizer));
  return schedulers_.back().get();
}

data::DataLoaderOptions Accelerator::LoaderOptions(
    const data::DataLoaderOptions& options) const {
  data::DataLoaderOptions merged = options;
  merged.split_batches = options_.split_batches;
  merged.even_batches = options_.even_batches;
  merged.dispatch_batches = options_.dispatch_batches;
  if (merged.shuffle && merged.seed == 0) merged.seed = options_.data_seed;
  return merged;
}

absl::StatusOr<std::shared_ptr<data::PreparedDataLoader>>
Accelerator::PrepareDataLoader(std::shared_ptr<const data::MapDataset> dataset,
                               const data::DataLoaderOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(std::shared_ptr<data::PreparedDataLoader> loader,
                              data::PreparedDataLoader::Create(
                                  std::move(dataset), *state_,
                                  LoaderOptions(options)));
  gradients_.AddLoader(loader);
  loaders_.push_back(loader);
  return loader;
}

absl::StatusOr<std::shared_ptr<data::PreparedStreamLoader>>
Accelerator::PrepareStreamLoader(std::shared_ptr<data::SampleStream> stream,
                                 const data::DataLoaderOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(std::shared_ptr<data::PreparedStreamLoader> loader,
                              data::PreparedStreamLoader::Create(
                                  std::move(stream), *state_,
                                  LoaderOptions(options)));
  gradients_.AddLoader(loader);
  stream_loaders_.push_back(loader);
  return loader;
}

Accelerator::DataParallel* Accelerator::Find(const torch::nn::Module& model) {
  auto it = models_.find(&model);
  ACCELERATE_CHECK(it != models_.end())
      << "Accumulate/NoSync/ClipGrad need a model from PrepareModel";
  return it->second.get();
}

AccumulateScope Accelerator::Accumulate(const torch::nn::Module& model) {
  return Begin({&model}, /*force_no_sync=*/false);
}

AccumulateScope Accelerator::Accumulate(
    const std::vector<const torch::nn::Module*>& models) {
  return Begin(models, /*force_no_sync=*/false);
}

AccumulateScope Accelerator::NoSync(const torch::nn::Module& model) {
  return Begin({&model}, /*force_no_sync=*/true);
}

AccumulateScope Accelerator::Begin(
    const std::vector<const torch::nn::Module*>& models, bool force_no_sync) {
  if (!force_no_sync) gradients_.BeginStep();
  AccumulateScope::OpenModels previous = std::move(open_);
  open_.clear();
  ++open_scopes_;
  // An iteration whose optimizers did not all step still ends here.
  absl::Status status =
      scaler_ != nullptr ? EndScalerIteration() : absl::OkStatus();
  for (const torch::nn::Module* model : models) {
    DataParallel* dp = Find(*model);
    // sync_each_batch all-reduces every batch; the optimizer still waits.
    dp->set_sync(!force_no_sync &&
                 (gradients_.sync_gradients() ||
                  (state_->use_distributed() &&
                   gradients_.plugin().sync_each_batch)));
    open_.push_back(dp);
    if (status.ok() && dp->sync()) status = dp->StartSynchronizedStep();
  }
  precision::AutocastScope autocast(precision_, Device().type());
  return AccumulateScope(this, std::move(status), std::move(previous),
                         std::move(autocast));
}

absl::Status Accelerator::AfterOptimizerStep(const PreparedOptimizer& stepped) {
  // No gathered copy of a FULL_SHARD unit outlives the step that changed
  // its slices (an evaluation's, say).
  for (const auto& [module, dp] : models_) {
    if (dp->fully_sharded() != nullptr) dp->fully_sharded()->ReleaseGathered();
  }
  if (scaler_ == nullptr) return absl::OkStatus();
  stepped_.insert(&stepped);
  if (stepped_.size() < optimizers_.size()) return absl::OkStatus();
  return EndScalerIteration();
}

absl::Status Accelerator::EndScalerIteration() {
  stepped_.clear();
  return scaler_->Update();
}

absl::Status Accelerator::UnscaleGradients() {
  for (const auto& optimizer : optimizers_) {
    ACCELERATE_RETURN_IF_ERROR(optimizer->UnscaleGradients().status());
  }
  return absl::OkStatus();
}

void Accelerator::End(AccumulateScope::OpenModels previous) {
  open_ = std::move(previous);
  --open_scopes_;
}

AccumulateScope::AccumulateScope(Accelerator* accelerator,
                                 absl::Status status, OpenModels previous,
                                 precision::AutocastScope autocast)
    : accelerator_(accelerator),
      status_(std::move(status)),
      previous_(std::move(previous)),
      autocast_(std::move(autocast)) {}

AccumulateScope::AccumulateScope(AccumulateScope&& other) noexcept
    : accelerator_(other.accelerator_),
      status_(std::move(other.status_)),
      previous_(std::move(other.previous_)),
      autocast_(std::move(other.autocast_)) {
  other.accelerator_ = nullptr;
}

AccumulateScope::~AccumulateScope() {
  if (accelerator_ == nullptr) return;
  accelerator_->End(std::move(previous_));
}

absl::Status Accelerator::Backward(const at::Tensor& loss) {
  if (!loss.defined()) {
    return absl::InvalidArgumentError("Backward needs a defined loss tensor");
  }
  // Tell each reducer whether this backward synchronizes.
  std::vector<DataParallel*> syncing;
  const bool outside_step = open_.empty();
  if (!outside_step) {
    for (DataParallel* dp : open_) {
      if (dp->distributed() && dp->sync()) syncing.push_back(dp);
    }
  } else {
    // Outside an Accumulate scope every step synchronizes, as under DDP.
    for (auto& [module, dp] : models_) {
      if (dp->distributed() && dp->sync_enabled()) syncing.push_back(dp.get());
    }
  }
  return state::RunGuarded("backward", [&] {
    at::Tensor scaled = loss / gradients_.accumulation_steps();
    if (scaler_ != nullptr) scaled = scaler_->Scale(scaled);
    // Backward runs outside autocast, as PyTorch recommends.
    precision::AutocastOff no_autocast;
    for (DataParallel* dp : syncing) dp->PrepareBackward(loss, outside_step);
    scaled.backward();
  });
}

absl::StatusOr<double> Accelerator::ClipGradNorm(const torch::nn::Module& model,
                                                 double max_norm,
                                                 double norm_type) {
  if (scaler_ != nullptr && !sync_gradients()) {
    return absl::FailedPreconditionError(
        "clip_grad_norm with fp16 works on synchronized steps only: the "
        "gradients are still accumulating, scaled");
  }
  ACCELERATE_RETURN_IF_ERROR(UnscaleGradients());
  if (sharding::FullyShardedModel* sharded = FullyShardedFor(model)) {
    return sharded->ClipGradNorm(max_norm, norm_type);
  }
  std::vector<at::Tensor> params = TrainableParameters(model);
  double norm = 0;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("clip_grad_norm", [&] {
    norm = torch::nn::utils::clip_grad_norm_(params, max_norm, norm_type);
  }));
  return norm;
}

absl::Status Accelerator::ClipGradValue(const torch::nn::Module& model,
                                        double clip_value) {
  if (scaler_ != nullptr && !sync_gradients()) {
    return absl::FailedPreconditionError(
        "clip_grad_value with fp16 works on synchronized steps only");
  }
  ACCELERATE_RETURN_IF_ERROR(UnscaleGradients());
  if (sharding::FullyShardedModel* sharded = FullyShardedFor(model)) {
    return sharded->ClipGradValue(clip_value);
  }
  std::vector<at::Tensor> params = TrainableParameters(model);
  return state::RunGuarded("clip_grad_value", [&] {
    torch::nn::utils::clip_grad_value_(params, clip_value);
  });
}

absl::StatusOr<at::Tensor> Accelerator::GatherForMetrics(
    const at::Tensor& tensor) {
  return data::GatherForMetrics(*state_, tensor,
                                gradients_.end_of_dataloader(),
                                gradients_.remainder());
}

absl::StatusOr<data::Batch> Accelerator::GatherForMetrics(
    const data::Batch& batch) {
  return data::GatherForMetrics(*state_, batch,
                                gradients_.end_of_dataloader(),
                                gradients_.remainder());
}

void Accelerator::ClearPrepared() {
  ACCELERATE_CHECK(open_scopes_ == 0)
      << "ClearPrepared inside an Accumulate or NoSync scope";
  schedulers_.clear();
  optimizers_.clear();
  stepped_.clear();
  // Reducers unregister their hooks before they go.
  models_.clear();
  model_order_.clear();
  loaders_.clear();
  stream_loaders_.clear();
  gradients_ = GradientState(options_.gradient_accumulation_plugin);
}

void Accelerator::FreeMemory() {
  ClearPrepared();
#ifdef ACCELERATE_WITH_CUDA
  if (Device().is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

void Accelerator::SetGradientSync(const torch::nn::Module& model,
                                  bool enabled) {
  Find(model)->set_sync_enabled(enabled);
}

absl::StatusOr<bool> Accelerator::CheckTrigger() {
  at::Tensor flag = at::full({1}, trigger_ ? 1 : 0, at::kLong);
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
      "check_trigger", [&] { flag = flag.to(Device()); }));
  ACCELERATE_RETURN_IF_ERROR(state::AllReduceInPlace(
      *state_, flag, {.reduction = state::Reduction::kSum}));
  if (flag.cpu().item<int64_t>() == 0) return false;
  trigger_ = false;
  return true;
}

void Accelerator::SetSeed(uint64_t seed, bool device_specific) {
  if (device_specific) seed += state_->process_index();
  torch::manual_seed(seed);
}

int64_t Accelerator::buckets_reduced() const {
  int64_t total = 0;
  for (const auto& [module, dp] : models_) total += dp->buckets_reduced();
  return total;
}

}  // namespace accelerate
