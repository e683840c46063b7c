#include "state/launch_info.h"

#include <map>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/status_matchers.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

absl::StatusOr<LaunchInfo> Resolve(
    const std::map<std::string, std::string>& vars) {
  return ResolveLaunchInfo(MapEnvironment(vars));
}

TEST(LaunchInfoTest, NoVariablesIsASingleProcess) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info, Resolve({}));
  EXPECT_EQ(info.launcher, Launcher::kNone);
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.world_size, 1);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_EQ(info.local_world_size, 1);
  EXPECT_EQ(info.node_rank, 0);
  EXPECT_TRUE(info.master_addr.empty());
  EXPECT_EQ(info.master_port, kDefaultMasterPort);
  EXPECT_FALSE(info.use_cpu);
  EXPECT_FALSE(info.debug);
}

TEST(LaunchInfoTest, ReadsTorchrunVariables) {
  ASSERT_OK_AND_ASSIGN(
      LaunchInfo info,
      Resolve({{"RANK", "5"},
               {"WORLD_SIZE", "8"},
               {"LOCAL_RANK", "1"},
               {"LOCAL_WORLD_SIZE", "4"},
               {"GROUP_RANK", "1"},
               {"MASTER_ADDR", "10.1.2.3"},
               {"MASTER_PORT", "12345"}}));
  EXPECT_EQ(info.launcher, Launcher::kTorchrun);
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 4);
  EXPECT_EQ(info.node_rank, 1);
  EXPECT_EQ(info.master_addr, "10.1.2.3");
  EXPECT_EQ(info.master_port, 12345);
}

TEST(LaunchInfoTest, DerivesLocalValuesWhenOnlyGlobalOnesAreSet) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info, Resolve({{"RANK", "2"},
                                                 {"WORLD_SIZE", "3"},
                                                 {"MASTER_ADDR", "localhost"}}));
  EXPECT_EQ(info.local_rank, 2);
  EXPECT_EQ(info.local_world_size, 3);
  EXPECT_EQ(info.node_rank, 0);
  EXPECT_EQ(info.master_port, kDefaultMasterPort);
}

TEST(LaunchInfoTest, DerivesNodeRankFromLocalWorldSize) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info, Resolve({{"RANK", "6"},
                                                 {"WORLD_SIZE", "8"},
                                                 {"LOCAL_RANK", "2"},
                                                 {"LOCAL_WORLD_SIZE", "4"},
                                                 {"MASTER_ADDR", "h"}}));
  EXPECT_EQ(info.node_rank, 1);
}

TEST(LaunchInfoTest, ReadsAccelerateSwitchesInAnySpelling) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"ACCELERATE_USE_CPU", "Yes"},
                                {"ACCELERATE_DEBUG_MODE", "1"}}));
  EXPECT_TRUE(info.use_cpu);
  EXPECT_TRUE(info.debug);
  ASSERT_OK_AND_ASSIGN(info, Resolve({{"ACCELERATE_USE_CPU", "off"},
                                      {"ACCELERATE_DEBUG_MODE", "FALSE"}}));
  EXPECT_FALSE(info.use_cpu);
  EXPECT_FALSE(info.debug);
}

TEST(LaunchInfoTest, ReadsTorchElasticAgentStoreVariables) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"RANK", "0"},
                                {"WORLD_SIZE", "2"},
                                {"MASTER_ADDR", "h"},
                                {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                {"TORCHELASTIC_RESTART_COUNT", "3"}}));
  EXPECT_TRUE(info.use_agent_store);
  EXPECT_EQ(info.restart_count, 3);
  ASSERT_OK_AND_ASSIGN(info, Resolve({{"TORCHELASTIC_USE_AGENT_STORE", "1"}}));
  EXPECT_FALSE(info.use_agent_store);  // torch accepts "True" only.
  EXPECT_THAT(Resolve({{"TORCHELASTIC_RESTART_COUNT", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("TORCHELASTIC_RESTART_COUNT=\"x\"")));
}

TEST(LaunchInfoTest, ReadsOpenMpiVariables) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"OMPI_COMM_WORLD_RANK", "3"},
                                {"OMPI_COMM_WORLD_SIZE", "4"},
                                {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                {"MASTER_ADDR", "node0"}}));
  EXPECT_EQ(info.launcher, Launcher::kOpenMpi);
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
  EXPECT_EQ(info.node_rank, 1);
  EXPECT_EQ(info.master_addr, "node0");
}

TEST(LaunchInfoTest, SingleMachineMpiDefaultsToLoopback) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"OMPI_COMM_WORLD_RANK", "1"},
                                {"OMPI_COMM_WORLD_SIZE", "2"},
                                {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  EXPECT_EQ(info.master_addr, "127.0.0.1");
}

TEST(LaunchInfoTest, MultiMachineMpiNeedsMasterAddr) {
  EXPECT_THAT(Resolve({{"OMPI_COMM_WORLD_RANK", "1"},
                       {"OMPI_COMM_WORLD_SIZE", "4"},
                       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MASTER_ADDR is not set")));
}

TEST(LaunchInfoTest, ReadsMpichPmiVariables) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info, Resolve({{"PMI_RANK", "1"},
                                                 {"PMI_SIZE", "2"},
                                                 {"MPI_LOCALRANKID", "1"},
                                                 {"MPI_LOCALNRANKS", "2"}}));
  EXPECT_EQ(info.launcher, Launcher::kMpich);
  EXPECT_EQ(info.rank, 1);
  EXPECT_EQ(info.world_size, 2);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.master_addr, "127.0.0.1");
}

TEST(LaunchInfoTest, ReadsSlurmVariablesAndFirstNodeAsMaster) {
  ASSERT_OK_AND_ASSIGN(
      LaunchInfo info,
      Resolve({{"SLURM_PROCID", "5"},
               {"SLURM_NTASKS", "6"},
               {"SLURM_LOCALID", "1"},
               {"SLURM_NODEID", "2"},
               {"SLURM_TASKS_PER_NODE", "2(x3)"},
               {"SLURM_JOB_NODELIST", "gpu[07-09],login1"}}));
  EXPECT_EQ(info.launcher, Launcher::kSlurm);
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 6);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_world_size, 2);
  EXPECT_EQ(info.node_rank, 2);
  EXPECT_EQ(info.master_addr, "gpu07");
}

TEST(LaunchInfoTest, SlurmTasksPerNodeListsUnevenNodes) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"SLURM_PROCID", "4"},
                                {"SLURM_NTASKS", "5"},
                                {"SLURM_LOCALID", "0"},
                                {"SLURM_NODEID", "2"},
                                {"SLURM_TASKS_PER_NODE", "2(x2),1"},
                                {"SLURM_NODELIST", "a,b,c"}}));
  EXPECT_EQ(info.local_world_size, 1);
  EXPECT_EQ(info.master_addr, "a");
}

TEST(LaunchInfoTest, MasterAddrOverridesSlurmNodeList) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info,
                       Resolve({{"SLURM_PROCID", "0"},
                                {"SLURM_NTASKS", "2"},
                                {"SLURM_NODELIST", "n[1-2]"},
                                {"MASTER_ADDR", "10.0.0.9"}}));
  EXPECT_EQ(info.master_addr, "10.0.0.9");
}

TEST(LaunchInfoTest, TorchrunVariablesTakePrecedenceOverSlurm) {
  ASSERT_OK_AND_ASSIGN(LaunchInfo info, Resolve({{"RANK", "1"},
                                                 {"WORLD_SIZE", "2"},
                                                 {"MASTER_ADDR", "m"},
                                                 {"SLURM_PROCID", "0"},
                                                 {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(info.launcher, Launcher::kTorchrun);
  EXPECT_EQ(info.rank, 1);
}

TEST(LaunchInfoTest, RejectsRankNotBelowWorldSize) {
  EXPECT_THAT(
      Resolve({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("RANK=2"), HasSubstr("WORLD_SIZE=2"))));
}

TEST(LaunchInfoTest, RejectsNegativeRank) {
  EXPECT_THAT(
      Resolve({{"RANK", "-1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RANK=-1")));
}

TEST(LaunchInfoTest, RejectsNonNumericValuesNamingThem) {
  EXPECT_THAT(Resolve({{"RANK", "one"}, {"WORLD_SIZE", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("RANK=\"one\" is not an integer")));
  EXPECT_THAT(Resolve({{"RANK", "0"}, {"WORLD_SIZE", "2x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("WORLD_SIZE=\"2x\"")));
  EXPECT_THAT(Resolve({{"RANK", "0"},
                       {"WORLD_SIZE", "2"},
                       {"LOCAL_RANK", ""},
                       {"MASTER_ADDR", "h"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("LOCAL_RANK=\"\"")));
  EXPECT_THAT(Resolve({{"SLURM_PROCID", "zero"}, {"SLURM_NTASKS", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("SLURM_PROCID=\"zero\"")));
}

TEST(LaunchInfoTest, RejectsZeroWorldSize) {
  EXPECT_THAT(Resolve({{"RANK", "0"}, {"WORLD_SIZE", "0"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("WORLD_SIZE=0")));
}

TEST(LaunchInfoTest, RejectsWorldSizeWithoutRank) {
  EXPECT_THAT(Resolve({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("WORLD_SIZE=2"),
                             HasSubstr("RANK is not"))));
}

TEST(LaunchInfoTest, RejectsLocalRankOutsideLocalWorld) {
  EXPECT_THAT(Resolve({{"RANK", "3"},
                       {"WORLD_SIZE", "4"},
                       {"LOCAL_RANK", "2"},
                       {"LOCAL_WORLD_SIZE", "2"},
                       {"MASTER_ADDR", "h"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("LOCAL_RANK=2"),
                             HasSubstr("LOCAL_WORLD_SIZE=2"))));
  EXPECT_THAT(Resolve({{"RANK", "0"},
                       {"WORLD_SIZE", "2"},
                       {"LOCAL_WORLD_SIZE", "3"},
                       {"MASTER_ADDR", "h"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("LOCAL_WORLD_SIZE=3")));
}

TEST(LaunchInfoTest, RejectsMissingMasterAddrForSeveralProcesses) {
  EXPECT_THAT(Resolve({{"RANK", "0"}, {"WORLD_SIZE", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MASTER_ADDR is not set")));
  EXPECT_THAT(Resolve({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MASTER_ADDR=\"\"")));
  // A single process needs no address.
  EXPECT_THAT(Resolve({{"RANK", "0"}, {"WORLD_SIZE", "1"}}),
              ::accelerate::testing::IsOk());
}

TEST(LaunchInfoTest, RejectsPortsOutOfRange) {
  for (const char* port : {"0", "65536", "-5", "http"}) {
    EXPECT_THAT(Resolve({{"RANK", "0"},
                         {"WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "h"},
                         {"MASTER_PORT", port}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(std::string("MASTER_PORT=") +
                                   (std::string(port) == "http" ? "\"http\""
                                                                : port))))
        << port;
  }
}

TEST(LaunchInfoTest, RejectsBadBooleans) {
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_CPU", "maybe"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("ACCELERATE_USE_CPU=\"maybe\""),
                             HasSubstr("true"))));
  EXPECT_THAT(Resolve({{"ACCELERATE_DEBUG_MODE", "2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_DEBUG_MODE=\"2\"")));
}

TEST(LaunchInfoTest, RejectsMalformedSlurmTaskCounts) {
  EXPECT_THAT(Resolve({{"SLURM_PROCID", "0"},
                       {"SLURM_NTASKS", "2"},
                       {"SLURM_TASKS_PER_NODE", "2(x"},
                       {"SLURM_NODELIST", "a"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("SLURM_TASKS_PER_NODE=\"2(x\"")));
}

TEST(FirstSlurmHostTest, ExpandsTheFirstHost) {
  EXPECT_THAT(FirstSlurmHost("node[03-05,9],gpu1"), IsOkAndHolds("node03"));
  EXPECT_THAT(FirstSlurmHost("login1,login2"), IsOkAndHolds("login1"));
  EXPECT_THAT(FirstSlurmHost("single"), IsOkAndHolds("single"));
  EXPECT_THAT(FirstSlurmHost("rack[2-3]-n[10-12]"), IsOkAndHolds("rack2-n10"));
}

TEST(FirstSlurmHostTest, RejectsMalformedLists) {
  for (const char* bad : {"", "node[", "node[]", "node[a-b]", "]x", ",a"}) {
    EXPECT_THAT(FirstSlurmHost(bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(std::string("\"") + bad + "\"")))
        << bad;
  }
}

TEST(ParseBoolFlagTest, AcceptsAccelerateSpellings) {
  for (const char* yes : {"y", "YES", "t", "True", "on", "1"}) {
    EXPECT_THAT(ParseBoolFlag("X", yes), IsOkAndHolds(true)) << yes;
  }
  for (const char* no : {"n", "No", "f", "false", "OFF", "0"}) {
    EXPECT_THAT(ParseBoolFlag("X", no), IsOkAndHolds(false)) << no;
  }
}

}  // namespace
}  // namespace accelerate::state
