#include "launch/checkpoint_command.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/inspect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/files.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::TestDir;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `accelerate checkpoint ARGS` in this process, capturing what it
// writes on std::cout and std::cerr.
CommandResult RunCheckpoint(const std::vector<std::string>& args,
                            const state::Environment& env =
                                state::MapEnvironment()) {
  std::ostringstream out;
  std::ostringstream err;
  std::streambuf* const old_out = std::cout.rdbuf(out.rdbuf());
  std::streambuf* const old_err = std::cerr.rdbuf(err.rdbuf());
  CommandResult result;
  result.exit_code = RunCheckpointCommand(args, env);
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  result.out = out.str();
  result.err = err.str();
  return result;
}

struct SavedFile {
  const char* name;
  size_t bytes;
  int process;
  const char* kind;
};

// What two processes save: a model, an optimizer, a generator state each.
const std::vector<SavedFile>& TwoProcessFiles() {
  static const auto* const kFiles = new std::vector<SavedFile>{
      {"model.safetensors", 100, 0, "model"},
      {"optimizer.bin", 50, 0, "optimizer"},
      {"random_states_0.pkl", 10, 0, "random_states"},
      {"random_states_1.pkl", 12, 1, "random_states"},
  };
  return *kFiles;
}

// Writes a complete accelerate-cpp checkpoint of two processes into `dir`
// (created): the files at their sizes, then the manifest that lists them.
void WriteOurCheckpoint(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  ASSERT_FALSE(error) << dir << ": " << error.message();
  checkpoint::CheckpointManifest manifest;
  manifest.set_format(checkpoint::kManifestFormat);
  manifest.set_version(1);
  manifest.set_num_processes(2);
  manifest.set_iteration(3);
  for (const SavedFile& file : TwoProcessFiles()) {
    WriteFileOrDie(absl::StrCat(dir, "/", file.name),
                   std::string(file.bytes, 'x'));
    checkpoint::CheckpointFile* entry = manifest.add_files();
    entry->set_name(file.name);
    entry->set_bytes(file.bytes);
    entry->set_process(file.process);
    entry->set_kind(file.kind);
  }
  const absl::Status written = checkpoint::WriteManifest(dir, manifest);
  ASSERT_TRUE(written.ok()) << written;
}

// Writes what Python Accelerate saves for one process (no manifest).
void WritePythonCheckpoint(const std::string& dir) {
  WriteFileOrDie(dir + "/model.safetensors", std::string(64, 'm'));
  WriteFileOrDie(dir + "/random_states_0.pkl", std::string(8, 'r'));
}

TEST(CheckpointCommandTest, CheckReportsACompleteCheckpointOfOurs) {
  const std::string dir = FreshTestDir("ours_complete");
  ASSERT_NO_FATAL_FAILURE(WriteOurCheckpoint(dir));
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out,
              AllOf(HasSubstr("Checkpoint folder: " + dir + "\n"),
                    HasSubstr("Written by: accelerate-cpp (manifest "
                              "accelerate_cpp_checkpoint.json)\n"),
                    HasSubstr("Processes: 2\n"),
                    ContainsRegex("NAME +KIND +PROCESS +BYTES +EXPECTED\n"),
                    ContainsRegex("model\\.safetensors +model +0 +100 +100\n"),
                    ContainsRegex("optimizer\\.bin +optimizer +0 +50 +50\n"),
                    ContainsRegex(
                        "random_states_1\\.pkl +random_states +1 +12 +12\n"),
                    HasSubstr("Complete: yes\n")));
  EXPECT_THAT(result.out, Not(HasSubstr("Problems:")));
  EXPECT_THAT(result.err, IsEmpty());
}

TEST(CheckpointCommandTest, CheckNamesATruncatedFileAndExitsOne) {
  const std::string dir = FreshTestDir("ours_truncated");
  ASSERT_NO_FATAL_FAILURE(WriteOurCheckpoint(dir));
  WriteFileOrDie(dir + "/optimizer.bin", std::string(20, 'x'));
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, kIncompleteCheckpointExitCode) << result.out;
  EXPECT_THAT(result.out,
              AllOf(ContainsRegex("optimizer\\.bin +optimizer +0 +20 +50\n"),
                    HasSubstr("Complete: no\n"),
                    HasSubstr("Problems:\n  optimizer.bin has 20 bytes, not "
                              "the 50 written (truncated or changed)\n")));
}

TEST(CheckpointCommandTest, CheckNamesAMissingFileAndItsProcess) {
  const std::string dir = FreshTestDir("ours_missing");
  ASSERT_NO_FATAL_FAILURE(WriteOurCheckpoint(dir));
  ASSERT_EQ(::unlink((dir + "/random_states_1.pkl").c_str()), 0);
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, kIncompleteCheckpointExitCode) << result.out;
  EXPECT_THAT(
      result.out,
      AllOf(ContainsRegex("random_states_1\\.pkl +random_states +1 +missing "
                          "+12\n"),
            HasSubstr("  random_states_1.pkl (written by process 1) is "
                      "missing\n")));
}

TEST(CheckpointCommandTest, CheckRecognizesPythonAcceleratesFolder) {
  const std::string dir = FreshTestDir("python_complete");
  WritePythonCheckpoint(dir);
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, 0) << result.out;
  EXPECT_THAT(result.out,
              AllOf(HasSubstr("Written by: Python Accelerate or by hand "
                              "(no accelerate_cpp_checkpoint.json"),
                    HasSubstr("Processes: 1\n"),
                    ContainsRegex("NAME +KIND +PROCESS +BYTES\n"),
                    ContainsRegex("model\\.safetensors +model +\\? +64\n"),
                    ContainsRegex("random_states_0\\.pkl +random_states +0 "
                                  "+8\n"),
                    HasSubstr("Complete: yes\n")));
  EXPECT_THAT(result.out, Not(HasSubstr("EXPECTED")));
}

TEST(CheckpointCommandTest, CheckSaysWhatAPythonStyleFolderLacks) {
  const std::string dir = FreshTestDir("python_no_states");
  WriteFileOrDie(dir + "/model.safetensors", std::string(64, 'm'));
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, kIncompleteCheckpointExitCode) << result.out;
  EXPECT_THAT(result.out, AllOf(HasSubstr("Complete: no\n"),
                                HasSubstr("  random_states_0.pkl is "
                                          "missing\n")));
}

TEST(CheckpointCommandTest, CheckReportsAnUnreadableManifest) {
  const std::string dir = FreshTestDir("bad_manifest");
  WritePythonCheckpoint(dir);
  WriteFileOrDie(dir + "/accelerate_cpp_checkpoint.json", "{not json");
  const CommandResult result = RunCheckpoint({"check", dir});
  EXPECT_EQ(result.exit_code, kIncompleteCheckpointExitCode) << result.out;
  EXPECT_THAT(result.out,
              AllOf(HasSubstr("Written by: accelerate-cpp, but its manifest "
                              "accelerate_cpp_checkpoint.json cannot be read"),
                    HasSubstr("accelerate_cpp_checkpoint.json does not "
                              "parse")));
}

TEST(CheckpointCommandTest, CheckPrintsJson) {
  const std::string dir = FreshTestDir("ours_json");
  ASSERT_NO_FATAL_FAILURE(WriteOurCheckpoint(dir));
  ASSERT_EQ(::unlink((dir + "/random_states_1.pkl").c_str()), 0);
  WriteFileOrDie(dir + "/optimizer.bin", std::string(20, 'x'));
  const CommandResult result = RunCheckpoint({"check", "--json", dir});
  EXPECT_EQ(result.exit_code, kIncompleteCheckpointExitCode);
  EXPECT_EQ(
      result.out,
      absl::StrCat(
          "{\"folder\": \"", dir,
          "\", \"has_manifest\": true, \"complete\": false, "
          "\"num_processes\": 2, \"files\": ["
          "{\"name\": \"model.safetensors\", \"kind\": \"model\", "
          "\"process\": 0, \"bytes\": 100, \"expected_bytes\": 100}, "
          "{\"name\": \"optimizer.bin\", \"kind\": \"optimizer\", "
          "\"process\": 0, \"bytes\": 20, \"expected_bytes\": 50}, "
          "{\"name\": \"random_states_0.pkl\", \"kind\": \"random_states\", "
          "\"process\": 0, \"bytes\": 10, \"expected_bytes\": 10}, "
          "{\"name\": \"random_states_1.pkl\", \"kind\": \"random_states\", "
          "\"process\": 1, \"bytes\": null, \"expected_bytes\": 12}], "
          "\"problems\": [\"optimizer.bin has 20 bytes, not the 50 written "
          "(truncated or changed)\", \"random_states_1.pkl (written by "
          "process 1) is missing\"]}\n"));
  // Python's folder: no manifest, so no expected sizes, and the model's
  // process is unknown.
  const std::string python = FreshTestDir("python_json");
  WritePythonCheckpoint(python);
  const CommandResult plain = RunCheckpoint({"check", python, "--json"});
  EXPECT_EQ(plain.exit_code, 0);
  EXPECT_EQ(plain.out,
            absl::StrCat(
                "{\"folder\": \"", python,
                "\", \"has_manifest\": false, \"complete\": true, "
                "\"num_processes\": 1, \"files\": ["
                "{\"name\": \"model.safetensors\", \"kind\": \"model\", "
                "\"process\": null, \"bytes\": 64, \"expected_bytes\": "
                "null}, {\"name\": \"random_states_0.pkl\", \"kind\": "
                "\"random_states\", \"process\": 0, \"bytes\": 8, "
                "\"expected_bytes\": null}], \"problems\": []}\n"));
}

TEST(CheckpointCommandTest, CheckRejectsAMissingFolderByName) {
  const CommandResult no_folder = RunCheckpoint({"check"});
  EXPECT_EQ(no_folder.exit_code, 2);
  EXPECT_THAT(no_folder.err, HasSubstr("missing FOLDER"));
  const std::string missing = testing::TestPath("no_such_checkpoint");
  const CommandResult absent = RunCheckpoint({"check", missing});
  EXPECT_EQ(absent.exit_code, 2);
  EXPECT_THAT(absent.err, HasSubstr("accelerate checkpoint check: checkpoint "
                                    "folder " +
                                    missing + " does not exist"));
  EXPECT_THAT(absent.out, IsEmpty());
  const std::string file = FreshTestDir("a_file") + "/model.safetensors";
  WriteFileOrDie(file, "x");
  const CommandResult not_folder = RunCheckpoint({"check", file});
  EXPECT_EQ(not_folder.exit_code, 2);
  EXPECT_THAT(not_folder.err, HasSubstr(file + " is not a folder"));
}

TEST(CheckpointCommandTest, CheckTakesTheUsersFolderUnderBazelRun) {
  const std::string user = FreshTestDir("user_folder");
  ASSERT_NO_FATAL_FAILURE(WriteOurCheckpoint(user + "/run"));
  const state::MapEnvironment env({{"BUILD_WORKING_DIRECTORY", user}});
  const CommandResult result = RunCheckpoint({"check", "run"}, env);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("Checkpoint folder: " + user + "/run\n"));
}

// A project after four saves: 1 and 2 complete, 10 cut short (a truncated
// file), 11 interrupted while staging.
std::string WriteProject(const std::string& name) {
  const std::string project = FreshTestDir(name);
  const std::string checkpoints = project + "/checkpoints";
  WriteOurCheckpoint(checkpoints + "/checkpoint_1");
  WriteOurCheckpoint(checkpoints + "/checkpoint_2");
  WriteOurCheckpoint(checkpoints + "/checkpoint_10");
  WriteFileOrDie(checkpoints + "/checkpoint_10/model.safetensors", "short");
  TestDir(name + "/checkpoints/.checkpoint_11.partial");
  WriteFileOrDie(checkpoints + "/.checkpoint_11.partial/model.safetensors",
                 "half");
  return project;
}

TEST(CheckpointCommandTest, ListMarksTheLatestCompleteAndInterruptedSaves) {
  const std::string project = WriteProject("project_list");
  const std::string checkpoints = project + "/checkpoints";
  const CommandResult result = RunCheckpoint({"list", project});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // By number (10 after 2), the latest complete one marked, and the staging
  // folder last.
  EXPECT_EQ(result.out,
            absl::StrCat(
                "Checkpoints in ", checkpoints,
                ":\n"
                "  checkpoint_1            complete\n"
                "  checkpoint_2            complete (latest)\n"
                "  checkpoint_10           incomplete\n"
                "  .checkpoint_11.partial  interrupted save of "
                "checkpoint_11\n"
                "Latest complete: ",
                checkpoints,
                "/checkpoint_2\n"
                "`accelerate checkpoint check FOLDER` says why one is "
                "incomplete.\n"));
  // The checkpoints folder itself lists the same.
  const CommandResult direct = RunCheckpoint({"list", checkpoints});
  EXPECT_EQ(direct.exit_code, 0);
  EXPECT_EQ(direct.out, result.out);
}

TEST(CheckpointCommandTest, ListPrintsJson) {
  const std::string project = WriteProject("project_json");
  const std::string checkpoints = project + "/checkpoints";
  const CommandResult result = RunCheckpoint({"list", project, "--json"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            absl::StrCat(
                "{\"folder\": \"", checkpoints, "\", \"checkpoints\": [",
                "{\"name\": \"checkpoint_1\", \"path\": \"", checkpoints,
                "/checkpoint_1\", \"number\": 1, \"complete\": true, "
                "\"latest\": false}, ",
                "{\"name\": \"checkpoint_2\", \"path\": \"", checkpoints,
                "/checkpoint_2\", \"number\": 2, \"complete\": true, "
                "\"latest\": true}, ",
                "{\"name\": \"checkpoint_10\", \"path\": \"", checkpoints,
                "/checkpoint_10\", \"number\": 10, \"complete\": false, "
                "\"latest\": false}], \"latest\": \"",
                checkpoints, "/checkpoint_2\", \"interrupted_saves\": [\"",
                checkpoints, "/.checkpoint_11.partial\"]}\n"));
}

TEST(CheckpointCommandTest, ListOfAProjectWithoutCheckpointsSaysSo) {
  const std::string project = FreshTestDir("empty_project");
  const CommandResult result = RunCheckpoint({"list", project});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, absl::StrCat("No checkpoints in ", project,
                                     "\nLatest complete: none\n"));
  const CommandResult json = RunCheckpoint({"list", "--json", project});
  EXPECT_EQ(json.out,
            absl::StrCat("{\"folder\": \"", project,
                         "\", \"checkpoints\": [], \"latest\": null, "
                         "\"interrupted_saves\": []}\n"));
  // Only an incomplete one: none is the latest.
  TestDir("empty_project/checkpoints/checkpoint_4");
  const CommandResult incomplete = RunCheckpoint({"list", project});
  EXPECT_THAT(incomplete.out,
              AllOf(ContainsRegex("checkpoint_4 +incomplete\n"),
                    HasSubstr("Latest complete: none\n")));
  const std::string missing = testing::TestPath("no_such_project");
  const CommandResult absent = RunCheckpoint({"list", missing});
  EXPECT_EQ(absent.exit_code, 2);
  EXPECT_THAT(absent.err, HasSubstr(missing + " does not exist"));
}

TEST(CheckpointCommandTest, HelpAndBadSubcommands) {
  const CommandResult help = RunCheckpoint({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out,
              AllOf(HasSubstr("usage: accelerate checkpoint [flags] "
                              "{check,list} FOLDER"),
                    HasSubstr("check FOLDER:"), HasSubstr("list FOLDER:"),
                    HasSubstr("-h, --help")));
  const CommandResult none = RunCheckpoint({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("usage: accelerate checkpoint [flags]"));
  EXPECT_THAT(none.out, IsEmpty());
  const CommandResult unknown = RunCheckpoint({"verify", "x"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command \"verify\" (one of "
                                     "check, list)"));
  const CommandResult check_help = RunCheckpoint({"check", "--help"});
  EXPECT_EQ(check_help.exit_code, 0);
  EXPECT_THAT(check_help.out,
              AllOf(HasSubstr("usage: accelerate checkpoint check [flags] "
                              "FOLDER"),
                    HasSubstr("--json"), HasSubstr("\"expected_bytes\"")));
  const CommandResult list_help = RunCheckpoint({"list", "-h"});
  EXPECT_EQ(list_help.exit_code, 0);
  EXPECT_THAT(list_help.out, AllOf(HasSubstr("usage: accelerate checkpoint "
                                             "list [flags] FOLDER"),
                                   HasSubstr("\"interrupted_saves\"")));
  const CommandResult bad_flag = RunCheckpoint({"list", "--jsn", "x"});
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_THAT(bad_flag.err, HasSubstr("unknown flag --jsn"));
}

}  // namespace
}  // namespace accelerate::launch
