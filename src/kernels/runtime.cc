// See runtime.h.
#include "runtime.h"

#include "oneapi/dnnl/dnnl_threadpool.hpp"
#include "oneapi/dnnl/dnnl_threadpool_iface.hpp"

#include <immintrin.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

namespace ecapa {
namespace {

using dnnl::memory;

int g_threads = std::max(1u, std::thread::hardware_concurrency());

// Worker threads that take the tasks of one run_tasks call at a time. Each call bumps
// `round_`; the workers and the caller take task indices from `next_` until none are left.
class WorkerPool {
 public:
  explicit WorkerPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> guard(lock_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
  }

  void run(int count, const std::function<void(int)>& task) {
    // Alone when nested in a task, with nothing to share, or while another call holds the workers.
    std::unique_lock<std::mutex> caller(submit_, std::defer_lock);
    if (in_task_ || threads_.empty() || count <= 1 || !caller.try_lock()) {
      for (int i = 0; i < count; ++i) task(i);
      return;
    }
    {
      std::lock_guard<std::mutex> guard(lock_);
      task_ = &task;
      count_ = count;
      next_ = 0;
      busy_ = static_cast<int>(threads_.size());
      ++round_;
    }
    wake_.notify_all();
    take_tasks(task, count);
    std::unique_lock<std::mutex> guard(lock_);
    done_.wait(guard, [this] { return busy_ == 0; });
  }

 private:
  void take_tasks(const std::function<void(int)>& task, int count) {
    in_task_ = true;
    for (int i = next_.fetch_add(1); i < count; i = next_.fetch_add(1)) task(i);
    in_task_ = false;
  }

  void work() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task;
      int count;
      {
        std::unique_lock<std::mutex> guard(lock_);
        wake_.wait(guard, [&] { return stopping_ || round_ != seen; });
        if (stopping_) return;
        seen = round_;
        task = task_;
        count = count_;
      }
      take_tasks(*task, count);
      {
        std::lock_guard<std::mutex> guard(lock_);
        --busy_;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex submit_, lock_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int count_ = 0, busy_ = 0;
  std::atomic<int> next_{0};
  uint64_t round_ = 0;
  bool stopping_ = false;
  static thread_local bool in_task_;  // this thread is running a task of the pool
};

thread_local bool WorkerPool::in_task_ = false;

// Runs oneDNN's parallel loops through run_tasks.
class KernelThreadpool : public dnnl::threadpool_interop::threadpool_iface {
 public:
  int get_num_threads() const override { return kernel_threads(); }
  bool get_in_parallel() const override { return false; }
  uint64_t get_flags() const override { return 0; }
  void parallel_for(int count, const std::function<void(int, int)>& body) override {
    run_tasks(count, [&](int index) { body(index, count); });
  }
};

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

memory::data_type data_type(Precision precision) {
  return precision == Precision::kBf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

// Layout of a (rows, cols) operand held row-major, read as its transpose when `transposed`.
memory::desc operand_desc(int64_t rows, int64_t cols, bool transposed, memory::data_type type) {
  return memory::desc({rows, cols}, type, transposed ? memory::format_tag::ba : memory::format_tag::ab);
}

struct Runtime {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex lock;
  std::map<std::tuple<Variant, Precision, int64_t, int64_t>, dnnl::matmul> products;
};

Runtime& runtime() {
  static Runtime instance;
  return instance;
}

// The matmul of `variant` and `precision` for its two fixed sizes, made once: (first, any) x
// (any, second) for kTN, else (any, first) x (first, second).
const dnnl::matmul& product_for(Variant variant, Precision precision, int64_t first, int64_t second) {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> guard(rt.lock);
  auto key = std::make_tuple(variant, precision, first, second);
  auto found = rt.products.find(key);
  if (found != rt.products.end()) return found->second;
  const int64_t any = DNNL_RUNTIME_DIM_VAL;
  const auto type = data_type(precision);
  memory::desc a, b, c;
  if (variant == Variant::kTN) {
    a = operand_desc(first, any, true, type);
    b = operand_desc(any, second, false, type);
    c = memory::desc({first, second}, memory::data_type::f32, memory::format_tag::ab);
  } else {
    a = operand_desc(any, first, false, type);
    b = operand_desc(first, second, variant == Variant::kNT, type);
    c = memory::desc({any, second}, memory::data_type::f32, memory::format_tag::ab);
  }
  dnnl::matmul matmul(dnnl::matmul::primitive_desc(rt.engine, a, b, c));
  return rt.products.emplace(key, std::move(matmul)).first->second;
}

}  // namespace

int kernel_threads() { return g_threads; }

void run_tasks(int count, const std::function<void(int)>& task) {
  static WorkerPool pool(g_threads - 1);  // sized by the threads set before the first call
  pool.run(count, task);
}

size_t element_size(Precision precision) { return precision == Precision::kBf16 ? 2 : 4; }

void pack_range(const float* in, void* out, size_t count, Precision precision) {
  if (precision == Precision::kBf16) {
    round_range(in, static_cast<uint16_t*>(out), count);
  } else {
    std::memcpy(out, in, count * sizeof(float));
  }
}

void pack(const float* in, void* out, size_t count, Precision precision) {
  char* bytes = static_cast<char*>(out);
  const size_t size = element_size(precision);
  split_range(count, size_t(1) << 18, [=](size_t begin, size_t end) {
    pack_range(in + begin, bytes + begin * size, end - begin, precision);
  });
}

void run_product(Variant variant, Precision precision, const void* a, const void* b, float* c, int64_t m, int64_t n,
                 int64_t k) {
  const bool transpose_a = variant == Variant::kTN, transpose_b = variant == Variant::kNT;
  const dnnl::matmul& matmul =
      transpose_a ? product_for(variant, precision, m, n) : product_for(variant, precision, k, n);
  dnnl::engine& engine = runtime().engine;
  const auto type = data_type(precision);
  memory a_memory(operand_desc(m, k, transpose_a, type), engine, const_cast<void*>(a));
  memory b_memory(operand_desc(k, n, transpose_b, type), engine, const_cast<void*>(b));
  memory c_memory(memory::desc({m, n}, memory::data_type::f32, memory::format_tag::ab), engine, c);
  static KernelThreadpool pool;
  dnnl::stream stream = dnnl::threadpool_interop::make_stream(engine, &pool);
  matmul.execute(stream, {{DNNL_ARG_SRC, a_memory}, {DNNL_ARG_WEIGHTS, b_memory}, {DNNL_ARG_DST, c_memory}});
  stream.wait();
}

void* scratch(int slot, size_t bytes) {
  thread_local std::vector<std::vector<char>> buffers;
  if (buffers.size() <= static_cast<size_t>(slot)) buffers.resize(slot + 1);
  buffers[slot].resize(bytes);
  return buffers[slot].data();
}

}  // namespace ecapa

extern "C" {

// Threads for the kernels' parallel loops (default: all hardware threads).
void EcapaKernelsSetThreads(int threads) { ecapa::g_threads = std::max(1, threads); }

// 1 when oneDNN runs bfloat16 products with native instructions on this CPU (AVX512-BF16 or later).
int EcapaKernelsNativeBf16() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return (isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_fp16 ||
          isa == dnnl::cpu_isa::avx512_core_amx || isa == dnnl::cpu_isa::avx512_core_amx_fp16 ||
          isa == dnnl::cpu_isa::avx10_1_512_amx || isa == dnnl::cpu_isa::avx10_1_512_amx_fp16)
             ? 1
             : 0;
}

}  // extern "C"
