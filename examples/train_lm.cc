// A small GPT-style causal language model trained on real text with the
// Accelerator: byte tokens, padded variable-length batches as named tensors,
// gradient accumulation, a learning-rate warm-up, gradient clipping, and
// evaluation perplexity gathered from every process.
//
//   accelerate launch --cpu --num_processes 2 bazel-bin/examples/train_lm
//
// (`--gradient_accumulation_steps N` of `accelerate launch` sets N.)
//
// Data: each line of `--text` (default examples/data/licenses.txt, the GPL-3,
// GPL-2 and LGPL-2.1 texts) with its trailing blanks removed is a sample of
// bytes, cut to `--max_length`; lines under 2 bytes are skipped. Every 10th
// line goes to evaluation, the rest to training. Batches are
// {input_ids, labels, attention_mask}: padded on the right to the longest
// line of the batch, input_ids with 0 (masked), labels with -100 (ignored).
//
// Loss, and why 2 processes x batch B equal 1 process x batch 2B: the loss
// of a global batch is the sum of the next-token cross entropies over all
// its real tokens divided by their number. Each process all-reduces its
// token count first, then backpropagates
//   num_processes * (its own token sum) / (global token count);
// the Accelerator averages gradients over processes, which gives the
// gradient of (global sum) / (global count), the loss of one process that
// holds the whole global batch. A per-process token mean would weigh the
// processes' tokens unequally whenever their padding differs. Padding does
// not change the real tokens' logits: it is on the right, and attention is
// causal and masks padded keys. The learning-rate schedule counts optimizer
// steps (see WarmupLinearDecay), so it is the same for both too. With
// gradient accumulation each micro-batch is normalised by its own global
// count and the micro-batches are averaged (as Transformers' Trainer did).
//
// The main process prints `step N loss L lr X` every `--log_every` optimizer
// steps, the evaluation perplexity after each epoch (and after training when
// `--max_steps` stops it mid-epoch), then one JSON line with the results.
//
// Checkpoints, with Accelerate's example flags: `--checkpointing_steps N`
// (every N optimizer steps, as `step_<n>`) or `epoch` (as `epoch_<e>`),
// under `--output_dir`; `--resume_from_checkpoint <folder>` or `latest`
// picks up there (mid-epoch too) and the run ends with the same results as
// one that never stopped (all but the timings). `--stop_after_steps N` ends
// the run after N optimizer steps, as an interruption would.
//
// Tracking, with Accelerate's example flags: `--with_tracking` logs the
// loss and learning rate every optimizer step and the evaluation
// perplexity every epoch to the trackers `--report_to` names
// (`tensorboard`, `mlflow`, `jsonl`, `csv`, `all`), under `--project_dir`
// (`<project_dir>/train_lm/`).

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "accelerator/accelerator.h"
#include "data/batch.h"
#include "data/collate.h"
#include "data/data_loader.h"
#include "examples/checkpointing_flags.h"
#include "examples/tracking_flags.h"
#include "precision/fp8_linear.h"
#include "state/status_macros.h"

ABSL_FLAG(std::string, text, "",
          "Corpus, one sample per line (default: the shipped "
          "examples/data/licenses.txt).");
ABSL_FLAG(int, epochs, 8, "Passes over the training lines.");
ABSL_FLAG(int64_t, max_steps, -1,
          "Stop after this many optimizer steps (-1: no bound).");
ABSL_FLAG(int64_t, batch_size, 16, "Training lines per batch per process.");
ABSL_FLAG(int64_t, eval_batch_size, 32, "Evaluation lines per batch.");
ABSL_FLAG(double, lr, 3e-3, "Peak AdamW learning rate.");
ABSL_FLAG(int64_t, warmup_steps, 20,
          "Optimizer steps of linear warm-up (0: none); then linear decay "
          "to 0.");
ABSL_FLAG(int64_t, max_length, 64, "Bytes per line kept (and context).");
ABSL_FLAG(int64_t, n_layer, 2, "Transformer blocks.");
ABSL_FLAG(int64_t, n_embd, 64, "Width.");
ABSL_FLAG(int64_t, n_head, 4, "Attention heads.");
ABSL_FLAG(uint64_t, seed, 42, "Seed of the initial weights and the order.");
ABSL_FLAG(int64_t, log_every, 10, "Print the loss every this many steps.");
ABSL_FLAG(std::string, checkpointing_steps, "",
          "Save a checkpoint every this many optimizer steps, or \"epoch\".");
ABSL_FLAG(std::string, output_dir, "", "Where checkpoints go.");
ABSL_FLAG(std::string, resume_from_checkpoint, "",
          "A checkpoint folder to resume from, or \"latest\".");
ABSL_FLAG(bool, with_tracking, false,
          "Log the loss, learning rate and perplexity to --report_to.");
ABSL_FLAG(std::string, report_to, "all",
          "Trackers: tensorboard, mlflow, jsonl, csv, all (or several, "
          "comma-separated).");
ABSL_FLAG(std::string, project_dir, "logs", "Where the trackers' logs go.");
ABSL_FLAG(int64_t, stop_after_steps, -1,
          "End after this many optimizer steps (an interruption, to resume).");

namespace {

using accelerate::data::Batch;
// torch::nn::Linear's drop-in that computes in float8 under
// `--mixed_precision fp8` (and as torch::nn::Linear otherwise).
using Linear = accelerate::precision::Fp8Linear;

constexpr int64_t kVocab = 256;  // Bytes; padding is masked, not a token.
constexpr int64_t kIgnore = -100;

struct GptConfig {
  int64_t n_layer, n_embd, n_head, n_positions;
};

torch::nn::LayerNorm Norm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}));
}

Linear MakeLinear(int64_t in, int64_t out, double std) {
  Linear linear(torch::nn::LinearOptions(in, out));
  torch::nn::init::normal_(linear->weight, 0.0, std);
  torch::nn::init::zeros_(linear->bias);
  return linear;
}

// Causal self-attention; `mask` [B, 1, T, T] is true where a query may look.
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const GptConfig& c, double proj_std) : heads(c.n_head) {
    qkv = register_module("qkv", MakeLinear(c.n_embd, 3 * c.n_embd, 0.02));
    proj = register_module("proj", MakeLinear(c.n_embd, c.n_embd, proj_std));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask) {
    const int64_t b = x.size(0), t = x.size(1), width = x.size(2);
    auto parts = qkv(x).split(width, -1);
    auto heads_of = [&](const torch::Tensor& y) {
      return y.view({b, t, heads, width / heads}).transpose(1, 2);
    };
    torch::Tensor y = at::scaled_dot_product_attention(
        heads_of(parts[0]), heads_of(parts[1]), heads_of(parts[2]), mask);
    return proj(y.transpose(1, 2).reshape({b, t, width}));
  }
  int64_t heads;
  Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(const GptConfig& c) {
    // GPT-2's initialisation: residual projections scaled by depth.
    const double proj_std = 0.02 / std::sqrt(2.0 * c.n_layer);
    ln_1 = register_module("ln_1", Norm(c.n_embd));
    attn = register_module("attn", Attention(c, proj_std));
    ln_2 = register_module("ln_2", Norm(c.n_embd));
    fc = register_module("fc", MakeLinear(c.n_embd, 4 * c.n_embd, 0.02));
    fc_proj = register_module("fc_proj",
                              MakeLinear(4 * c.n_embd, c.n_embd, proj_std));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask) {
    x = x + attn(ln_1(x), mask);
    return x + fc_proj(torch::gelu(fc(ln_2(x)), "tanh"));
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  Linear fc{nullptr}, fc_proj{nullptr};
};
TORCH_MODULE(Block);

// Token and position embeddings, blocks, a final LayerNorm, and the output
// layer tied to the token embedding.
struct GptImpl : torch::nn::Module {
  explicit GptImpl(const GptConfig& c) {
    wte = register_module("wte", torch::nn::Embedding(kVocab, c.n_embd));
    wpe = register_module("wpe", torch::nn::Embedding(c.n_positions, c.n_embd));
    torch::nn::init::normal_(wte->weight, 0.0, 0.02);
    torch::nn::init::normal_(wpe->weight, 0.0, 0.02);
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(Block(c));
    ln_f = register_module("ln_f", Norm(c.n_embd));
  }
  // Next-token logits [B, T, 256] for `input_ids` [B, T]; positions where
  // `attention_mask` is 0 are never attended to.
  torch::Tensor forward(const torch::Tensor& input_ids,
                        const torch::Tensor& attention_mask) {
    const int64_t b = input_ids.size(0), t = input_ids.size(1);
    const torch::Tensor causal =
        torch::ones({t, t}, input_ids.options().dtype(torch::kBool)).tril();
    const torch::Tensor mask =
        causal.view({1, 1, t, t}) &
        attention_mask.to(torch::kBool).view({b, 1, 1, t});
    torch::Tensor x =
        wte(input_ids) + wpe(torch::arange(t, input_ids.options()));
    for (const auto& block : *h) x = block->as<BlockImpl>()->forward(x, mask);
    return torch::nn::functional::linear(ln_f(x), wte->weight);
  }
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(Gpt);

// Linear warm-up over `warmup` optimizer steps (the first step at
// lr / warmup), then linear decay to 0 at `total_steps`. The Accelerator
// steps a prepared scheduler `ticks_per_step` (= number of processes) times
// per optimizer step, so that schedules written in one process's batches
// keep their length in samples; this one counts optimizer steps (global
// batches) instead, so 1 x 2B and 2 x B runs share it.
class WarmupLinearDecay : public torch::optim::LRScheduler {
 public:
  WarmupLinearDecay(torch::optim::Optimizer& optimizer, double base_lr,
                    int64_t warmup, int64_t ticks_per_step)
      : LRScheduler(optimizer),
        base_lr_(base_lr),
        warmup_(warmup),
        ticks_(ticks_per_step) {
    for (auto& group : optimizer.param_groups())
      group.options().set_lr(LrAt(0));
  }
  // Known once the loader is prepared. REQUIRES: before the first step.
  void set_total_steps(int64_t total) { total_ = total; }
  double LrAt(int64_t step) const {
    if (step < warmup_) return base_lr_ * (step + 1) / warmup_;
    if (total_ <= warmup_) return base_lr_;
    return base_lr_ * std::max(0.0, double(total_ - step) / (total_ - warmup_));
  }

 private:
  std::vector<double> get_lrs() override {
    // LibTorch asks before counting the tick it is making.
    const double lr = LrAt((step_count_ + 1) / ticks_);
    return std::vector<double>(get_current_lrs().size(), lr);
  }
  double base_lr_;
  int64_t warmup_, ticks_, total_ = 0;
};

// The shipped corpus: beside the binary among its runfiles, or under the
// workspace when run from there.
std::string DefaultText() {
  const std::string relative = "examples/data/licenses.txt";
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::string beside =
        exe.string() + ".runfiles/accelerate_cpp/" + relative;
    if (std::filesystem::exists(beside)) return beside;
  }
  return relative;
}

absl::Status ValidateFlags() {
  const struct {
    const char* name;
    int64_t value, minimum;
  } minimums[] = {
      {"batch_size", absl::GetFlag(FLAGS_batch_size), 1},
      {"eval_batch_size", absl::GetFlag(FLAGS_eval_batch_size), 1},
      {"epochs", absl::GetFlag(FLAGS_epochs), 1},
      {"warmup_steps", absl::GetFlag(FLAGS_warmup_steps), 0},
      {"log_every", absl::GetFlag(FLAGS_log_every), 1},
      {"n_layer", absl::GetFlag(FLAGS_n_layer), 1},
      {"max_length", absl::GetFlag(FLAGS_max_length), 2},  // A token, a next.
  };
  for (const auto& flag : minimums) {
    if (flag.value < flag.minimum) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag.name, ": ", flag.value, " is below ", flag.minimum));
    }
  }
  const int64_t max_steps = absl::GetFlag(FLAGS_max_steps);
  if (max_steps == 0 || max_steps < -1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_steps: ", max_steps, " is neither -1 (no bound) nor positive"));
  }
  const int64_t n_embd = absl::GetFlag(FLAGS_n_embd);
  const int64_t n_head = absl::GetFlag(FLAGS_n_head);
  if (n_head < 1 || n_embd < 1 || n_embd % n_head != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--n_embd ", n_embd,
                     " must be a positive multiple of --n_head ", n_head));
  }
  return absl::OkStatus();
}

// The samples of `path`: train lines and eval lines (every 10th).
absl::StatusOr<std::pair<std::vector<std::string>, std::vector<std::string>>>
ReadSplit(const std::string& path, int64_t max_length) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("--text: cannot read \"", path, "\""));
  }
  std::pair<std::vector<std::string>, std::vector<std::string>> split;
  std::string line;
  int64_t kept = 0;
  while (std::getline(in, line)) {
    line.erase(line.find_last_not_of(" \t\r") + 1);  // npos + 1 == 0.
    if (line.size() < 2) continue;
    if (static_cast<int64_t>(line.size()) > max_length) line.resize(max_length);
    (kept++ % 10 == 9 ? split.second : split.first).push_back(line);
  }
  if (split.second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--text: \"", path, "\" has ", kept,
                     " lines of 2 bytes or more; at least 10 are needed"));
  }
  return split;
}

std::shared_ptr<accelerate::data::CollatedDataset<std::string>> Lines(
    std::vector<std::string> lines) {
  auto shared =
      std::make_shared<const std::vector<std::string>>(std::move(lines));
  return std::make_shared<accelerate::data::CollatedDataset<std::string>>(
      shared->size(), [shared](int64_t i) { return (*shared)[i]; },
      [](std::vector<std::string> samples) -> absl::StatusOr<Batch> {
        std::vector<Batch> rows;
        for (const std::string& s : samples) {
          std::vector<int64_t> bytes;
          for (unsigned char c : s) bytes.push_back(c);
          const at::Tensor ids = torch::tensor(bytes, torch::kLong);
          rows.push_back(Batch::Named({{"input_ids", ids}, {"labels", ids}}));
        }
        return accelerate::data::PadAndStack(
            rows, {.pad_values = {{"labels", kIgnore}},
                   .attention_mask = "attention_mask"});
      });
}

// The next-token NLL at each position [B, T - 1]; 0 where the label is
// ignored.
torch::Tensor TokenNll(const torch::Tensor& logits,
                       const torch::Tensor& labels) {
  const torch::Tensor targets = labels.slice(1, 1);
  return torch::nn::functional::cross_entropy(
             logits.slice(1, 0, -1).reshape({-1, kVocab}), targets.reshape(-1),
             torch::nn::functional::CrossEntropyFuncOptions()
                 .ignore_index(kIgnore)
                 .reduction(torch::kNone))
      .view(targets.sizes());
}

// exp(mean NLL) over every eval token, each counted once: per-sample sums
// and counts are gathered together, without even_batches' duplicates.
absl::StatusOr<double> Perplexity(
    accelerate::Accelerator& acc, Gpt& model,
    accelerate::data::PreparedDataLoader& loader) {
  torch::NoGradGuard no_grad;
  model->eval();
  double nll = 0, tokens = 0;
  while (true) {
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<Batch> batch, loader.Next());
    if (!batch) break;
    const torch::Tensor& labels = batch->tensor("labels");
    const torch::Tensor logits = acc.Forward(model, batch->tensor("input_ids"),
                                             batch->tensor("attention_mask"));
    ACCELERATE_ASSIGN_OR_RETURN(
        Batch all,
        acc.GatherForMetrics(Batch::Named(
            {{"nll", TokenNll(logits, labels).to(torch::kDouble).sum(1)},
             {"tokens", labels.slice(1, 1).ne(kIgnore).sum(1)}})));
    nll += all.tensor("nll").sum().item<double>();
    tokens += all.tensor("tokens").sum().item<double>();
  }
  model->train();
  return std::exp(nll / tokens);
}

// Where the loop stands, saved with each checkpoint (at optimizer steps,
// where no process holds a partial loss): the step, the tokens and seconds
// counted, every step's loss, the last perplexity.
struct Progress {
  int64_t step = 0;
  double tokens = 0, seconds = 0, perplexity = NAN;
  std::vector<double> losses;
  bool evaluated = false;
  c10::IValue state_dict() const {
    c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
    state.insert("step", step);
    state.insert("tokens", tokens);
    state.insert("seconds", seconds);
    state.insert("perplexity", perplexity);
    state.insert("losses", c10::List<double>(losses));
    state.insert("evaluated", evaluated);
    return state;
  }
  absl::Status load_state_dict(const c10::IValue& value) {
    if (!value.isGenericDict()) {
      return absl::InvalidArgumentError("progress: not a dict");
    }
    auto state = value.toGenericDict();
    step = state.at("step").toInt();
    tokens = state.at("tokens").toDouble();
    seconds = state.at("seconds").toDouble();
    perplexity = state.at("perplexity").toDouble();
    losses.clear();
    for (const c10::IValue& loss : state.at("losses").toListRef()) {
      losses.push_back(loss.toDouble());
    }
    evaluated = state.at("evaluated").toBool();
    return absl::OkStatus();
  }
};

absl::Status Run() {
  ACCELERATE_RETURN_IF_ERROR(ValidateFlags());
  ACCELERATE_ASSIGN_OR_RETURN(
      const accelerate::examples::CheckpointingSteps checkpointing,
      accelerate::examples::ParseCheckpointingSteps(
          absl::GetFlag(FLAGS_checkpointing_steps)));
  const std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  const int64_t max_length = absl::GetFlag(FLAGS_max_length);
  std::string text = absl::GetFlag(FLAGS_text);
  if (text.empty()) text = DefaultText();
  ACCELERATE_ASSIGN_OR_RETURN(auto split, ReadSplit(text, max_length));

  accelerate::AcceleratorOptions options;
  ACCELERATE_RETURN_IF_ERROR(accelerate::examples::ApplyTrackingFlags(
      {.with_tracking = absl::GetFlag(FLAGS_with_tracking),
       .report_to = absl::GetFlag(FLAGS_report_to),
       .project_dir = absl::GetFlag(FLAGS_project_dir)},
      options));
  ACCELERATE_ASSIGN_OR_RETURN(auto created,
                              accelerate::Accelerator::Create(options));
  accelerate::Accelerator& acc = *created;
  const int processes = acc.State().num_processes();
  if (absl::GetFlag(FLAGS_with_tracking)) {
    ACCELERATE_RETURN_IF_ERROR(acc.InitTrackers(
        "train_lm", {{"lr", absl::GetFlag(FLAGS_lr)},
                     {"epochs", absl::GetFlag(FLAGS_epochs)},
                     {"batch_size", absl::GetFlag(FLAGS_batch_size)},
                     {"warmup_steps", absl::GetFlag(FLAGS_warmup_steps)},
                     {"n_layer", absl::GetFlag(FLAGS_n_layer)},
                     {"n_embd", absl::GetFlag(FLAGS_n_embd)},
                     {"num_processes", processes},
                     {"mixed_precision", acc.mixed_precision()}}));
  }

  torch::manual_seed(absl::GetFlag(FLAGS_seed));  // Rank 0's weights win.
  Gpt model(GptConfig{absl::GetFlag(FLAGS_n_layer), absl::GetFlag(FLAGS_n_embd),
                      absl::GetFlag(FLAGS_n_head), max_length});
  auto optimizer = std::make_shared<torch::optim::AdamW>(
      model->parameters(),
      torch::optim::AdamWOptions(absl::GetFlag(FLAGS_lr)).weight_decay(0.01));
  auto schedule = std::make_shared<WarmupLinearDecay>(
      *optimizer, absl::GetFlag(FLAGS_lr), absl::GetFlag(FLAGS_warmup_steps),
      processes);
  accelerate::data::DataLoaderOptions train_options;
  train_options.batch_size = absl::GetFlag(FLAGS_batch_size);
  train_options.shuffle = true;
  train_options.seed = absl::GetFlag(FLAGS_seed);
  accelerate::data::DataLoaderOptions eval_options;
  eval_options.batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  const int64_t eval_lines = split.second.size();
  ACCELERATE_ASSIGN_OR_RETURN(
      auto prepared,
      acc.Prepare(model, optimizer,
                  accelerate::DataLoaderSpec{Lines(std::move(split.first)),
                                             train_options},
                  accelerate::DataLoaderSpec{Lines(std::move(split.second)),
                                             eval_options},
                  schedule));
  auto& [module, opt, train, eval, sched] = prepared;

  const int64_t accumulation = acc.gradient_accumulation_steps();
  const int64_t steps_per_epoch =
      (train->size() + accumulation - 1) / accumulation;
  int64_t total = absl::GetFlag(FLAGS_epochs) * steps_per_epoch;
  if (absl::GetFlag(FLAGS_max_steps) > 0) {
    total = std::min(total, absl::GetFlag(FLAGS_max_steps));
  }
  schedule->set_total_steps(total);
  acc.Print("train_lm: ", processes, " processes, ", train->size(),
            " batches per epoch per process, accumulation ", accumulation, ", ",
            total, " optimizer steps, ", eval_lines, " eval lines");

  auto progress = std::make_shared<Progress>();
  acc.RegisterForCheckpointing(progress);
  auto save = [&](const std::string& name) {
    return acc.SaveState((std::filesystem::path(output_dir) / name).string())
        .status();
  };
  if (!absl::GetFlag(FLAGS_resume_from_checkpoint).empty()) {
    ACCELERATE_ASSIGN_OR_RETURN(
        const std::string folder,
        accelerate::examples::ResolveResumeFolder(
            absl::GetFlag(FLAGS_resume_from_checkpoint), output_dir));
    ACCELERATE_RETURN_IF_ERROR(
        acc.LoadState(folder, {.progress_bar = true}).status());
    acc.Print("resumed from ", folder, " at step ", progress->step);
  }
  int64_t& step = progress->step;
  double& tokens = progress->tokens;
  double& seconds = progress->seconds;
  double& perplexity = progress->perplexity;
  std::vector<double>& losses = progress->losses;  // Each step's global loss.
  bool& evaluated = progress->evaluated;
  double micro_loss = 0;  // This process's share of the step's loss.
  int64_t micro_batches = 0;
  // A resumed loader stands in the epoch it was saved in.
  for (int epoch = static_cast<int>(train->epoch());
       epoch < absl::GetFlag(FLAGS_epochs) && step < total; ++epoch) {
    train->SetEpoch(epoch);
    auto start = std::chrono::steady_clock::now();
    bool epoch_done = false;
    while (step < total) {
      ACCELERATE_ASSIGN_OR_RETURN(std::optional<Batch> batch, train->Next());
      if (!batch) {
        epoch_done = true;
        break;
      }
      const torch::Tensor& labels = batch->tensor("labels");
      const torch::Tensor& mask = batch->tensor("attention_mask");
      const torch::Tensor targets = labels.slice(1, 1);
      // [real target tokens, real input tokens], summed over processes.
      ACCELERATE_ASSIGN_OR_RETURN(
          const torch::Tensor counts,
          acc.Reduce(torch::stack({targets.ne(kIgnore).sum(), mask.sum()})
                         .to(torch::kDouble)));
      const double global_targets = counts[0].item<double>();
      tokens += counts[1].item<double>();

      auto scope = acc.Accumulate(*module);
      ACCELERATE_RETURN_IF_ERROR(scope.status());
      const torch::Tensor logits =
          acc.Forward(model, batch->tensor("input_ids"), mask);
      const torch::Tensor token_sum = TokenNll(logits, labels).sum();
      ACCELERATE_RETURN_IF_ERROR(
          acc.Backward(token_sum * (processes / global_targets)));
      micro_loss += token_sum.item<double>() / global_targets;
      ++micro_batches;
      const bool sync = acc.sync_gradients();
      if (sync)
        ACCELERATE_RETURN_IF_ERROR(acc.ClipGradNorm(*module, 1.0).status());
      const double lr = optimizer->param_groups()[0].options().get_lr();
      ACCELERATE_RETURN_IF_ERROR(opt->step());
      sched->step();
      opt->zero_grad();
      if (!sync) continue;

      ++step;
      ACCELERATE_ASSIGN_OR_RETURN(
          const torch::Tensor summed,
          acc.Reduce(torch::tensor(micro_loss, torch::kDouble)));
      losses.push_back(summed.item<double>() / micro_batches);
      micro_loss = 0;
      micro_batches = 0;
      ACCELERATE_RETURN_IF_ERROR(
          acc.Log({{"train_loss", losses.back()}, {"lr", lr}}, step));
      if (step == 1 || step % absl::GetFlag(FLAGS_log_every) == 0) {
        acc.Print(absl::StrFormat("step %d loss %.4f lr %.6g", step,
                                  losses.back(), lr));
      }
      if (checkpointing.every > 0 && step % checkpointing.every == 0) {
        seconds += std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
        start = std::chrono::steady_clock::now();
        ACCELERATE_RETURN_IF_ERROR(save(absl::StrCat("step_", step)));
      }
      if (step == absl::GetFlag(FLAGS_stop_after_steps)) {
        acc.Print("stopping after step ", step);
        return acc.EndTraining();
      }
    }
    seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    // (Once `Next` has said so, the loader is at the next epoch's start.)
    evaluated = epoch_done || train->end_of_epoch();
    if (evaluated) {
      ACCELERATE_ASSIGN_OR_RETURN(perplexity, Perplexity(acc, model, *eval));
      acc.Print(absl::StrFormat("epoch %d: eval perplexity %.4f", epoch + 1,
                                perplexity));
      ACCELERATE_RETURN_IF_ERROR(acc.Log(
          {{"eval_perplexity", perplexity}, {"epoch", epoch + 1}}, step));
    }
    if (checkpointing.each_epoch && evaluated) {
      ACCELERATE_RETURN_IF_ERROR(save(absl::StrCat("epoch_", epoch)));
    }
  }
  if (!evaluated) {
    ACCELERATE_ASSIGN_OR_RETURN(perplexity, Perplexity(acc, model, *eval));
    acc.Print(absl::StrFormat("after %d steps: eval perplexity %.4f", step,
                              perplexity));
    ACCELERATE_RETURN_IF_ERROR(
        acc.Log({{"eval_perplexity", perplexity}}, step));
  }

  // The training loss: the mean over the last `--log_every` steps.
  const size_t window =
      std::min<size_t>(losses.size(), absl::GetFlag(FLAGS_log_every));
  double train_loss = 0;
  for (size_t i = losses.size() - window; i < losses.size(); ++i) {
    train_loss += losses[i] / window;
  }
  std::vector<std::string> first;
  for (size_t i = 0; i < std::min<size_t>(5, losses.size()); ++i) {
    first.push_back(absl::StrFormat("%.9g", losses[i]));
  }
  if (acc.IsMainProcess()) {
    absl::PrintF(
        "{\"train_loss\": %.9g, \"eval_perplexity\": %.9g, \"steps\": %d, "
        "\"tokens_per_second\": %.1f, \"train_seconds\": %.3f, "
        "\"num_processes\": %d, \"gradient_accumulation_steps\": %d, "
        "\"mixed_precision\": \"%s\", \"intra_op_threads\": %d, "
        "\"first_losses\": [%s], \"sharding\": \"%s\", "
        "\"state_bytes_per_rank\": %d, \"recomputed_units\": %d}\n",
        train_loss, perplexity, step, tokens / seconds, seconds, processes,
        accumulation, acc.mixed_precision(), at::get_num_threads(),
        absl::StrJoin(first, ", "), acc.sharding_strategy(),
        acc.StateBytesPerProcess().total(), acc.RecomputedUnits());
    std::fflush(stdout);
  }
  return acc.EndTraining();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status;
  try {
    status = Run();
  } catch (const std::exception& e) {  // LibTorch's c10::Error, say.
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    std::cerr << "train_lm: " << status << "\n";
    return 1;
  }
  return 0;
}
