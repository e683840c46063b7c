#include "checkpoint/folder.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "checkpoint/inspect.h"
#include "checkpoint/project.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::checkpoint {
namespace {

namespace fs = std::filesystem;
using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::HasSubstr;

TEST(FolderTest, StagingFolderIsAHiddenSibling) {
  EXPECT_EQ(StagingFolder("/p/checkpoints/checkpoint_3"),
            "/p/checkpoints/.checkpoint_3.partial");
  EXPECT_EQ(StagingFolder("/p/out/"), "/p/.out.partial");
  EXPECT_EQ(StagingFolder("step_5"), "./.step_5.partial");
  EXPECT_TRUE(IsStagingName(".checkpoint_3.partial"));
  EXPECT_FALSE(IsStagingName("checkpoint_3"));
}

TEST(FolderTest, CommitReplacesAnExistingFolderWhole) {
  const std::string root = FreshTestDir("commit");
  const std::string target = root + "/ckpt";
  // First commit: a rename.
  ASSERT_OK(RecreateFolder(StagingFolder(target)));
  ASSERT_OK(WriteFileSynced(StagingFolder(target) + "/a.txt", "old"));
  ASSERT_OK(CommitFolder(StagingFolder(target), target));
  EXPECT_EQ(ReadFileOrDie(target + "/a.txt"), "old");
  // Second: an exchange; nothing of the old folder is left.
  ASSERT_OK(RecreateFolder(StagingFolder(target)));
  ASSERT_OK(WriteFileSynced(StagingFolder(target) + "/b.txt", "new"));
  ASSERT_OK(CommitFolder(StagingFolder(target), target));
  EXPECT_EQ(ReadFileOrDie(target + "/b.txt"), "new");
  EXPECT_FALSE(fs::exists(target + "/a.txt"));
  EXPECT_FALSE(fs::exists(StagingFolder(target)));
}

TEST(FolderTest, RecoverPutsBackAFolderLeftAsideByAnInterruptedCommit) {
  const std::string root = FreshTestDir("recover");
  const std::string target = root + "/ckpt";
  fs::create_directories(target + ".old");
  WriteFileOrDie(target + ".old/a.txt", "kept");
  ASSERT_OK(RecoverFolder(target));
  EXPECT_EQ(ReadFileOrDie(target + "/a.txt"), "kept");
  ASSERT_OK(RecoverFolder(target));  // Nothing to do.
}

TEST(FolderTest, FileSizeNamesAMissingFile) {
  EXPECT_THAT(FileSize(FreshTestDir("size") + "/none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/none")));
}

// A complete checkpoint of ours: a manifest and its files.
void WriteCheckpoint(const std::string& dir, int processes) {
  fs::create_directories(dir);
  CheckpointManifest manifest;
  manifest.set_format(kManifestFormat);
  manifest.set_version(1);
  manifest.set_num_processes(processes);
  auto add = [&](const std::string& name, const std::string& kind,
                 int process) {
    WriteFileOrDie(dir + "/" + name, name);
    CheckpointFile* file = manifest.add_files();
    file->set_name(name);
    file->set_bytes(name.size());
    file->set_kind(kind);
    file->set_process(process);
  };
  add("model.safetensors", "model", 0);
  for (int p = 0; p < processes; ++p) {
    add("random_states_" + std::to_string(p) + ".pkl", "random_states", p);
  }
  ASSERT_OK(WriteManifest(dir, manifest));
}

TEST(InspectTest, CompleteTruncatedMissingAndPythonFolders) {
  const std::string root = FreshTestDir("inspect");
  WriteCheckpoint(root + "/ours", 2);
  ASSERT_OK_AND_ASSIGN(CheckpointReport ours, InspectCheckpoint(root + "/ours"));
  EXPECT_TRUE(ours.complete);
  EXPECT_TRUE(ours.has_manifest);
  EXPECT_EQ(ours.num_processes, 2);

  WriteFileOrDie(root + "/ours/random_states_1.pkl", "random");
  fs::remove(root + "/ours/model.safetensors");
  ASSERT_OK_AND_ASSIGN(CheckpointReport broken,
                       InspectCheckpoint(root + "/ours"));
  EXPECT_FALSE(broken.complete);
  EXPECT_THAT(broken.problems,
              ::testing::UnorderedElementsAre(
                  HasSubstr("model.safetensors (written by process 0) is "
                            "missing"),
                  HasSubstr("random_states_1.pkl has 6 bytes, not the 19")));

  fs::create_directories(root + "/python");
  WriteFileOrDie(root + "/python/model.safetensors", "m");
  WriteFileOrDie(root + "/python/optimizer.bin", "o");
  WriteFileOrDie(root + "/python/random_states_0.pkl", "r");
  ASSERT_OK_AND_ASSIGN(CheckpointReport python,
                       InspectCheckpoint(root + "/python"));
  EXPECT_TRUE(python.complete);
  EXPECT_FALSE(python.has_manifest);
  EXPECT_EQ(python.num_processes, 1);

  WriteFileOrDie(root + "/python/accelerate_cpp_checkpoint.json", "{oops");
  ASSERT_OK_AND_ASSIGN(CheckpointReport garbled,
                       InspectCheckpoint(root + "/python"));
  EXPECT_FALSE(garbled.complete);
  EXPECT_THAT(garbled.problems[0],
              HasSubstr("accelerate_cpp_checkpoint.json does not parse"));
  EXPECT_THAT(InspectCheckpoint(root + "/absent"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ProjectTest, NumbersSortAsAccelerateSortsThem) {
  EXPECT_EQ(CheckpointNumber("checkpoint_12"), 12);
  EXPECT_EQ(CheckpointNumber("run3_checkpoint_7"), 7);
  EXPECT_EQ(CheckpointNumber("latest"), std::nullopt);
  ProjectConfiguration project{.project_dir = "/p", .iteration = 4};
  EXPECT_EQ(AutomaticCheckpointFolder(project), "/p/checkpoints/checkpoint_4");
}

TEST(ProjectTest, LatestSkipsIncompleteAndPruneKeepsAComplete) {
  ProjectConfiguration project{.project_dir = FreshTestDir("project"),
                               .automatic_checkpoint_naming = true,
                               .total_limit = 2};
  const std::string dir = CheckpointsFolder(project);
  for (int i : {0, 2, 10}) {
    WriteCheckpoint(dir + "/checkpoint_" + std::to_string(i), 1);
  }
  fs::create_directories(dir + "/checkpoint_11");  // A crashed save.
  fs::create_directories(dir + "/.checkpoint_12.partial");
  ASSERT_OK_AND_ASSIGN(std::vector<ListedCheckpoint> listed,
                       ListCheckpoints(dir));
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[2].number, 10);  // By number, not by name.
  EXPECT_FALSE(listed[3].complete);
  ASSERT_OK_AND_ASSIGN(std::string latest, LatestCheckpoint(dir));
  EXPECT_EQ(latest, dir + "/checkpoint_10");

  ASSERT_OK_AND_ASSIGN(std::vector<std::string> removed,
                       PruneCheckpoints(project));
  EXPECT_THAT(removed, ::testing::ElementsAre(dir + "/checkpoint_0"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoint_2"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoint_11"));  // Newer than any complete.

  // Only incomplete ones newer than the last complete: it stays.
  project.total_limit = 1;
  ASSERT_OK(PruneCheckpoints(project).status());
  EXPECT_TRUE(fs::exists(dir + "/checkpoint_10"));
  EXPECT_FALSE(fs::exists(dir + "/checkpoint_2"));
  EXPECT_THAT(LatestCheckpoint(FreshTestDir("empty")),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accelerate::checkpoint
