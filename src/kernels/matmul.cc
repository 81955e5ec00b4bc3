// Matrix products on oneDNN as ops.Custom(func_type="aot") kernels for MindSpore's CPU backend.
//
// Each kernel takes two float32 matrices and an int32 (1,) flag, and writes their float32
// product. With flag 1 the inputs are rounded to bfloat16 (nearest even) and multiplied with
// float32 accumulation, about twice as fast as float32 on a CPU with AVX512-BF16 (which the
// library needs); with flag 0 they are multiplied in float32.
//
//   EcapaMatMulNT: A (M, K), B (N, K), flag -> A B^T (M, N)   (forward of x W^T)
//   EcapaMatMulNN: A (M, K), B (K, N), flag -> A B   (M, N)   (gradient of x)
//   EcapaMatMulTN: A (K, M), B (K, N), flag -> A^T B (M, N)   (gradient of W)
//
// A kernel returns non-zero (and MindSpore raises) when given other shapes or types.
// Each has <name>InferShape and <name>InferType beside it: MindSpore calls them (also at run
// time, for inputs of dynamic shape) when the Custom op is given no Python shape function.
#include "runtime.h"

namespace {

using ecapa::Precision;
using ecapa::Variant;

// Inputs: two 2-D float32 matrices and the int32 (1,) precision flag; output: a 2-D float32 matrix.
bool valid(int nparam, const int* ndims, int64_t** shapes, const char** dtypes) {
  return nparam == 4 && ndims[0] == 2 && ndims[1] == 2 && ndims[2] == 1 && shapes[2][0] == 1 && ndims[3] == 2 &&
         std::strcmp(dtypes[0], "float32") == 0 && std::strcmp(dtypes[1], "float32") == 0 &&
         std::strcmp(dtypes[2], "int32") == 0 && std::strcmp(dtypes[3], "float32") == 0;
}

// C (m, n) = op(A) op(B) for float32 A, B, C (see ecapa::run_product).
int multiply(Variant variant, void** params, int64_t m, int64_t n, int64_t k) {
  const Precision precision = *static_cast<int32_t*>(params[2]) ? Precision::kBf16 : Precision::kF32;
  const float *a = static_cast<float*>(params[0]), *b = static_cast<float*>(params[1]);
  float* c = static_cast<float*>(params[3]);
  try {
    if (precision == Precision::kF32) {  // oneDNN reads the float32 inputs as they are
      ecapa::run_product(variant, precision, a, b, c, m, n, k);
      return 0;
    }
    void* a16 = ecapa::scratch(0, static_cast<size_t>(m * k) * 2);
    void* b16 = ecapa::scratch(1, static_cast<size_t>(k * n) * 2);
    ecapa::pack(a, a16, static_cast<size_t>(m * k), precision);
    ecapa::pack(b, b16, static_cast<size_t>(k * n), precision);
    ecapa::run_product(variant, precision, a16, b16, c, m, n, k);
    return 0;
  } catch (const dnnl::error&) {
    return 2;
  }
}

}  // namespace

extern "C" {

int EcapaMatMulNT(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!valid(nparam, ndims, shapes, dtypes) || shapes[0][1] != shapes[1][1]) return 1;
  return multiply(Variant::kNT, params, shapes[0][0], shapes[1][0], shapes[0][1]);
}

int EcapaMatMulNN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!valid(nparam, ndims, shapes, dtypes) || shapes[0][1] != shapes[1][0]) return 1;
  return multiply(Variant::kNN, params, shapes[0][0], shapes[1][1], shapes[0][1]);
}

int EcapaMatMulTN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!valid(nparam, ndims, shapes, dtypes) || shapes[0][0] != shapes[1][0]) return 1;
  return multiply(Variant::kTN, params, shapes[0][1], shapes[1][1], shapes[0][0]);
}

std::vector<int64_t> EcapaMatMulNTInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][0], shapes[1][0]};
}
std::vector<int64_t> EcapaMatMulNNInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][0], shapes[1][1]};
}
std::vector<int64_t> EcapaMatMulTNInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][1], shapes[1][1]};
}
// The product has its first input's element type (the kernels reject all but float32).
mindspore::TypeId EcapaMatMulNTInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
}
mindspore::TypeId EcapaMatMulNNInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
}
mindspore::TypeId EcapaMatMulTNInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
}

}  // extern "C"
