// bfloat16 matrix products as ops.Custom(func_type="aot") kernels for MindSpore's CPU backend.
//
// Each kernel takes two float32 matrices and writes their float32 product: the inputs are
// rounded to bfloat16 (nearest even) and multiplied by oneDNN with float32 accumulation,
// about twice as fast as a float32 product on a CPU with AVX512-BF16 (which they need).
//
//   EcapaMatMulNT: A (M, K), B (N, K) -> A B^T (M, N)   (forward of x W^T)
//   EcapaMatMulNN: A (M, K), B (K, N) -> A B   (M, N)   (gradient of x)
//   EcapaMatMulTN: A (K, M), B (K, N) -> A^T B (M, N)   (gradient of W)
//
// A kernel returns non-zero (and MindSpore raises) when given anything but 2-D float32.
// Each has <name>InferShape and <name>InferType beside it: MindSpore calls them (also at run
// time, for inputs of dynamic shape) when the Custom op is given no Python shape function.
#include "runtime.h"

namespace {

using ecapa::Precision;
using ecapa::Variant;

bool two_float_matrices(int nparam, const int* ndims, const char** dtypes) {
  if (nparam != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (ndims[i] != 2 || std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  return true;
}

// C (m, n) = op(A) op(B) for float32 A, B, C (see ecapa::run_product).
int multiply(Variant variant, void** params, int64_t m, int64_t n, int64_t k) {
  try {
    void* a16 = ecapa::scratch(0, static_cast<size_t>(m * k) * 2);
    void* b16 = ecapa::scratch(1, static_cast<size_t>(k * n) * 2);
    ecapa::pack(static_cast<float*>(params[0]), a16, static_cast<size_t>(m * k), Precision::kBf16);
    ecapa::pack(static_cast<float*>(params[1]), b16, static_cast<size_t>(k * n), Precision::kBf16);
    ecapa::run_product(variant, Precision::kBf16, a16, b16, static_cast<float*>(params[2]), m, n, k);
    return 0;
  } catch (const dnnl::error&) {
    return 2;
  }
}

}  // namespace

extern "C" {

int EcapaMatMulNT(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][1] != shapes[1][1]) return 1;
  return multiply(Variant::kNT, params, shapes[0][0], shapes[1][0], shapes[0][1]);
}

int EcapaMatMulNN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][1] != shapes[1][0]) return 1;
  return multiply(Variant::kNN, params, shapes[0][0], shapes[1][1], shapes[0][1]);
}

int EcapaMatMulTN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][0] != shapes[1][0]) return 1;
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
