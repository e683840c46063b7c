#include "testing/files.h"

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace accelerate::testing {
namespace {

TEST(FilesTest, FreshTestDirIsEmptyEvenWhenItExisted) {
  const std::string dir = FreshTestDir("fresh");
  WriteFileOrDie(dir + "/left_over", "x");
  EXPECT_EQ(FreshTestDir("fresh"), dir);
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(FilesTest, TestDirKeepsWhatItHolds) {
  const std::string dir = TestDir("kept/inner");
  WriteFileOrDie(dir + "/file", "x");
  EXPECT_EQ(TestDir("kept/inner"), dir);
  EXPECT_EQ(ReadFileOrDie(dir + "/file"), "x");
}

TEST(FilesTest, WrittenBytesReadBackIncludingZeros) {
  const std::string path = TestPath("bytes.bin");
  const std::string bytes("a\0b\n", 4);
  WriteFileOrDie(path, bytes);
  EXPECT_EQ(ReadFileOrDie(path), bytes);
  WriteFileOrDie(path, "c");
  EXPECT_EQ(ReadFileOrDie(path), "c");
}

TEST(FilesTest, ReadingAMissingFileEndsTheProgramNamingIt) {
  EXPECT_DEATH(ReadFileOrDie(TestPath("missing.txt")), "missing.txt");
}

}  // namespace
}  // namespace accelerate::testing
