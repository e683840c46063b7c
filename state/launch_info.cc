#include "state/launch_info.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "state/status_macros.h"

namespace accelerate::state {
namespace {

// The variable names one launcher uses. Empty names are not provided by it.
struct LauncherVariables {
  Launcher launcher;
  absl::string_view rank;
  absl::string_view world_size;
  absl::string_view local_rank;
  absl::string_view local_world_size;
  absl::string_view node_rank;
};

constexpr LauncherVariables kLaunchers[] = {
    {Launcher::kTorchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK",
     "LOCAL_WORLD_SIZE", "GROUP_RANK"},
    {Launcher::kOpenMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", ""},
    {Launcher::kMpich, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
     "MPI_LOCALNRANKS", ""},
    {Launcher::kSlurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
     "SLURM_NTASKS_PER_NODE", "SLURM_NODEID"},
};

absl::StatusOr<int> ParseInt(absl::string_view name, absl::string_view value) {
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "=\"", value, "\" is not an integer"));
  }
  return parsed;
}

// Reads `name` from `env` as an integer; nullopt when `name` is empty or the
// variable is unset.
absl::StatusOr<std::optional<int>> GetInt(const Environment& env,
                                          absl::string_view name) {
  if (name.empty()) return std::optional<int>();
  std::optional<std::string> value = env.Get(name);
  if (!value.has_value()) return std::optional<int>();
  ACCELERATE_ASSIGN_OR_RETURN(int parsed, ParseInt(name, *value));
  return std::optional<int>(parsed);
}

// SLURM_TASKS_PER_NODE compresses per-node task counts: "2(x3),1" means
// nodes 0-2 run 2 tasks and node 3 runs 1. Returns the count of `node`.
absl::StatusOr<int> SlurmTasksOnNode(absl::string_view tasks_per_node,
                                     int node) {
  int first_node = 0;
  for (absl::string_view item : absl::StrSplit(tasks_per_node, ',')) {
    absl::string_view count_text = item;
    int repeat = 1;
    if (size_t paren = item.find("(x"); paren != absl::string_view::npos) {
      count_text = item.substr(0, paren);
      absl::string_view repeat_text = item.substr(paren + 2);
      if (repeat_text.empty() || repeat_text.back() != ')' ||
          !absl::SimpleAtoi(repeat_text.substr(0, repeat_text.size() - 1),
                            &repeat) ||
          repeat < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("SLURM_TASKS_PER_NODE=\"", tasks_per_node,
                         "\" is not a list like \"2(x3),1\""));
      }
    }
    int count = 0;
    if (!absl::SimpleAtoi(count_text, &count) || count < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("SLURM_TASKS_PER_NODE=\"", tasks_per_node,
                       "\" is not a list like \"2(x3),1\""));
    }
    if (node < first_node + repeat) return count;
    first_node += repeat;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("SLURM_TASKS_PER_NODE=\"", tasks_per_node,
                   "\" lists fewer nodes than SLURM_NODEID=", node));
}

std::string NameOrDefault(absl::string_view name, absl::string_view fallback) {
  return std::string(name.empty() ? fallback : name);
}

}  // namespace

absl::string_view LauncherName(Launcher launcher) {
  switch (launcher) {
    case Launcher::kNone:
      return "none";
    case Launcher::kTorchrun:
      return "torchrun";
    case Launcher::kOpenMpi:
      return "openmpi";
    case Launcher::kMpich:
      return "mpich";
    case Launcher::kSlurm:
      return "slurm";
  }
  return "unknown";
}

absl::StatusOr<bool> ParseBoolFlag(absl::string_view name,
                                   absl::string_view value) {
  const std::string lower = absl::AsciiStrToLower(value);
  for (const char* yes : {"y", "yes", "t", "true", "on", "1"}) {
    if (lower == yes) return true;
  }
  for (const char* no : {"n", "no", "f", "false", "off", "0"}) {
    if (lower == no) return false;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      name, "=\"", value,
      "\" is not a boolean (one of y, yes, t, true, on, 1, n, no, f, false, "
      "off, 0)"));
}

absl::StatusOr<std::string> FirstSlurmHost(absl::string_view nodelist) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "SLURM node list \"", nodelist,
        "\" is not a host list like \"node[01-04,07],login1\""));
  };
  std::string host;
  size_t i = 0;
  while (i < nodelist.size() && nodelist[i] != ',') {
    const char c = nodelist[i];
    if (c == ']') return malformed();
    if (c != '[') {
      host.push_back(c);
      ++i;
      continue;
    }
    const size_t close = nodelist.find(']', i);
    if (close == absl::string_view::npos) return malformed();
    absl::string_view range = nodelist.substr(i + 1, close - i - 1);
    absl::string_view first = range.substr(0, range.find_first_of(",-"));
    if (first.empty() ||
        first.find_first_not_of("0123456789") != absl::string_view::npos) {
      return malformed();
    }
    host.append(first.data(), first.size());
    i = close + 1;
  }
  if (host.empty()) return malformed();
  return host;
}

absl::StatusOr<LaunchInfo> ResolveLaunchInfo(const Environment& env) {
  LaunchInfo info;

  for (const LauncherVariables& vars : kLaunchers) {
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> rank,
                                GetInt(env, vars.rank));
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> world_size,
                                GetInt(env, vars.world_size));
    if (!rank.has_value() && !world_size.has_value()) continue;
    if (!rank.has_value() || !world_size.has_value()) {
      const absl::string_view set = rank.has_value() ? vars.rank
                                                    : vars.world_size;
      const absl::string_view unset = rank.has_value() ? vars.world_size
                                                      : vars.rank;
      return absl::InvalidArgumentError(absl::StrCat(
          set, "=", *env.Get(set), " is set but ", unset,
          " is not; a ", LauncherName(vars.launcher),
          " launch sets both"));
    }
    info.launcher = vars.launcher;
    info.rank = *rank;
    info.world_size = *world_size;
    if (info.world_size < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          vars.world_size, "=", info.world_size, " is not a positive count"));
    }
    if (info.rank < 0 || info.rank >= info.world_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(vars.rank, "=", info.rank, " is outside [0, ",
                       vars.world_size, "=", info.world_size, ")"));
    }

    ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> local_rank,
                                GetInt(env, vars.local_rank));
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> local_world_size,
                                GetInt(env, vars.local_world_size));
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> node_rank,
                                GetInt(env, vars.node_rank));
    std::string local_world_size_name =
        NameOrDefault(vars.local_world_size, vars.world_size);
    if (vars.launcher == Launcher::kSlurm && !local_world_size.has_value()) {
      if (std::optional<std::string> per_node =
              env.Get("SLURM_TASKS_PER_NODE")) {
        ACCELERATE_ASSIGN_OR_RETURN(
            int count, SlurmTasksOnNode(*per_node, node_rank.value_or(0)));
        local_world_size = count;
        local_world_size_name = "SLURM_TASKS_PER_NODE";
      }
    }
    // Without local variables the job is taken to run on one machine.
    info.local_rank = local_rank.value_or(info.rank);
    info.local_world_size = local_world_size.value_or(info.world_size);
    if (info.local_world_size < 1 ||
        info.local_world_size > info.world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          local_world_size_name, "=", info.local_world_size,
          " is outside [1, ", vars.world_size, "=", info.world_size, "]"));
    }
    if (info.local_rank < 0 || info.local_rank >= info.local_world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          NameOrDefault(vars.local_rank, vars.rank), "=", info.local_rank,
          " is outside [0, ", local_world_size_name, "=",
          info.local_world_size, ")"));
    }
    info.node_rank = node_rank.value_or((info.rank - info.local_rank) /
                                        info.local_world_size);
    if (info.node_rank < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          vars.node_rank, "=", info.node_rank, " is negative"));
    }
    break;
  }

  if (std::optional<std::string> addr = env.Get("MASTER_ADDR")) {
    if (addr->empty()) {
      return absl::InvalidArgumentError(
          "MASTER_ADDR=\"\" is empty; set it to the address of rank 0's "
          "machine");
    }
    info.master_addr = *addr;
  } else if (info.launcher == Launcher::kSlurm) {
    std::optional<std::string> nodelist = env.Get("SLURM_JOB_NODELIST");
    if (!nodelist.has_value()) nodelist = env.Get("SLURM_NODELIST");
    if (nodelist.has_value()) {
      ACCELERATE_ASSIGN_OR_RETURN(info.master_addr, FirstSlurmHost(*nodelist));
    }
  } else if ((info.launcher == Launcher::kOpenMpi ||
              info.launcher == Launcher::kMpich) &&
             info.local_world_size == info.world_size) {
    // mpirun on one machine sets no address: every rank is local.
    info.master_addr = "127.0.0.1";
  }
  if (info.world_size > 1 && info.master_addr.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MASTER_ADDR is not set; a job of ", info.world_size,
        " processes (", LauncherName(info.launcher),
        " launch) needs the address of rank 0's machine"));
  }

  if (std::optional<std::string> port = env.Get("MASTER_PORT")) {
    ACCELERATE_ASSIGN_OR_RETURN(info.master_port,
                                ParseInt("MASTER_PORT", *port));
    if (info.master_port < 1 || info.master_port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("MASTER_PORT=", *port, " is not a port (1 to 65535)"));
    }
  }

  if (std::optional<std::string> value = env.Get("ACCELERATE_USE_CPU")) {
    ACCELERATE_ASSIGN_OR_RETURN(info.use_cpu,
                                ParseBoolFlag("ACCELERATE_USE_CPU", *value));
  }
  if (std::optional<std::string> value = env.Get("ACCELERATE_DEBUG_MODE")) {
    ACCELERATE_ASSIGN_OR_RETURN(
        info.debug, ParseBoolFlag("ACCELERATE_DEBUG_MODE", *value));
  }
  if (std::optional<std::string> value = env.Get("GLOO_SOCKET_IFNAME")) {
    info.gloo_socket_ifname = std::string(
        absl::string_view(*value).substr(0, value->find(',')));
  }
  if (std::optional<std::string> value =
          env.Get("TORCHELASTIC_USE_AGENT_STORE")) {
    // torch compares with Python's str(True) exactly.
    info.use_agent_store = *value == "True";
  }
  ACCELERATE_ASSIGN_OR_RETURN(std::optional<int> restart_count,
                              GetInt(env, "TORCHELASTIC_RESTART_COUNT"));
  if (restart_count.value_or(0) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TORCHELASTIC_RESTART_COUNT=", *restart_count, " is negative"));
  }
  info.restart_count = restart_count.value_or(0);
  return info;
}

}  // namespace accelerate::state
