// Files and folders for tests, under Bazel's per-test `TEST_TMPDIR`.
//
// clang-format off
//   #include "gtest/gtest.h"
//   void Example() {
//     const std::string dir = FreshTestDir("offload");  // exists and is empty
//     WriteFileOrDie(dir + "/a.json", "{}");
//     EXPECT_EQ(ReadFileOrDie(dir + "/a.json"), "{}");
//   }
// clang-format on
//
// Failures (no `TEST_TMPDIR`, an unreadable file) end the test binary with a
// message: they are bugs in the test or its environment, not outcomes to
// assert. Thread safety: the functions are safe to call concurrently on
// different paths.

#ifndef ACCELERATE_TESTING_FILES_H_
#define ACCELERATE_TESTING_FILES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace accelerate::testing {

// `$TEST_TMPDIR/<name>` (`$TEST_TMPDIR` itself for an empty name), nothing
// created. REQUIRES: `TEST_TMPDIR` is set (as under `bazel test`).
std::string TestPath(absl::string_view name);

// `$TEST_TMPDIR/<name>` as a directory, created with its parents if missing;
// what it holds is kept.
std::string TestDir(absl::string_view name);

// `$TEST_TMPDIR/<name>` as an empty directory: removed first if it exists,
// then created with its parents.
std::string FreshTestDir(absl::string_view name);

// The bytes of `path`.
std::string ReadFileOrDie(const std::string& path);

// Replaces `path` with `contents`.
void WriteFileOrDie(const std::string& path, absl::string_view contents);

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_FILES_H_
