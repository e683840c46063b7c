// Recording units' forwards and replaying them in backward (see
// activation_checkpoint.h).

#include "sharding/internal/activation_checkpoint.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/library.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "state/logging.h"

namespace accelerate::sharding_internal {
namespace {

// Above autograd and autocast; no kernel or fallback of LibTorch's own.
constexpr c10::DispatchKey kRecordKey =
    c10::DispatchKey::TESTING_ONLY_GenericMode;

struct ParamInfo {
  const void* owner = nullptr;
  int unit = 0;
  bool checkpointed = false;
  std::string label;
  c10::Device device = c10::Device(c10::kCPU);
  std::shared_ptr<CheckpointCounters> counters;
};

struct Registry {
  std::mutex mu;
  std::unordered_map<const c10::TensorImpl*, ParamInfo> params;
  std::atomic<int64_t> checkpointed{0};  // params of checkpointed units
  std::unordered_set<std::string> warned;  // units said not replayable
};

Registry& GlobalRegistry() {
  static auto* registry = new Registry;
  return *registry;
}

}  // namespace

// Which operation of the tape made a tensor: its output `output`
// (flattened over tensor lists).
struct Source {
  int64_t op = 0;
  int64_t output = 0;
};

// One argument of a recorded operation: as given, except that tensors
// made inside the unit are left out (undefined) and named by `internal`
// (position in a list, or -1 for the argument itself).
struct Argument {
  c10::IValue value;
  std::vector<std::pair<int64_t, Source>> internal;
};

struct Step {
  c10::OperatorHandle op;
  std::vector<Argument> arguments;
};

struct AutocastState {
  c10::DeviceType device_type;
  bool enabled;
  at::ScalarType dtype;
};

class Region {
 public:
  explicit Region(const ParamInfo& unit)
      : owner(unit.owner),
        unit(unit.unit),
        label(unit.label),
        device(unit.device),
        counters(unit.counters) {}

  const void* const owner;
  const int unit;
  const std::string label;
  const c10::Device device;
  const std::shared_ptr<CheckpointCounters> counters;

  std::mutex mu;
  std::vector<Step> steps;
  // Tensors read from outside, with their versions then.
  std::vector<std::pair<at::Tensor, int64_t>> externals;
  // While recording: the tensors the tape made.
  std::unordered_map<const c10::TensorImpl*,
                     std::pair<c10::weak_intrusive_ptr<c10::TensorImpl>,
                               Source>>
      made;
  at::Tensor cpu_rng;
  at::Tensor device_rng;  // of `device`, when not the CPU
  std::vector<AutocastState> autocast;
  // The saved tensors, in order: kept until the forward ends (`held`),
  // then replayed (`recomputed`), each handed out once.
  int64_t packs = 0;
  std::vector<at::Tensor> held;
  std::vector<bool> owned;
  bool released = false;
  std::vector<at::Tensor> recomputed;
  // Why it cannot be replayed; empty when it can.
  std::string unreplayable;
};

namespace {

struct ThreadRecorder {
  bool on = false;
  std::shared_ptr<Region> region;  // the unit whose forward runs
  Region* replaying = nullptr;
};

thread_local ThreadRecorder tls_recorder;

template <typename F>
void ForEachTensor(const c10::IValue& value, F&& f) {
  if (value.isTensor()) {
    f(value.toTensor());
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorList()) f(t);
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toList()) {
      if (element.isTensor()) f(element.toTensor());
    }
  }
}

void RunUnrecorded(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard unrecorded(kRecordKey);
  op.callBoxed(stack);
}

at::Tensor RngState(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void SetRngState(at::Generator generator, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

at::Generator DeviceGenerator(c10::Device device) {
  return at::globalContext().defaultGenerator(
      c10::Device(device.type(), device.has_index() ? device.index() : 0));
}

std::vector<AutocastState> CurrentAutocast(c10::Device device) {
  std::vector<AutocastState> states;
  for (c10::DeviceType type : {c10::kCPU, device.type()}) {
    if (!states.empty() && type == c10::kCPU) continue;
    states.push_back({type, at::autocast::is_autocast_enabled(type),
                      at::autocast::get_autocast_dtype(type)});
  }
  return states;
}

void SetAutocast(const std::vector<AutocastState>& states) {
  for (const AutocastState& s : states) {
    at::autocast::set_autocast_enabled(s.device_type, s.enabled);
    at::autocast::set_autocast_dtype(s.device_type, s.dtype);
  }
}

void Open(ThreadRecorder& t, const ParamInfo& unit) {
  auto region = std::make_shared<Region>(unit);
  region->cpu_rng = RngState(at::detail::getDefaultCPUGenerator());
  if (!region->device.is_cpu() && region->device.type() != c10::kMeta) {
    region->device_rng = RngState(DeviceGenerator(region->device));
  }
  region->autocast = CurrentAutocast(region->device);
  t.region = std::move(region);
}

void Close(ThreadRecorder& t) {
  std::shared_ptr<Region> region = std::move(t.region);
  t.region.reset();
  if (region == nullptr) return;
  std::lock_guard<std::mutex> lock(region->mu);
  region->made.clear();
  if (region->unreplayable.empty()) {
    // What backward needs comes back from the tape.
    region->held.clear();
    region->held.shrink_to_fit();
    region->released = true;
    ++region->counters->checkpointed;
    return;
  }
  ++region->counters->kept;
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> registry_lock(registry.mu);
  if (registry.warned.insert(region->label).second) {
    ACCELERATE_LOG(WARNING)
        << "activation checkpointing: unit " << region->label
        << " keeps its activations (its forward cannot be replayed: "
        << region->unreplayable << ")";
  }
}

std::optional<Source> MadeInside(const Region& region, const at::Tensor& t) {
  if (!t.defined()) return std::nullopt;
  auto it = region.made.find(t.unsafeGetTensorImpl());
  if (it == region.made.end()) return std::nullopt;
  return it->second.second;
}

// `list` with the tensors made inside the unit left out (an undefined
// tensor, or None) and named in `argument`; the others are outside tensors.
template <typename Element>
c10::List<Element> CaptureList(Region& region, const c10::List<Element>& list,
                               Argument& argument) {
  c10::List<Element> copy = list.copy();
  for (size_t i = 0; i < list.size(); ++i) {
    const c10::IValue element(list.get(i));
    if (!element.isTensor()) continue;
    const at::Tensor& t = element.toTensor();
    if (std::optional<Source> source = MadeInside(region, t)) {
      copy.set(i, Element());
      argument.internal.emplace_back(static_cast<int64_t>(i), *source);
    } else if (t.defined()) {
      region.externals.emplace_back(t, t._version());
    }
  }
  return copy;
}

Argument Capture(Region& region, const c10::IValue& value) {
  Argument argument;
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    if (std::optional<Source> source = MadeInside(region, t)) {
      argument.value = at::Tensor();
      argument.internal.emplace_back(-1, *source);
    } else {
      argument.value = value;
      if (t.defined()) region.externals.emplace_back(t, t._version());
    }
  } else if (value.isTensorList()) {
    argument.value = CaptureList(region, value.toTensorList(), argument);
  } else if (value.isList()) {
    argument.value = CaptureList(region, value.toList(), argument);
  } else {
    argument.value = value;
  }
  return argument;
}

// Why replaying `op` with these arguments would not give the forward's
// results, or leave things as the forward did; empty when it would.
std::string Unreplayable(const Region& region, const c10::OperatorHandle& op,
                         c10::ArrayRef<c10::IValue> arguments) {
  const c10::FunctionSchema& schema = op.schema();
  const std::string name = schema.operator_name().name;
  if (absl::StartsWith(name, "c10d::")) {
    return absl::StrCat(name, " is a collective");
  }
  bool training = false;
  bool running_stats = false;
  for (size_t i = 0; i < arguments.size(); ++i) {
    const c10::Argument& formal = schema.arguments()[i];
    const c10::AliasInfo* alias = formal.alias_info();
    if (alias != nullptr && alias->isWrite()) {
      bool outside = false;
      ForEachTensor(arguments[i], [&](const at::Tensor& t) {
        if (t.defined() && !MadeInside(region, t).has_value()) outside = true;
      });
      if (outside) {
        return absl::StrCat(name, " writes in place into a tensor from "
                                  "outside the unit");
      }
    }
    if ((formal.name() == "training" || formal.name() == "use_input_stats") &&
        arguments[i].isBool() && arguments[i].toBool()) {
      training = true;
    }
    if (formal.name() == "running_mean" && arguments[i].isTensor() &&
        arguments[i].toTensor().defined()) {
      running_stats = true;
    }
  }
  if (training && running_stats) {
    return absl::StrCat(name, " updates running statistics");
  }
  return "";
}

// Every operation of the recording thread comes here first.
void RecordFallback(const c10::OperatorHandle& op, c10::DispatchKeySet,
                    torch::jit::Stack* stack) {
  ThreadRecorder& t = tls_recorder;
  const size_t count = op.schema().arguments().size();
  if (GlobalRegistry().checkpointed.load() == 0) {
    // The models that asked for it are gone: this thread stops recording.
    Close(t);
    t.on = false;
    c10::impl::tls_set_dispatch_key_included(kRecordKey, false);
  }
  if (!t.on || !c10::GradMode::is_enabled() ||
      c10::InferenceMode::is_enabled()) {
    RunUnrecorded(op, stack);
    return;
  }
  c10::ArrayRef<c10::IValue> arguments = torch::jit::last(*stack, count);
  // Whose parameters it is given: a unit's forward starts or ends here.
  std::optional<ParamInfo> unit;
  bool several = false;
  {
    Registry& registry = GlobalRegistry();
    std::lock_guard<std::mutex> lock(registry.mu);
    for (const c10::IValue& value : arguments) {
      ForEachTensor(value, [&](const at::Tensor& tensor) {
        if (!tensor.defined()) return;
        auto it = registry.params.find(tensor.unsafeGetTensorImpl());
        if (it == registry.params.end()) return;
        if (!unit.has_value()) {
          unit = it->second;
        } else if (unit->owner != it->second.owner ||
                   unit->unit != it->second.unit) {
          several = true;
        }
      });
    }
  }
  if (unit.has_value()) {
    if (t.region != nullptr &&
        (several || t.region->owner != unit->owner ||
         t.region->unit != unit->unit)) {
      Close(t);
    }
    if (t.region == nullptr && !several && unit->checkpointed) {
      Open(t, *unit);
    }
  }
  if (t.region == nullptr) {
    RunUnrecorded(op, stack);
    return;
  }
  std::shared_ptr<Region> region = t.region;
  Step step{op, {}};
  {
    std::lock_guard<std::mutex> lock(region->mu);
    if (region->unreplayable.empty()) {
      region->unreplayable = Unreplayable(*region, op, arguments);
    }
    step.arguments.reserve(count);
    for (const c10::IValue& value : arguments) {
      step.arguments.push_back(Capture(*region, value));
    }
  }
  RunUnrecorded(op, stack);
  std::lock_guard<std::mutex> lock(region->mu);
  const int64_t index = static_cast<int64_t>(region->steps.size());
  int64_t output = 0;
  for (const c10::IValue& value :
       torch::jit::last(*stack, op.schema().returns().size())) {
    ForEachTensor(value, [&](const at::Tensor& tensor) {
      if (tensor.defined()) {
        region->made.insert_or_assign(
            tensor.unsafeGetTensorImpl(),
            std::make_pair(c10::weak_intrusive_ptr<c10::TensorImpl>(
                               tensor.getIntrusivePtr()),
                           Source{index, output}));
      }
      ++output;
    });
  }
  region->steps.push_back(std::move(step));
}

void InstallRecordFallbackOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Lives as long as the process, as its registration.
    auto* library = new torch::Library(torch::Library::IMPL, "_", kRecordKey,
                                       __FILE__, __LINE__);
    library->fallback(
        torch::CppFunction::makeFromBoxedFunction<&RecordFallback>());
  });
}

// `list` with the tensors `internal` names put back from `values`.
template <typename Element>
c10::List<Element> Refill(
    const c10::List<Element>& list,
    const std::vector<std::pair<int64_t, Source>>& internal,
    const std::vector<std::vector<at::Tensor>>& values) {
  c10::List<Element> copy = list.copy();
  for (const auto& [position, source] : internal) {
    copy.set(position, Element(values[source.op][source.output]));
  }
  return copy;
}

c10::IValue Rebuild(const Argument& argument,
                    const std::vector<std::vector<at::Tensor>>& values) {
  if (argument.internal.empty()) return argument.value;
  if (argument.internal.front().first < 0) {
    const Source& source = argument.internal.front().second;
    return values[source.op][source.output];
  }
  if (argument.value.isTensorList()) {
    return Refill(argument.value.toTensorList(), argument.internal, values);
  }
  return Refill(argument.value.toList(), argument.internal, values);
}

// Runs the tape again with gradients recorded; what autograd saves goes to
// `recomputed`. REQUIRES: region.mu held.
void Replay(Region& region) {
  for (const auto& [tensor, version] : region.externals) {
    TORCH_CHECK(tensor._version() == version,
                "a tensor its forward read (sizes ", tensor.sizes(),
                ") was changed in place before its backward");
  }
  ThreadRecorder& t = tls_recorder;
  c10::impl::ExcludeDispatchKeyGuard unrecorded(kRecordKey);
  c10::InferenceMode not_inference(/*enabled=*/false);
  at::AutoGradMode grad(/*enabled=*/true);
  // Random numbers and autocast as in the forward; back afterwards.
  struct Restore {
    Region& region;
    ThreadRecorder& t;
    Region* replaying;
    std::vector<AutocastState> autocast;
    at::Tensor cpu_rng;
    at::Tensor device_rng;
    ~Restore() {
      t.replaying = replaying;
      SetAutocast(autocast);
      SetRngState(at::detail::getDefaultCPUGenerator(), cpu_rng);
      if (device_rng.defined()) {
        SetRngState(DeviceGenerator(region.device), device_rng);
      }
    }
  } restore{region, t, t.replaying, CurrentAutocast(region.device),
            RngState(at::detail::getDefaultCPUGenerator()), at::Tensor()};
  if (region.device_rng.defined()) {
    restore.device_rng = RngState(DeviceGenerator(region.device));
    SetRngState(DeviceGenerator(region.device), region.device_rng);
  }
  SetRngState(at::detail::getDefaultCPUGenerator(), region.cpu_rng);
  SetAutocast(region.autocast);

  region.recomputed.clear();
  region.recomputed.reserve(region.packs);
  t.replaying = &region;
  std::vector<std::vector<at::Tensor>> values(region.steps.size());
  for (size_t i = 0; i < region.steps.size(); ++i) {
    const Step& step = region.steps[i];
    torch::jit::Stack stack;
    stack.reserve(step.arguments.size());
    for (const Argument& argument : step.arguments) {
      stack.push_back(Rebuild(argument, values));
    }
    step.op.callBoxed(&stack);
    for (const c10::IValue& value : stack) {
      ForEachTensor(value, [&](const at::Tensor& tensor) {
        values[i].push_back(tensor);
      });
    }
  }
  t.replaying = restore.replaying;
  TORCH_CHECK(static_cast<int64_t>(region.recomputed.size()) == region.packs,
              "the replay saved ", region.recomputed.size(),
              " tensors for backward where the forward saved ", region.packs,
              " (its forward does not run the same operations twice)");
  for (int64_t k = 0; k < region.packs; ++k) {
    if (region.owned[k]) region.recomputed[k] = at::Tensor();
  }
  ++region.counters->recomputed;
}

}  // namespace

void RegisterCheckpointParam(const c10::TensorImpl* param, const void* owner,
                             int unit, bool checkpointed,
                             const std::string& label, c10::Device device,
                             std::shared_ptr<CheckpointCounters> counters) {
  if (checkpointed) InstallRecordFallbackOnce();
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  auto [it, added] = registry.params.insert_or_assign(
      param,
      ParamInfo{owner, unit, checkpointed, label, device, std::move(counters)});
  if (added && checkpointed) ++registry.checkpointed;
}

void ForgetCheckpointParams(const void* owner) {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  for (auto it = registry.params.begin(); it != registry.params.end();) {
    if (it->second.owner != owner) {
      ++it;
      continue;
    }
    if (it->second.checkpointed) --registry.checkpointed;
    it = registry.params.erase(it);
  }
}

void StartRecording() {
  if (tls_recorder.on) return;
  InstallRecordFallbackOnce();
  tls_recorder.on = true;
  c10::impl::tls_set_dispatch_key_included(kRecordKey, true);
}

void EndUnitForward() { Close(tls_recorder); }

BackwardScope::BackwardScope() : recording_(tls_recorder.on) {
  if (!recording_) return;
  Close(tls_recorder);
  c10::impl::tls_set_dispatch_key_included(kRecordKey, false);
}

BackwardScope::~BackwardScope() {
  if (recording_) c10::impl::tls_set_dispatch_key_included(kRecordKey, true);
}

bool CheckpointHooksWanted() {
  return tls_recorder.region != nullptr || tls_recorder.replaying != nullptr;
}

bool CaptureReplayed(const at::Tensor& tensor) {
  Region* region = tls_recorder.replaying;
  if (region == nullptr) return false;
  region->recomputed.push_back(tensor.defined() ? tensor.detach() : tensor);
  return true;
}

std::shared_ptr<Region> PackIntoRegion(const at::Tensor& tensor, bool owned,
                                       int64_t* index) {
  std::shared_ptr<Region> region = tls_recorder.region;
  if (region == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(region->mu);
  *index = region->packs++;
  // Detached: an output kept here must not keep its own graph alive.
  region->held.push_back(owned || !tensor.defined() ? at::Tensor()
                                                    : tensor.detach());
  region->owned.push_back(owned);
  return region;
}

at::Tensor UnpackFromRegion(Region& region, int64_t index) {
  std::lock_guard<std::mutex> lock(region.mu);
  if (!region.released) return region.held[index];
  if (index >= static_cast<int64_t>(region.recomputed.size()) ||
      !region.recomputed[index].defined()) {
    // The first saved tensor backward asks for, or one asked for again (a
    // second backward through the same graph).
    try {
      Replay(region);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "activation checkpointing: recomputing unit ",
                  region.label, ": ", e.what_without_backtrace());
    }
  }
  return std::move(region.recomputed[index]);
}

}  // namespace accelerate::sharding_internal
