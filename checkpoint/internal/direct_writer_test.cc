#include "checkpoint/internal/direct_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::checkpoint_internal {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

constexpr size_t kChunk = DirectWriter::kChunkBytes;
constexpr size_t kTmpfsMagic = 0x01021994;

// `n` seeded pseudo-random bytes.
std::string Bytes(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

// Writes `contents` to `path` in pieces of the given sizes (cycled) and
// returns whether the writer stayed direct.
bool WriteInPieces(const std::string& path, const std::string& contents,
                   const std::vector<size_t>& pieces, bool direct = true) {
  absl::StatusOr<std::unique_ptr<DirectWriter>> file =
      DirectWriter::Create(path, direct);
  EXPECT_OK(file.status());
  if (!file.ok()) return false;
  size_t at = 0;
  for (size_t i = 0; at < contents.size(); ++i) {
    const size_t n = std::min(pieces[i % pieces.size()], contents.size() - at);
    EXPECT_OK((*file)->Append(absl::string_view(contents).substr(at, n)));
    at += n;
  }
  EXPECT_EQ((*file)->bytes_appended(), contents.size());
  const bool stayed_direct = (*file)->direct();
  EXPECT_OK((*file)->Close());
  return stayed_direct;
}

// Pages of `path` in the page cache, and pages in all.
std::pair<size_t, size_t> CachedPages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  struct stat info;
  EXPECT_EQ(::fstat(fd, &info), 0);
  const size_t page = ::sysconf(_SC_PAGESIZE);
  const size_t pages = (info.st_size + page - 1) / page;
  void* map = ::mmap(nullptr, info.st_size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  EXPECT_NE(map, MAP_FAILED);
  std::vector<unsigned char> resident(pages);
  EXPECT_EQ(::mincore(map, info.st_size, resident.data()), 0);
  ::munmap(map, info.st_size);
  size_t cached = 0;
  for (unsigned char r : resident) cached += r & 1;
  return {cached, pages};
}

bool OnTmpfs(const std::string& path) {
  struct statfs info;
  return ::statfs(path.c_str(), &info) == 0 && info.f_type == kTmpfsMagic;
}

TEST(DirectWriterTest, FilesHoldExactlyTheBytesAppendedAtEverySize) {
  const std::string dir = FreshTestDir("sizes");
  const std::vector<size_t> sizes = {0,         1,         4095,
                                     4096,      4097,      kChunk - 1,
                                     kChunk,    kChunk + 1, 3 * kChunk + 12345};
  const std::vector<std::vector<size_t>> splits = {
      {1 << 30}, {1}, {4096}, {3, 8191, 1 << 20}, {kChunk + 7}};
  for (bool direct : {true, false}) {
    for (size_t s = 0; s < sizes.size(); ++s) {
      for (size_t p = 0; p < splits.size(); ++p) {
        // One byte at a time only for small files (a syscall each when
        // not direct).
        if (sizes[s] > 65536 && splits[p][0] == 1) continue;
        const std::string path =
            dir + "/f" + std::to_string(s) + "_" + std::to_string(p);
        const std::string contents = Bytes(sizes[s], s * 31 + p);
        WriteInPieces(path, contents, splits[p], direct);
        EXPECT_EQ(ReadFileOrDie(path), contents)
            << "size " << sizes[s] << ", split " << p << ", direct "
            << direct;
      }
    }
  }
}

TEST(DirectWriterTest, BypassesThePageCacheWhereTheFileSystemAllows) {
  const std::string dir = FreshTestDir("direct");
  if (OnTmpfs(dir)) GTEST_SKIP() << dir << " is on tmpfs (all page cache)";
  const std::string contents = Bytes(4 * kChunk + 100, 7);
  ASSERT_TRUE(WriteInPieces(dir + "/direct", contents, {1000}));
  WriteInPieces(dir + "/cached", contents, {1000}, /*direct=*/false);
  // Only the tail (under one chunk) went through the page cache.
  const auto [direct_cached, pages] = CachedPages(dir + "/direct");
  EXPECT_LE(direct_cached, kChunk / 4096 + 1) << "of " << pages;
  EXPECT_EQ(CachedPages(dir + "/cached").first, pages);
  EXPECT_EQ(ReadFileOrDie(dir + "/direct"), contents);
}

TEST(DirectWriterTest, AFullDiskIsResourceExhausted) {
  const std::string path = "/dev/full";
  if (::access(path.c_str(), W_OK) != 0) GTEST_SKIP() << "no " << path;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DirectWriter> file,
                       DirectWriter::Create(path));
  absl::Status status = file->Append(Bytes(kChunk, 3));
  if (status.ok()) status = file->Close();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("cannot write /dev/full")));
  // Later calls report the same error.
  EXPECT_THAT(file->Append("x"),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(DirectWriterTest, ErrorsNameTheFile) {
  const std::string path = FreshTestDir("errors") + "/missing/file";
  EXPECT_THAT(DirectWriter::Create(path).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

}  // namespace
}  // namespace accelerate::checkpoint_internal
