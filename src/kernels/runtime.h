// Shared parts of the custom CPU kernels: oneDNN's engine and thread pool, operand packing
// (float32 -> bfloat16, or a float32 copy) and the cached matrix-product primitives.
//
// oneDNN is the copy MindSpore itself loads (mindspore/lib/libdnnl.so.3). That copy is built
// for the "threadpool" threading runtime, so the kernels hand it a pool of their own threads.
#pragma once

#include "oneapi/dnnl/dnnl_config.h"
// MindSpore's libdnnl is built for the threadpool runtime, whatever the headers' build says.
#undef DNNL_CPU_THREADING_RUNTIME
#undef DNNL_CPU_RUNTIME
#define DNNL_CPU_THREADING_RUNTIME DNNL_RUNTIME_THREADPOOL
#define DNNL_CPU_RUNTIME DNNL_RUNTIME_THREADPOOL
#include "oneapi/dnnl/dnnl.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

namespace mindspore {
class AotExtra;        // attributes of a Custom op; these kernels have none
enum TypeId : int {};  // MindSpore's element types, by value (see mindapi/base/type_id.h)
}  // namespace mindspore

namespace ecapa {

// Threads of the kernels' parallel loops (EcapaKernelsSetThreads).
int kernel_threads();

// Calls task(i) for every i in [0, count), spread over the calling thread and the kernels'
// worker threads (kernel_threads() - 1 of them, started once); returns when all are done.
// While another thread's call is running, the tasks run on the calling thread alone.
void run_tasks(int count, const std::function<void(int)>& task);

// Calls body(begin, end) on pieces of [0, count) of at least `grain` items, one piece per
// kernel thread; piece bounds are multiples of 16.
template <typename Body>
void split_range(size_t count, size_t grain, const Body& body) {
  const size_t parts =
      std::min<size_t>(kernel_threads(), std::max<size_t>(1, count / std::max<size_t>(grain, 1)));
  const size_t step = (count / parts + 15) / 16 * 16;
  run_tasks(static_cast<int>(parts), [&](int part) {
    const size_t begin = std::min(count, part * step), end = std::min(count, begin + step);
    if (begin < end) body(begin, end);
  });
}

// Element type of the operands of a product; the result is float32 either way.
enum class Precision { kBf16, kF32 };

size_t element_size(Precision precision);

// `count` float32 values into an operand buffer: rounded to bfloat16 (nearest even), or copied.
void pack_range(const float* in, void* out, size_t count, Precision precision);
// pack_range split across the kernel threads when it is large.
void pack(const float* in, void* out, size_t count, Precision precision);

// The three products: C = A B^T (kNT), A B (kNN), A^T B (kTN), all matrices row-major.
enum class Variant { kNT, kNN, kTN };

// C (m, n) = op(A) op(B) with packed A, B of `precision` and float32 C; op transposes A for
// kTN and B for kNT. The row count of the data operand (m, or k for kTN) is a run-time size of
// the cached primitive, so inputs of every length share one primitive.
void run_product(Variant variant, Precision precision, const void* a, const void* b, float* c, int64_t m, int64_t n,
                 int64_t k);

// A byte buffer per calling thread and slot, kept between calls and grown as needed.
void* scratch(int slot, size_t bytes);

}  // namespace ecapa
