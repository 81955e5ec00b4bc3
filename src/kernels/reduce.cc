// Reductions over time as an ops.Custom(func_type="aot") kernel for MindSpore's CPU backend,
// where a reduction over a middle axis runs several times slower than a pass over the data.
//
//   EcapaTimeMax: x (N, T, C) float32 -> (N, 1, C), the largest value over frames per channel
//       (T >= 1). It has no gradient: the pooling uses it as the softmax's stabilising shift.
//
// The kernel returns non-zero (and MindSpore raises) when given other shapes or types.
#include "runtime.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")

namespace {

constexpr int64_t kChannelBlock = 256;  // channels of one task

// out = max(out, in), element-wise over `channels` values.
void max_row(const float* __restrict in, int64_t channels, float* __restrict out) {
  for (int64_t c = 0; c < channels; ++c) out[c] = std::max(out[c], in[c]);
}

}  // namespace

extern "C" {

int EcapaTimeMax(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  if (nparam != 2 || ndims[0] != 3 || ndims[1] != 3 || shapes[0][1] < 1 || std::strcmp(dtypes[0], "float32") != 0 ||
      std::strcmp(dtypes[1], "float32") != 0) {
    return 1;
  }
  const int64_t batch = shapes[0][0], frames = shapes[0][1], channels = shapes[0][2];
  const float* x = static_cast<float*>(params[0]);
  float* out = static_cast<float*>(params[1]);
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  // One task per utterance and block of channels; each reads its block frame by frame.
  ecapa::run_tasks(static_cast<int>(batch * blocks), [&](int task) {
    const int64_t utterance = task / blocks, first = task % blocks * kChannelBlock;
    const int64_t width = std::min(kChannelBlock, channels - first);
    const float* rows = x + utterance * frames * channels + first;
    float* peak = out + utterance * channels + first;
    std::copy(rows, rows + width, peak);
    for (int64_t frame = 1; frame < frames; ++frame) max_row(rows + frame * channels, width, peak);
  });
  return 0;
}

std::vector<int64_t> EcapaTimeMaxInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][0], 1, shapes[0][2]};
}
mindspore::TypeId EcapaTimeMaxInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
}

}  // extern "C"

#pragma GCC pop_options
