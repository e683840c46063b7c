#include "launch/paths.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/status_matchers.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A fresh folder under TEST_TMPDIR with an executable `tool`, a plain
// `notes.txt` and a folder `sub`.
std::string MakeFolder(const std::string& name) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/tool") << "#!/bin/sh\n";
  ::chmod((dir + "/tool").c_str(), 0755);
  std::ofstream(dir + "/notes.txt") << "notes\n";
  ::mkdir((dir + "/sub").c_str(), 0755);
  return dir;
}

TEST(ResolveUserPathTest, RelativePathsAreTakenFromBazelRunsFolder) {
  state::MapEnvironment bazel_run;
  bazel_run.Set("BUILD_WORKING_DIRECTORY", "/home/me/project");
  EXPECT_EQ(ResolveUserPath(bazel_run, "bazel-bin/examples/train"),
            "/home/me/project/bazel-bin/examples/train");
  EXPECT_EQ(ResolveUserPath(bazel_run, "/abs/config.yaml"), "/abs/config.yaml");
  EXPECT_EQ(UserWorkingDirectory(bazel_run), "/home/me/project");
  const state::MapEnvironment plain;
  EXPECT_EQ(ResolveUserPath(plain, "bazel-bin/examples/train"),
            "bazel-bin/examples/train");
  EXPECT_EQ(UserWorkingDirectory(plain), "");
}

TEST(FindExecutableTest, APathIsCheckedAndANameIsLookedUpInPath) {
  const std::string dir = MakeFolder("find");
  state::MapEnvironment env;
  env.Set("PATH", "/nonexistent:" + dir);
  EXPECT_THAT(FindExecutable(dir + "/tool", env), IsOkAndHolds(dir + "/tool"));
  EXPECT_THAT(FindExecutable("tool", env), IsOkAndHolds(dir + "/tool"));
  EXPECT_THAT(FindExecutable(dir + "/missing", env),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(dir + "/missing: no such file")));
  EXPECT_THAT(FindExecutable("missing", env),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("missing: not found in PATH"),
                             HasSubstr(dir))));
  EXPECT_THAT(FindExecutable(dir + "/notes.txt", env),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("notes.txt: is not executable")));
  EXPECT_THAT(FindExecutable(dir + "/sub", env),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("sub: is a folder")));
}

TEST(CheckReadableFileTest, NamesWhatIsWrong) {
  const std::string dir = MakeFolder("readable");
  EXPECT_OK(CheckReadableFile(dir + "/notes.txt"));
  EXPECT_THAT(CheckReadableFile(dir + "/gone.py"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.py")));
  EXPECT_THAT(CheckReadableFile(dir + "/sub"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("is a folder")));
}

TEST(SelfPathTest, NamesThisBinary) {
  EXPECT_THAT(SelfPath(), HasSubstr("paths_test"));
  EXPECT_THAT(SelfDirectory(), HasSubstr("launch"));
}

}  // namespace
}  // namespace accelerate::launch
