// bfloat16 matrix products for MindSpore's CPU backend, as ops.Custom(func_type="aot") kernels.
//
// Each kernel takes two float32 matrices and writes their float32 product. The inputs are
// rounded to bfloat16 (nearest even) and multiplied by oneDNN's matmul with float32
// accumulation, which on a CPU with AVX512-BF16 runs about twice as fast as a float32
// product. The kernels need AVX512-BF16: EcapaKernelsNativeBf16 says whether it is there. oneDNN is the copy
// that MindSpore itself loads (mindspore/lib/libdnnl.so.3); that copy uses the
// "threadpool" threading runtime, so the kernels hand it a small pool of their own.
//
//   EcapaMatMulNT: A (M, K), B (N, K) -> A B^T (M, N)   (forward of x W^T)
//   EcapaMatMulNN: A (M, K), B (K, N) -> A B   (M, N)   (gradient of x)
//   EcapaMatMulTN: A (K, M), B (K, N) -> A^T B (M, N)   (gradient of W)
//
// A kernel returns non-zero (and MindSpore raises) when given anything but 2-D float32.
// Each has <name>InferShape and <name>InferType beside it: MindSpore calls them (also at run
// time, for inputs of dynamic shape) when the Custom op is given no Python shape function.
#include "oneapi/dnnl/dnnl_config.h"
// MindSpore's libdnnl is built for the threadpool runtime, whatever the headers' build says.
#undef DNNL_CPU_THREADING_RUNTIME
#undef DNNL_CPU_RUNTIME
#define DNNL_CPU_THREADING_RUNTIME DNNL_RUNTIME_THREADPOOL
#define DNNL_CPU_RUNTIME DNNL_RUNTIME_THREADPOOL
#include "oneapi/dnnl/dnnl.hpp"
#include "oneapi/dnnl/dnnl_threadpool.hpp"
#include "oneapi/dnnl/dnnl_threadpool_iface.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

namespace mindspore {
class AotExtra;        // attributes of the op; these kernels have none
enum TypeId : int {};  // MindSpore's element types, by value (see mindapi/base/type_id.h)
}  // namespace mindspore

namespace {

using dnnl::memory;

// Runs oneDNN's parallel loops on `threads` threads: the caller's and threads - 1 started per loop.
class SpawningPool : public dnnl::threadpool_interop::threadpool_iface {
 public:
  explicit SpawningPool(int threads) : threads_(std::max(1, threads)) {}
  int get_num_threads() const override { return threads_; }
  bool get_in_parallel() const override { return false; }
  uint64_t get_flags() const override { return 0; }
  void parallel_for(int count, const std::function<void(int, int)>& body) override {
    const int workers = std::min(threads_, count);
    std::vector<std::thread> helpers;
    for (int worker = 1; worker < workers; ++worker) {
      helpers.emplace_back([&body, worker, workers, count] {
        for (int index = worker; index < count; index += workers) body(index, count);
      });
    }
    for (int index = 0; index < count; index += workers) body(index, count);
    for (auto& helper : helpers) helper.join();
  }

 private:
  int threads_;
};

int g_threads = std::max(1u, std::thread::hardware_concurrency());

// Layout of a (rows, cols) operand held row-major, read as its transpose when `transposed`.
memory::desc operand_desc(int64_t rows, int64_t cols, bool transposed, memory::data_type type) {
  return transposed ? memory::desc({rows, cols}, type, memory::format_tag::ba)
                    : memory::desc({rows, cols}, type, memory::format_tag::ab);
}

// float32 -> bfloat16, rounding to nearest even, 16 values per instruction.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void round_range(const float* in, uint16_t* out,
                                                                                 size_t count) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m256bh rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), reinterpret_cast<__m256i&>(rounded));
  }
  if (i < count) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (count - i)) - 1);
    __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail, in + i));
    _mm256_mask_storeu_epi16(out + i, tail, reinterpret_cast<__m256i&>(rounded));
  }
}

// round_range over `count` values, split across the kernel threads when it is large.
void round_to_bf16(const float* in, uint16_t* out, size_t count) {
  constexpr size_t kPerThread = size_t(1) << 18;
  const size_t parts = std::min<size_t>(g_threads, std::max<size_t>(1, count / kPerThread));
  const size_t step = (count / parts + 15) / 16 * 16;
  std::vector<std::thread> helpers;
  for (size_t part = 1; part < parts; ++part) {
    const size_t begin = std::min(count, part * step), end = std::min(count, begin + step);
    helpers.emplace_back(round_range, in + begin, out + begin, end - begin);
  }
  round_range(in, out, std::min(count, step));
  for (auto& helper : helpers) helper.join();
}

// The three products. The row count of the data operand (M, or K for the weight gradient)
// is a run-time size of the primitive, so utterances of every length share one primitive.
enum class Variant { kNT, kNN, kTN };

struct Runtime {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex lock;
  std::map<std::tuple<Variant, int64_t, int64_t>, dnnl::matmul> products;
};

Runtime& runtime() {
  static Runtime instance;
  return instance;
}

// The bfloat16 matmul of `variant` for its two fixed sizes (see multiply), made once.
const dnnl::matmul& product_for(Variant variant, int64_t first, int64_t second) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> guard(rt.lock);
  auto key = std::make_tuple(variant, first, second);
  auto found = rt.products.find(key);
  if (found != rt.products.end()) return found->second;
  const int64_t any = DNNL_RUNTIME_DIM_VAL;
  const auto bf16 = memory::data_type::bf16;
  memory::desc a, b, c;
  if (variant == Variant::kTN) {  // (first, any) x (any, second)
    a = operand_desc(first, any, true, bf16);
    b = operand_desc(any, second, false, bf16);
    c = memory::desc({first, second}, memory::data_type::f32, memory::format_tag::ab);
  } else {  // (any, first) x (first, second)
    a = operand_desc(any, first, false, bf16);
    b = operand_desc(first, second, variant == Variant::kNT, bf16);
    c = memory::desc({any, second}, memory::data_type::f32, memory::format_tag::ab);
  }
  dnnl::matmul matmul(dnnl::matmul::primitive_desc(rt.engine, a, b, c));
  return rt.products.emplace(key, std::move(matmul)).first->second;
}

// C (m, n) = op(A) op(B) for float32 A, B, C; op transposes A for kTN and B for kNT.
int multiply(Variant variant, const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  try {
    const bool transpose_a = variant == Variant::kTN, transpose_b = variant == Variant::kNT;
    const dnnl::matmul& matmul = transpose_a ? product_for(variant, m, n) : product_for(variant, k, n);
    dnnl::engine& engine = runtime().engine;
    thread_local std::vector<uint16_t> a16, b16;
    a16.resize(static_cast<size_t>(m * k));
    b16.resize(static_cast<size_t>(k * n));
    round_to_bf16(a, a16.data(), a16.size());
    round_to_bf16(b, b16.data(), b16.size());
    const auto bf16 = memory::data_type::bf16;
    memory a_memory(operand_desc(m, k, transpose_a, bf16), engine, a16.data());
    memory b_memory(operand_desc(k, n, transpose_b, bf16), engine, b16.data());
    memory c_memory(memory::desc({m, n}, memory::data_type::f32, memory::format_tag::ab), engine, c);
    SpawningPool pool(g_threads);
    dnnl::stream stream = dnnl::threadpool_interop::make_stream(engine, &pool);
    matmul.execute(stream, {{DNNL_ARG_SRC, a_memory}, {DNNL_ARG_WEIGHTS, b_memory}, {DNNL_ARG_DST, c_memory}});
    stream.wait();
    return 0;
  } catch (const dnnl::error&) {
    return 2;
  }
}

bool two_float_matrices(int nparam, int* ndims, const char** dtypes) {
  if (nparam != 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (ndims[i] != 2 || std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" {

int EcapaMatMulNT(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][1] != shapes[1][1]) return 1;
  return multiply(Variant::kNT, static_cast<float*>(params[0]), static_cast<float*>(params[1]),
                  static_cast<float*>(params[2]), shapes[0][0], shapes[1][0], shapes[0][1]);
}

int EcapaMatMulNN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][1] != shapes[1][0]) return 1;
  return multiply(Variant::kNN, static_cast<float*>(params[0]), static_cast<float*>(params[1]),
                  static_cast<float*>(params[2]), shapes[0][0], shapes[1][1], shapes[0][1]);
}

int EcapaMatMulTN(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (!two_float_matrices(nparam, ndims, dtypes) || shapes[0][0] != shapes[1][0]) return 1;
  return multiply(Variant::kTN, static_cast<float*>(params[0]), static_cast<float*>(params[1]),
                  static_cast<float*>(params[2]), shapes[0][1], shapes[1][1], shapes[0][0]);
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

// Threads for the kernels' parallel loops (default: all hardware threads).
void EcapaKernelsSetThreads(int threads) { g_threads = std::max(1, threads); }

// 1 when oneDNN runs bfloat16 products with native instructions on this CPU (AVX512-BF16 or later).
int EcapaKernelsNativeBf16() {
  dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return (isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_fp16 ||
          isa == dnnl::cpu_isa::avx512_core_amx || isa == dnnl::cpu_isa::avx512_core_amx_fp16 ||
          isa == dnnl::cpu_isa::avx10_1_512_amx || isa == dnnl::cpu_isa::avx10_1_512_amx_fp16) ? 1 : 0;
}

}  // extern "C"
