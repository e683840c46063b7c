// Tests of the dtype table: every row agrees with LibTorch, and lookups by
// each name and by scalar type find the same rows.

#include "bigmodel/dtype.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include <c10/core/ScalarType.h>
#include "bigmodel/torch_dtype.h"

namespace accelerate::bigmodel {
namespace {

TEST(DtypeTest, EveryRowAgreesWithLibTorch) {
  for (const Dtype& dtype : AllDtypes()) {
    const at::ScalarType type = ScalarTypeOf(dtype);
    const std::string name(dtype.pytorch_name);
    EXPECT_EQ(static_cast<size_t>(dtype.bytes), c10::elementSize(type)) << name;
    EXPECT_EQ(dtype.floating, at::isFloatingType(type)) << name;
    EXPECT_EQ(DtypeOf(type), &dtype) << name;
  }
}

TEST(DtypeTest, NamesAreUniqueAndFindTheirRow) {
  std::set<absl::string_view> safetensors, pytorch;
  for (const Dtype& dtype : AllDtypes()) {
    EXPECT_TRUE(safetensors.insert(dtype.safetensors_name).second);
    EXPECT_TRUE(pytorch.insert(dtype.pytorch_name).second);
    EXPECT_EQ(DtypeBySafetensorsName(dtype.safetensors_name), &dtype);
    EXPECT_EQ(DtypeByPytorchName(dtype.pytorch_name), &dtype);
  }
  EXPECT_EQ(DtypeBySafetensorsName("F17"), nullptr);
  EXPECT_EQ(DtypeByPytorchName("float17"), nullptr);
  EXPECT_EQ(DtypeByPytorchName("F32"), nullptr);
}

// Every dtype safetensors and LibTorch share, with PyTorch's names (the
// table once had complex64 in one copy only, and unsigned and fp8 types in
// another).
TEST(DtypeTest, CoversTheSharedTypes) {
  ASSERT_NE(DtypeOf(at::kBFloat16), nullptr);
  EXPECT_EQ(DtypeOf(at::kBFloat16)->pytorch_name, "bfloat16");
  ASSERT_NE(DtypeOf(at::kComplexFloat), nullptr);
  EXPECT_EQ(DtypeOf(at::kComplexFloat)->pytorch_name, "complex64");
  EXPECT_EQ(DtypeOf(at::kComplexFloat)->safetensors_name, "C64");
  EXPECT_EQ(DtypeByPytorchName("complex64")->bytes, 8);
  EXPECT_EQ(ScalarTypeOf(*DtypeByPytorchName("complex64")), at::kComplexFloat);
  EXPECT_EQ(DtypeOf(at::kComplexDouble), nullptr);
  for (const char* name :
       {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0"}) {
    EXPECT_NE(DtypeBySafetensorsName(name), nullptr) << name;
  }
  EXPECT_EQ(ScalarTypeOf(*DtypeBySafetensorsName("F8_E4M3")),
            at::kFloat8_e4m3fn);
  EXPECT_EQ(DtypeBySafetensorsName("U16")->pytorch_name, "uint16");
}

// What an offload folder can hold: what numpy has (Accelerate writes .dat
// files through numpy), and bfloat16 as int16.
TEST(DtypeTest, OffloadableDtypesAreNumpys) {
  EXPECT_TRUE(DtypeByPytorchName("bfloat16")->offloadable);
  EXPECT_TRUE(DtypeByPytorchName("bool")->offloadable);
  EXPECT_TRUE(DtypeByPytorchName("complex64")->offloadable);
  EXPECT_FALSE(DtypeByPytorchName("float8_e4m3fn")->offloadable);
}

}  // namespace
}  // namespace accelerate::bigmodel
