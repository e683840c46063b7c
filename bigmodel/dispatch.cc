#include "bigmodel/dispatch.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/TensorImpl.h>
#include <sys/mman.h>
#include <torch/library.h>
#include <torch/nn/module.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bigmodel/empty_weights.h"
#include "bigmodel/offload.h"
#include "bigmodel/safetensors.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {
namespace bigmodel_internal {
namespace {

// Gives the pages wholly inside `alias` (a tensor aliasing a file mapping)
// back to the page cache; the next read maps them again.
void DropPages(const at::Tensor& alias) {
  if (alias.nbytes() == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(alias.data_ptr());
  const uintptr_t first = (begin + page - 1) & ~(page - 1);
  const uintptr_t last = (begin + alias.nbytes()) & ~(page - 1);
  if (last > first) {
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

// Maps the pages of `alias` in (reading them from disk if needed).
void TouchPages(const at::Tensor& alias) {
  const size_t bytes = alias.nbytes();
  if (bytes == 0) return;
  const auto* data = static_cast<const volatile uint8_t*>(alias.data_ptr());
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  uint8_t sink = 0;
  for (size_t offset = 0; offset < bytes; offset += page) sink ^= data[offset];
  sink ^= data[bytes - 1];
  (void)sink;
}

c10::intrusive_ptr<c10::TensorImpl> MakePlaceholder(at::ScalarType dtype,
                                                    c10::IntArrayRef sizes) {
  auto impl = c10::make_intrusive<c10::TensorImpl>(
      c10::DispatchKeySet(
          {c10::DispatchKey::PrivateUse1, c10::DispatchKey::DeferredInit}),
      caffe2::TypeMeta::fromScalarType(dtype),
      c10::Device(c10::kPrivateUse1, 0));
  impl->set_sizes_contiguous(sizes);
  return impl;
}

}  // namespace

// One offloaded weight.
struct Slot {
  std::string name;
  at::Tensor target;  // The model's tensor, whose contents are swapped.
  c10::intrusive_ptr<c10::TensorImpl> placeholder;
  at::Tensor source;  // On the CPU: a mapping alias, or a copy in memory.
  bool mapped = false;
  at::ScalarType dtype = at::kFloat;  // On the execution device.
};

// The offloaded weights of one module, loaded and released together.
struct Unit {
  std::vector<Slot> slots;
  int next = -1;  // The unit loaded after this one last time.
  bool loaded = false;
};

class OffloadEngine;

// Which engine and unit each placeholder belongs to, for the fallback.
struct Registry {
  std::mutex mu;
  std::unordered_map<const c10::TensorImpl*, std::pair<OffloadEngine*, int>>
      owners;
};

Registry& GlobalRegistry() {
  static auto* registry = new Registry;
  return *registry;
}

void Fallback(const c10::OperatorHandle& op, c10::DispatchKeySet,
              torch::jit::Stack* stack);

class OffloadEngine {
 public:
  OffloadEngine(c10::Device device, bool prefetch, int64_t prefetch_bytes)
      : device_(device), prefetch_(prefetch), prefetch_bytes_(prefetch_bytes) {
    static std::once_flag once;
    std::call_once(once, [] {
      // DeferredInit (meant for lazily built tensors, unused by LibTorch
      // itself) comes before autograd and the composite kernels, so every
      // operation given a placeholder lands here first. PrivateUse1 only
      // catches what has lost that key (an error). The libraries live as
      // long as the process, as their registrations.
      for (c10::DispatchKey key :
           {c10::DispatchKey::DeferredInit, c10::DispatchKey::PrivateUse1}) {
        auto* library = new torch::Library(torch::Library::IMPL, "_", key,
                                           __FILE__, __LINE__);
        library->fallback(
            torch::CppFunction::makeFromBoxedFunction<&Fallback>());
      }
    });
  }

  ~OffloadEngine() {
    std::lock_guard<std::mutex> lock(mu_);
    StopWorker();
    {
      Registry& registry = GlobalRegistry();
      std::lock_guard<std::mutex> registry_lock(registry.mu);
      for (const Unit& unit : units_) {
        for (const Slot& slot : unit.slots) {
          registry.owners.erase(slot.target.unsafeGetTensorImpl());
        }
      }
    }
    UnloadAllBut({});
  }

  c10::Device device() const { return device_; }

  // Before Start.
  int UnitFor(const std::string& module) {
    auto [it, inserted] = unit_index_.emplace(module, units_.size());
    if (inserted) units_.emplace_back();
    return it->second;
  }
  // A new slot of `unit`, as (unit, slot) indices for `slot`.
  std::pair<int, int> AddSlot(int unit) {
    units_[unit].slots.emplace_back();
    return {unit, static_cast<int>(units_[unit].slots.size()) - 1};
  }
  Slot& slot(std::pair<int, int> at) {
    return units_[at.first].slots[at.second];
  }

  // Puts the placeholders in the model and makes them known to the
  // fallback; starts the prefetch thread.
  void Start() {
    for (const Unit& unit : units_) {
      int64_t bytes = 0;
      for (const Slot& slot : unit.slots) {
        bytes += slot.source.numel() * c10::elementSize(slot.dtype);
      }
      unit_bytes_.push_back(bytes);
    }
    {
      Registry& registry = GlobalRegistry();
      std::lock_guard<std::mutex> lock(registry.mu);
      for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
        for (Slot& slot : units_[u].slots) {
          slot.target.unsafeGetTensorImpl()->shallow_copy_from(
              slot.placeholder);
          registry.owners[slot.target.unsafeGetTensorImpl()] = {this, u};
        }
      }
    }
    if (prefetch_ && !units_.empty()) worker_ = std::thread([this] { Work(); });
  }

  std::vector<std::string> names() const {
    std::vector<std::string> names;
    for (const Unit& unit : units_) {
      for (const Slot& slot : unit.slots) names.push_back(slot.name);
    }
    return names;
  }

  // Loads `wanted` (the units one operation needs), releases the others,
  // and has the units expected next prepared.
  void Activate(const std::vector<int>& wanted) {
    std::lock_guard<std::mutex> lock(mu_);
    // Release first, so that at most the wanted units and the prepared
    // window are in memory.
    UnloadAllBut(wanted);
    for (int u : wanted) {
      if (units_[u].loaded) continue;
      std::optional<std::vector<at::Tensor>> ready = TakePrepared(u);
      if (ready) {
        ++stats_.prefetch_hits;
      } else {
        ready = Prepare(units_[u]);
      }
      Unit& unit = units_[u];
      for (size_t i = 0; i < unit.slots.size(); ++i) {
        unit.slots[i].target.unsafeGetTensorImpl()->shallow_copy_from(
            (*ready)[i].getIntrusivePtr());
      }
      unit.loaded = true;
      loaded_.push_back(u);
      ++stats_.loads;
      if (last_ >= 0 && last_ != u) units_[last_].next = u;
      last_ = u;
    }
    if (prefetch_ && last_ >= 0) Schedule(last_);
  }

  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    {
      std::unique_lock<std::mutex> prefetch_lock(prefetch_mu_);
      queued_.clear();
      prefetch_cv_.wait(prefetch_lock, [&] { return working_ < 0; });
      for (const auto& [u, ready] : prepared_) Discard(u);
      prepared_.clear();
      failed_.clear();
      window_.clear();
    }
    UnloadAllBut({});
  }

  DispatchStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  // The unit's weights on the execution device. Runs on the prefetch
  // thread too: reads only the slots, immutable after Start.
  std::vector<at::Tensor> Prepare(const Unit& unit) const {
    // The model's tensors take these tensors' keys: they must not be
    // inference tensors, even when the forward runs under InferenceMode.
    c10::InferenceMode normal(/*enabled=*/false);
    std::vector<at::Tensor> ready;
    for (const Slot& slot : unit.slots) {
      if (device_.is_cpu() && slot.source.scalar_type() == slot.dtype) {
        if (slot.mapped) TouchPages(slot.source);
        ready.push_back(slot.source);
      } else {
        ready.push_back(slot.source.to(device_, slot.dtype,
                                       /*non_blocking=*/false, /*copy=*/true));
      }
    }
    return ready;
  }

  void UnloadAllBut(const std::vector<int>& keep) {
    std::vector<int> still;
    for (int u : loaded_) {
      if (std::find(keep.begin(), keep.end(), u) != keep.end()) {
        still.push_back(u);
        continue;
      }
      for (Slot& slot : units_[u].slots) {
        slot.target.unsafeGetTensorImpl()->shallow_copy_from(slot.placeholder);
      }
      Discard(u);
      units_[u].loaded = false;
      ++stats_.releases;
    }
    loaded_ = std::move(still);
  }

  // The unit expected after `u`: the one that followed it last time, else
  // the next registered.
  int NextOf(int u) const {
    if (units_[u].next >= 0) return units_[u].next;
    return u + 1 < static_cast<int>(units_.size()) ? u + 1 : -1;
  }

  // Queues the units expected after `from`, at least one and up to
  // `prefetch_bytes_` of weights; forgets prepared units outside that
  // window, so that memory stays bounded.
  void Schedule(int from) {
    std::vector<int> window;
    std::unordered_set<int> in_window;
    int64_t bytes = 0;
    std::unordered_set<int> seen = {from};
    for (int u = NextOf(from); u >= 0 && seen.insert(u).second; u = NextOf(u)) {
      if (!window.empty() && bytes + unit_bytes_[u] > prefetch_bytes_) break;
      if (!units_[u].loaded) {
        window.push_back(u);
        in_window.insert(u);
        bytes += unit_bytes_[u];
      }
    }
    std::lock_guard<std::mutex> lock(prefetch_mu_);
    for (auto it = prepared_.begin(); it != prepared_.end();) {
      if (in_window.count(it->first)) {
        ++it;
      } else {
        Discard(it->first);
        it = prepared_.erase(it);
      }
    }
    window_ = in_window;
    queued_.erase(std::remove_if(queued_.begin(), queued_.end(),
                                 [&](int u) { return !in_window.count(u); }),
                  queued_.end());
    const std::unordered_set<int> queued(queued_.begin(), queued_.end());
    for (int u : window) {
      if (u != working_ && !prepared_.count(u) && !queued.count(u)) {
        failed_.erase(u);  // A new try.
        queued_.push_back(u);
      }
    }
    prefetch_cv_.notify_all();
  }

  // Unit `u` prepared ahead (waiting if the prefetch thread is on it or
  // about to be), or nothing.
  std::optional<std::vector<at::Tensor>> TakePrepared(int u) {
    std::unique_lock<std::mutex> lock(prefetch_mu_);
    auto queued = std::find(queued_.begin(), queued_.end(), u);
    if (queued != queued_.end() && queued != queued_.begin()) {
      // Behind others: the guess was wrong; prepare it here instead.
      queued_.erase(queued);
      return std::nullopt;
    }
    if (queued == queued_.end() && working_ != u && !prepared_.count(u) &&
        !failed_.count(u)) {
      return std::nullopt;
    }
    window_.insert(u);  // Whatever is under way for `u` is kept for us.
    prefetch_cv_.wait(lock,
                      [&] { return prepared_.count(u) || failed_.count(u); });
    if (!prepared_.count(u)) {
      // Failed (say, memory was short while the previous module was still
      // loaded): prepare it again here, now that it has been released.
      failed_.erase(u);
      return std::nullopt;
    }
    failed_.erase(u);
    std::vector<at::Tensor> ready = std::move(prepared_[u]);
    prepared_.erase(u);
    return ready;
  }

  // Gives back the pages of unit `u`'s file-backed weights, after a release
  // or a prefetch not taken. (Should the unit be in use meanwhile, prepared
  // again on the forward thread, its pages are only read back in: the
  // mapping is private and unwritten.)
  void Discard(int u) const {
    for (const Slot& slot : units_[u].slots) {
      if (slot.mapped) DropPages(slot.source);
    }
  }

  // The prefetch thread.
  void Work() {
    std::unique_lock<std::mutex> lock(prefetch_mu_);
    while (true) {
      prefetch_cv_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
      if (stopping_) return;
      const int u = queued_.front();
      queued_.pop_front();
      working_ = u;
      lock.unlock();
      std::vector<at::Tensor> ready;
      bool failed = false;
      try {
        ready = Prepare(units_[u]);
      } catch (...) {
        failed = true;  // Prepared again on the forward thread when wanted.
      }
      lock.lock();
      working_ = -1;
      if (failed) {
        failed_.insert(u);
      } else {
        failed_.erase(u);
        if (window_.count(u)) {
          prepared_[u] = std::move(ready);
        } else {
          Discard(u);  // Left the window while it was being prepared.
        }
      }
      prefetch_cv_.notify_all();
    }
  }

  void StopWorker() {
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(prefetch_mu_);
      stopping_ = true;
    }
    prefetch_cv_.notify_all();
    worker_.join();
  }

  const c10::Device device_;
  const bool prefetch_;
  const int64_t prefetch_bytes_;
  mutable std::mutex mu_;  // One activation at a time.
  std::vector<Unit> units_;
  std::vector<int64_t> unit_bytes_;
  std::map<std::string, int> unit_index_;
  std::vector<int> loaded_;
  int last_ = -1;
  DispatchStats stats_;

  // Shared with the prefetch thread.
  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<int> queued_;
  int working_ = -1;
  std::map<int, std::vector<at::Tensor>> prepared_;
  std::set<int> failed_;
  std::unordered_set<int> window_;  // What Schedule asked for last.
  bool stopping_ = false;
  std::thread worker_;
};

namespace {

// Every tensor among an operation's arguments (lists included).
void CollectTensors(const c10::IValue& value,
                    std::vector<const c10::TensorImpl*>* found,
                    bool* placeholder) {
  if (value.isTensor()) {
    const at::Tensor& tensor = value.toTensor();
    if (!tensor.defined()) return;
    found->push_back(tensor.unsafeGetTensorImpl());
    if (tensor.device().type() == c10::kPrivateUse1) *placeholder = true;
  } else if (value.isList()) {
    c10::List<c10::IValue> list = value.toList();
    for (size_t i = 0; i < list.size(); ++i) {
      CollectTensors(list.get(i), found, placeholder);
    }
  }
}

}  // namespace

// Runs for every operation given a placeholder: loads the units that own
// them, then runs the operation again on the loaded weights.
void Fallback(const c10::OperatorHandle& op, c10::DispatchKeySet,
              torch::jit::Stack* stack) {
  std::vector<const c10::TensorImpl*> found;
  bool placeholder = false;
  for (const c10::IValue& value :
       torch::jit::last(*stack, op.schema().arguments().size())) {
    CollectTensors(value, &found, &placeholder);
  }
  TORCH_CHECK(placeholder, "accelerate: ", op.schema().operator_name(),
              " asks for device privateuseone, which only holds offloaded "
              "weights");
  // Every offloaded weight the operation uses, loaded or not: those
  // already loaded must stay so while the others come in.
  std::map<OffloadEngine*, std::vector<int>> wanted;
  {
    Registry& registry = GlobalRegistry();
    std::lock_guard<std::mutex> lock(registry.mu);
    for (const c10::TensorImpl* impl : found) {
      auto it = registry.owners.find(impl);
      if (it == registry.owners.end()) {
        TORCH_CHECK(impl->device_type() != c10::kPrivateUse1,
                    "accelerate: ", op.schema().operator_name(),
                    " was given an offloaded weight that no DispatchedModel "
                    "holds (its DispatchedModel is gone, or this is a "
                    ".data()/.detach() copy taken before the weight was "
                    "loaded)");
        continue;
      }
      std::vector<int>& units = wanted[it->second.first];
      if (std::find(units.begin(), units.end(), it->second.second) ==
          units.end()) {
        units.push_back(it->second.second);
      }
    }
  }
  for (const auto& [engine, units] : wanted) engine->Activate(units);
  op.callBoxed(stack);
}

}  // namespace bigmodel_internal

namespace {

using bigmodel_internal::OffloadEngine;
using bigmodel_internal::Slot;

enum class Kind { kCpu, kDisk, kGpu };

struct Placement {
  Kind kind = Kind::kCpu;
  int gpu = 0;
};

absl::StatusOr<Placement> ParsePlacement(const std::string& module,
                                         const std::string& device) {
  if (device == "cpu") return Placement{Kind::kCpu, 0};
  if (device == "disk") return Placement{Kind::kDisk, 0};
  int index = 0;
  if (!device.empty() &&
      std::all_of(device.begin(), device.end(),
                  [](char c) { return c >= '0' && c <= '9'; }) &&
      absl::SimpleAtoi(device, &index)) {
    return Placement{Kind::kGpu, index};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device map: \"", module, "\" -> \"", device,
                   "\" is not \"cpu\", \"disk\" or a GPU index"));
}

// The placement of the longest entry that names `tensor` or a module
// holding it.
const Placement* Cover(const std::map<std::string, Placement>& map,
                       const std::string& tensor) {
  std::string prefix = tensor;
  while (true) {
    auto it = map.find(prefix);
    if (it != map.end()) return &it->second;
    if (prefix.empty()) return nullptr;
    const size_t dot = prefix.rfind('.');
    prefix = dot == std::string::npos ? "" : prefix.substr(0, dot);
  }
}

std::string ModuleOf(const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  return dot == std::string::npos ? "" : tensor.substr(0, dot);
}

std::string Shape(c10::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

// A model tensor, once per TensorImpl (tied weights share one).
struct Wanted {
  std::string name;
  std::vector<std::string> aliases;  // Other names of the same tensor.
  at::Tensor tensor;
  bool buffer = false;
};

std::vector<Wanted> ModelTensors(const torch::nn::Module& model) {
  std::vector<Wanted> tensors;
  std::unordered_map<const c10::TensorImpl*, size_t> seen;
  auto add = [&](const std::string& name, const at::Tensor& tensor,
                 bool buffer) {
    if (!tensor.defined()) return;
    auto [it, inserted] =
        seen.emplace(tensor.unsafeGetTensorImpl(), tensors.size());
    if (inserted) {
      tensors.push_back(Wanted{name, {}, tensor, buffer});
    } else {
      tensors[it->second].aliases.push_back(name);
    }
  };
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    add(item.key(), item.value(), false);
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    add(item.key(), item.value(), true);
  }
  return tensors;
}

absl::Status Converted(const std::exception& error, const std::string& name) {
  return state::StatusFromException(absl::StrCat("loading \"", name, "\""),
                                    error);
}

}  // namespace

DispatchedModel::DispatchedModel() = default;
DispatchedModel::~DispatchedModel() = default;

c10::Device DispatchedModel::execution_device() const {
  return engine_->device();
}

std::vector<std::string> DispatchedModel::offloaded() const {
  return engine_->names();
}

void DispatchedModel::Release() { engine_->Release(); }

DispatchStats DispatchedModel::stats() const { return engine_->stats(); }

absl::StatusOr<std::unique_ptr<DispatchedModel>> LoadCheckpointAndDispatch(
    torch::nn::Module& model, const std::string& checkpoint,
    const std::vector<std::pair<std::string, std::string>>& device_map,
    const DispatchOptions& options) {
  std::map<std::string, Placement> map;
  std::set<int> gpus;
  for (const auto& [module, device] : device_map) {
    ACCELERATE_ASSIGN_OR_RETURN(Placement placement,
                                ParsePlacement(module, device));
    if (placement.kind == Kind::kGpu) gpus.insert(placement.gpu);
    map[module] = placement;
  }
  if (gpus.size() > 1) {
    // Accelerate moves activations between GPUs with forward hooks, which
    // LibTorch modules lack.
    return absl::InvalidArgumentError(absl::StrCat(
        "the device map uses GPUs ", absl::StrJoin(gpus, ", "),
        ": running a model across several GPUs is not supported; use one "
        "GPU with \"cpu\" and \"disk\""));
  }
  if (!gpus.empty() && !at::hasCUDA()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the device map places weights on GPU ", *gpus.begin(),
                     " but this LibTorch has no CUDA device"));
  }
  const c10::Device execution =
      gpus.empty() ? c10::Device(c10::kCPU)
                   : c10::Device(c10::kCUDA,
                                 static_cast<c10::DeviceIndex>(*gpus.begin()));
  // Loaded weights are ordinary tensors even if the caller is in
  // InferenceMode.
  c10::InferenceMode normal(/*enabled=*/false);

  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<ShardedCheckpoint> stored,
                              ShardedCheckpoint::Open(checkpoint));
  ACCELERATE_ASSIGN_OR_RETURN(const std::vector<TensorEntry> entries,
                              stored->Entries());
  std::map<std::string, const TensorEntry*> stored_entries;
  for (const TensorEntry& entry : entries) stored_entries[entry.name] = &entry;

  // Match every model tensor with a stored one (by header: nothing is read
  // yet), a placement and a dtype first, so that a bad checkpoint or map
  // changes nothing.
  std::vector<Wanted> tensors = ModelTensors(model);
  std::vector<std::string> sources(tensors.size());
  std::vector<Placement> placements(tensors.size());
  std::vector<at::ScalarType> dtypes(tensors.size());
  std::vector<std::string> missing;
  std::set<std::string> used;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Wanted& wanted = tensors[i];
    const Placement* placement = Cover(map, wanted.name);
    if (placement == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the device map has no entry for \"", wanted.name,
                       "\" or any module holding it"));
    }
    placements[i] = *placement;
    if (stored_entries.count(wanted.name)) {
      sources[i] = wanted.name;
    } else {
      for (const std::string& alias : wanted.aliases) {
        if (stored_entries.count(alias)) {
          sources[i] = alias;
          break;
        }
      }
    }
    if (sources[i].empty()) {
      missing.push_back(wanted.name);
      continue;
    }
    used.insert(sources[i]);
    used.insert(wanted.name);
    used.insert(wanted.aliases.begin(), wanted.aliases.end());
    const TensorEntry& entry = *stored_entries.at(sources[i]);
    if (c10::IntArrayRef(entry.shape) != wanted.tensor.sizes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", sources[i], "\" is ", Shape(entry.shape), " in ",
                       checkpoint, " but the model's \"", wanted.name, "\" is ",
                       Shape(wanted.tensor.sizes())));
    }
    ACCELERATE_ASSIGN_OR_RETURN(const at::ScalarType stored_type,
                                SafetensorsScalarType(entry));
    dtypes[i] = options.dtype && at::isFloatingType(stored_type)
                    ? *options.dtype
                    : stored_type;
    if (placement->kind == Kind::kDisk && dtypes[i] != stored_type &&
        options.offload_folder.empty() &&
        !(wanted.buffer && !options.offload_buffers)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", wanted.name, "\" goes to disk as ", c10::toString(dtypes[i]),
          " (stored as ", c10::toString(stored_type),
          "): converting it needs an offload_folder"));
    }
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 10);
    return absl::NotFoundError(absl::StrCat(
        checkpoint, " lacks ", missing.size(), " weight(s) of the model: ",
        absl::StrJoin(missing.begin(), missing.begin() + shown, ", "),
        missing.size() > shown ? ", ..." : ""));
  }

  auto dispatched = std::unique_ptr<DispatchedModel>(new DispatchedModel());
  for (const TensorEntry& entry : entries) {
    if (!used.count(entry.name)) {
      dispatched->unexpected_keys_.push_back(entry.name);
    }
  }
  std::unique_ptr<OffloadEngine> engine;
  try {
    engine = std::make_unique<OffloadEngine>(execution, options.prefetch,
                                             options.prefetch_bytes);
  } catch (const std::exception& error) {
    return state::StatusFromException("setting up offloaded execution", error);
  }
  // Disk weights to record as pointers into the checkpoint, per file.
  std::map<std::string, std::vector<std::string>> pointers;
  // Converted disk weights, written to the folder in batches.
  NamedTensors converted;
  int64_t converted_bytes = 0;
  // Disk slots read back through the offload folder, with their names.
  std::vector<std::pair<std::pair<int, int>, std::string>> from_folder;

  // From here on an error (a file that cannot be written, memory) may leave
  // part of the model placed.
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Wanted& wanted = tensors[i];
    const std::string& source_name = sources[i];
    const at::ScalarType dtype = dtypes[i];
    const Placement& placement = placements[i];
    ACCELERATE_ASSIGN_OR_RETURN(auto loaded, stored->Load({source_name}));
    const at::Tensor stored_tensor = loaded.at(source_name);
    loaded.clear();
    // Zero-copy over the file, unless the bytes could not be aliased.
    const bool mapped = AliasesMapping(stored_tensor);
    const bool offloaded =
        (placement.kind == Kind::kDisk ||
         (placement.kind == Kind::kCpu && !execution.is_cpu())) &&
        !(wanted.buffer && !options.offload_buffers);
    try {
      if (!offloaded) {
        // GPU weights on their GPU, CPU weights on the CPU when the model
        // runs there, kept buffers of offloaded modules where it runs.
        const c10::Device device =
            placement.kind == Kind::kGpu
                ? c10::Device(c10::kCUDA,
                              static_cast<c10::DeviceIndex>(placement.gpu))
            : placement.kind == Kind::kCpu && execution.is_cpu()
                ? c10::Device(c10::kCPU)
                : execution;
        at::Tensor value = stored_tensor;
        if (dtype != stored_tensor.scalar_type() || !device.is_cpu() ||
            (mapped && !options.zero_copy)) {
          value = stored_tensor.to(device, dtype, /*non_blocking=*/false,
                                   /*copy=*/true);
          if (mapped) bigmodel_internal::DropPages(stored_tensor);
        }
        ACCELERATE_RETURN_IF_ERROR(ReplaceTensor(wanted.tensor, value));
      } else {
        const std::pair<int, int> where =
            engine->AddSlot(engine->UnitFor(ModuleOf(wanted.name)));
        Slot& slot = engine->slot(where);
        slot.name = wanted.name;
        slot.target = wanted.tensor;
        slot.dtype = dtype;
        slot.placeholder =
            bigmodel_internal::MakePlaceholder(dtype, stored_tensor.sizes());
        if (placement.kind == Kind::kCpu) {
          // Offloaded to memory: kept on the CPU, copied on use.
          slot.source =
              stored_tensor.to(c10::kCPU, dtype, /*non_blocking=*/false,
                               /*copy=*/mapped);
          if (mapped) bigmodel_internal::DropPages(stored_tensor);
        } else if (dtype == stored_tensor.scalar_type() && mapped) {
          slot.source = stored_tensor;
          slot.mapped = true;
          if (!options.offload_folder.empty()) {
            ACCELERATE_ASSIGN_OR_RETURN(std::string file,
                                        stored->FileOf(source_name));
            pointers[absl::StrCat(stored->dir(), "/", file)].push_back(
                source_name);
            from_folder.emplace_back(where, source_name);
          }
        } else if (options.offload_folder.empty()) {
          // Bytes the file could not lend (unaligned): a copy in memory.
          slot.source = stored_tensor;
        } else {
          converted.emplace_back(source_name, stored_tensor.to(dtype));
          converted_bytes += converted.back().second.nbytes();
          if (mapped) bigmodel_internal::DropPages(stored_tensor);
          from_folder.emplace_back(where, source_name);
        }
      }
    } catch (const std::exception& error) {
      return Converted(error, wanted.name);
    }
    // One index rewrite per 64 MB of converted weights, not per tensor.
    if (converted_bytes >= (64 << 20)) {
      ACCELERATE_RETURN_IF_ERROR(
          OffloadTensors(options.offload_folder, converted));
      converted.clear();
      converted_bytes = 0;
    }
    if (options.progress) {
      options.progress(static_cast<int64_t>(i + 1),
                       static_cast<int64_t>(tensors.size()));
    }
  }
  if (!converted.empty()) {
    ACCELERATE_RETURN_IF_ERROR(
        OffloadTensors(options.offload_folder, converted));
  }

  if (!from_folder.empty()) {
    for (const auto& [file, names] : pointers) {
      ACCELERATE_RETURN_IF_ERROR(
          OffloadPointers(options.offload_folder, file, names));
    }
    ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<OffloadedWeights> weights,
                                OffloadedWeights::Open(options.offload_folder));
    for (const auto& [where, name] : from_folder) {
      Slot& slot = engine->slot(where);
      ACCELERATE_ASSIGN_OR_RETURN(slot.source, weights->Get(name));
      slot.mapped = AliasesMapping(slot.source);
    }
  }
  engine->Start();
  dispatched->engine_ = std::move(engine);
  return dispatched;
}

}  // namespace accelerate::bigmodel
