#include "launch/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace accelerate::launch {
namespace {

// execvp's search path when PATH is not set (glibc's confstr(_CS_PATH)).
constexpr char kDefaultSearchPath[] = "/bin:/usr/bin";

// Why `path` cannot be executed; empty when it can.
std::string WhyNotExecutable(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return "no such file";
  if (S_ISDIR(info.st_mode)) return "is a folder";
  if (::access(path.c_str(), X_OK) != 0) return "is not executable";
  return "";
}

}  // namespace

std::string UserWorkingDirectory(const state::Environment& env) {
  return env.Get("BUILD_WORKING_DIRECTORY").value_or("");
}

std::string ResolveUserPath(const state::Environment& env,
                            const std::string& path) {
  const std::string base = UserWorkingDirectory(env);
  if (base.empty() || path.empty() || path[0] == '/') return path;
  return absl::StrCat(base, base.back() == '/' ? "" : "/", path);
}

absl::StatusOr<std::string> FindExecutable(const std::string& program,
                                           const state::Environment& env) {
  if (program.find('/') != std::string::npos) {
    const std::string why = WhyNotExecutable(program);
    if (why.empty()) return program;
    const std::string message = absl::StrCat(program, ": ", why);
    return why == "no such file" ? absl::NotFoundError(message)
                                 : absl::PermissionDeniedError(message);
  }
  const std::string search_path =
      env.Get("PATH").value_or(kDefaultSearchPath);
  std::optional<std::string> refused;
  // An empty entry is the working folder, as for execvp.
  for (absl::string_view folder : absl::StrSplit(search_path, ':')) {
    const std::string candidate =
        folder.empty() ? program : absl::StrCat(folder, "/", program);
    const std::string why = WhyNotExecutable(candidate);
    if (why.empty()) return candidate;
    if (why != "no such file" && !refused.has_value()) {
      refused = absl::StrCat(candidate, ": ", why);
    }
  }
  if (refused.has_value()) return absl::PermissionDeniedError(*refused);
  return absl::NotFoundError(
      absl::StrCat(program, ": not found in PATH (", search_path, ")"));
}

absl::Status CheckReadableFile(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (S_ISDIR(info.st_mode)) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": is a folder"));
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": is not readable"));
  }
  return absl::OkStatus();
}

std::string SelfPath() {
  char path[4096] = {0};
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  return length > 0 ? std::string(path, static_cast<size_t>(length)) : "";
}

std::string SelfDirectory() {
  const std::string path = SelfPath();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace accelerate::launch
