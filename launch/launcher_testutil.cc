#include "launch/launcher_testutil.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "testing/files.h"

namespace accelerate::launch {

using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestDir;

std::string Accelerate() { return Runfile("launch/accelerate"); }

std::string RankProgram() {
  return Runfile("launch/testdata/rank_program.sh");
}

std::string Worker() { return Runfile("state/multiprocess_worker"); }

ProcessResult RunAccelerate(const std::vector<std::string>& args,
                            std::map<std::string, std::string> env,
                            absl::Duration timeout) {
  std::vector<std::string> argv = {Accelerate()};
  argv.insert(argv.end(), args.begin(), args.end());
  env.emplace("HF_HOME", TestDir("hf_home"));
  Subprocess process(argv, env);
  EXPECT_TRUE(process.Start().ok());
  return process.Wait(timeout);
}

ProcessResult RunAccelerateAsBazelRun(const std::string& cwd,
                                      const std::string& user_folder,
                                      const std::vector<std::string>& args) {
  std::string command =
      absl::StrCat("cd '", cwd, "' && exec '", Accelerate(), "'");
  for (const std::string& arg : args) absl::StrAppend(&command, " '", arg, "'");
  Subprocess process({"/bin/sh", "-c", command},
                     {{"BUILD_WORKING_DIRECTORY", user_folder},
                      {"HF_HOME", TestDir("hf_home")}});
  EXPECT_TRUE(process.Start().ok());
  return process.Wait(absl::Seconds(60));
}

bool HasLine(const std::string& output, const std::string& line) {
  for (absl::string_view l : absl::StrSplit(output, '\n')) {
    if (l == line) return true;
  }
  return false;
}

int CountOf(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos;
       at = text.find(part, at + part.size())) {
    ++count;
  }
  return count;
}

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? resolved : path;
}

}  // namespace accelerate::launch
