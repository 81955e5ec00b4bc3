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

// Calls body(begin, end) on pieces of [0, count) of at least `grain` items, one per kernel
// thread (the caller's and g_threads - 1 started for the call); piece bounds are multiples of 16.
template <typename Body>
void split_range(size_t count, size_t grain, const Body& body) {
  const size_t parts = std::min<size_t>(g_threads, std::max<size_t>(1, count / std::max<size_t>(grain, 1)));
  const size_t step = (count / parts + 15) / 16 * 16;
  std::vector<std::thread> helpers;
  for (size_t part = 1; part < parts; ++part) {
    const size_t begin = std::min(count, part * step), end = std::min(count, begin + step);
    if (begin < end) helpers.emplace_back([&body, begin, end] { body(begin, end); });
  }
  body(0, std::min(count, step));
  for (auto& helper : helpers) helper.join();
}

// round_range over `count` values, split across the kernel threads when it is large.
void round_to_bf16(const float* in, uint16_t* out, size_t count) {
  split_range(count, size_t(1) << 18, [=](size_t begin, size_t end) { round_range(in + begin, out + begin, end - begin); });
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

// C (m, n) = op(A16) op(B16) for bfloat16 A16, B16 and float32 C; op transposes A for kTN and B for kNT.
void run_product(Variant variant, const uint16_t* a16, const uint16_t* b16, float* c, int64_t m, int64_t n,
                 int64_t k) {
  const bool transpose_a = variant == Variant::kTN, transpose_b = variant == Variant::kNT;
  const dnnl::matmul& matmul = transpose_a ? product_for(variant, m, n) : product_for(variant, k, n);
  dnnl::engine& engine = runtime().engine;
  const auto bf16 = memory::data_type::bf16;
  memory a_memory(operand_desc(m, k, transpose_a, bf16), engine, const_cast<uint16_t*>(a16));
  memory b_memory(operand_desc(k, n, transpose_b, bf16), engine, const_cast<uint16_t*>(b16));
  memory c_memory(memory::desc({m, n}, memory::data_type::f32, memory::format_tag::ab), engine, c);
  SpawningPool pool(g_threads);
  dnnl::stream stream = dnnl::threadpool_interop::make_stream(engine, &pool);
  matmul.execute(stream, {{DNNL_ARG_SRC, a_memory}, {DNNL_ARG_WEIGHTS, b_memory}, {DNNL_ARG_DST, c_memory}});
  stream.wait();
}

// Scratch for the rounded operands of one call, kept per calling thread between calls.
struct Scratch {
  std::vector<uint16_t> a16, b16;
};

Scratch& scratch(size_t a_size, size_t b_size) {
  thread_local Scratch buffers;
  buffers.a16.resize(a_size);
  buffers.b16.resize(b_size);
  return buffers;
}

// C (m, n) = op(A) op(B) for float32 A, B, C; op transposes A for kTN and B for kNT.
int multiply(Variant variant, const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k) {
  try {
    Scratch& rounded = scratch(static_cast<size_t>(m * k), static_cast<size_t>(k * n));
    round_to_bf16(a, rounded.a16.data(), rounded.a16.size());
    round_to_bf16(b, rounded.b16.data(), rounded.b16.size());
    run_product(variant, rounded.a16.data(), rounded.b16.data(), c, m, n, k);
    return 0;
  } catch (const dnnl::error&) {
    return 2;
  }
}

// The folded inference TDNN block, y = relu(conv(x) + bias) * sign + shift, for x (N, T, C_in)
// and y (N, T, C_out). conv is the 'same'-padded dilated convolution whose weight (C_out, k * C_in)
// lists tap 0's input channels, then tap 1's, ...; the k time-shifted copies of x (zero outside
// the utterance) are written straight into the rounded operand, never as float32.
int tdnn_inference(const float* x, const float* weight, const float* epilogue, const int32_t* geometry, float* y,
                   int64_t batch, int64_t frames, int64_t in_channels, int64_t out_channels) {
  const int64_t taps = geometry[0], dilation = geometry[1], half_width = dilation * (taps - 1) / 2;
  const int64_t rows = batch * frames, width = taps * in_channels;
  try {
    Scratch& rounded = scratch(static_cast<size_t>(rows * width), static_cast<size_t>(out_channels * width));
    uint16_t* a16 = rounded.a16.data();
    split_range(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
      for (size_t row = begin; row < end; ++row) {
        const int64_t utterance = static_cast<int64_t>(row) / frames, frame = static_cast<int64_t>(row) % frames;
        for (int64_t tap = 0; tap < taps; ++tap) {
          const int64_t source = frame + tap * dilation - half_width;
          uint16_t* target = a16 + row * width + tap * in_channels;
          if (source < 0 || source >= frames) {
            std::memset(target, 0, sizeof(uint16_t) * in_channels);
          } else {
            round_range(x + (utterance * frames + source) * in_channels, target, in_channels);
          }
        }
      }
    });
    round_to_bf16(weight, rounded.b16.data(), rounded.b16.size());
    run_product(Variant::kNT, a16, rounded.b16.data(), y, rows, out_channels, width);
    const float *bias = epilogue, *sign = epilogue + out_channels, *shift = epilogue + 2 * out_channels;
    split_range(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
      for (size_t row = begin; row < end; ++row) {
        float* out = y + row * out_channels;
        for (int64_t channel = 0; channel < out_channels; ++channel) {
          out[channel] = std::max(out[channel] + bias[channel], 0.0f) * sign[channel] + shift[channel];
        }
      }
    });
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

// x (N, T, C_in), weight (C_out, k * C_in), epilogue (3, C_out): bias, sign, shift rows,
// geometry int32 (2,): kernel size k (odd), dilation -> y (N, T, C_out). See tdnn_inference.
int EcapaTdnnInference(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (nparam != 5 || ndims[0] != 3 || ndims[1] != 2 || ndims[2] != 2 || ndims[3] != 1 || shapes[3][0] != 2) return 1;
  for (int i : {0, 1, 2, 4}) {
    if (std::strcmp(dtypes[i], "float32") != 0) return 1;
  }
  if (std::strcmp(dtypes[3], "int32") != 0) return 1;
  const int32_t* geometry = static_cast<int32_t*>(params[3]);
  const int64_t out_channels = shapes[1][0];
  if (geometry[0] < 1 || geometry[0] % 2 == 0 || geometry[1] < 1 || shapes[1][1] != geometry[0] * shapes[0][2] ||
      shapes[2][0] != 3 || shapes[2][1] != out_channels) {
    return 1;
  }
  return tdnn_inference(static_cast<float*>(params[0]), static_cast<float*>(params[1]), static_cast<float*>(params[2]),
                        geometry, static_cast<float*>(params[4]), shapes[0][0], shapes[0][1], shapes[0][2],
                        out_channels);
}

std::vector<int64_t> EcapaTdnnInferenceInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][0], shapes[0][1], shapes[1][0]};
}
mindspore::TypeId EcapaTdnnInferenceInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
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
