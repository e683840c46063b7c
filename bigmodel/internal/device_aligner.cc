// The device aligner's marks, registry and dispatcher fallback (see
// device_aligner.h).

#include "bigmodel/internal/device_aligner.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/DispatchKey.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/TensorImpl.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace accelerate::bigmodel_internal {
namespace {

// A key LibTorch never registers, above autograd (so that autograd records
// the moves) and above DeferredInit (so that placeholders are seen before
// the offload engine loads them).
constexpr c10::DispatchKey kAlignKey =
    c10::DispatchKey::TESTING_ONLY_GenericWrapper;

struct Registry {
  std::mutex mu;
  std::unordered_map<const c10::TensorImpl*, c10::Device> devices;
  std::atomic<int> aligners{0};
  std::atomic<int64_t> aligned{0};
};

Registry& GlobalRegistry() {
  static auto* registry = new Registry();
  return *registry;
}

// The device of the last weight an operation used on this thread.
thread_local std::optional<c10::Device> tls_current;

// Operations that take tensors on different devices on purpose, or whose
// arguments must stay what they are (copies, `set_`, CPU-side lengths).
bool TakesMixedDevices(const c10::OperatorName& name) {
  static const auto* kNames = new std::unordered_set<std::string>{
      "aten::copy_",       "aten::_copy_from", "aten::_copy_from_and_resize",
      "aten::_to_copy",    "aten::to",         "aten::set_",
      "aten::_pack_padded_sequence",           "aten::tensor_split",
      "aten::ctc_loss",    "aten::_ctc_loss",  "aten::_local_scalar_dense"};
  return kNames->count(name.name) > 0;
}

void Redispatch(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard unaligned(kAlignKey);
  op.callBoxed(stack);
}

// Tensors that may sit anywhere: CPU scalars, placeholders.
bool AnyDevice(const at::Tensor& tensor) {
  return (tensor.dim() == 0 && tensor.is_cpu()) ||
         tensor.device().type() == c10::kPrivateUse1;
}

template <typename Fn>
void ForEachTensor(const c10::IValue& value, Fn&& fn) {
  if (value.isTensor()) {
    fn(value.toTensor());
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) {
      if (element.isTensor()) fn(element.toTensor());
    }
  }
}

// `value` with its tensors moved to `target`.
c10::IValue MovedTo(const c10::IValue& value, c10::Device target) {
  const auto move = [&](const at::Tensor& tensor) {
    if (!tensor.defined() || AnyDevice(tensor) || tensor.device() == target) {
      return tensor;
    }
    return tensor.to(target);
  };
  if (value.isTensor()) return move(value.toTensor());
  if (value.isTensorList()) {
    c10::List<at::Tensor> moved;
    for (const at::Tensor& tensor : value.toTensorVector()) {
      moved.push_back(move(tensor));
    }
    return moved;
  }
  if (value.isList()) {
    c10::impl::GenericList moved(value.toList().elementType());
    for (const c10::IValue& element : value.toListRef()) {
      moved.push_back(element.isTensor() ? c10::IValue(move(element.toTensor()))
                                         : element);
    }
    return moved;
  }
  return value;
}

// Every operation given a marked weight, and every operation of a thread
// that has used one, comes here first.
void AlignFallback(const c10::OperatorHandle& op, c10::DispatchKeySet,
                   torch::jit::Stack* stack) {
  Registry& registry = GlobalRegistry();
  if (registry.aligners.load() == 0) {
    // The models are gone: this thread stops aligning.
    tls_current.reset();
    c10::impl::tls_set_dispatch_key_included(kAlignKey, false);
    Redispatch(op, stack);
    return;
  }
  // (Checked each time: InferenceMode and other guards restore the
  // thread's keys when they end.)
  if (!c10::impl::tls_is_dispatch_key_included(kAlignKey)) {
    c10::impl::tls_set_dispatch_key_included(kAlignKey, true);
  }
  if (TakesMixedDevices(op.operator_name())) {
    Redispatch(op, stack);
    return;
  }
  const std::vector<c10::Argument>& formals = op.schema().arguments();
  const size_t count = formals.size();
  const size_t base = stack->size() - count;
  std::optional<c10::Device> written, weight, first;
  bool mixed = false;
  bool written_mixed = false;
  {
    std::lock_guard<std::mutex> lock(registry.mu);
    for (size_t i = 0; i < count; ++i) {
      const c10::AliasInfo* alias = formals[i].alias_info();
      const bool writes = alias != nullptr && alias->isWrite();
      ForEachTensor((*stack)[base + i], [&](const at::Tensor& tensor) {
        if (!tensor.defined()) return;
        if (!weight) {
          auto it = registry.devices.find(tensor.unsafeGetTensorImpl());
          if (it != registry.devices.end()) weight = it->second;
        }
        if (AnyDevice(tensor)) return;
        if (writes) {
          if (!written) {
            written = tensor.device();
          } else if (*written != tensor.device()) {
            written_mixed = true;
          }
        }
        if (!first) {
          first = tensor.device();
        } else if (*first != tensor.device()) {
          mixed = true;
        }
      });
    }
  }
  if (weight) tls_current = weight;
  const std::optional<c10::Device> target =
      written ? written : weight ? weight : tls_current;
  // Written tensors on several devices: nothing can serve them all; the
  // operation says so itself.
  const bool move =
      target && !written_mixed &&
      (mixed || (weight && first && *first != *weight && !written));
  if (move) {
    c10::impl::ExcludeDispatchKeyGuard unaligned(kAlignKey);
    for (size_t i = 0; i < count; ++i) {
      // What the operation writes or returns a view of stays itself: a
      // copy would take the write, or the view, away from the caller.
      if (formals[i].alias_info() != nullptr) continue;
      (*stack)[base + i] = MovedTo((*stack)[base + i], *target);
    }
    registry.aligned.fetch_add(1);
  }
  Redispatch(op, stack);
}

void InstallFallbackOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Lives as long as the process, as its registration.
    auto* library = new torch::Library(torch::Library::IMPL, "_", kAlignKey,
                                       __FILE__, __LINE__);
    library->fallback(
        torch::CppFunction::makeFromBoxedFunction<&AlignFallback>());
  });
}

// Gives `tensor` (in place, keeping its autograd state and version) the
// same contents with the key added or removed.
void SetMarked(const at::Tensor& tensor, bool marked) {
  c10::InferenceMode normal(/*enabled=*/false);
  c10::TensorImpl* impl = tensor.unsafeGetTensorImpl();
  const c10::DispatchKeySet keys = marked
                                       ? impl->key_set().add(kAlignKey)
                                       : impl->key_set().remove(kAlignKey);
  auto copy = c10::make_intrusive<c10::TensorImpl>(
      c10::Storage(impl->storage()), keys, impl->dtype());
  copy->set_sizes_and_strides(impl->sizes(), impl->strides(),
                              impl->storage_offset());
  impl->shallow_copy_from(copy);
}

}  // namespace

DeviceAligner::DeviceAligner(std::vector<Weight> weights)
    : weights_(std::move(weights)) {
  InstallFallbackOnce();
  Registry& registry = GlobalRegistry();
  {
    std::lock_guard<std::mutex> lock(registry.mu);
    for (const Weight& weight : weights_) {
      registry.devices.insert_or_assign(weight.tensor.unsafeGetTensorImpl(),
                                        weight.device);
    }
  }
  for (const Weight& weight : weights_) {
    if (weight.mark) SetMarked(weight.tensor, true);
  }
  registry.aligners.fetch_add(1);
}

DeviceAligner::~DeviceAligner() {
  Registry& registry = GlobalRegistry();
  for (const Weight& weight : weights_) {
    if (weight.mark) SetMarked(weight.tensor, false);
  }
  std::lock_guard<std::mutex> lock(registry.mu);
  for (const Weight& weight : weights_) {
    registry.devices.erase(weight.tensor.unsafeGetTensorImpl());
  }
  registry.aligners.fetch_sub(1);
}

int64_t DeviceAligner::aligned_operations() {
  return GlobalRegistry().aligned.load();
}

}  // namespace accelerate::bigmodel_internal
