// Where this process sits in a distributed job, read from the variables that
// launchers set. `ResolveLaunchInfo` understands, in this order of
// precedence:
//
//   1. our launcher and torchrun: RANK, WORLD_SIZE, LOCAL_RANK,
//      LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT;
//   2. Open MPI (mpirun): OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE};
//   3. MPICH / Intel MPI (Hydra, PMI): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID,
//      MPI_LOCALNRANKS;
//   4. SLURM (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//      SLURM_NTASKS_PER_NODE (or SLURM_TASKS_PER_NODE), SLURM_NODEID, and the
//      first host of SLURM_JOB_NODELIST / SLURM_NODELIST as the master
//      address when MASTER_ADDR is not set.
//
// With none of them set, the process is a single process (rank 0 of 1).
// Accelerate's own switches are read too: ACCELERATE_USE_CPU and
// ACCELERATE_DEBUG_MODE (true/false in any of Accelerate's spellings), and
// GLOO_SOCKET_IFNAME, TORCHELASTIC_USE_AGENT_STORE and
// TORCHELASTIC_RESTART_COUNT as torch.distributed reads them.
//
// clang-format off
//   #include <iostream>
//   int Example() {
//     absl::StatusOr<LaunchInfo> info = ResolveLaunchInfo(ProcessEnvironment());
//     if (!info.ok()) { std::cerr << info.status(); return 1; }
//     std::cout << "rank " << info->rank << " of " << info->world_size;
//     return 0;
//   }
// clang-format on
//
// Thread safety: pure functions of the environment they are given.

#ifndef ACCELERATE_STATE_LAUNCH_INFO_H_
#define ACCELERATE_STATE_LAUNCH_INFO_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "state/environment.h"

namespace accelerate::state {

// Which launcher's variables described this process.
enum class Launcher {
  kNone,      // No launcher variables: a single process.
  kTorchrun,  // RANK/WORLD_SIZE: our launcher, torchrun, torch.distributed.
  kOpenMpi,   // OMPI_COMM_WORLD_*.
  kMpich,     // PMI_RANK/PMI_SIZE (MPICH, Intel MPI, MVAPICH2 with Hydra).
  kSlurm,     // SLURM_PROCID/SLURM_NTASKS.
};

// "none", "torchrun", "openmpi", "mpich" or "slurm".
absl::string_view LauncherName(Launcher launcher);

// The port torch.distributed uses when none is given.
inline constexpr int kDefaultMasterPort = 29500;

// The resolved, validated position of this process. Plain value type.
struct LaunchInfo {
  Launcher launcher = Launcher::kNone;
  // Global rank, 0 <= rank < world_size.
  int rank = 0;
  int world_size = 1;
  // Rank among the processes of this machine, 0 <= local_rank <
  // local_world_size <= world_size.
  int local_rank = 0;
  int local_world_size = 1;
  // Index of this machine (torchrun's GROUP_RANK).
  int node_rank = 0;
  // Rendezvous address of rank 0's store; empty only when world_size == 1.
  std::string master_addr;
  int master_port = kDefaultMasterPort;
  // ACCELERATE_USE_CPU: run on CPU even when a GPU is present.
  bool use_cpu = false;
  // ACCELERATE_DEBUG_MODE: verify collective inputs across ranks first.
  bool debug = false;
  // GLOO_SOCKET_IFNAME: the network interface gloo binds to (first of a
  // comma-separated list); empty lets gloo pick from MASTER_ADDR.
  std::string gloo_socket_ifname;
  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent already serves the
  // store at MASTER_ADDR:MASTER_PORT, so every rank connects as a client.
  bool use_agent_store = false;
  // TORCHELASTIC_RESTART_COUNT: which attempt of a restarted job this is;
  // keys in a store that outlives attempts are kept apart by it.
  int restart_count = 0;
};

// Reads and validates the launcher variables of `env`. Errors are
// `InvalidArgument` naming the variable and its value: a value that is not an
// integer, a rank outside [0, world size), a local rank outside [0, local world
// size), a port outside [1, 65535], a missing RANK beside WORLD_SIZE, or a
// missing master address for a world size above 1 (MPI launches on one machine
// default to 127.0.0.1; SLURM uses the first host of its node list).
[[nodiscard]] absl::StatusOr<LaunchInfo> ResolveLaunchInfo(
    const Environment& env);

// Parses a boolean the way Accelerate's `str_to_bool` does: y, yes, t, true,
// on, 1 and n, no, f, false, off, 0, in any case. `name` is used in the error.
[[nodiscard]] absl::StatusOr<bool> ParseBoolFlag(absl::string_view name,
                                                 absl::string_view value);

// The first host name of a SLURM node list: "node[03-05,9],gpu1" gives
// "node03". `InvalidArgument` for an empty or malformed list.
[[nodiscard]] absl::StatusOr<std::string> FirstSlurmHost(
    absl::string_view nodelist);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_LAUNCH_INFO_H_
