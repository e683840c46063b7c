// Real launches: the `accelerate` binary starts small rank programs (a shell
// script, a Python script, //state's multi-process worker) and the tests
// check what each rank saw and how failures, signals and restarts end.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Accelerate() { return Runfile("launch/accelerate"); }
std::string RankProgram() { return Runfile("launch/testdata/rank_program.sh"); }
std::string Worker() { return Runfile("state/multiprocess_worker"); }

std::string TmpDir(const std::string& name) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

// Runs `accelerate <args>` with a private HF_HOME (no default config).
ProcessResult RunAccelerate(const std::vector<std::string>& args,
                            std::map<std::string, std::string> env = {},
                            absl::Duration timeout = absl::Seconds(60)) {
  std::vector<std::string> argv = {Accelerate()};
  argv.insert(argv.end(), args.begin(), args.end());
  env.emplace("HF_HOME", TmpDir("hf_home"));
  Subprocess process(argv, env);
  EXPECT_TRUE(process.Start().ok());
  return process.Wait(timeout);
}

bool HasLine(const std::string& output, const std::string& line) {
  for (absl::string_view l : absl::StrSplit(output, '\n')) {
    if (l == line) return true;
  }
  return false;
}

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
  const std::string dir = TmpDir("signals");
  Subprocess launcher({Accelerate(), "launch", "--cpu", "--num_processes", "2",
                       RankProgram(), "wait_for_signal", dir},
                      {{"HF_HOME", TmpDir("hf_home")}});
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
  const std::string dir = TmpDir("orphans");
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
  const std::string dir = TmpDir("detached");
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
  const std::string script = TmpDir("python") + "/train.py";
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
      {{"WORKER_TMPDIR", TmpDir("collectives")}});
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
            {"HF_HOME", TmpDir("hf_home")},
            {"WORKER_TMPDIR", TmpDir(absl::StrCat("machine", machine))}}));
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
  const std::string dir = TmpDir("logs");
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
  const std::string dir = TmpDir("dry");
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

TEST(LauncherTest, HelpExplainsEveryCommand) {
  ProcessResult help = RunAccelerate({"launch", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output,
              AllOf(HasSubstr("--num_processes"), HasSubstr("--max_restarts"),
                    HasSubstr("--fsdp_sharding_strategy"),
                    HasSubstr("--main_process_ip")));
  for (const char* command : {"config", "env", "test"}) {
    ProcessResult result = RunAccelerate({command, "--help"});
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_THAT(result.output, HasSubstr(absl::StrCat("accelerate ", command)));
  }
}

TEST(CliTest, ConfigQuestionnaireWritesTheAnswers) {
  const std::string path = TmpDir("config") + "/answers.yaml";
  // multi-CPU, 1 machine, debug yes, 4 processes, bf16.
  Subprocess process({"/bin/sh", "-c",
                      absl::StrCat("printf '1\\n1\\nyes\\n4\\nbf16\\n' | ",
                                   Accelerate(), " config --config_file ", path)},
                     {});
  ASSERT_TRUE(process.Start().ok());
  ProcessResult result = process.Wait(absl::Seconds(30));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("accelerate configuration saved at " + path));
  std::stringstream yaml;
  yaml << std::ifstream(path).rdbuf();
  EXPECT_THAT(yaml.str(), AllOf(HasSubstr("distributed_type: 'MULTI_CPU'"),
                                HasSubstr("num_processes: 4"),
                                HasSubstr("debug: true"),
                                HasSubstr("mixed_precision: 'bf16'"),
                                HasSubstr("use_cpu: true")));
  // The written file drives a launch.
  ProcessResult launched = RunAccelerate(
      {"launch", "--config_file", path, RankProgram(), "env"});
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_TRUE(HasLine(launched.output, "[rank3]: ENV WORLD_SIZE=4"));
  EXPECT_TRUE(HasLine(launched.output, "[rank3]: ENV ACCELERATE_DEBUG_MODE=true"));
  EXPECT_TRUE(HasLine(launched.output,
                      "[rank0]: ENV ACCELERATE_MIXED_PRECISION=bf16"));
}

TEST(CliTest, ConfigRejectsBadAnswersByName) {
  const std::string path = TmpDir("config") + "/bad.yaml";
  Subprocess process({"/bin/sh", "-c",
                      absl::StrCat("printf 'quantum\\n' | ", Accelerate(),
                                   " config --config_file ", path)},
                     {});
  ASSERT_TRUE(process.Start().ok());
  ProcessResult result = process.Wait(absl::Seconds(30));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("got \"quantum\""));
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST(CliTest, ConfigDefaultWritesOnceAndEnvReportsIt) {
  const std::string home = TmpDir("default_home");
  ProcessResult first = RunAccelerate({"config", "default"}, {{"HF_HOME", home}});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("saved at " + home +
                                      "/accelerate/default_config.yaml"));
  ProcessResult second = RunAccelerate({"config", "default"}, {{"HF_HOME", home}});
  EXPECT_THAT(second.output, HasSubstr("already exists"));
  ProcessResult env = RunAccelerate({"env"}, {{"HF_HOME", home}});
  ASSERT_EQ(env.exit_code, 0);
  EXPECT_THAT(env.output,
              AllOf(HasSubstr("- `accelerate-cpp` version: "),
                    HasSubstr("- Platform: Linux"),
                    HasSubstr("- LibTorch version (built against): 2.13"),
                    HasSubstr("- System RAM: "),
                    HasSubstr("- `Accelerate` default config:"),
                    HasSubstr("\t- distributed_type: NO"),
                    HasSubstr("\t- use_cpu: true")));
}

TEST(CliTest, PlanShardsPrintsTheLibrarysPlan) {
  ProcessResult plan = RunAccelerate({"plan-shards", "--dataset_length=22",
                                      "--batch_size=3", "--num_processes=2"});
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_EQ(plan.output,
            "{\"ranks\": [[[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]], "
            "[[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 0, 1]]]}\n");
  ProcessResult split = RunAccelerate(
      {"plan-shards", "--dataset_length=21", "--batch_size=4",
       "--num_processes=2", "--split_batches", "--even_batches=false",
       "--skip_batches=4"});
  ASSERT_EQ(split.exit_code, 0) << split.output;
  EXPECT_EQ(split.output,
            "{\"ranks\": [[[16, 17], [20]], [[18, 19]]]}\n");
  ProcessResult stream = RunAccelerate({"plan-shards", "--dataset_length=10",
                                        "--batch_size=2", "--num_processes=2",
                                        "--iterable"});
  ASSERT_EQ(stream.exit_code, 0) << stream.output;
  EXPECT_EQ(stream.output,
            "{\"ranks\": [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [0, 1]]]}\n");
  ProcessResult shuffled = RunAccelerate(
      {"plan-shards", "--dataset_length=10", "--batch_size=5",
       "--num_processes=2", "--shuffle", "--seed=42"});
  ASSERT_EQ(shuffled.exit_code, 0) << shuffled.output;
  // torch.randperm(10) with seed 42 (checked against Python torch in
  // //data:sampler_test): [2, 6, 1, 8, 4, 5, 0, 9, 3, 7].
  EXPECT_EQ(shuffled.output,
            "{\"ranks\": [[[2, 6, 1, 8, 4]], [[5, 0, 9, 3, 7]]]}\n");
  ProcessResult bad = RunAccelerate({"plan-shards", "--dataset_length=3",
                                     "--batch_size=1", "--num_processes=4"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("3 samples cannot give each of 4 processes"));
}

TEST(CliTest, MergeWeightsJoinsTheShards) {
  const std::string dir = TmpDir("merge");
  // Two shards and an index, written by hand with the sample tool's files.
  const std::string tool = Runfile("bigmodel/safetensors_tool");
  for (const char* shard : {"a.safetensors", "b.safetensors"}) {
    Subprocess sample({tool, "sample", dir + "/" + shard}, {});
    ASSERT_TRUE(sample.Start().ok());
    ASSERT_EQ(sample.Wait(absl::Seconds(30)).exit_code, 0);
  }
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"f32": "a.safetensors", )"
      << R"("i64": "b.safetensors", "bool": "b.safetensors"}})";
  ProcessResult merged = RunAccelerate(
      {"merge-weights", dir, TmpDir("merged") + "/one.safetensors"});
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_THAT(merged.output, HasSubstr("merged 3 tensors from 2 shard(s)"));
  Subprocess dump({tool, "dump", TmpDir("merged") + "/one.safetensors"}, {});
  ASSERT_TRUE(dump.Start().ok());
  ProcessResult result = dump.Wait(absl::Seconds(30));
  EXPECT_THAT(result.output, AllOf(HasSubstr("f32 F32 [2,3] 0,0.25,0.5"),
                                   HasSubstr("i64 I64 [2] -7,9"),
                                   HasSubstr("bool BOOL [3] 1,0,1")));
  EXPECT_THAT(result.output, Not(HasSubstr("f64")));
  ProcessResult estimate = RunAccelerate(
      {"estimate-memory", TmpDir("merged") + "/one.safetensors", "--dtypes",
       "float32", "int8"});
  ASSERT_EQ(estimate.exit_code, 0) << estimate.output;
  // f32 [2,3] + i64 [2] + bool [3]: 24 + 16 + 3 = 43 bytes; the largest
  // layer is f32's 24.
  EXPECT_THAT(estimate.output,
              AllOf(HasSubstr("Memory Usage for loading"),
                    HasSubstr("│float32│   24 bytes  │  43 bytes │"),
                    HasSubstr(" 172 bytes "), HasSubstr("│  int8 │  6.0 bytes  │10.75 bytes│"),
                    HasSubstr(" N/A ")));
  ProcessResult missing = RunAccelerate({"merge-weights", TmpDir("nothing"), "x"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("neither model.safetensors.index.json"));
}

// A module tree (JSON) of float32 leaves named a, b, c, ... with these
// element counts.
std::string LeavesTree(const std::vector<int>& floats) {
  std::string children;
  for (size_t i = 0; i < floats.size(); ++i) {
    absl::StrAppend(&children, i ? ", " : "", R"({"name": ")",
                    std::string(1, static_cast<char>('a' + i)),
                    R"(", "class": "Linear", "params": [{"name": "weight", )",
                    R"("shape": [)", floats[i],
                    R"(], "dtype": "float32"}], "buffers": [], "children": []})");
  }
  return absl::StrCat(
      R"({"name": "", "class": "Net", "params": [], "buffers": [], "children": [)",
      children, "]}");
}

TEST(CliTest, PlanDeviceMapPlacesAModuleTree) {
  const std::string path = TmpDir("tree") + "/model.json";
  std::ofstream(path) << LeavesTree({100, 100, 100});
  // GPU 0 keeps 400 bytes for the largest layer, so only a fits; GPU 1 is
  // not a main device and takes the rest.
  ProcessResult result =
      RunAccelerate({"plan-device-map", path, "--max_memory", "0=1000,1=800"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr(R"({"device_map": {"a": 0, "b": 1, "c": 1}})"));
  result = RunAccelerate({"plan-device-map", path, "--max_memory",
                          "0=1000,1=800", "--dtype", "float16"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": 0}})"));
  // Balanced over the two GPUs: GPU 0 keeps 1200 / 2 + 1.25 x 400 = 1100,
  // 400 of it for the largest layer: only a fits there.
  result = RunAccelerate({"plan-device-map", path, "--max_memory", "0=5000,1=5000",
                          "--device_map", "balanced"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"a": 0, "b": 1, "c": 1}})"));
  result = RunAccelerate({"plan-device-map", path, "--max_memory", "0=5000", "--device_map",
                          "even"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("--device_map \"even\""));
  ProcessResult bad =
      RunAccelerate({"plan-device-map", path, "--max_memory", "0=lots"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("\"lots\""));
  // GPU 0 keeps 400 of its 500 bytes for the largest layer: a does not
  // fit, and without a fallback nothing goes there (a needed its 400 bytes
  // plus the 400 kept); with one, the small c does.
  const std::string uneven = TmpDir("uneven") + "/model.json";
  std::ofstream(uneven) << LeavesTree({100, 100, 10});
  result = RunAccelerate({"plan-device-map", uneven, "--max_memory", "0=500"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": "disk"}})"));
  EXPECT_THAT(result.output, HasSubstr("0: 800 bytes required"));
  result = RunAccelerate({"plan-device-map", uneven, "--max_memory", "0=500",
                          "--fallback_allocation", "--offload_buffers"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr(R"({"device_map": {"c": 0, "a": "disk", "b": "disk"}})"));
  ProcessResult no_memory = RunAccelerate({"plan-device-map", path});
  EXPECT_EQ(no_memory.exit_code, 2);
  EXPECT_THAT(no_memory.output, HasSubstr("--max_memory is required"));
}

TEST(CliTest, TestCommandRunsTheSelfCheck) {
  ProcessResult result = RunAccelerate({"test"}, {}, absl::Seconds(120));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("[rank0]: PASS gather"),
                    HasSubstr("[rank1]: PASS reduce mean"),
                    HasSubstr("Test is a success!")));
}

}  // namespace
}  // namespace accelerate::launch
