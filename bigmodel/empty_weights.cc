// Empty-weight models: the CPU `empty` kernels diverted to another device
// while a scope is alive, and tensors filled in place (see
// empty_weights.h).

#include "bigmodel/empty_weights.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_native.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/empty_strided_native.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/util/Exception.h>
#include <torch/library.h>
#include <torch/nn/module.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace accelerate::bigmodel {
namespace {

// The device CPU allocations are redirected to on this thread, if any.
thread_local std::optional<c10::Device> t_device;

bool Redirected() { return t_device.has_value() && !t_device->is_cpu(); }

c10::TensorOptions RedirectedOptions(c10::optional<at::ScalarType> dtype,
                                     c10::optional<at::Layout> layout) {
  return c10::TensorOptions()
      .dtype(dtype)
      .layout(layout)
      .device(*t_device)
      .pinned_memory(false);
}

// LibTorch's CPU kernels for `empty.memory_format` and `empty_strided`,
// diverted while a scope is alive. `at::empty` with the target device
// dispatches to that device's kernel, so there is no recursion.
at::Tensor Empty(c10::SymIntArrayRef size, c10::optional<at::ScalarType> dtype,
                 c10::optional<at::Layout> layout,
                 c10::optional<at::Device> device,
                 c10::optional<bool> pin_memory,
                 c10::optional<at::MemoryFormat> memory_format) {
  c10::IntArrayRef sizes = C10_AS_INTARRAYREF_SLOW(size);
  if (Redirected()) {
    return at::empty(sizes, RedirectedOptions(dtype, layout), memory_format);
  }
  return at::native::empty_cpu(sizes, dtype, layout, device, pin_memory,
                               memory_format);
}

at::Tensor EmptyStrided(c10::SymIntArrayRef size, c10::SymIntArrayRef stride,
                        c10::optional<at::ScalarType> dtype,
                        c10::optional<at::Layout> layout,
                        c10::optional<at::Device> device,
                        c10::optional<bool> pin_memory) {
  c10::IntArrayRef sizes = C10_AS_INTARRAYREF_SLOW(size);
  c10::IntArrayRef strides = C10_AS_INTARRAYREF_SLOW(stride);
  if (Redirected()) {
    return at::empty_strided(sizes, strides, RedirectedOptions(dtype, layout));
  }
  return at::native::empty_strided_cpu(sizes, strides, dtype, layout, device,
                                       pin_memory);
}

class SilentWarnings : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

void RegisterOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    SilentWarnings silent;
    c10::WarningUtils::WarningHandlerGuard guard(&silent);
    // Lives as long as the process: the registration ends with it.
    auto* library =
        new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::CPU,
                           __FILE__, __LINE__);
    library->impl("empty.memory_format", TORCH_FN(Empty));
    library->impl("empty_strided", TORCH_FN(EmptyStrided));
  });
}

bool PlainDense(const at::Tensor& tensor) {
  return tensor.defined() && tensor.layout() == c10::kStrided &&
         !tensor.is_quantized() && !tensor.is_mkldnn() && !tensor.is_nested();
}

}  // namespace

InitOnDevice::InitOnDevice(c10::Device device) : previous_(t_device) {
  RegisterOnce();
  t_device = device;
}

InitOnDevice::~InitOnDevice() { t_device = previous_; }

absl::Status ReplaceTensor(const at::Tensor& target, const at::Tensor& value) {
  if (!PlainDense(target) || !PlainDense(value)) {
    return absl::InvalidArgumentError(
        "ReplaceTensor: both tensors must be defined, dense and strided");
  }
  if (target.sizes() != value.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ReplaceTensor: shape [", absl::StrJoin(value.sizes(), ", "),
        "] does not match the tensor's [", absl::StrJoin(target.sizes(), ", "),
        "]"));
  }
  if (target.unsafeGetTensorImpl() == value.unsafeGetTensorImpl()) {
    return absl::OkStatus();
  }
  // What `set_data` does after its same-backend check.
  target.unsafeGetTensorImpl()->shallow_copy_from(value.getIntrusivePtr());
  return absl::OkStatus();
}

std::vector<std::string> MetaTensorNames(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (item.value().is_meta()) names.push_back(item.key());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    if (item.value().is_meta()) names.push_back(item.key());
  }
  return names;
}

}  // namespace accelerate::bigmodel
