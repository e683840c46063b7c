// The `Accelerator`: the same LibTorch training loop on one CPU process, on
// several processes, and (in CUDA builds) on several GPUs, as Accelerate's
// `Accelerator` does for PyTorch.
//
// clang-format off
//   #include <torch/torch.h>
//   #include "state/status_macros.h"
//   absl::Status Example(torch::nn::Linear model,
//                        std::shared_ptr<torch::optim::Optimizer> optimizer,
//                        std::shared_ptr<torch::optim::LRScheduler> scheduler,
//                        std::shared_ptr<const data::MapDataset> dataset) {
//     AcceleratorOptions options;
//     options.gradient_accumulation_steps = 4;
//     ACCELERATE_ASSIGN_OR_RETURN(auto accelerator, Accelerator::Create(options));
//     ACCELERATE_ASSIGN_OR_RETURN(auto prepared, accelerator->Prepare(
//         model, optimizer, DataLoaderSpec{dataset, {.batch_size = 32}},
//         scheduler));
//     auto& [module, opt, loader, sched] = prepared;
//     while (true) {
//       ACCELERATE_ASSIGN_OR_RETURN(auto batch, loader->Next());
//       if (!batch) break;
//       auto step = accelerator->Accumulate(*module);
//       ACCELERATE_RETURN_IF_ERROR(step.status());
//       at::Tensor loss = torch::mse_loss(module->forward(batch->tensor(0)), batch->tensor(1));
//       ACCELERATE_RETURN_IF_ERROR(accelerator->Backward(loss));
//       ACCELERATE_RETURN_IF_ERROR(opt->step());
//       sched->step();
//       opt->zero_grad();
//     }
//     return absl::OkStatus();
//   }
// clang-format on
//
// What it does: the model is moved to the process's device and its
// parameters and buffers are broadcast from rank 0; gradients are averaged
// across processes in buckets launched from autograd hooks as each bucket
// fills (c10d's Reducer, so communication overlaps the backward pass), only
// on steps that synchronize; `Backward` divides the loss by the accumulation
// steps (and scales it for fp16); the optimizer and scheduler wrappers step
// only on synchronized steps, the scheduler once per process per optimizer
// step unless `split_batches`, as Accelerate's do.
//
// Options not given come from the launcher's environment
// (ACCELERATE_MIXED_PRECISION, ACCELERATE_GRADIENT_ACCUMULATION_STEPS,
// ACCELERATE_USE_CPU, ACCELERATE_DEBUG_MODE) through //state.
//
// Thread safety: one training thread. Ownership: the Accelerator shares
// ownership of prepared models, optimizers and schedulers; the wrappers it
// returns must not outlive it.

#ifndef ACCELERATE_ACCELERATOR_ACCELERATOR_H_
#define ACCELERATE_ACCELERATOR_ACCELERATOR_H_

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/ivalue.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/schedulers/lr_scheduler.h>
#include "accelerator/accelerator_options.h"
#include "accelerator/gradient_state.h"
#include "accelerator/prepared_optimizer.h"
#include "accelerator/internal/float32_outputs.h"
#include "accelerator/prepare_args.h"
#include "accelerator/prepared_scheduler.h"
#include "bigmodel/safetensors.h"
#include "checkpoint/inspect.h"
#include "checkpoint/project.h"
#include "data/batch.h"
#include "data/batch_collectives.h"
#include "data/data_loader.h"
#include "data/stream_loader.h"
#include "precision/autocast.h"
#include "precision/fp8_recipe.h"
#include "precision/grad_scaler.h"
#include "precision/mixed_precision.h"
#include "state/collectives.h"
#include "state/environment.h"
#include "state/multi_process_logger.h"
#include "state/partial_state.h"
#include "trackers/trackers.h"
#include "trackers/tracker.h"

namespace accelerate {

namespace accelerator_internal {
class DataParallel;
}  // namespace accelerator_internal

class Accelerator;

// An object saved with every checkpoint (Accelerate's
// `register_for_checkpointing`) as `custom_checkpoint_<i>.pkl`: its state as
// a value PyTorch's serialization holds (dicts, lists, tuples, numbers,
// strings, tensors), which Python reads with `torch.load`, and how to take
// such a value back.
struct CheckpointObject {
  std::function<c10::IValue()> state_dict;
  std::function<absl::Status(const c10::IValue&)> load_state_dict;
};

// A user type with `c10::IValue state_dict() const` and
// `absl::Status load_state_dict(const c10::IValue&)`.
template <typename T>
concept Checkpointable = requires(T& object, const c10::IValue& value) {
  { object.state_dict() } -> std::convertible_to<c10::IValue>;
  { object.load_state_dict(value) } -> std::convertible_to<absl::Status>;
};

struct SaveStateOptions {
  // Called on this process at each stage of the save: "staged" (the staging
  // folder is ready), "writing <file>" and "wrote <file>" around each file,
  // "agreed" (every process wrote its files), then on the main process
  // "committing" (manifest written, folder not yet renamed) and
  // "committed". For progress reports, and tests that interrupt a save.
  std::function<void(const std::string& stage)> on_stage;
};

struct LoadStateOptions {
  // The optimizers' states alias private, copy-on-write mappings of their
  // files instead of being read (`torch.load(mmap=True)`): `LoadState`
  // reads almost nothing and the first optimizer steps fault the pages in.
  // REQUIRES: the checkpoint's files are not truncated or rewritten in
  // place while training goes on (deleting them, as `total_limit` does, is
  // fine). Default false.
  bool map_files = false;
  // Draws a progress bar of the files loaded (models, optimizers,
  // schedulers, custom objects) on the main process's standard error.
  // Default false.
  bool progress_bar = false;
};

// Runs in `SaveState` before anything is written, on every process
// (Accelerate's `register_save_state_pre_hook`): `weights[i]` are the
// tensors about to be saved for `models[i]` (clear an entry to save that
// model yourself); files written into `dir` (the staging folder) are
// committed with the checkpoint.
using SaveStateHook = std::function<absl::Status(
    const std::vector<std::shared_ptr<torch::nn::Module>>& models,
    std::vector<bigmodel::NamedTensors>& weights, const std::string& dir)>;
// Runs in `LoadState` before anything is read (Accelerate's
// `register_load_state_pre_hook`): set an entry of `models` to null to load
// that model yourself.
using LoadStateHook = std::function<absl::Status(
    std::vector<std::shared_ptr<torch::nn::Module>>& models,
    const std::string& dir)>;

// The scope of one training step, from `Accumulate`: decides whether this
// step synchronizes gradients, and (fp16, bf16, fp8) enables autocast until
// it ends.
class [[nodiscard]] AccumulateScope {
 public:
  AccumulateScope(AccumulateScope&& other) noexcept;
  AccumulateScope(const AccumulateScope&) = delete;
  AccumulateScope& operator=(const AccumulateScope&) = delete;
  AccumulateScope& operator=(AccumulateScope&&) = delete;
  ~AccumulateScope();

  // The error of the step's set-up (buffer broadcast), if any.
  const absl::Status& status() const { return status_; }

 private:
  friend class Accelerator;
  using OpenModels = std::vector<accelerator_internal::DataParallel*>;
  AccumulateScope(Accelerator* accelerator, absl::Status status,
                  OpenModels previous, precision::AutocastScope autocast);
  Accelerator* accelerator_;
  absl::Status status_;
  // The models open before this scope (restored when it ends).
  OpenModels previous_;
  precision::AutocastScope autocast_;
};

class Accelerator {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Accelerator>> Create(
      const AcceleratorOptions& options = {},
      const state::Environment& env = state::ProcessEnvironment());

  Accelerator(const Accelerator&) = delete;
  Accelerator& operator=(const Accelerator&) = delete;
  ~Accelerator();

  // Moves `model` to the device, broadcasts its parameters and buffers from
  // rank 0 and sets up bucketed gradient averaging; under fp8, switches its
  // `precision::Fp8Linear` layers (those the filter keeps) to float8 (a
  // model without any gets a warning: it trains in bf16). Returns the same
  // module.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<torch::nn::Module>>
  PrepareModel(std::shared_ptr<torch::nn::Module> model);
  // Under SHARD_GRAD_OP and DeepSpeed's ZeRO 1 and 2, the optimizer's
  // state (and, but for ZeRO 1, the gradients kept between steps) is
  // sharded across the processes (sharding/sharded_optimizer.h: the
  // model's parameters move into flat buffers); an optimizer that cannot
  // be sharded makes `Prepare` fail and every `step` return why.
  PreparedOptimizer* PrepareOptimizer(
      std::shared_ptr<torch::optim::Optimizer> optimizer);
  // The scheduler follows the one optimizer prepared (its steps, and the fp16
  // steps it skips). `InvalidArgument` when none or several are prepared:
  // say which one with the overload below (or `SchedulerFor` in `Prepare`).
  [[nodiscard]] absl::StatusOr<PreparedScheduler*> PrepareScheduler(
      std::shared_ptr<torch::optim::LRScheduler> scheduler);
  // REQUIRES: `optimizer` was prepared by this Accelerator.
  PreparedScheduler* PrepareScheduler(
      std::shared_ptr<torch::optim::LRScheduler> scheduler,
      const PreparedOptimizer* optimizer);
  // A loader over `dataset` with this Accelerator's data configuration
  // (split/even/dispatch batches, data seed) and `options`' batch size,
  // shuffling, drop_last, workers and rng_types.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<data::PreparedDataLoader>>
  PrepareDataLoader(std::shared_ptr<const data::MapDataset> dataset,
                    const data::DataLoaderOptions& options);
  // A loader over a stream (iterable dataset), likewise; its end of epoch
  // synchronizes accumulation and `GatherForMetrics` sees it.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<data::PreparedStreamLoader>>
  PrepareStreamLoader(std::shared_ptr<data::SampleStream> stream,
                      const data::DataLoaderOptions& options);

  // Any number of models, optimizers, schedulers and loaders in any order
  // (Accelerate's `prepare`), each given back prepared, in the same order
  // (see prepare_args.h for what each becomes). Schedulers are prepared
  // last, each tied to its optimizer: the one of its `SchedulerFor`, else the
  // only optimizer prepared. Errors name the argument.
  template <typename... Args>
  [[nodiscard]] absl::StatusOr<
      std::tuple<accelerator_internal::PreparedResult<Args>...>>
  Prepare(const Args&... args);

  // Opens the scope of one step: gradients synchronize every
  // `gradient_accumulation_steps` steps and at the end of the data loader
  // being iterated (unless the plugin's `sync_with_dataloader` is off);
  // with `sync_each_batch` they are all-reduced on every batch while the
  // optimizer still waits. Every model the step's losses reach must be
  // named. REQUIRES: the models prepared.
  AccumulateScope Accumulate(const torch::nn::Module& model);
  AccumulateScope Accumulate(const std::vector<const torch::nn::Module*>& models);
  // Until the returned scope ends, backward passes through these models do
  // not synchronize gradients (Accelerate's no_sync); nothing is sent.
  AccumulateScope NoSync(const torch::nn::Module& model);

  // Backpropagates `loss` divided by the accumulation steps (scaled for
  // fp16). Errors from the gradient all-reduce (a peer that died or timed
  // out) come back as a status instead of an exception.
  [[nodiscard]] absl::Status Backward(const at::Tensor& loss);

  // fp16: divides the gradients of every prepared optimizer by the loss
  // scale, once per iteration (Accelerate's `unscale_gradients`); clipping
  // and the optimizers' steps call it. Nothing otherwise.
  [[nodiscard]] absl::Status UnscaleGradients();

  // Clips gradients of `model` (after unscaling for fp16); returns the total
  // norm. With fp16, only on synchronized steps (`FailedPrecondition`
  // otherwise: the gradients are still being accumulated, scaled).
  [[nodiscard]] absl::StatusOr<double> ClipGradNorm(
      const torch::nn::Module& model, double max_norm, double norm_type = 2.0);
  [[nodiscard]] absl::Status ClipGradValue(const torch::nn::Module& model,
                                           double clip_value);

  // Gathers from every process and drops the even-batches padding at the end
  // of the epoch of the loader being iterated (Accelerate's
  // `gather_for_metrics`); a batch of any structure (outputs and labels
  // together, say) works too.
  [[nodiscard]] absl::StatusOr<at::Tensor> GatherForMetrics(
      const at::Tensor& tensor);
  [[nodiscard]] absl::StatusOr<data::Batch> GatherForMetrics(
      const data::Batch& batch);

  // Accelerate's collectives on the Accelerator: the concatenation over
  // processes (`gather`), the sum by default (`reduce`, as
  // `Accelerator.reduce`; `state::Reduction::kMean` for the mean), and padding
  // to the largest size (`pad_across_processes`). `T`: a tensor, or nested
  // vectors and string-keyed maps of tensors. Collective: every process calls.
  template <typename T>
  [[nodiscard]] absl::StatusOr<T> Gather(const T& value) const {
    return state::Gather(*state_, value);
  }
  template <typename T>
  [[nodiscard]] absl::StatusOr<T> Reduce(
      const T& value, state::Reduction reduction = state::Reduction::kSum,
      double scale = 1.0) const {
    return state::Reduce(*state_, value,
                         {.reduction = reduction, .scale = scale});
  }
  template <typename T>
  [[nodiscard]] absl::StatusOr<T> PadAcrossProcesses(
      const T& value, const state::PadOptions& options = {}) const {
    return state::PadAcrossProcesses(*state_, value, options);
  }
  // The same for batches of any structure (every process must hold the
  // same structure: a difference is an error naming the field and process).
  [[nodiscard]] absl::StatusOr<data::Batch> Gather(
      const data::Batch& batch) const {
    return data::Gather(*state_, batch);
  }
  [[nodiscard]] absl::StatusOr<data::Batch> PadAcrossProcesses(
      const data::Batch& batch, const state::PadOptions& options = {}) const {
    return data::PadAcrossProcesses(*state_, batch, options);
  }

  // Autocast in this Accelerator's precision (nothing under "no") until the
  // scope ends: for code outside the model, such as the loss (Accelerate's
  // `autocast`).
  precision::AutocastScope Autocast() const {
    return precision::AutocastScope(precision_, Device().type());
  }
  // `model->forward(args...)` under autocast, its floating-point outputs
  // (a tensor, a `data::Batch`, a vector or tuple of tensors) converted to
  // float32 under fp16, bf16 and fp8, as Accelerate's prepared model's
  // forward does; in training and in evaluation.
  template <typename Model, typename... Args>
  auto Forward(Model& model, Args&&... args) {
    precision::AutocastScope autocast = Autocast();
    auto outputs = model->forward(std::forward<Args>(args)...);
    if (precision_ == precision::MixedPrecision::kNo) return outputs;
    return accelerator_internal::OutputsToFloat32(std::move(outputs));
  }

  // Turns gradient averaging of `model` off (or back on) for every step
  // until changed; what `LocalSgd` does. REQUIRES: `model` prepared.
  void SetGradientSync(const torch::nn::Module& model, bool enabled);

  // Accelerate's triggers: a process that met a condition (a NaN loss, say)
  // sets its trigger; `CheckTrigger` (collective) is true on every process
  // when any set it, and clears it.
  void SetTrigger() { trigger_ = true; }
  [[nodiscard]] absl::StatusOr<bool> CheckTrigger();

  // Forgets every prepared model, optimizer, scheduler and loader (the
  // pointers `Prepare` gave become invalid; models and loaders the caller
  // still holds stay usable, without gradient synchronization), so that
  // their memory can go (Accelerate's `clear`). REQUIRES (CHECKed): no
  // `Accumulate` or `NoSync` scope open.
  void ClearPrepared();
  // `ClearPrepared`, then returns the GPU allocator's cached blocks to the
  // device in CUDA builds (Accelerate's `free_memory`).
  void FreeMemory();

  // Seeds LibTorch's generators (CPU and, in CUDA builds, every GPU's) with
  // `seed`, plus the process index when `device_specific` (Accelerate's
  // `set_seed`).
  void SetSeed(uint64_t seed, bool device_specific = false);

  // Checkpointing (Accelerate's `save_state` / `load_state`), in
  // Accelerate's layout so that the folder opens in Python Accelerate too:
  // `model.safetensors` (`model_<i>.safetensors`; the model's own names,
  // with any number of processes, as Accelerate saves the module it was
  // given rather than its DDP wrapper; "module." names, which earlier
  // versions of ours wrote, still load), `optimizer.bin` (with
  // `initial_lr` in each group when a scheduler follows it, as a Python
  // scheduler sets), `scheduler.bin` (`_<i>` after the first), `scaler.pt`
  // (fp16), `custom_checkpoint_<i>.pkl`, one `random_states_<rank>.pkl` per
  // process (its generators, the accumulation step, and ours alone: each
  // loader's position, gradients being accumulated), and our manifest
  // (checkpoint/inspect.h).
  //
  // Atomic: every process writes into a staging folder, synced; the main
  // process renames it into place only once every process reported
  // success, so a crash at any point leaves the previous checkpoint whole.
  // With automatic naming the folder is `checkpoints/checkpoint_<iteration>`
  // (`dir` is ignored, as in Accelerate) and, past `total_limit`, the oldest
  // complete checkpoints go after the new one is in place. Files that every
  // process holds alike (models, optimizers, schedulers) are written by
  // different processes in parallel, unless gradient sync is off for a
  // model (then the main process writes them all, as Accelerate).
  // Collective. Returns the folder written.
  [[nodiscard]] absl::StatusOr<std::string> SaveState(
      const std::string& dir = "", const SaveStateOptions& options = {});
  // Restores everything `SaveState` saved, from `dir` or (automatic naming,
  // `dir` empty) the latest complete checkpoint; then the next batch, step
  // and random draw are those the saving run had next. Reads folders
  // written by Python Accelerate (whose Python and NumPy generator states
  // cannot be restored: a warning, as Accelerate gives when it cannot).
  // `DataLoss` naming the file for a truncated, corrupt or incomplete
  // checkpoint; `InvalidArgument` for one that does not fit what was
  // prepared. With automatic naming, the next save's iteration follows the
  // checkpoint loaded. Collective. Returns the folder read.
  [[nodiscard]] absl::StatusOr<std::string> LoadState(
      const std::string& dir = "", const LoadStateOptions& options = {});
  // Saves `object` with every checkpoint (in registration order).
  void RegisterForCheckpointing(CheckpointObject object) {
    custom_objects_.push_back(std::move(object));
  }
  template <Checkpointable T>
  void RegisterForCheckpointing(std::shared_ptr<T> object) {
    RegisterForCheckpointing(CheckpointObject{
        [object] { return c10::IValue(object->state_dict()); },
        [object](const c10::IValue& value) {
          return object->load_state_dict(value);
        }});
  }
  void RegisterSaveStateHook(SaveStateHook hook) {
    save_hooks_.push_back(std::move(hook));
  }
  void RegisterLoadStateHook(LoadStateHook hook) {
    load_hooks_.push_back(std::move(hook));
  }
  // The model's weights by their names in the model (no "module." prefix):
  // Accelerate's `get_state_dict`. For a FULL_SHARD model the weights are
  // gathered (collective: every process calls it) and copied.
  [[nodiscard]] absl::StatusOr<bigmodel::NamedTensors> GetStateDict(
      const torch::nn::Module& model);
  // Writes the model's weights into `dir` for inference (Accelerate's
  // `save_model`): `model.safetensors`, or shards of at most
  // `max_shard_bytes` with `model.safetensors.index.json` (stale shards of
  // an earlier save removed); by the main process, the others waiting.
  // Loadable by bigmodel's loader and by transformers/safetensors in Python.
  // Collective.
  [[nodiscard]] absl::Status SaveModel(const torch::nn::Module& model,
                                       const std::string& dir,
                                       uint64_t max_shard_bytes =
                                           10'000'000'000);
  checkpoint::ProjectConfiguration& project_configuration() {
    return options_.project_config;
  }

  // Starts the trackers of `options().trackers` (Accelerate's
  // `init_trackers`): a run named `project_name` under
  // `project_config.logging_dir`, with `config` as its hyperparameters
  // (unless empty). Only the processes that run a tracker start it (the
  // main process, unless a tracker says otherwise). An error names the
  // tracker that cannot start; the others are finished. Called once.
  [[nodiscard]] absl::Status InitTrackers(const std::string& project_name,
                                          const trackers::Config& config = {});
  // Logs `values` at `step` to the trackers this process runs (Accelerate's
  // `log`); nothing on the other processes. A tracker's error is a warning
  // unless `trackers.fail_on_error`. FailedPrecondition when trackers were
  // asked for and `InitTrackers` was not called.
  [[nodiscard]] absl::Status Log(const trackers::LogValues& values,
                                 std::optional<int64_t> step = std::nullopt);
  // The tracker `name` ("tensorboard", a custom tracker's name) when this
  // process runs it, null otherwise (Accelerate's `get_tracker`).
  trackers::Tracker* GetTracker(absl::string_view name) const {
    return trackers_ == nullptr ? nullptr : trackers_->Get(name);
  }
  // Finishes every tracker (everything logged written or sent; an error
  // says what was lost), then waits for every process (Accelerate's
  // `end_training`). Collective.
  [[nodiscard]] absl::Status EndTraining();

  // A rank-aware logger (Accelerate's `get_logger`): the main process only
  // by default, every process in rank order on request, the level from
  // ACCELERATE_LOG_LEVEL when not given. It must not outlive the Accelerator.
  [[nodiscard]] absl::StatusOr<state::MultiProcessLogger> GetLogger(
      std::string name,
      std::optional<state::LogLevel> level = std::nullopt) const {
    return state::MultiProcessLogger::Create(std::move(name), *state_, level);
  }

  template <typename... Args>
  void Print(const Args&... args) const {
    state_->Print(args...);
  }
  [[nodiscard]] absl::Status WaitForEveryone() const {
    return state_->WaitForEveryone();
  }
  // The module as the user built it (preparing wraps nothing).
  std::shared_ptr<torch::nn::Module> UnwrapModel(
      std::shared_ptr<torch::nn::Module> model) const {
    return model;
  }
  bool IsMainProcess() const { return state_->is_main_process(); }
  c10::Device Device() const { return state_->device(); }
  const state::PartialState& State() const { return *state_; }

  bool sync_gradients() const { return gradients_.sync_gradients(); }
  // Accelerate's GradientState: end_of_dataloader, remainder, the step.
  const GradientState& gradient_state() const { return gradients_; }
  int gradient_accumulation_steps() const {
    return gradients_.accumulation_steps();
  }
  const std::string& mixed_precision() const {
    return *options_.mixed_precision;
  }
  // The sharding strategy in effect ("none", "NO_SHARD", "SHARD_GRAD_OP",
  // "ZERO_1", "ZERO_2").
  std::string sharding_strategy() const {
    return sharding::ShardingStrategyName(options_.sharding->strategy);
  }
  // Bytes of the prepared models' parameters and gradients and of the
  // optimizers' state this process holds now (what sharding divides).
  // Under FULL_SHARD, units an evaluation left gathered are freed first
  // (gathered again when used).
  sharding::StateBytes StateBytesPerProcess();
  // Units' forwards replayed by their backward so far, over the prepared
  // models (activation checkpointing; 0 without it).
  int64_t RecomputedUnits() const;
  const AcceleratorOptions& options() const { return options_; }
  // The fp16 loss scaler; null in other precisions.
  const precision::GradScaler* scaler() const { return scaler_.get(); }
  // Gradient buckets all-reduced so far (for tests and diagnostics).
  int64_t buckets_reduced() const;

 private:
  friend class AccumulateScope;
  // Checkpoints in the unsharded layout: gathers FULL_SHARD models'
  // parameters and every sharded optimizer's state (collective) until the
  // returned handle goes, which reshards them (keeping what was loaded).
  // `keep_sharded` (the model ShardedCheckpointModel names) stays sharded.
  absl::StatusOr<std::shared_ptr<void>> UnshardForCheckpoint(
      const sharding::FullyShardedModel* keep_sharded = nullptr);
  // Under SHARDED_STATE_DICT, the one FULL_SHARD model (and its index among
  // the prepared models) whose checkpoints are written as parts; null
  // otherwise (several FULL_SHARD models: said once, written whole).
  std::pair<sharding::FullyShardedModel*, size_t> ShardedCheckpointModel();
  using DataParallel = accelerator_internal::DataParallel;

  // REQUIRES: `options` resolved (ResolveAcceleratorOptions) and
  // `mixed_precision` its value; `fp8_recipe` set exactly under fp8.
  Accelerator(std::unique_ptr<state::PartialState> state,
              AcceleratorOptions options,
              precision::MixedPrecision mixed_precision,
              std::optional<precision::Fp8Recipe> fp8_recipe);
  DataParallel* Find(const torch::nn::Module& model);
  // The FULL_SHARD engine of a prepared model; null for others.
  sharding::FullyShardedModel* FullyShardedFor(
      const torch::nn::Module& model) const;
  // `status` with the sharding strategy named first.
  absl::Status ShardingError(const absl::Status& status) const;
  AccumulateScope Begin(const std::vector<const torch::nn::Module*>& models,
                        bool force_no_sync);
  void End(AccumulateScope::OpenModels previous);
  // Under fp8: switches the model's Fp8Linear layers that the filter keeps.
  void EnableFp8Layers(torch::nn::Module& model);
  // After an optimizer's synchronized step: once every prepared optimizer
  // has stepped (or skipped), the fp16 iteration ends.
  absl::Status AfterOptimizerStep(const PreparedOptimizer& stepped);
  // `options` with this Accelerator's data configuration.
  data::DataLoaderOptions LoaderOptions(
      const data::DataLoaderOptions& options) const;
  // Prepares one argument of `Prepare` into `out`; `index` names it in
  // errors.
  template <typename T>
  absl::Status PrepareOne(const T& in,
                          std::optional<accelerator_internal::PreparedResult<T>>& out,
                          size_t index);
  // `index`: the argument of `Prepare` it was, named in errors.
  absl::StatusOr<PreparedScheduler*> PrepareSchedulerFor(
      const SchedulerFor& pair, std::optional<size_t> index);
  // Checkpointing: what `random_states_<rank>.pkl` holds for this process
  // (generators, accumulation step, loader positions, accumulated
  // gradients, optimizer counters, fp8 histories), and back from the
  // checkpoint `source` (`report`: its inspection).
  c10::IValue ProcessState() const;
  absl::Status RestoreProcessState(const std::string& source,
                                   const checkpoint::CheckpointReport& report);
  absl::Status RestoreProcessStateUnguarded(
      const std::string& source, const checkpoint::CheckpointReport& report);
  // Checkpointing: the delayed-scaling state of each float8 layer (in the
  // order switched), and back (`source` names the file in errors).
  c10::IValue Fp8ScalesState() const;
  absl::Status RestoreFp8Scales(const c10::IValue& saved,
                                const std::string& source);
  // Updates the fp16 scale for the iteration (nothing if no optimizer was
  // unscaled) and starts the next. REQUIRES: scaler_.
  absl::Status EndScalerIteration();

  std::unique_ptr<state::PartialState> state_;
  AcceleratorOptions options_;  // Resolved.
  GradientState gradients_;
  precision::MixedPrecision precision_;
  std::optional<precision::Fp8Recipe> fp8_recipe_;  // fp8 only.
  // The Fp8Linear layers switched to float8 (detached when we go).
  std::vector<std::weak_ptr<torch::nn::Module>> fp8_layers_;
  std::unique_ptr<precision::GradScaler> scaler_;  // fp16 only.
  // The optimizers that stepped in the current fp16 iteration.
  std::set<const PreparedOptimizer*> stepped_;
  std::map<const torch::nn::Module*, std::unique_ptr<DataParallel>> models_;
  std::vector<std::unique_ptr<PreparedOptimizer>> optimizers_;
  std::vector<std::unique_ptr<PreparedScheduler>> schedulers_;
  // This process's trigger (SetTrigger).
  bool trigger_ = false;
  // Prepared models and loaders in the order prepared (the checkpoint's
  // file numbering; `optimizers_` and `schedulers_` keep theirs).
  std::vector<std::shared_ptr<torch::nn::Module>> model_order_;
  std::vector<std::weak_ptr<data::PreparedDataLoader>> loaders_;
  // Stream loaders, whose positions checkpoints do not hold (a warning).
  std::vector<std::weak_ptr<data::PreparedStreamLoader>> stream_loaders_;
  std::vector<CheckpointObject> custom_objects_;
  std::vector<SaveStateHook> save_hooks_;
  std::vector<LoadStateHook> load_hooks_;
  // The trackers (InitTrackers); null before.
  std::unique_ptr<trackers::Trackers> trackers_;
  // The models whose step is open (in `Accumulate` or `NoSync` scopes), and
  // how many scopes are open.
  AccumulateScope::OpenModels open_;
  int open_scopes_ = 0;
};

template <typename T>
absl::Status Accelerator::PrepareOne(
    const T& in, std::optional<accelerator_internal::PreparedResult<T>>& out,
    size_t index) {
  using accelerator_internal::PrepareKind;
  constexpr PrepareKind kKind =
      accelerator_internal::PrepareTraits<std::decay_t<T>>::kKind;
  if constexpr (kKind == PrepareKind::kModel) {
    auto prepared = PrepareModel(in);
    if (!prepared.ok()) return prepared.status();
    out = in;
  } else if constexpr (kKind == PrepareKind::kModuleHolder) {
    auto prepared = PrepareModel(in.ptr());
    if (!prepared.ok()) return prepared.status();
    out = in;
  } else if constexpr (kKind == PrepareKind::kOptimizer) {
    out = PrepareOptimizer(in);
    if (!(*out)->setup_error().ok()) return (*out)->setup_error();
  } else if constexpr (kKind == PrepareKind::kScheduler) {
    auto prepared = PrepareSchedulerFor({in, nullptr}, index);
    if (!prepared.ok()) return prepared.status();
    out = *prepared;
  } else if constexpr (kKind == PrepareKind::kSchedulerFor) {
    auto prepared = PrepareSchedulerFor(in, index);
    if (!prepared.ok()) return prepared.status();
    out = *prepared;
  } else if constexpr (kKind == PrepareKind::kDataLoader) {
    auto prepared = PrepareDataLoader(in.dataset, in.options);
    if (!prepared.ok()) return prepared.status();
    out = *std::move(prepared);
  } else {
    static_assert(kKind == PrepareKind::kStreamLoader);
    auto prepared = PrepareStreamLoader(in.stream, in.options);
    if (!prepared.ok()) return prepared.status();
    out = *std::move(prepared);
  }
  return absl::OkStatus();
}

template <typename... Args>
absl::StatusOr<std::tuple<accelerator_internal::PreparedResult<Args>...>>
Accelerator::Prepare(const Args&... args) {
  const auto inputs = std::forward_as_tuple(args...);
  std::tuple<std::optional<accelerator_internal::PreparedResult<Args>>...> out;
  absl::Status status;
  // Models first (a sharded model's optimizer steps on its shards),
  // schedulers last (their optimizers prepared), whatever the order of the
  // arguments.
  auto pass = [&]<size_t... I>(std::index_sequence<I...>, int phase) {
    (
        [&] {
          using Arg = std::tuple_element_t<I, std::tuple<Args...>>;
          const int own = accelerator_internal::IsModel<Arg>()       ? 0
                          : accelerator_internal::IsScheduler<Arg>() ? 2
                                                                     : 1;
          if (!status.ok() || own != phase) return;
          status = PrepareOne(std::get<I>(inputs), std::get<I>(out), I);
        }(),
        ...);
  };
  for (int phase = 0; phase < 3; ++phase) {
    pass(std::index_sequence_for<Args...>{}, phase);
  }
  if (!status.ok()) return status;
  return std::apply(
      [](auto&... prepared) { return std::make_tuple(*std::move(prepared)...); },
      out);
}

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_ACCELERATOR_H_
