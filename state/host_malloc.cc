#include "state/host_malloc.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "state/launch_info.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::state {
namespace {

// glibc reads these at start-up; any of them means the user chose.
constexpr const char* kGlibcMallocVariables[] = {
    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_"};
// The same choices as tunables (GLIBC_TUNABLES=name=value:name=value).
constexpr const char* kGlibcMallocTunables[] = {
    "glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold",
    "glibc.malloc.top_pad", "glibc.malloc.mmap_max"};
// Preloaded allocators that replace glibc's malloc (mallopt would not reach
// them).
constexpr const char* kOtherAllocators[] = {"jemalloc", "tcmalloc",
                                            "mimalloc"};

HostMallocTuning NotApplied(std::string reason) {
  return HostMallocTuning{.applied = false, .reason = std::move(reason)};
}

}  // namespace

absl::StatusOr<HostMallocTuning> PlanHostMallocTuning(
    std::optional<bool> requested, const Environment& env) {
  // Parsed first, so that a bad value is an error whatever else is set.
  const std::optional<std::string> switch_value =
      env.Get("ACCELERATE_TUNE_MALLOC");
  bool switched_on = true;
  if (switch_value.has_value()) {
    ACCELERATE_ASSIGN_OR_RETURN(
        switched_on, ParseBoolFlag("ACCELERATE_TUNE_MALLOC", *switch_value));
  }
  if (requested.has_value() && !*requested) {
    return NotApplied("switched off by the program's options");
  }
  if (!requested.has_value() && !switched_on) {
    return NotApplied(
        absl::StrCat("ACCELERATE_TUNE_MALLOC=", *switch_value));
  }
#if !defined(__GLIBC__)
  return NotApplied("this build does not use glibc's malloc");
#else
  for (const char* name : kGlibcMallocVariables) {
    if (std::optional<std::string> value = env.Get(name)) {
      return NotApplied(
          absl::StrCat(name, "=", *value, " is set: glibc uses that"));
    }
  }
  if (std::optional<std::string> tunables = env.Get("GLIBC_TUNABLES")) {
    for (absl::string_view entry : absl::StrSplit(*tunables, ':')) {
      for (const char* name : kGlibcMallocTunables) {
        if (absl::StartsWith(entry, absl::StrCat(name, "="))) {
          return NotApplied(absl::StrCat("GLIBC_TUNABLES has ", entry,
                                         ": glibc uses that"));
        }
      }
    }
  }
  if (std::optional<std::string> preload = env.Get("LD_PRELOAD")) {
    for (const char* allocator : kOtherAllocators) {
      if (absl::StrContains(*preload, allocator)) {
        return NotApplied(absl::StrCat("LD_PRELOAD=", *preload, " loads ",
                                       allocator, ", not glibc's malloc"));
      }
    }
  }
  return HostMallocTuning{.applied = true, .reason = ""};
#endif
}

absl::StatusOr<HostMallocTuning> TuneHostMalloc(std::optional<bool> requested,
                                                const Environment& env) {
  ACCELERATE_ASSIGN_OR_RETURN(HostMallocTuning plan,
                              PlanHostMallocTuning(requested, env));
#if defined(__GLIBC__)
  if (plan.applied) {
    // mallopt returns 1 on success (a sanitizer's stand-in returns 0 or -1).
    // Setting either threshold also stops glibc from moving them itself. A
    // refusal only costs speed: reported, never fatal.
    const int mmap_set = ::mallopt(M_MMAP_THRESHOLD, kTunedMmapThresholdBytes);
    const int trim_set =
        mmap_set == 1 ? ::mallopt(M_TRIM_THRESHOLD, kTunedTrimThresholdBytes)
                      : 0;
    if (mmap_set != 1 || trim_set != 1) {
      plan = NotApplied(
          mmap_set != 1
              ? absl::StrCat("mallopt(M_MMAP_THRESHOLD, ",
                             kTunedMmapThresholdBytes, ") returned ", mmap_set)
              : absl::StrCat("mallopt(M_TRIM_THRESHOLD, ",
                             kTunedTrimThresholdBytes, ") returned ", trim_set,
                             " (the mmap threshold was set)"));
      ACCELERATE_LOG(WARNING) << "glibc malloc left untuned: " << plan.reason;
    }
  }
#endif
  return plan;
}

}  // namespace accelerate::state
