// Whole TDNN blocks (convolution over time -> ReLU -> batch norm) as ops.Custom(func_type="aot")
// kernels for MindSpore's CPU backend: one call does what takes about twenty MindSpore ops.
//
// Shapes: x (N, T, C_in); weight (C_out, k * C_in), row o listing tap 0's input channels, then
// tap 1's, ...; the convolution is 'same'-padded and dilated, tap j reading frame
// t + j * dilation - dilation * (k - 1) / 2 (zero outside the utterance). Its k time-shifted
// copies of x are written straight into the product's packed operand. geometry, int32 (4,):
// k (odd), dilation, 1 for bfloat16 operands (AVX512-BF16 needed) or 0 for float32, and 1 when
// the gradient kernel computes dx or 0 when it writes zeros there instead (the input is data).
//
//   EcapaTdnnInference: x, weight, epilogue (3, C_out): rows bias, scale, shift, geometry
//       -> relu(conv(x) + bias) * scale + shift                     (a folded inference block)
//       With bfloat16 operands the weight may come packed: int16 holding bfloat16 bits.
//   EcapaTdnnTraining: x, weight, bias, gamma, beta, eps (1,), geometry
//       -> y, activations r = relu(conv(x) + bias) (N, T, C_out), batch mean and biased
//          variance of r per channel (C_out,); y = gamma (r - mean) / sqrt(variance + eps) + beta
//   EcapaTdnnTrainingGrad: x, weight, gamma, r, mean, variance, dy, eps, geometry
//       -> dx (zeros unless geometry asks for it), dweight, dbias, dgamma, dbeta
//                                                                    (the gradient of the above)
//
// Channel sums are accumulated in float within blocks of rows and in double across them
// (see channel_sums). The kernels need AVX-512 (they run only where EcapaKernelsNativeBf16
// holds). A kernel returns non-zero (and MindSpore raises) when its inputs do not have these
// shapes and types.
#include <cmath>
#include <mutex>

#include "runtime.h"

// The kernels run only where EcapaKernelsNativeBf16 holds, so their loops may use AVX-512.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")

namespace {

using ecapa::Precision;
using ecapa::Variant;

// Sizes of one block's call, from its inputs' shapes and its geometry input.
struct Geometry {
  int64_t batch, frames, in_channels, out_channels, taps, dilation;
  Precision precision;
  bool input_gradient;
  int64_t rows() const { return batch * frames; }
  int64_t width() const { return taps * in_channels; }
  int64_t half_width() const { return dilation * (taps - 1) / 2; }
};

// The (N * T, k * C_in) operand of the convolution's product: x's time-shifted copies, packed.
void pack_shifted(const float* x, void* packed, const Geometry& g) {
  const size_t size = ecapa::element_size(g.precision);
  char* bytes = static_cast<char*>(packed);
  ecapa::split_range(static_cast<size_t>(g.rows()), 16, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      const int64_t utterance = static_cast<int64_t>(row) / g.frames, frame = static_cast<int64_t>(row) % g.frames;
      for (int64_t tap = 0; tap < g.taps; ++tap) {
        const int64_t source = frame + tap * g.dilation - g.half_width();
        char* target = bytes + (row * g.width() + tap * g.in_channels) * size;
        if (source < 0 || source >= g.frames) {
          std::memset(target, 0, size * g.in_channels);
        } else {
          ecapa::pack_range(x + (utterance * g.frames + source) * g.in_channels, target, g.in_channels, g.precision);
        }
      }
    }
  });
}

// The convolution's input operand: x itself for a float32 1x1 convolution, else pack_shifted.
const void* input_operand(const float* x, const Geometry& g) {
  if (g.precision == Precision::kF32 && g.taps == 1) return x;
  void* packed = ecapa::scratch(0, ecapa::element_size(g.precision) * g.rows() * g.width());
  pack_shifted(x, packed, g);
  return packed;
}

// The weight operand (C_out, k * C_in): the weight itself in float32, else packed.
const void* weight_operand(const float* weight, const Geometry& g) {
  if (g.precision == Precision::kF32) return weight;
  const size_t count = g.out_channels * g.width();
  void* packed = ecapa::scratch(1, ecapa::element_size(g.precision) * count);
  ecapa::pack(weight, packed, count, g.precision);
  return packed;
}

// out (R, C_out) = conv(x) without bias, for the weight operand `weight` (see pack_shifted).
void convolve(const float* x, const void* weight, float* out, const Geometry& g) {
  ecapa::run_product(Variant::kNT, g.precision, input_operand(x, g), weight, out, g.rows(), g.out_channels,
                     g.width());
}

// Per-channel sums over rows of `count` quantities at once: values(row, sums) adds row's
// quantity i at channel c to sums[i * channels + c]. Rows are summed in float in blocks of
// kBlockRows, the blocks in double, and the threads' pieces in row order, so that the sums
// do not depend on which thread finishes first.
template <typename Values>
std::vector<double> channel_sums(int64_t rows, int64_t channels, int count, const Values& values) {
  constexpr size_t kBlockRows = 128;
  const size_t size = static_cast<size_t>(count * channels);
  std::vector<std::vector<double>> pieces;
  std::mutex lock;
  ecapa::split_range(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
    std::vector<double> part(size + 1, 0.0);
    part[size] = static_cast<double>(begin);
    std::vector<float> block(size, 0.0f);
    for (size_t row = begin; row < end; ++row) {
      values(row, block.data());
      if ((row - begin) % kBlockRows == kBlockRows - 1 || row + 1 == end) {
        for (size_t i = 0; i < block.size(); ++i) {
          part[i] += block[i];
          block[i] = 0.0f;
        }
      }
    }
    std::lock_guard<std::mutex> guard(lock);
    pieces.push_back(std::move(part));
  });
  std::sort(pieces.begin(), pieces.end(), [size](const auto& a, const auto& b) { return a[size] < b[size]; });
  std::vector<double> sums(size, 0.0);
  for (const auto& part : pieces) {
    for (size_t i = 0; i < size; ++i) sums[i] += part[i];
  }
  return sums;
}

// Row loops, each over one row of C channels (separate functions with unaliased pointers, so
// that the compiler vectorises them).

// r = relu(r + bias), in place; adds r and r * r to sums[c] and sums[C + c].
void relu_sums_row(float* __restrict r, const float* __restrict bias, int64_t channels, float* __restrict sums) {
  for (int64_t c = 0; c < channels; ++c) {
    const float value = std::max(r[c] + bias[c], 0.0f);
    r[c] = value;
    sums[c] += value;
    sums[channels + c] += value * value;
  }
}

// out = in * scale + shift.
void affine_row(const float* __restrict in, const float* __restrict scale, const float* __restrict shift,
                int64_t channels, float* __restrict out) {
  for (int64_t c = 0; c < channels; ++c) out[c] = in[c] * scale[c] + shift[c];
}

// y = relu(y + bias) * scale + shift, in place.
void relu_affine_row(float* __restrict y, const float* __restrict bias, const float* __restrict scale,
                     const float* __restrict shift, int64_t channels) {
  for (int64_t c = 0; c < channels; ++c) y[c] = std::max(y[c] + bias[c], 0.0f) * scale[c] + shift[c];
}

// Adds dy and dy * (r - mean) * inverse_std to sums[c] and sums[C + c].
void gradient_sums_row(const float* __restrict r, const float* __restrict dy, const float* __restrict mean,
                       const float* __restrict inverse_std, int64_t channels, float* __restrict sums) {
  for (int64_t c = 0; c < channels; ++c) {
    sums[c] += dy[c];
    sums[channels + c] += dy[c] * (r[c] - mean[c]) * inverse_std[c];
  }
}

// out += in.
void add_row(const float* __restrict in, int64_t channels, float* __restrict out) {
  for (int64_t c = 0; c < channels; ++c) out[c] += in[c];
}

// One row of the batch-norm and ReLU gradient: dz = scale * (dy - beta_term - normalised *
// gamma_term) where r > 0, else 0, with normalised = (r - mean) * inverse_std; adds dz to sums.
void dz_row(const float* __restrict r, const float* __restrict dy, const float* __restrict mean,
            const float* __restrict inverse_std, const float* __restrict scale, const float* __restrict beta_term,
            const float* __restrict gamma_term, int64_t channels, float* __restrict dz, float* __restrict sums) {
  for (int64_t c = 0; c < channels; ++c) {
    const float normalised = (r[c] - mean[c]) * inverse_std[c];
    const float value = scale[c] * (dy[c] - beta_term[c] - normalised * gamma_term[c]);
    dz[c] = r[c] > 0.0f ? value : 0.0f;
    sums[c] += dz[c];
  }
}

// Checks the dtypes ("float32" but for the int32 geometry, the last input, and an inference
// weight of bfloat16 bits, "int16") and reads geometry.
bool read_geometry(int inputs, int nparam, int expected_nparam, const char** dtypes, const int* ndims,
                   int64_t** shapes, void** params, Geometry* g) {
  if (nparam != expected_nparam || ndims[0] != 3 || ndims[1] != 2 || ndims[inputs - 1] != 1 ||
      shapes[inputs - 1][0] != 4 || std::strcmp(dtypes[inputs - 1], "int32") != 0) {
    return false;
  }
  const int32_t* geometry = static_cast<int32_t*>(params[inputs - 1]);
  const bool bf16 = geometry[2] != 0;
  for (int i = 0; i < nparam; ++i) {
    const bool packed_weight = i == 1 && bf16 && std::strcmp(dtypes[i], "int16") == 0;
    if (i != inputs - 1 && !packed_weight && std::strcmp(dtypes[i], "float32") != 0) return false;
  }
  *g = Geometry{shapes[0][0], shapes[0][1], shapes[0][2], shapes[1][0], geometry[0], geometry[1],
                bf16 ? Precision::kBf16 : Precision::kF32, geometry[3] != 0};
  return g->taps >= 1 && g->taps % 2 == 1 && g->dilation >= 1 && shapes[1][1] == g->width();
}

}  // namespace

extern "C" {

int EcapaTdnnInference(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  Geometry g;
  if (!read_geometry(4, nparam, 5, dtypes, ndims, shapes, params, &g) || shapes[2][0] != 3 ||
      shapes[2][1] != g.out_channels) {
    return 1;
  }
  const float* epilogue = static_cast<float*>(params[2]);
  float* y = static_cast<float*>(params[4]);
  try {
    const bool packed = std::strcmp(dtypes[1], "int16") == 0;
    convolve(static_cast<float*>(params[0]), packed ? params[1] : weight_operand(static_cast<float*>(params[1]), g),
             y, g);
  } catch (const dnnl::error&) {
    return 2;
  }
  const int64_t channels = g.out_channels;
  const float *bias = epilogue, *scale = epilogue + channels, *shift = epilogue + 2 * channels;
  ecapa::split_range(static_cast<size_t>(g.rows()), 16, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) relu_affine_row(y + row * channels, bias, scale, shift, channels);
  });
  return 0;
}

int EcapaTdnnTraining(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*, void*) {
  Geometry g;
  if (!read_geometry(7, nparam, 11, dtypes, ndims, shapes, params, &g)) return 1;
  const int64_t channels = g.out_channels, rows = g.rows();
  for (int i : {2, 3, 4}) {
    if (ndims[i] != 1 || shapes[i][0] != channels) return 1;
  }
  const float *bias = static_cast<float*>(params[2]), *gamma = static_cast<float*>(params[3]);
  const float *beta = static_cast<float*>(params[4]), eps = *static_cast<float*>(params[5]);
  float *y = static_cast<float*>(params[7]), *r = static_cast<float*>(params[8]);
  float *mean = static_cast<float*>(params[9]), *variance = static_cast<float*>(params[10]);
  try {
    convolve(static_cast<float*>(params[0]), weight_operand(static_cast<float*>(params[1]), g), r, g);
  } catch (const dnnl::error&) {
    return 2;
  }
  const std::vector<double> sums = channel_sums(
      rows, channels, 2, [&](size_t row, float* part) { relu_sums_row(r + row * channels, bias, channels, part); });
  std::vector<float> scale(channels), shift(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const double average = sums[c] / rows;
    const double spread = std::max(sums[channels + c] / rows - average * average, 0.0);
    mean[c] = static_cast<float>(average);
    variance[c] = static_cast<float>(spread);
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(spread + eps));
    shift[c] = static_cast<float>(beta[c] - average * scale[c]);
  }
  ecapa::split_range(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
    for (size_t row = begin; row < end; ++row) {
      affine_row(r + row * channels, scale.data(), shift.data(), channels, y + row * channels);
    }
  });
  return 0;
}

int EcapaTdnnTrainingGrad(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes, void*,
                          void*) {
  Geometry g;
  if (!read_geometry(9, nparam, 14, dtypes, ndims, shapes, params, &g)) return 1;
  const int64_t channels = g.out_channels, rows = g.rows();
  if (shapes[3][2] != channels || shapes[6][2] != channels || shapes[2][0] != channels) return 1;
  const float *x = static_cast<float*>(params[0]), *weight = static_cast<float*>(params[1]);
  const float *gamma = static_cast<float*>(params[2]), *r = static_cast<float*>(params[3]);
  const float *mean = static_cast<float*>(params[4]), *variance = static_cast<float*>(params[5]);
  const float *dy = static_cast<float*>(params[6]), eps = *static_cast<float*>(params[7]);
  float *dx = static_cast<float*>(params[9]), *dweight = static_cast<float*>(params[10]);
  float *dbias = static_cast<float*>(params[11]), *dgamma = static_cast<float*>(params[12]);
  float* dbeta = static_cast<float*>(params[13]);

  std::vector<float> inverse_std(channels);
  for (int64_t c = 0; c < channels; ++c) inverse_std[c] = 1.0f / std::sqrt(variance[c] + eps);
  // d beta = sum dy; d gamma = sum dy * normalised, normalised = (r - mean) / std.
  const std::vector<double> sums = channel_sums(rows, channels, 2, [&](size_t row, float* part) {
    gradient_sums_row(r + row * channels, dy + row * channels, mean, inverse_std.data(), channels, part);
  });
  std::vector<float> beta_term(channels), gamma_term(channels), scale(channels);
  for (int64_t c = 0; c < channels; ++c) {
    dbeta[c] = static_cast<float>(sums[c]);
    dgamma[c] = static_cast<float>(sums[channels + c]);
    beta_term[c] = static_cast<float>(sums[c] / rows);
    gamma_term[c] = static_cast<float>(sums[channels + c] / rows);
    scale[c] = gamma[c] * inverse_std[c];
  }
  // dz = gamma / std * (dy - mean(dy) - normalised * mean(dy * normalised)), 0 where r = 0,
  // packed for the products as it is made; d bias = sum dz.
  const size_t size = ecapa::element_size(g.precision);
  char* packed_dz = static_cast<char*>(ecapa::scratch(2, size * rows * channels));
  const bool float32 = g.precision == Precision::kF32;
  const std::vector<double> bias_sums = channel_sums(rows, channels, 1, [&](size_t row, float* part) {
    char* target = packed_dz + row * channels * size;
    float* dz = float32 ? reinterpret_cast<float*>(target)
                        : static_cast<float*>(ecapa::scratch(5, sizeof(float) * channels));
    dz_row(r + row * channels, dy + row * channels, mean, inverse_std.data(), scale.data(), beta_term.data(),
           gamma_term.data(), channels, dz, part);
    if (!float32) ecapa::pack_range(dz, target, channels, g.precision);
  });
  for (int64_t c = 0; c < channels; ++c) dbias[c] = static_cast<float>(bias_sums[c]);
  try {
    const void* packed_weight = weight_operand(weight, g);
    if (!g.input_gradient) {
      std::fill(dx, dx + rows * g.in_channels, 0.0f);
    } else if (g.taps == 1) {  // the product is dx itself
      ecapa::run_product(Variant::kNN, g.precision, packed_dz, packed_weight, dx, rows, g.width(), channels);
    } else {
      float* d_shifted = static_cast<float*>(ecapa::scratch(3, sizeof(float) * rows * g.width()));
      ecapa::run_product(Variant::kNN, g.precision, packed_dz, packed_weight, d_shifted, rows, g.width(), channels);
      // dx[n, s] = sum over taps j of d_shifted[n, s - j * dilation + half, block j] (frames inside).
      ecapa::split_range(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
        for (size_t row = begin; row < end; ++row) {
          const int64_t utterance = static_cast<int64_t>(row) / g.frames;
          const int64_t frame = static_cast<int64_t>(row) % g.frames;
          float* out = dx + row * g.in_channels;
          std::fill(out, out + g.in_channels, 0.0f);
          for (int64_t tap = 0; tap < g.taps; ++tap) {
            const int64_t target = frame - tap * g.dilation + g.half_width();
            if (target < 0 || target >= g.frames) continue;
            add_row(d_shifted + (utterance * g.frames + target) * g.width() + tap * g.in_channels, g.in_channels,
                    out);
          }
        }
      });
    }
    ecapa::run_product(Variant::kTN, g.precision, packed_dz, input_operand(x, g), dweight, channels, g.width(), rows);
  } catch (const dnnl::error&) {
    return 2;
  }
  return 0;
}

std::vector<int64_t> EcapaTdnnInferenceInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  return {shapes[0][0], shapes[0][1], shapes[1][0]};
}
mindspore::TypeId EcapaTdnnInferenceInferType(std::vector<mindspore::TypeId> types, mindspore::AotExtra*) {
  return types[0];
}

std::vector<std::vector<int64_t>> EcapaTdnnTrainingInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  const std::vector<int64_t> activations{shapes[0][0], shapes[0][1], shapes[1][0]}, channels{shapes[1][0]};
  return {activations, activations, channels, channels};
}
std::vector<mindspore::TypeId> EcapaTdnnTrainingInferType(std::vector<mindspore::TypeId> types,
                                                          mindspore::AotExtra*) {
  return std::vector<mindspore::TypeId>(4, types[0]);
}

std::vector<std::vector<int64_t>> EcapaTdnnTrainingGradInferShape(int*, int64_t** shapes, mindspore::AotExtra*) {
  const std::vector<int64_t> channels{shapes[1][0]};
  return {{shapes[0][0], shapes[0][1], shapes[0][2]}, {shapes[1][0], shapes[1][1]}, channels, channels, channels};
}
std::vector<mindspore::TypeId> EcapaTdnnTrainingGradInferType(std::vector<mindspore::TypeId> types,
                                                              mindspore::AotExtra*) {
  return std::vector<mindspore::TypeId>(5, types[0]);
}

}  // extern "C"

#pragma GCC pop_options
