// Real launches: the `accelerate` binary starts small rank programs (a shell
// script, a Python script, //state's multi-process worker) and the tests
// check what each rank saw and how failures, signals and restarts end; and
// what is checked before any rank starts (the program, the GPUs a plan
// needs, `bazel run`'s working folder).

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/launcher_testutil.h"
#include "testing/files.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(LauncherTest, EachRankSeesItsEnvironmentAndOutputIsPrefixed) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "3", "--mixed_precision", "fp16",
       "--gradient_accumulation_steps", "4", "--main_process_port", "23456",
       RankProgram(), "env", "a", "b"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 3; ++rank) {
    const std::string p = absl::StrCat("[rank", rank, "]: ");
    EXPECT_TRUE(HasLine(result.output, p + absl::StrCat("ENV RANK=", rank)))
        << result.output;
    EXPECT_TRUE(HasLine(result.output, p + absl::StrCat("ENV LOCAL_RANK=", rank)));
    EXPECT_TRUE(HasLine(result.output, p + "ENV WORLD_SIZE=3"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV LOCAL_WORLD_SIZE=3"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV GROUP_RANK=0"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV MASTER_ADDR=127.0.0.1"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV MASTER_PORT=23456"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV ACCELERATE_MIXED_PRECISION=fp16"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV ACCELERATE_USE_CPU=True"));
    EXPECT_TRUE(HasLine(result.output,
                        p + "ENV ACCELERATE_GRADIENT_ACCUMULATION_STEPS=4"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV TORCHELASTIC_RESTART_COUNT=0"));
    EXPECT_TRUE(HasLine(result.output, p + "ARGS a b"));
    EXPECT_TRUE(HasLine(result.output, p + absl::StrCat("to stderr from ", rank)));
  }
}

TEST(LauncherTest, QuietDropsThePrefixAndPartialLinesArePrinted) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "-q", "--num_processes", "2", RankProgram(), "partial"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(HasLine(result.output, "no newline from 0")) << result.output;
  EXPECT_TRUE(HasLine(result.output, "no newline from 1")) << result.output;
  EXPECT_THAT(result.output, Not(HasSubstr("[rank")));
}

TEST(LauncherTest, ProgressBarRedrawsArePassedOnWithThePrefix) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "1", RankProgram(), "progress"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr("[rank0]: 10%\r[rank0]: 50%\r[rank0]: 100%\n"));
  // CRLF ends one line.
  EXPECT_THAT(result.output, HasSubstr("[rank0]: windows line\n"));
}

TEST(LauncherTest, AFailingRankStopsTheOthersAndIsSummarized) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "3", RankProgram(), "fail", "1", "3"});
  EXPECT_EQ(result.exit_code, 3) << result.output;
  // The other ranks sleep 60 s: they were stopped, not waited for.
  EXPECT_LT(result.elapsed, absl::Seconds(20));
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("rank 1 (pid"), HasSubstr("exited with code 3"),
                    HasSubstr("last lines of rank 1's stderr"),
                    HasSubstr("| boom from rank 1 line 2")));
}

TEST(LauncherTest, ARankKilledByASignalIsReported) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", RankProgram(), "segv", "0"});
  EXPECT_EQ(result.exit_code, 128 + SIGSEGV) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr("rank 0 (pid"));
  EXPECT_THAT(result.output, HasSubstr("killed by signal 11"));
  EXPECT_LT(result.elapsed, absl::Seconds(20));
}

TEST(LauncherTest, SignalsReachEveryRank) {
  const std::string dir = TestDir("signals");
  Subprocess launcher({Accelerate(), "launch", "--cpu", "--num_processes", "2",
                       RankProgram(), "wait_for_signal", dir},
                      {{"HF_HOME", TestDir("hf_home")}});
  ASSERT_TRUE(launcher.Start().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline &&
         (::access((dir + "/ready_0").c_str(), F_OK) != 0 ||
          ::access((dir + "/ready_1").c_str(), F_OK) != 0)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ::kill(launcher.pid(), SIGINT);
  ProcessResult result = launcher.Wait(absl::Seconds(30));
  EXPECT_EQ(result.exit_code, 128 + SIGINT) << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank0]: rank 0 got INT")) << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank1]: rank 1 got INT")) << result.output;
  EXPECT_THAT(result.output, HasSubstr("stopped every rank"));
}

TEST(LauncherTest, MaxRestartsRestartsTheWholeGroup) {
  ProcessResult result = RunAccelerate({"launch", "--cpu", "--num_processes",
                                        "2", "--max_restarts", "1",
                                        RankProgram(), "restart"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("restarting the group (restart 1 of 1)"));
  EXPECT_TRUE(HasLine(result.output, "[rank0]: rank 0 attempt 1 ok"));
  EXPECT_TRUE(HasLine(result.output, "[rank1]: rank 1 attempt 1 ok"));

  ProcessResult no_restart = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", RankProgram(), "restart"});
  EXPECT_EQ(no_restart.exit_code, 5) << no_restart.output;
  EXPECT_THAT(no_restart.output, Not(HasSubstr("restarting")));
}

TEST(LauncherTest, NothingIsLeftRunningAfterTheLaunch) {
  const std::string dir = TestDir("orphans");
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", RankProgram(), "grandchild", dir});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(absl::StrCat(dir, "/grandchild_", rank, ".pid"));
    int pid = 0;
    ASSERT_TRUE(in >> pid) << "rank " << rank << " wrote no pid";
    // Give the kernel a moment to reap what the launcher killed.
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (::kill(pid, 0) == 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_NE(::kill(pid, 0), 0) << "grandchild " << pid << " still runs";
  }
}

TEST(LauncherTest, ADetachedDescendantHoldingTheOutputDoesNotHangTheLaunch) {
  const std::string dir = TestDir("detached");
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", RankProgram(), "detached", dir});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_LT(result.elapsed, absl::Seconds(30));
  EXPECT_TRUE(HasLine(result.output, "[rank1]: rank 1 detached " + [&] {
    std::ifstream in(dir + "/detached_1.pid");
    std::string pid;
    in >> pid;
    return pid;
  }()));
  // The detached sleepers left their session; end them here.
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(absl::StrCat(dir, "/detached_", rank, ".pid"));
    int pid = 0;
    if (in >> pid && pid > 0) ::kill(pid, SIGKILL);
  }
}

TEST(LauncherTest, PythonScriptsRunWithTheInterpreter) {
  const std::string script = TestDir("python") + "/train.py";
  std::ofstream(script)
      << "import os\n"
         "print('python rank %s of %s mp %s' % (os.environ['RANK'], "
         "os.environ['WORLD_SIZE'], os.environ['ACCELERATE_MIXED_PRECISION']))\n";
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", "--mixed_precision", "bf16",
       script},
      {{"ACCELERATE_PYTHON", "/usr/bin/python3"}});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank0]: python rank 0 of 2 mp bf16"))
      << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank1]: python rank 1 of 2 mp bf16"));
}

TEST(LauncherTest, RanksJoinAProcessGroupAndRunCollectives) {
  ProcessResult result = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", "--main_process_port",
       absl::StrCat(PickFreePort()), Worker(), "collectives", "60"},
      {{"WORKER_TMPDIR", TestDir("collectives")}});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank0]: RESULT gather_scalar 0,1"));
  EXPECT_TRUE(HasLine(result.output, "[rank1]: RESULT reduce_sum 3,3"));
}

// Two launchers on 127.0.0.1 stand for two machines (the test sandbox has no
// network namespaces); they meet at machine 0's address and port.
TEST(LauncherTest, TwoMachinesMeetAtTheMainProcess) {
  RecordProperty("topology", "two launchers on 127.0.0.1");
  const int port = PickFreePort();
  std::vector<std::unique_ptr<Subprocess>> machines;
  for (int machine = 0; machine < 2; ++machine) {
    machines.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{
            Accelerate(), "launch", "--cpu", "--num_processes", "4",
            "--num_machines", "2", "--machine_rank", absl::StrCat(machine),
            "--main_process_ip", "127.0.0.1", "--main_process_port",
            absl::StrCat(port), Worker(), "collectives", "60"},
        std::map<std::string, std::string>{
            {"HF_HOME", TestDir("hf_home")},
            {"WORKER_TMPDIR", TestDir(absl::StrCat("machine", machine))}}));
    ASSERT_TRUE(machines.back()->Start().ok());
  }
  for (int machine = 0; machine < 2; ++machine) {
    ProcessResult result = machines[machine]->Wait(absl::Seconds(90));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    for (int local = 0; local < 2; ++local) {
      const int rank = 2 * machine + local;
      const std::string p = absl::StrCat("[rank", rank, "]: ");
      EXPECT_TRUE(HasLine(result.output, p + "RESULT gather_scalar 0,1,2,3"))
          << result.output;
      EXPECT_TRUE(HasLine(result.output,
                          p + absl::StrCat("RESULT rank ", rank, ",4,", local,
                                           ",", rank == 0, ",", rank == 3)))
          << result.output;
    }
  }
}

TEST(LauncherTest, LogDirKeepsEachRanksStreams) {
  const std::string dir = TestDir("logs");
  ProcessResult result = RunAccelerate({"launch", "--cpu", "--num_processes",
                                        "2", "--log_dir", dir, "--tee", "3",
                                        RankProgram(), "env"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::stringstream out, err;
  out << std::ifstream(dir + "/attempt_0/rank_1/stdout.log").rdbuf();
  err << std::ifstream(dir + "/attempt_0/rank_1/stderr.log").rdbuf();
  EXPECT_TRUE(HasLine(out.str(), "ENV RANK=1")) << out.str();
  EXPECT_TRUE(HasLine(err.str(), "to stderr from 1")) << err.str();
}

TEST(LauncherTest, DryRunPrintsThePlanAndStartsNothing) {
  const std::string dir = TestDir("dry");
  ProcessResult result = RunAccelerate({"launch", "--cpu", "--num_processes",
                                        "2", "--dry_run", RankProgram(),
                                        "grandchild", dir});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, AllOf(HasSubstr("resolved configuration"),
                                   HasSubstr("rank 1: "), HasSubstr("RANK=1")));
  EXPECT_NE(::access((dir + "/grandchild_0.pid").c_str(), F_OK), 0);
}

TEST(LauncherTest, BadInvocationsSayWhatIsWrong) {
  ProcessResult unknown = RunAccelerate({"launch", "--num_proc", "2", "x"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("unknown flag --num_proc"));
  ProcessResult choice = RunAccelerate(
      {"launch", "--mixed_precision", "fp17", "x"});
  EXPECT_EQ(choice.exit_code, 2);
  EXPECT_THAT(choice.output, HasSubstr("\"fp17\" is not one of no, fp16, bf16, fp8"));
  ProcessResult missing = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", "/nonexistent/program"});
  EXPECT_EQ(missing.exit_code, 127) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("cannot execute /nonexistent/program"));
  ProcessResult command = RunAccelerate({"lunch"});
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_THAT(command.output, HasSubstr("unknown command \"lunch\""));
}

TEST(LauncherTest, AProgramThatCannotRunIsReportedOnceBeforeAnyRankStarts) {
  ProcessResult missing = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "3", "/nonexistent/program"});
  EXPECT_EQ(missing.exit_code, 127) << missing.output;
  EXPECT_EQ(CountOf(missing.output, "cannot execute /nonexistent/program"), 1)
      << missing.output;
  // No rank was started, so none failed.
  EXPECT_THAT(missing.output, Not(HasSubstr("[rank")));
  EXPECT_THAT(missing.output, Not(HasSubstr("(pid")));

  const std::string script = TestDir("not_executable") + "/train.sh";
  std::ofstream(script) << "#!/bin/sh\necho started\n";
  ::chmod(script.c_str(), 0644);
  ProcessResult refused = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", script});
  EXPECT_EQ(refused.exit_code, 127) << refused.output;
  EXPECT_EQ(CountOf(refused.output,
                    "cannot execute " + script + ": is not executable"),
            1)
      << refused.output;
  EXPECT_THAT(refused.output, Not(HasSubstr("started")));

  ProcessResult unknown = RunAccelerate(
      {"launch", "--cpu", "--num_processes", "2", "no_such_program_here"});
  EXPECT_EQ(unknown.exit_code, 127) << unknown.output;
  EXPECT_EQ(CountOf(unknown.output,
                    "cannot execute no_such_program_here: not found in PATH"),
            1)
      << unknown.output;
}

TEST(LauncherTest, ADryRunChecksAGpuPlanOnAMachineWithoutGpus) {
  const std::string config = TestDir("gpu_plan") + "/gpus.yaml";
  std::ofstream(config) << "distributed_type: MULTI_GPU\nnum_processes: 2\n";
  // CUDA_VISIBLE_DEVICES="" hides any GPU this machine has.
  const std::map<std::string, std::string> no_gpus = {
      {"CUDA_VISIBLE_DEVICES", ""}};
  ProcessResult dry = RunAccelerate(
      {"launch", "--config_file", config, "--dry_run", "/elsewhere/train"},
      no_gpus);
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_THAT(dry.output,
              AllOf(HasSubstr("resolved configuration"),
                    HasSubstr("distributed_type: MULTI_GPU"),
                    HasSubstr("rank 1: /elsewhere/train"),
                    HasSubstr("ACCELERATE_USE_CPU=False"),
                    HasSubstr("warning: --multi_gpu (or distributed_type "
                              "MULTI_GPU) needs GPUs"),
                    HasSubstr("warning: cannot execute /elsewhere/train")));
  ProcessResult real = RunAccelerate(
      {"launch", "--config_file", config, RankProgram(), "env"}, no_gpus);
  EXPECT_EQ(real.exit_code, 2) << real.output;
  EXPECT_THAT(real.output, HasSubstr("this machine has none"));
  EXPECT_THAT(real.output, Not(HasSubstr("[rank")));
}

TEST(LauncherTest, DeepSpeedConfigsRunAsOurOwnProcesses) {
  // No `deepspeed` command: our ranks, with Accelerate's DeepSpeed
  // variables; what the training side does not act on is warned about.
  const std::string config = TestDir("deepspeed") + "/ds.yaml";
  std::ofstream(config) << "distributed_type: DEEPSPEED\nnum_processes: 2\n"
                           "deepspeed_config:\n  zero_stage: 3\n"
                           "  gradient_accumulation_steps: 2\n"
                           "  gradient_clipping: 1.0\n";
  ProcessResult result =
      RunAccelerate({"launch", "--config_file", config, "--main_process_port",
                     "0", RankProgram(), "env"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string p = absl::StrCat("[rank", rank, "]: ");
    EXPECT_TRUE(HasLine(result.output, p + absl::StrCat("ENV RANK=", rank)))
        << result.output;
    EXPECT_TRUE(HasLine(result.output, p + "ENV WORLD_SIZE=2"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV ACCELERATE_USE_DEEPSPEED=true"))
        << result.output;
    EXPECT_TRUE(
        HasLine(result.output, p + "ENV ACCELERATE_DEEPSPEED_ZERO_STAGE=3"));
    EXPECT_TRUE(HasLine(result.output,
                        p + "ENV ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2"));
    EXPECT_TRUE(HasLine(result.output,
                        p + "ENV ACCELERATE_CONFIG_DS_FIELDS=zero_stage,"
                            "gradient_accumulation_steps,gradient_clipping"));
    EXPECT_TRUE(HasLine(result.output, p + "ENV ACCELERATE_USE_FSDP=<unset>"));
  }
  EXPECT_EQ(CountOf(result.output,
                    "warning: deepspeed_config.gradient_clipping 1.0: "
                    "exported as ACCELERATE_GRADIENT_CLIPPING"),
            1)
      << result.output;

  // The flags alone, and a refusal naming the bad value.
  ProcessResult flags = RunAccelerate(
      {"launch", "--use_deepspeed", "--zero_stage", "1", "--num_processes", "2",
       "--main_process_port", "0", RankProgram(), "env"});
  ASSERT_EQ(flags.exit_code, 0) << flags.output;
  EXPECT_TRUE(
      HasLine(flags.output, "[rank1]: ENV ACCELERATE_DEEPSPEED_ZERO_STAGE=1"))
      << flags.output;
  ProcessResult bad =
      RunAccelerate({"launch", "--use_deepspeed", "--offload_param_device",
                     "disk", RankProgram(), "env"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output,
              HasSubstr("--offload_param_device: \"disk\" is not one of "
                        "none, cpu, nvme"));
  EXPECT_THAT(bad.output, Not(HasSubstr("[rank")));
}

TEST(LauncherTest, BazelRunsWorkingDirectoryResolvesTheUsersPaths) {
  const std::string user = TestDir("user_folder");
  ::mkdir((user + "/tools").c_str(), 0755);
  ::symlink(RankProgram().c_str(), (user + "/tools/rank.sh").c_str());
  std::ofstream(user + "/two.yaml")
      << "distributed_type: MULTI_CPU\nnum_processes: 2\nuse_cpu: true\n";
  const std::string runfiles = TestDir("runfiles_like");
  ProcessResult result = RunAccelerateAsBazelRun(
      runfiles, user,
      {"launch", "--config_file", "two.yaml", "--log_dir", "logs", "--tee",
       "1", "tools/rank.sh", "pwd"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // The ranks start where the user typed the command.
  EXPECT_TRUE(HasLine(result.output, "[rank0]: PWD " + RealPath(user)))
      << result.output;
  EXPECT_TRUE(HasLine(result.output, "[rank1]: PWD " + RealPath(user)))
      << result.output;
  std::stringstream log;
  log << std::ifstream(user + "/logs/attempt_0/rank_1/stdout.log").rdbuf();
  EXPECT_TRUE(HasLine(log.str(), "PWD " + RealPath(user))) << log.str();

  // A missing relative program is named by its resolved path.
  ProcessResult missing = RunAccelerateAsBazelRun(
      runfiles, user, {"launch", "--cpu", "tools/missing.sh"});
  EXPECT_EQ(missing.exit_code, 127) << missing.output;
  EXPECT_EQ(CountOf(missing.output,
                    "cannot execute " + user + "/tools/missing.sh"),
            1)
      << missing.output;

}

TEST(LauncherTest, HelpExplainsEveryCommand) {
  ProcessResult help = RunAccelerate({"launch", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(
      help.output,
      AllOf(HasSubstr("--num_processes"), HasSubstr("--max_restarts"),
            HasSubstr("--fsdp_sharding_strategy"), HasSubstr("--use_deepspeed"),
            HasSubstr("--zero_stage"), HasSubstr("--main_process_ip")));
  for (const char* command : {"config", "env", "test"}) {
    ProcessResult result = RunAccelerate({command, "--help"});
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_THAT(result.output, HasSubstr(absl::StrCat("accelerate ", command)));
  }
}

}  // namespace
}  // namespace accelerate::launch
