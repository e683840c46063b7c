// The placeholder tensors and the dispatcher fallback that has their owners
// materialize them (see placeholder.h).

#include "state/placeholder.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace accelerate::state {
namespace {

// Which owner and tag each placeholder belongs to, for the fallback.
struct Registry {
  std::mutex mu;
  std::unordered_map<const c10::TensorImpl*, std::pair<PlaceholderOwner*, int>>
      owners;
};

Registry& GlobalRegistry() {
  static auto* registry = new Registry;
  return *registry;
}

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

// Runs for every operation given a placeholder: has the owners materialize
// them, then runs the operation again on the real contents.
void Fallback(const c10::OperatorHandle& op, c10::DispatchKeySet,
              torch::jit::Stack* stack) {
  std::vector<const c10::TensorImpl*> found;
  bool placeholder = false;
  for (const c10::IValue& value :
       torch::jit::last(*stack, op.schema().arguments().size())) {
    CollectTensors(value, &found, &placeholder);
  }
  TORCH_CHECK(placeholder, "accelerate: ", op.schema().operator_name(),
              " asks for device privateuseone, which only holds placeholders "
              "(offloaded weights, sharded parameters)");
  // Every registered tensor the operation uses, materialized or not: those
  // already real must stay so while the others come in.
  std::map<PlaceholderOwner*, std::vector<int>> wanted;
  {
    Registry& registry = GlobalRegistry();
    std::lock_guard<std::mutex> lock(registry.mu);
    for (const c10::TensorImpl* impl : found) {
      auto it = registry.owners.find(impl);
      if (it == registry.owners.end()) {
        TORCH_CHECK(impl->device_type() != c10::kPrivateUse1,
                    "accelerate: ", op.schema().operator_name(),
                    " was given a placeholder whose owner is gone (an "
                    "offloaded weight of a released DispatchedModel, a "
                    "parameter of a released sharded model), or a "
                    ".data()/.detach() copy taken while it was a placeholder");
        continue;
      }
      std::vector<int>& units = wanted[it->second.first];
      if (std::find(units.begin(), units.end(), it->second.second) ==
          units.end()) {
        units.push_back(it->second.second);
      }
    }
  }
  for (const auto& [owner, tags] : wanted) owner->Materialize(tags);
  op.callBoxed(stack);
}

}  // namespace

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

void InstallPlaceholderFallbackOnce() {
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
      library->fallback(torch::CppFunction::makeFromBoxedFunction<&Fallback>());
    }
  });
}

void RegisterPlaceholderOwner(const c10::TensorImpl* target,
                              PlaceholderOwner* owner, int tag) {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  registry.owners[target] = {owner, tag};
}

void ForgetPlaceholderOwner(const c10::TensorImpl* target) {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  registry.owners.erase(target);
}

}  // namespace accelerate::state
