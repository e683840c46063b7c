#include "testing/files.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "state/logging.h"

namespace accelerate::testing {

std::string TestPath(absl::string_view name) {
  const char* root = std::getenv("TEST_TMPDIR");
  ACCELERATE_CHECK(root != nullptr && *root != '\0')
      << "TEST_TMPDIR is not set: run the test under bazel test";
  if (name.empty()) return root;
  return absl::StrCat(root, "/", name);
}

std::string TestDir(absl::string_view name) {
  const std::string dir = TestPath(name);
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  ACCELERATE_CHECK(!error) << "cannot create " << dir << ": "
                           << error.message();
  return dir;
}

std::string FreshTestDir(absl::string_view name) {
  const std::string dir = TestPath(name);
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  ACCELERATE_CHECK(!error) << "cannot remove " << dir << ": "
                           << error.message();
  return TestDir(name);
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ACCELERATE_CHECK(in.good()) << "cannot open " << path;
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void WriteFileOrDie(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  ACCELERATE_CHECK(out.good()) << "cannot write " << path;
}

}  // namespace accelerate::testing
