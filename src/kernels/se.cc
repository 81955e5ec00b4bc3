// Squeeze-excitation (channel gates from the time average) as ops.Custom(func_type="aot")
// kernels for MindSpore's CPU backend, float32 throughout. With x (N, T, C), the bottleneck
// weights w1 (B, C), b1 (B,) and the expansion w2 (C, B), b2 (C,):
//
//   EcapaSqueezeExcitation: x, w1, b1, w2, b2
//       -> out = x * g (N, T, C), the time average s (N, C), h = relu(s w1^T + b1) (N, B)
//          and the gates g = sigmoid(h w2^T + b2) (N, C)
//   EcapaSqueezeExcitationGrad: x, w1, w2, s, h, g, dout
//       -> dx, dw1, db1, dw2, db2                                   (the gradient of out)
//
// Sums over frames run frame by frame per utterance and block of channels, so results do
// not depend on thread timing. A kernel returns non-zero (and MindSpore raises) when its
// inputs do not have these shapes and types.
#include <cmath>

#include "runtime.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")

namespace {

constexpr int64_t kChannelBlock = 256;  // channels of one frame-summing task

struct Sizes {
  int64_t batch, frames, channels, bottleneck;
};

// Calls body(utterance, first channel, width) for every utterance and block of channels,
// spread over the kernel threads.
template <typename Body>
void for_channel_blocks(const Sizes& n, const Body& body) {
  const int64_t blocks = (n.channels + kChannelBlock - 1) / kChannelBlock;
  ecapa::run_tasks(static_cast<int>(n.batch * blocks), [&](int task) {
    const int64_t first = task % blocks * kChannelBlock;
    body(task / blocks, first, std::min(kChannelBlock, n.channels - first));
  });
}

// out += a * b, element-wise.
void multiply_add_row(const float* __restrict a, const float* __restrict b, int64_t count, float* __restrict out) {
  for (int64_t i = 0; i < count; ++i) out[i] += a[i] * b[i];
}

// out += in.
void add_row(const float* __restrict in, int64_t count, float* __restrict out) {
  for (int64_t i = 0; i < count; ++i) out[i] += in[i];
}

// out = a * b + c, element-wise.
void multiply_row(const float* __restrict a, const float* __restrict b, const float* __restrict c, int64_t count,
                  float* __restrict out) {
  for (int64_t i = 0; i < count; ++i) out[i] = a[i] * b[i] + c[i];
}

float dot(const float* __restrict a, const float* __restrict b, int64_t count) {
  float sum = 0.0f;
  for (int64_t i = 0; i < count; ++i) sum += a[i] * b[i];
  return sum;
}

// The sizes of (x, w1, w2) with checks: x (N, T, C), w1 (B, C), w2 (C, B), all float32.
bool read_sizes(int nparam, int expected, const int* ndims, int64_t** shapes, const char** dtypes, int w2_index,
                Sizes* n) {
  if (nparam != expected || ndims[0] != 3 || ndims[1] != 2 || ndims[w2_index] != 2) return false;
  for (int i = 0; i < nparam; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  *n = Sizes{shapes[0][0], shapes[0][1], shapes[0][2], shapes[1][0]};
  return n->frames >= 1 && shapes[1][1] == n->channels && shapes[w2_index][0] == n->channels &&
         shapes[w2_index][1] == n->bottleneck;
}

}  // namespace

extern "C" {

int EcapaSqueezeExcitation(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*,
                           void*) {
  Sizes n;
  if (!read_sizes(nparam, 9, ndims, shapes, dtypes, 3, &n) || ndims[2] != 1 || shapes[2][0] != n.bottleneck ||
      ndims[4] != 1 || shapes[4][0] != n.channels) {
    return 1;
  }
  const float *x = static_cast<float*>(params[0]), *w1 = static_cast<float*>(params[1]);
  const float *b1 = static_cast<float*>(params[2]), *w2 = static_cast<float*>(params[3]);
  const float* b2 = static_cast<float*>(params[4]);
  float *out = static_cast<float*>(params[5]), *s = static_cast<float*>(params[6]);
  float *h = static_cast<float*>(params[7]), *g = static_cast<float*>(params[8]);
  const int64_t C = n.channels, B = n.bottleneck, T = n.frames;
  for_channel_blocks(n, [&](int64_t u, int64_t first, int64_t width) {
    float* average = s + u * C + first;
    std::fill(average, average + width, 0.0f);
    for (int64_t t = 0; t < T; ++t) add_row(x + (u * T + t) * C + first, width, average);
    for (int64_t c = 0; c < width; ++c) average[c] /= static_cast<float>(T);
  });
  ecapa::run_tasks(static_cast<int>(n.batch), [&](int u) {
    for (int64_t b = 0; b < B; ++b) h[u * B + b] = std::max(dot(s + u * C, w1 + b * C, C) + b1[b], 0.0f);
    for (int64_t c = 0; c < C; ++c) g[u * C + c] = 1.0f / (1.0f + std::exp(-(dot(h + u * B, w2 + c * B, B) + b2[c])));
  });
  ecapa::split_range(static_cast<size_t>(n.batch * T), 16, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const float* gates = g + static_cast<int64_t>(row) / T * C;
      for (int64_t c = 0; c < C; ++c) out[row * C + c] = x[row * C + c] * gates[c];
    }
  });
  return 0;
}

int EcapaSqueezeExcitationGrad(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*,
                               void*) {
  Sizes n;
  if (!read_sizes(nparam, 12, ndims, shapes, dtypes, 2, &n) || shapes[6][0] != n.batch ||
      shapes[6][1] != n.frames || shapes[6][2] != n.channels) {
    return 1;
  }
  const float *x = static_cast<float*>(params[0]), *w1 = static_cast<float*>(params[1]);
  const float *w2 = static_cast<float*>(params[2]), *s = static_cast<float*>(params[3]);
  const float *h = static_cast<float*>(params[4]), *g = static_cast<float*>(params[5]);
  const float* dout = static_cast<float*>(params[6]);
  float *dx = static_cast<float*>(params[7]), *dw1 = static_cast<float*>(params[8]);
  float *db1 = static_cast<float*>(params[9]), *dw2 = static_cast<float*>(params[10]);
  float* db2 = static_cast<float*>(params[11]);
  const int64_t N = n.batch, C = n.channels, B = n.bottleneck, T = n.frames;
  // dz2 = d(gate logits) = sum over frames of dout * x, times g (1 - g).
  std::vector<float> dz2(N * C), dz1(N * B), ds(N * C);
  for_channel_blocks(n, [&](int64_t u, int64_t first, int64_t width) {
    float* sum = dz2.data() + u * C + first;
    std::fill(sum, sum + width, 0.0f);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = (u * T + t) * C + first;
      multiply_add_row(dout + row, x + row, width, sum);
    }
    const float* gates = g + u * C + first;
    for (int64_t c = 0; c < width; ++c) sum[c] *= gates[c] * (1.0f - gates[c]);
  });
  // dw2 (C, B) = dz2^T h and db2 = sum over utterances of dz2; dz1 = (dz2 w2) where h > 0.
  ecapa::run_tasks(static_cast<int>(C), [&](int c) {
    float* row = dw2 + c * B;
    std::fill(row, row + B, 0.0f);
    float bias = 0.0f;
    for (int64_t u = 0; u < N; ++u) {
      const float value = dz2[u * C + c];
      for (int64_t b = 0; b < B; ++b) row[b] += value * h[u * B + b];
      bias += value;
    }
    db2[c] = bias;
  });
  ecapa::run_tasks(static_cast<int>(N), [&](int u) {
    for (int64_t b = 0; b < B; ++b) dz1[u * B + b] = 0.0f;
    for (int64_t c = 0; c < C; ++c) {
      const float value = dz2[u * C + c];
      for (int64_t b = 0; b < B; ++b) dz1[u * B + b] += value * w2[c * B + b];
    }
    for (int64_t b = 0; b < B; ++b) {
      if (h[u * B + b] <= 0.0f) dz1[u * B + b] = 0.0f;
    }
  });
  // dw1 (B, C) = dz1^T s and db1 = sum over utterances of dz1; ds = dz1 w1, spread over frames.
  ecapa::run_tasks(static_cast<int>(B), [&](int b) {
    float* row = dw1 + b * C;
    std::fill(row, row + C, 0.0f);
    float bias = 0.0f;
    for (int64_t u = 0; u < N; ++u) {
      const float value = dz1[u * B + b];
      for (int64_t c = 0; c < C; ++c) row[c] += value * s[u * C + c];
      bias += value;
    }
    db1[b] = bias;
  });
  ecapa::run_tasks(static_cast<int>(N), [&](int u) {
    float* spread = ds.data() + u * C;
    std::fill(spread, spread + C, 0.0f);
    for (int64_t b = 0; b < B; ++b) {
      const float value = dz1[u * B + b] / static_cast<float>(T);
      for (int64_t c = 0; c < C; ++c) spread[c] += value * w1[b * C + c];
    }
  });
  // dx = dout * g + ds.
  ecapa::split_range(static_cast<size_t>(N * T), 16, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const int64_t u = static_cast<int64_t>(row) / T;
      multiply_row(dout + row * C, g + u * C, ds.data() + u * C, C, dx + row * C);
    }
  });
  return 0;
}

std::vector<std::vector<int64_t>> EcapaSqueezeExcitationInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  const int64_t batch = shapes[0][0], channels = shapes[0][2];
  return {{batch, shapes[0][1], channels}, {batch, channels}, {batch, shapes[1][0]}, {batch, channels}};
}
std::vector<mindspore::TypeId> EcapaSqueezeExcitationInferType(std::vector<mindspore::TypeId> types,
                                                               mindspore::AotExtra*) {
  return std::vector<mindspore::TypeId>(4, types[0]);
}

std::vector<std::vector<int64_t>> EcapaSqueezeExcitationGradInferShape(int*, int64_t** shapes,
                                                                       mindspore::AotExtra*) {
  const int64_t channels = shapes[0][2], bottleneck = shapes[1][0];
  return {{shapes[0][0], shapes[0][1], channels}, {bottleneck, channels}, {bottleneck}, {channels, bottleneck},
          {channels}};
}
std::vector<mindspore::TypeId> EcapaSqueezeExcitationGradInferType(std::vector<mindspore::TypeId> types,
                                                                   mindspore::AotExtra*) {
  return std::vector<mindspore::TypeId>(5, types[0]);
}

}  // extern "C"

#pragma GCC pop_options
