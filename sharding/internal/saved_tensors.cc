// Pack and unpack hooks for autograd's saved tensors (see saved_tensors.h).

#include "sharding/internal/saved_tensors.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/saved_variable_hooks.h>

#include "sharding/internal/activation_checkpoint.h"

namespace accelerate::sharding_internal {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<const c10::StorageImpl*, std::pair<StorageOwner*, int>>
      storages;
  std::atomic<int64_t> count{0};
};

Registry& GlobalRegistry() {
  static auto* registry = new Registry;
  return *registry;
}

class StorageHooks final : public torch::autograd::SavedVariableHooks {
 public:
  void call_pack_hook(const at::Tensor& tensor) override {
    // A checkpointed unit's replay collects what it saves.
    if (CaptureReplayed(tensor)) return;
    if (tensor.defined() && tensor.has_storage()) {
      Registry& registry = GlobalRegistry();
      std::lock_guard<std::mutex> lock(registry.mu);
      auto it =
          registry.storages.find(tensor.storage().unsafeGetStorageImpl());
      if (it != registry.storages.end()) {
        owner_ = it->second.first;
        tag_ = it->second.second;
        sizes_ = tensor.sizes().vec();
        strides_ = tensor.strides().vec();
        offset_ = tensor.storage_offset();
        dtype_ = tensor.scalar_type();
      }
    }
    // In a checkpointed unit's forward: numbered, and (unless packed as a
    // view above) kept by the unit until its forward ends.
    region_ = PackIntoRegion(tensor, owner_ != nullptr, &index_);
    if (owner_ == nullptr && region_ == nullptr) kept_ = tensor;
  }

  at::Tensor call_unpack_hook() override {
    if (region_ != nullptr && owner_ == nullptr) {
      return UnpackFromRegion(*region_, index_);
    }
    if (owner_ == nullptr) return kept_;
    at::Tensor base = owner_->Storage(tag_);
    TORCH_CHECK(base.scalar_type() == dtype_,
                "accelerate: a saved view of a sharded unit changed dtype");
    return base.as_strided(sizes_, strides_, offset_);
  }

 private:
  at::Tensor kept_;
  StorageOwner* owner_ = nullptr;
  int tag_ = 0;
  std::vector<int64_t> sizes_;
  std::vector<int64_t> strides_;
  int64_t offset_ = 0;
  at::ScalarType dtype_ = at::kFloat;
  std::shared_ptr<Region> region_;
  int64_t index_ = 0;
};

// The default engine, with the hooks while any storage is registered.
class HookingEngine final : public torch::autograd::Engine {
 public:
  std::unique_ptr<torch::autograd::SavedVariableHooks>
  get_default_saved_variable_hooks() override {
    if (GlobalRegistry().count.load(std::memory_order_relaxed) == 0 &&
        !CheckpointHooksWanted()) {
      return nullptr;
    }
    return std::make_unique<StorageHooks>();
  }

  // A backward ends the forward being recorded on this thread.
  torch::autograd::variable_list execute(
      const torch::autograd::edge_list& roots,
      const torch::autograd::variable_list& inputs, bool keep_graph,
      bool create_graph, bool accumulate_grad,
      const torch::autograd::edge_list& outputs) override {
    BackwardScope backward;
    return Engine::execute(roots, inputs, keep_graph, create_graph,
                           accumulate_grad, outputs);
  }
};

torch::autograd::Engine& GetHookingEngine() {
  // Lives as long as the process, as the engine it replaces.
  static auto* engine = new HookingEngine;
  return *engine;
}

}  // namespace

void InstallSavedTensorHooksOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    torch::autograd::set_default_engine_stub(&GetHookingEngine);
  });
}

void RegisterStorage(const c10::StorageImpl* storage, StorageOwner* owner,
                     int tag) {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  if (registry.storages.insert_or_assign(storage, std::make_pair(owner, tag))
          .second) {
    registry.count.fetch_add(1);
  }
}

void ForgetStorage(const c10::StorageImpl* storage) {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  if (registry.storages.erase(storage) > 0) registry.count.fetch_sub(1);
}

}  // namespace accelerate::sharding_internal
