#include "accelerator/accelerator.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/autocast_mode.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>
#include "accelerator/internal/reducer.h"
#include "state/collectives.h"
#include "state/launch_info.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate {
namespace {

// PyTorch DDP's first bucket: small, so that communication starts early.
constexpr int64_t kFirstBucketBytes = int64_t{1} << 20;

// Averages each gradient bucket with one all-reduce and counts them.
class AveragingHook final : public c10d::CommHookInterface {
 public:
  AveragingHook(c10::intrusive_ptr<c10d::ProcessGroup> group,
                std::atomic<int64_t>* count)
      : group_(std::move(group)), count_(count) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(
      c10d::GradBucket& bucket) override {
    count_->fetch_add(1);
    std::vector<at::Tensor> tensors = {bucket.getBufferRef()};
    // Divide first, as PyTorch's allreduce hook, to keep fp16 in range.
    tensors[0].div_(group_->getSize());
    return group_->allreduce(tensors)->getFuture();
  }

  at::Tensor parseHookResult(const c10::IValue& result) override {
    return result.isTensor() ? result.toTensor() : result.toTensorVector()[0];
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::atomic<int64_t>* count_;
};

std::vector<at::Tensor> Parameters(const torch::nn::Module& model) {
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

}  // namespace

struct Accelerator::DataParallel {
  std::shared_ptr<torch::nn::Module> module;
  std::vector<at::Tensor> buffers;
  std::unique_ptr<c10d::Reducer> reducer;  // Null on one process.
  std::atomic<int64_t> buckets{0};
  // Whether the open step of this model synchronizes.
  bool sync = true;
};

Accelerator::Accelerator(std::unique_ptr<state::PartialState> state,
                         AcceleratorOptions options,
                         std::string mixed_precision, int accumulation_steps)
    : state_(std::move(state)),
      options_(std::move(options)),
      mixed_precision_(std::move(mixed_precision)),
      accumulation_steps_(accumulation_steps) {
  if (mixed_precision_ == "fp16") scaler_ = std::make_unique<GradScaler>();
}

Accelerator::~Accelerator() {
  // Reducers unregister their hooks before the models go.
  models_.clear();
}

absl::StatusOr<std::unique_ptr<Accelerator>> Accelerator::Create(
    const AcceleratorOptions& options, const state::Environment& env) {
  std::string mixed_precision = "no";
  if (options.mixed_precision.has_value()) {
    mixed_precision = *options.mixed_precision;
  } else if (std::optional<std::string> value =
                 env.Get("ACCELERATE_MIXED_PRECISION")) {
    mixed_precision = *value;
  }
  if (mixed_precision != "no" && mixed_precision != "fp16" &&
      mixed_precision != "bf16" && mixed_precision != "fp8") {
    return absl::InvalidArgumentError(absl::StrCat(
        "mixed_precision: \"", mixed_precision,
        "\" is not one of no, fp16, bf16, fp8"));
  }
  if (mixed_precision == "fp8") {
    return absl::UnimplementedError(
        "mixed_precision fp8 is not supported yet; use bf16 or fp16");
  }
  int steps = 1;
  if (options.gradient_accumulation_steps.has_value()) {
    steps = *options.gradient_accumulation_steps;
  } else if (std::optional<std::string> value =
                 env.Get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")) {
    if (!absl::SimpleAtoi(*value, &steps)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ACCELERATE_GRADIENT_ACCUMULATION_STEPS=\"", *value,
          "\" is not an integer"));
    }
  }
  if (steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gradient_accumulation_steps ", steps, " is not a positive count"));
  }
  if (options.bucket_cap_mb < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bucket_cap_mb ", options.bucket_cap_mb, " is not a positive size"));
  }
  state::PartialStateOptions state_options;
  state_options.timeout = options.timeout;
  state_options.cpu = options.cpu;
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<state::PartialState> state,
                              state::PartialState::Create(state_options, env));
  if (mixed_precision == "fp16" && !state->device().is_cuda()) {
    return absl::FailedPreconditionError(
        "mixed_precision fp16 needs a GPU (CUDA build); on CPU use bf16");
  }
  return std::unique_ptr<Accelerator>(new Accelerator(
      std::move(state), options, std::move(mixed_precision), steps));
}

absl::StatusOr<std::shared_ptr<torch::nn::Module>> Accelerator::PrepareModel(
    std::shared_ptr<torch::nn::Module> model) {
  if (model == nullptr) {
    return absl::InvalidArgumentError("PrepareModel needs a model");
  }
  auto dp = std::make_unique<DataParallel>();
  dp->module = model;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
      "moving the model to the device", [&] { model->to(Device()); }));
  for (const at::Tensor& b : model->buffers()) dp->buffers.push_back(b);
  if (state_->use_distributed()) {
    auto group = c10::intrusive_ptr<c10d::ProcessGroup>::reclaim_copy(
        state_->process_group());
    // Every process starts from rank 0's weights and buffers.
    std::vector<at::Tensor> states = model->parameters();
    states.insert(states.end(), dp->buffers.begin(), dp->buffers.end());
    ACCELERATE_RETURN_IF_ERROR(state::BroadcastInPlace(*state_, states));
    std::vector<at::Tensor> params = Parameters(*model);
    if (!params.empty()) {
      ACCELERATE_RETURN_IF_ERROR(
          state::RunGuarded("setting up gradient buckets", [&] {
            dp->reducer = accelerator_internal::MakeReducer(
                params, group,
                {.bucket_cap_bytes = options_.bucket_cap_mb << 20,
                 .first_bucket_cap_bytes = kFirstBucketBytes,
                 .find_unused_parameters = options_.find_unused_parameters});
            dp->reducer->register_comm_hook(
                std::make_unique<AveragingHook>(group, &dp->buckets));
          }));
    }
  }
  models_[model.get()] = std::move(dp);
  return model;
}

PreparedOptimizer* Accelerator::PrepareOptimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer) {
  optimizers_.push_back(
      std::make_unique<PreparedOptimizer>(this, std::move(optimizer)));
  return optimizers_.back().get();
}

PreparedScheduler* Accelerator::PrepareScheduler(
    std::shared_ptr<torch::optim::LRScheduler> scheduler) {
  PreparedOptimizer* optimizer =
      optimizers_.empty() ? nullptr : optimizers_.back().get();
  schedulers_.push_back(std::make_unique<PreparedScheduler>(
      this, std::move(scheduler), optimizer));
  return schedulers_.back().get();
}

absl::StatusOr<std::shared_ptr<data::PreparedDataLoader>>
Accelerator::PrepareDataLoader(std::shared_ptr<const data::MapDataset> dataset,
                               const data::DataLoaderOptions& options) {
  data::DataLoaderOptions merged = options;
  merged.split_batches = options_.split_batches;
  merged.even_batches = options_.even_batches;
  merged.dispatch_batches = options_.dispatch_batches;
  if (merged.shuffle && merged.seed == 0) merged.seed = options_.data_seed;
  ACCELERATE_ASSIGN_OR_RETURN(
      std::unique_ptr<data::PreparedDataLoader> loader,
      data::PreparedDataLoader::Create(std::move(dataset), *state_, merged));
  std::shared_ptr<data::PreparedDataLoader> shared = std::move(loader);
  loaders_.push_back(shared);
  return shared;
}

absl::StatusOr<
    std::tuple<std::shared_ptr<torch::nn::Module>, PreparedOptimizer*,
               std::shared_ptr<data::PreparedDataLoader>, PreparedScheduler*>>
Accelerator::Prepare(std::shared_ptr<torch::nn::Module> model,
                     std::shared_ptr<torch::optim::Optimizer> optimizer,
                     std::shared_ptr<const data::MapDataset> dataset,
                     const data::DataLoaderOptions& loader_options,
                     std::shared_ptr<torch::optim::LRScheduler> scheduler) {
  ACCELERATE_ASSIGN_OR_RETURN(model, PrepareModel(std::move(model)));
  PreparedOptimizer* prepared_optimizer = PrepareOptimizer(std::move(optimizer));
  ACCELERATE_ASSIGN_OR_RETURN(auto loader,
                              PrepareDataLoader(std::move(dataset), loader_options));
  PreparedScheduler* prepared_scheduler = PrepareScheduler(std::move(scheduler));
  return std::make_tuple(std::move(model), prepared_optimizer,
                         std::move(loader), prepared_scheduler);
}

Accelerator::DataParallel* Accelerator::Find(const torch::nn::Module& model) {
  auto it = models_.find(&model);
  ACCELERATE_CHECK(it != models_.end())
      << "Accumulate/NoSync/ClipGrad need a model from PrepareModel";
  return it->second.get();
}

std::shared_ptr<data::PreparedDataLoader> Accelerator::ActiveLoader() const {
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
  if (!force_no_sync) {
    std::shared_ptr<data::PreparedDataLoader> loader = ActiveLoader();
    if (loader != nullptr && loader->end_of_epoch()) {
      step_ = 0;
      sync_gradients_ = true;
    } else {
      ++step_;
      sync_gradients_ = step_ % accumulation_steps_ == 0;
    }
  }
  std::vector<void*> previous = open_;
  open_.clear();
  absl::Status status;
  for (const torch::nn::Module* model : models) {
    DataParallel* dp = Find(*model);
    dp->sync = !force_no_sync && sync_gradients_;
    open_.push_back(dp);
    if (dp->reducer == nullptr || !dp->sync || !status.ok()) continue;
    if (options_.broadcast_buffers && !dp->buffers.empty()) {
      status = state::BroadcastInPlace(*state_, dp->buffers);
      if (!status.ok()) continue;
    }
    status = state::RunGuarded("starting a synchronized step",
                               [&] { dp->reducer->prepare_for_forward(); });
  }
  AccumulateScope::Autocast autocast;
  if (mixed_precision_ == "bf16" || mixed_precision_ == "fp16") {
    const at::ScalarType dtype =
        mixed_precision_ == "bf16" ? at::kBFloat16 : at::kHalf;
    autocast.enabled = true;
    autocast.cpu_was = at::autocast::is_autocast_enabled(at::kCPU);
    autocast.gpu_was = at::autocast::is_autocast_enabled(at::kCUDA);
    autocast.cpu_dtype_was = at::autocast::get_autocast_dtype(at::kCPU);
    autocast.gpu_dtype_was = at::autocast::get_autocast_dtype(at::kCUDA);
    if (Device().is_cuda()) {
      at::autocast::set_autocast_enabled(at::kCUDA, true);
      at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    } else {
      at::autocast::set_autocast_enabled(at::kCPU, true);
      at::autocast::set_autocast_dtype(at::kCPU, dtype);
    }
    at::autocast::increment_nesting();
  }
  return AccumulateScope(this, std::move(status), std::move(previous), autocast);
}

void Accelerator::End(std::vector<void*> previous) { open_ = std::move(previous); }

AccumulateScope::AccumulateScope(Accelerator* accelerator, absl::Status status,
                                 std::vector<void*> previous, Autocast autocast)
    : accelerator_(accelerator),
      status_(std::move(status)),
      previous_(std::move(previous)),
      autocast_(autocast) {}

AccumulateScope::AccumulateScope(AccumulateScope&& other) noexcept
    : accelerator_(other.accelerator_),
      status_(std::move(other.status_)),
      previous_(std::move(other.previous_)),
      autocast_(other.autocast_) {
  other.accelerator_ = nullptr;
  other.autocast_.enabled = false;
}

AccumulateScope::~AccumulateScope() {
  if (accelerator_ == nullptr) return;
  if (autocast_.enabled) {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    // Back to what was set before the scope (an outer scope's, say).
    at::autocast::set_autocast_enabled(at::kCPU, autocast_.cpu_was);
    at::autocast::set_autocast_enabled(at::kCUDA, autocast_.gpu_was);
    at::autocast::set_autocast_dtype(at::kCPU, autocast_.cpu_dtype_was);
    at::autocast::set_autocast_dtype(at::kCUDA, autocast_.gpu_dtype_was);
  }
  accelerator_->End(std::move(previous_));
}

absl::Status Accelerator::Backward(const at::Tensor& loss) {
  if (!loss.defined()) {
    return absl::InvalidArgumentError("Backward needs a defined loss tensor");
  }
  // Tell each reducer whether this backward synchronizes.
  std::vector<DataParallel*> syncing;
  if (!open_.empty()) {
    for (void* open : open_) {
      auto* dp = static_cast<DataParallel*>(open);
      if (dp->reducer != nullptr && dp->sync) syncing.push_back(dp);
    }
  } else {
    // Outside an Accumulate scope every step synchronizes, as under DDP.
    for (auto& [module, dp] : models_) {
      if (dp->reducer != nullptr) syncing.push_back(dp.get());
    }
  }
  return state::RunGuarded("backward", [&] {
    at::Tensor scaled = loss / accumulation_steps_;
    if (scaler_ != nullptr) scaled = scaler_->Scale(scaled);
    // Backward runs outside autocast, as PyTorch recommends.
    const bool cpu_autocast = at::autocast::is_autocast_enabled(at::kCPU);
    const bool gpu_autocast = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    struct Restore {
      bool cpu, gpu;
      ~Restore() {
        at::autocast::set_autocast_enabled(at::kCPU, cpu);
        at::autocast::set_autocast_enabled(at::kCUDA, gpu);
      }
    } restore{cpu_autocast, gpu_autocast};
    for (DataParallel* dp : syncing) {
      // Before every synchronizing backward, as DDP does before every
      // forward: after the first pass it settles the bucket order once; it
      // also checks that the previous reduction finished.
      dp->reducer->rebuild_buckets();
      if (open_.empty()) dp->reducer->prepare_for_forward();
      dp->reducer->prepare_for_backward(
          options_.find_unused_parameters ? std::vector<at::Tensor>{loss}
                                          : std::vector<at::Tensor>{});
    }
    scaled.backward();
  });
}

absl::StatusOr<double> Accelerator::ClipGradNorm(const torch::nn::Module& model,
                                                 double max_norm,
                                                 double norm_type) {
  if (scaler_ != nullptr && !sync_gradients_) {
    return absl::FailedPreconditionError(
        "clip_grad_norm with fp16 works on synchronized steps only: the "
        "gradients are still accumulating, scaled");
  }
  std::vector<at::Tensor> params = Parameters(model);
  double norm = 0;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("clip_grad_norm", [&] {
    if (scaler_ != nullptr) scaler_->Unscale(params);
    norm = torch::nn::utils::clip_grad_norm_(params, max_norm, norm_type);
  }));
  return norm;
}

absl::Status Accelerator::ClipGradValue(const torch::nn::Module& model,
                                        double clip_value) {
  if (scaler_ != nullptr && !sync_gradients_) {
    return absl::FailedPreconditionError(
        "clip_grad_value with fp16 works on synchronized steps only");
  }
  std::vector<at::Tensor> params = Parameters(model);
  return state::RunGuarded("clip_grad_value", [&] {
    if (scaler_ != nullptr) scaler_->Unscale(params);
    torch::nn::utils::clip_grad_value_(params, clip_value);
  });
}

absl::StatusOr<at::Tensor> Accelerator::GatherForMetrics(
    const at::Tensor& tensor) {
  if (std::shared_ptr<data::PreparedDataLoader> loader = ActiveLoader()) {
    return data::GatherForMetrics(*state_, *loader, tensor);
  }
  return state::Gather(*state_, tensor);
}

int64_t Accelerator::buckets_reduced() const {
  int64_t total = 0;
  for (const auto& [module, dp] : models_) total += dp->buckets.load();
  return total;
}

absl::Status PreparedOptimizer::step() {
  if (!accelerator_->sync_gradients()) return absl::OkStatus();
  step_was_skipped_ = false;
  return state::RunGuarded("optimizer step", [&] {
    if (GradScaler* scaler = accelerator_->scaler_.get()) {
      std::vector<at::Tensor> params;
      for (const auto& group : optimizer_->param_groups()) {
        params.insert(params.end(), group.params().begin(),
                      group.params().end());
      }
      if (scaler->Unscale(params)) {
        optimizer_->step();
        ++steps_taken_;
      } else {
        step_was_skipped_ = true;
      }
      scaler->Update();
      return;
    }
    optimizer_->step();
    ++steps_taken_;
  });
}

void PreparedOptimizer::zero_grad() {
  if (accelerator_->sync_gradients()) optimizer_->zero_grad();
}

void PreparedScheduler::step() {
  if (!accelerator_->options().step_scheduler_with_optimizer) {
    scheduler_->step();
    ++scheduler_steps_;
    return;
  }
  if (!accelerator_->sync_gradients()) return;
  if (optimizer_ != nullptr && optimizer_->step_was_skipped()) return;
  const int times = accelerator_->options().split_batches
                        ? 1
                        : accelerator_->State().num_processes();
  for (int i = 0; i < times; ++i) {
    scheduler_->step();
    ++scheduler_steps_;
  }
}

}  // namespace accelerate
