// `accelerate launch`'s flags, with Python Accelerate's names and groups, and
// the values its settings take (shared with the resolution, the FSDP
// variables and `accelerate config`'s questions).
//
// clang-format off
//   #include <iostream>
//   bool PrintHelpIfAsked(const std::vector<std::string>& args) {
//     const FlagParser parser = LaunchFlagParser();
//     absl::StatusOr<ParsedFlags> flags = parser.Parse(args);
//     if (!flags.ok() || !flags->help) return false;
//     std::cout << parser.Help();
//     return true;
//   }
// clang-format on
//
// Thread safety: the lists are immutable; each call builds a new parser.

#ifndef ACCELERATE_LAUNCH_LAUNCH_FLAGS_H_
#define ACCELERATE_LAUNCH_LAUNCH_FLAGS_H_

#include <string>
#include <vector>

#include "launch/flags.h"

namespace accelerate::launch {

// The parser with every `accelerate launch` flag; PROGRAM [ARGS...] is its
// rest.
FlagParser LaunchFlagParser();

// FULL_SHARD, SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD, HYBRID_SHARD_ZERO2: in
// Accelerate's order, which old config files number from 1.
const std::vector<std::string>& FsdpShardingStrategies();
// TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP, NO_WRAP.
const std::vector<std::string>& FsdpAutoWrapPolicies();
// BACKWARD_PRE, BACKWARD_POST, NO_PREFETCH.
const std::vector<std::string>& FsdpBackwardPrefetchPolicies();
// FULL_STATE_DICT, LOCAL_STATE_DICT, SHARDED_STATE_DICT.
const std::vector<std::string>& FsdpStateDictTypes();
// DeepSpeed's ZeRO stages: 0, 1, 2, 3.
const std::vector<std::string>& DeepSpeedZeroStages();
// Where DeepSpeed offloads: none, cpu, nvme.
const std::vector<std::string>& DeepSpeedOffloadDevices();
// pdsh, standard, openmpi, mvapich, mpich, nossh, slurm: Accelerate's order,
// pdsh (its default) first.
const std::vector<std::string>& DeepSpeedMultinodeLaunchers();

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_LAUNCH_FLAGS_H_
