// A small GPT-2-style decoder generating text from a checkpoint (safetensors
// or pytorch_model.bin) with part of its weights offloaded to disk: Big
// Model Inference end to end.
//
//   bazel-bin/examples/gpt_generate --checkpoint /tmp/gpt --max_memory cpu=20MB
//
// The model is built under InitEmptyWeights (nothing allocated), a device
// map is computed for `--max_memory` (what does not fit goes to "disk"),
// the checkpoint is loaded into it with a progress bar, and greedy
// decoding runs on the unchanged model code. Tensor names and layouts are
// GPT-2's (`wte`, `wpe`, `h.N.attn.c_attn` as Conv1D with [in, out]
// weights, `ln_f`, output tied to `wte`), so any checkpoint of that
// architecture with a `config.json` (n_embd, n_layer, n_head, n_positions,
// vocab_size) loads. When `--checkpoint` holds no model, one is written
// there with seeded random weights (sharded, GPT-2's initialisation).
// Tokens are bytes when the vocabulary has 256 entries.
//
// stdout: the placement, the generated text, and a last JSON line with
// the token ids and timings (read by benchmarks/generation.py).

#include <fcntl.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bigmodel/device.h"
#include "bigmodel/device_map.h"
#include "bigmodel/dispatch.h"
#include "bigmodel/empty_weights.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"
#include "bigmodel/safetensors.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "state/status_macros.h"
#include "trackers/progress_bar.h"

ABSL_FLAG(std::string, checkpoint, "",
          "Folder with config.json and model.safetensors[.index.json] "
          "or pytorch_model.bin[.index.json]; written with random weights "
          "if it holds no model.");
ABSL_FLAG(std::string, max_memory, "cpu=8GB",
          "Memory budget (Accelerate's units); what does not fit is "
          "offloaded to disk.");
ABSL_FLAG(std::string, device_map, "sequential",
          "Placement strategy: sequential, auto, balanced, balanced_low_0.");
ABSL_FLAG(std::string, offload_folder, "",
          "Offload folder (index.json pointing into the checkpoint).");
ABSL_FLAG(bool, prefetch, true,
          "Prepare the next module's disk weights while one runs.");
ABSL_FLAG(double, prefetch_mb, 0,
          "How far ahead to prepare disk weights, in MB (0: the next "
          "module).");
ABSL_FLAG(std::string, prompt, "Once upon a time", "Prompt (bytes).");
ABSL_FLAG(int, max_new_tokens, 24, "Tokens to generate.");
ABSL_FLAG(int64_t, n_embd, 256, "Width of a written model.");
ABSL_FLAG(int64_t, n_layer, 8, "Blocks of a written model.");
ABSL_FLAG(int64_t, n_head, 8, "Attention heads of a written model.");
ABSL_FLAG(int64_t, n_positions, 256, "Context of a written model.");
ABSL_FLAG(uint64_t, seed, 1234, "Seed of a written model's weights.");
ABSL_FLAG(double, init_std, 0.2,
          "Standard deviation of a written model's weights (GPT-2 uses "
          "0.02, which makes an untrained model repeat its last token).");
ABSL_FLAG(bool, progress, true, "Show a progress bar while loading.");
ABSL_FLAG(std::string, device_map_out, "",
          "Also write the device map there, as plan-device-map prints it.");
ABSL_FLAG(bool, cold, false,
          "After each token, give the offloaded weights back and drop the "
          "checkpoint files from the page cache, so that disk weights are "
          "read from the disk for every token (for benchmarks).");

namespace {

namespace bigmodel = accelerate::bigmodel;
namespace trackers = accelerate::trackers;

struct GptConfig {
  int64_t vocab_size = 256;
  int64_t n_embd = 256;
  int64_t n_layer = 8;
  int64_t n_head = 8;
  int64_t n_positions = 256;
};

// GPT-2's Conv1D: a linear layer whose weight is stored [in, out].
struct Conv1DImpl : torch::nn::Module {
  Conv1DImpl(int64_t in, int64_t out) {
    weight = register_parameter("weight", torch::empty({in, out}));
    bias = register_parameter("bias", torch::zeros({out}));
    torch::nn::init::normal_(weight, 0.0, 0.02);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto shape = x.sizes().vec();
    shape.back() = weight.size(1);
    return torch::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(shape);
  }
  torch::Tensor weight, bias;
};
TORCH_MODULE(Conv1D);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const GptConfig& config) : heads(config.n_head) {
    c_attn =
        register_module("c_attn", Conv1D(config.n_embd, 3 * config.n_embd));
    c_proj = register_module("c_proj", Conv1D(config.n_embd, config.n_embd));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t batch = x.size(0), length = x.size(1), width = x.size(2);
    auto qkv = c_attn(x).split(width, -1);
    auto split = [&](const torch::Tensor& t) {
      return t.view({batch, length, heads, width / heads}).transpose(1, 2);
    };
    torch::Tensor q = split(qkv[0]), k = split(qkv[1]), v = split(qkv[2]);
    torch::Tensor scores =
        q.matmul(k.transpose(-2, -1)) / std::sqrt(double(width / heads));
    torch::Tensor causal =
        torch::ones({length, length}, x.options().dtype(torch::kBool)).triu(1);
    scores = scores.masked_fill(causal, -INFINITY).softmax(-1);
    torch::Tensor out =
        scores.matmul(v).transpose(1, 2).reshape({batch, length, width});
    return c_proj(out);
  }
  int64_t heads;
  Conv1D c_attn{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  MlpImpl(const GptConfig& config) {
    c_fc = register_module("c_fc", Conv1D(config.n_embd, 4 * config.n_embd));
    c_proj =
        register_module("c_proj", Conv1D(4 * config.n_embd, config.n_embd));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return c_proj(torch::gelu(c_fc(x), "tanh"));
  }
  Conv1D c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Mlp);

torch::nn::LayerNorm Norm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5));
}

struct BlockImpl : torch::nn::Module {
  BlockImpl(const GptConfig& config) {
    ln_1 = register_module("ln_1", Norm(config.n_embd));
    attn = register_module("attn", Attention(config));
    ln_2 = register_module("ln_2", Norm(config.n_embd));
    mlp = register_module("mlp", Mlp(config));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = x + attn(ln_1(x));
    return x + mlp(ln_2(x));
  }
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl(const GptConfig& config) {
    wte = register_module(
        "wte", torch::nn::Embedding(config.vocab_size, config.n_embd));
    wpe = register_module(
        "wpe", torch::nn::Embedding(config.n_positions, config.n_embd));
    torch::nn::init::normal_(wte->weight, 0.0, 0.02);
    torch::nn::init::normal_(wpe->weight, 0.0, 0.01);
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < config.n_layer; ++i) h->push_back(Block(config));
    ln_f = register_module("ln_f", Norm(config.n_embd));
  }
  // Logits of the next token after each position of `tokens` [B, T].
  torch::Tensor forward(const torch::Tensor& tokens) {
    torch::Tensor positions = torch::arange(tokens.size(1), tokens.options());
    torch::Tensor x = wte(tokens) + wpe(positions);
    for (const auto& block : *h) x = block->as<BlockImpl>()->forward(x);
    return torch::nn::functional::linear(ln_f(x), wte->weight);
  }
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(Gpt);

absl::Status WriteConfig(const std::string& path, const GptConfig& config) {
  std::ofstream out(path);
  out << "{\"model_type\": \"gpt2\", \"vocab_size\": " << config.vocab_size
      << ", \"n_embd\": " << config.n_embd
      << ", \"n_layer\": " << config.n_layer
      << ", \"n_head\": " << config.n_head
      << ", \"n_positions\": " << config.n_positions << "}\n";
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<GptConfig> ReadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no ", path));
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct json;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(text.str(), &json, options)
           .ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  }
  GptConfig config;
  for (auto [key, field] : {std::pair{"vocab_size", &config.vocab_size},
                            {"n_embd", &config.n_embd},
                            {"n_layer", &config.n_layer},
                            {"n_head", &config.n_head},
                            {"n_positions", &config.n_positions}}) {
    auto it = json.fields().find(key);
    if (it == json.fields().end() || !it->second.has_number_value() ||
        it->second.number_value() < 1 ||
        it->second.number_value() != std::floor(it->second.number_value())) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": \"", key, "\" must be a positive integer"));
    }
    *field = static_cast<int64_t>(it->second.number_value());
  }
  if (config.n_embd % config.n_head != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": n_embd ", config.n_embd,
                     " is not a multiple of n_head ", config.n_head));
  }
  return config;
}

bool HasModel(const std::string& dir) {
  for (const char* weights :
       {"model.safetensors", "model.safetensors.index.json",
        "pytorch_model.bin", "pytorch_model.bin.index.json"}) {
    if (std::filesystem::exists(absl::StrCat(dir, "/", weights))) return true;
  }
  return false;
}

// Writes a seeded random model (about 4 shards) and its config.
absl::Status WriteModel(const std::string& dir, const GptConfig& config,
                        uint64_t seed) {
  std::filesystem::create_directories(dir);
  torch::manual_seed(seed);
  Gpt model(config);
  {
    torch::NoGradGuard no_grad;
    const double std = absl::GetFlag(FLAGS_init_std);
    for (auto& item : model->named_parameters()) {
      if (item.value().dim() == 2) item.value().normal_(0.0, std);
    }
  }
  bigmodel::NamedTensors state;
  int64_t bytes = 0;
  for (const auto& item : model->named_parameters()) {
    state.emplace_back(item.key(), item.value().detach());
    bytes += item.value().nbytes();
  }
  // `wte.weight` is registered once: the output layer reuses it.
  ACCELERATE_RETURN_IF_ERROR(bigmodel::SaveShardedSafetensors(
      dir, state, {.max_shard_bytes = static_cast<uint64_t>(bytes / 4 + 1)}));
  return WriteConfig(dir + "/config.json", config);
}

// Asks the kernel to forget the cached pages of the checkpoint's files
// (pages still mapped, such as resident weights in use, stay).
void DropFromPageCache(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// The process's peak resident set so far, in MB.
double PeakRssMb() {
  struct rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

std::string Printable(const std::vector<int64_t>& tokens) {
  std::string text;
  for (int64_t token : tokens) {
    if (token >= 32 && token < 127) {
      text += static_cast<char>(token);
    } else {
      text += absl::StrCat("\\x", absl::Hex(token, absl::kZeroPad2));
    }
  }
  return text;
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_checkpoint);
  if (dir.empty()) {
    return absl::InvalidArgumentError("--checkpoint is required");
  }
  if (!HasModel(dir)) {
    GptConfig config;
    config.n_embd = absl::GetFlag(FLAGS_n_embd);
    config.n_layer = absl::GetFlag(FLAGS_n_layer);
    config.n_head = absl::GetFlag(FLAGS_n_head);
    config.n_positions = absl::GetFlag(FLAGS_n_positions);
    std::cerr << "writing a random model to " << dir << "\n";
    ACCELERATE_RETURN_IF_ERROR(
        WriteModel(dir, config, absl::GetFlag(FLAGS_seed)));
  }
  ACCELERATE_ASSIGN_OR_RETURN(GptConfig config,
                              ReadConfig(dir + "/config.json"));

  // 1. The model, without memory.
  Gpt model{nullptr};
  {
    bigmodel::InitEmptyWeights scope;
    model = Gpt(config);
  }
  // 2. Where each block goes: what does not fit in memory goes to disk.
  ACCELERATE_ASSIGN_OR_RETURN(
      bigmodel::MaxMemory budget,
      bigmodel::ParseMaxMemory(absl::GetFlag(FLAGS_max_memory)));
  if (std::none_of(budget.begin(), budget.end(),
                   [](const auto& entry) { return entry.first.is_disk(); })) {
    budget.emplace_back(bigmodel::Device::Disk(), int64_t{1} << 50);
  }
  const bigmodel::ModuleTree tree = bigmodel::DescribeModule(*model);
  ACCELERATE_ASSIGN_OR_RETURN(
      bigmodel::DeviceMap map,
      bigmodel::PlanDeviceMap(
          tree, {.max_memory = budget, .no_split_module_classes = {"Block"}},
          absl::GetFlag(FLAGS_device_map)));
  if (const std::string out = absl::GetFlag(FLAGS_device_map_out);
      !out.empty()) {
    std::ofstream(out) << bigmodel::DeviceMapToJson(map) << "\n";
  }
  const std::map<std::string, int64_t> sizes =
      bigmodel::ComputeModuleSizes(tree, std::nullopt);
  std::map<bigmodel::Device, std::pair<int, int64_t>> per_device;
  for (const auto& [module, device] : map) {
    per_device[device].first += 1;
    per_device[device].second += sizes.at(module);
  }
  int64_t offloaded_bytes = 0;
  for (const auto& [device, count] : per_device) {
    std::cout << "placed on " << device << ": " << count.first << " module(s), "
              << count.second / 1e6 << " MB\n";
    if (device.is_disk()) offloaded_bytes = count.second;
  }

  // 3. The weights, as placed.
  // Created at the first weight, when the total is known.
  std::optional<trackers::ProgressBar> bar;
  const auto load_start = std::chrono::steady_clock::now();
  ACCELERATE_ASSIGN_OR_RETURN(
      auto dispatched,
      bigmodel::LoadCheckpointAndDispatch(
          *model, dir, map,
          {.offload_folder = absl::GetFlag(FLAGS_offload_folder),
           .prefetch = absl::GetFlag(FLAGS_prefetch),
           .prefetch_bytes =
               static_cast<int64_t>(absl::GetFlag(FLAGS_prefetch_mb) * 1e6),
           .progress = [&](int64_t done, int64_t total) {
             if (!absl::GetFlag(FLAGS_progress)) return;
             if (!bar.has_value()) {
               bar.emplace(total, /*state=*/nullptr,
                           trackers::ProgressBarOptions{.description =
                                                            "weights"});
             }
             bar->Update(done - bar->count());
             if (done == total) bar->Close();
           }}));
  const double load_seconds = std::chrono::duration<double>(
                                  std::chrono::steady_clock::now() - load_start)
                                  .count();

  // 4. Greedy decoding on the unchanged model.
  std::vector<int64_t> tokens;
  for (unsigned char c : absl::GetFlag(FLAGS_prompt)) {
    tokens.push_back(c % config.vocab_size);
  }
  if (tokens.empty()) tokens.push_back(0);
  const size_t prompt_length = tokens.size();
  torch::InferenceMode inference;
  const auto start = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int i = 0; i < absl::GetFlag(FLAGS_max_new_tokens); ++i) {
    const size_t first = tokens.size() > static_cast<size_t>(config.n_positions)
                             ? tokens.size() - config.n_positions
                             : 0;
    torch::Tensor input =
        torch::tensor(
            std::vector<int64_t>(tokens.begin() + first, tokens.end()))
            .unsqueeze(0)
            .to(dispatched->execution_device());
    torch::Tensor logits = model->forward(input);
    tokens.push_back(logits[0][-1].argmax().item<int64_t>());
    if (absl::GetFlag(FLAGS_cold)) {
      dispatched->Release();
      DropFromPageCache(dir);
    }
    checksum = logits[0][-1].to(torch::kDouble).abs().sum().item<double>();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const std::vector<int64_t> generated(tokens.begin() + prompt_length,
                                       tokens.end());
  std::cout << "text: " << Printable(tokens) << "\n";
  const bigmodel::DispatchStats stats = dispatched->stats();
  int64_t total_bytes = 0;
  for (const auto& [device, count] : per_device) total_bytes += count.second;
  std::cout << "{\"tokens\": [" << absl::StrJoin(generated, ", ")
            << "], \"load_seconds\": " << load_seconds
            << ", \"generate_seconds\": " << seconds
            << ", \"tokens_per_second\": " << generated.size() / seconds
            << ", \"offloaded_fraction\": "
            << static_cast<double>(offloaded_bytes) / total_bytes
            << ", \"loads\": " << stats.loads
            << ", \"prefetch_hits\": " << stats.prefetch_hits
            << ", \"last_logits_abs_sum\": "
            << absl::StrFormat("%.17g", checksum)
            << ", \"peak_rss_mb\": " << PeakRssMb() << "}\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  try {
    const absl::Status status = Run();
    if (!status.ok()) {
      std::cerr << "gpt_generate: " << status << "\n";
      return 1;
    }
  } catch (const c10::Error& error) {
    std::cerr << "gpt_generate: " << error.what_without_backtrace() << "\n";
    return 1;
  }
  return 0;
}
