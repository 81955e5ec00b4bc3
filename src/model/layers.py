"""Time-major building blocks of the ECAPA-TDNN network.

The network keeps activations as (N, T, C): batch, frames, channels. With frames as
rows, a 1x1 convolution is one matrix product of (N*T, C_in) by (C_in, C_out), and a
kernel-k convolution becomes one product after concatenating k time-shifted copies
of the input on the channel axis (the "shifted" formulation). On a CPU this runs
through the fast GEMM kernels, whereas oneDNN's plain-layout Conv1d with k > 1 falls
back to a slow reference path (see benchmarks/). On Ascend and GPU the "native"
formulation calls the device's Conv2D kernel. Both formulations hold the same
parameters, named and shaped as ``mindspore.nn.Conv1d`` does (weight
(C_out, C_in, 1, k), bias (C_out,)), so checkpoints move freely between devices.

MindSpore's CPU kernels for reductions over a leading axis and for element-wise ops that
broadcast a row are many times slower than a same-shape element-wise op, and so are
the gradients of broadcasting ops (they are such reductions). Sums over rows are
therefore products with a vector of ones, a row is repeated by a product with a column
of ones (whose gradient is again such a product) or, where no gradient is needed, by
a tile, and batch norm and the shifted copies have hand-written gradients.
"""
import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

CONV_IMPLS = ("shifted", "native")


def time_sum(x):
    """Sum over frames: (N, T, C) -> (N, 1, C), as a batched product with ones."""
    return ops.bmm(ops.ones((x.shape[0], 1, x.shape[1]), x.dtype), x)


def repeat_frames(x, frames):
    """(N, 1, C) -> (N, frames, C), as a batched product with ones; its gradient is a time_sum."""
    return ops.bmm(ops.ones((x.shape[0], frames, 1), x.dtype), x)


def repeat_rows(row, count):
    """A row repeated ``count`` times: (1, C) -> (count, C), as a product with ones.

    Its gradient, the sum over rows, is then a product with ones as well.
    """
    return ops.matmul(ops.ones((count, 1), row.dtype), row)


def tile_rows(row, count):
    """(1, C) -> (count, C) by copying: faster than repeat_rows, but its gradient is a slow
    reduction, so it serves only where no gradient flows through it."""
    return ops.tile(row, (count, 1))


PADDINGS = ("zeros", "reflect")


def zero_pad_time(x, half_width):
    """x (N, T, C) with ``half_width`` (> 0) zero frames added at each end: (N, T + 2 * half_width, C)."""
    zeros = ops.zeros((x.shape[0], half_width, x.shape[2]), x.dtype)
    return ops.concat([zeros, x, zeros], axis=1)


def reflect_pad_time(x, half_width):
    """x (N, T, C) with ``half_width`` (> 0, < T) mirrored frames added at each end, as PyTorch's
    reflect padding does (the end frame is not repeated): x[h], ..., x[1], x[0], ..., x[T-1],
    x[T-2], ..., x[T-1-h]. One-frame slices and a concatenation, which every exporter and
    device supports; the end's slices count from the end, so T may be dynamic."""
    start = [x[:, index:index + 1, :] for index in range(half_width, 0, -1)]
    end = [x[:, -index - 1:-index, :] for index in range(1, half_width + 1)]
    return ops.concat(start + [x] + end, axis=1)


def min_frames(network):
    """The fewest frames ``network`` takes: one more than the widest reflection padding of its
    TimeConv1d cells (a mirror needs that many frames), else 1."""
    widths = [cell.half_width for _, cell in network.cells_and_names()
              if isinstance(cell, TimeConv1d) and cell.padding == "reflect"]
    return 1 + max(widths, default=0)


class _ShiftedCopies(nn.Cell):
    """k time-shifted copies of x side by side on channels: (N, T, C) -> (N, T, k * C).

    Copy ``tap`` holds x[t + tap * dilation - half_width] of x padded by ``padding`` (zeros or
    reflection), so a 1x1 product of the result is the 'same'-padded dilated convolution.
    The hand-written gradient adds the matching shifted slices of the incoming gradient, in
    fewer and smaller operations than differentiating the slicing and concatenation; with
    reflection the gradient of each mirrored frame is then added to the frame it copies.
    """

    def __init__(self, kernel_size, dilation, padding="zeros"):
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.half_width = dilation * (kernel_size - 1) // 2
        self.reflect = padding == "reflect"

    def construct(self, x):
        frames = x.shape[1]
        padded = reflect_pad_time(x, self.half_width) if self.reflect else zero_pad_time(x, self.half_width)
        return ops.concat([padded[:, tap * self.dilation:tap * self.dilation + frames, :]
                           for tap in range(self.kernel_size)], axis=2)

    def _summed_taps(self, dout, first, frames):
        """g[j] = sum over taps of dout[first + j - tap * dilation] (zero outside dout), for j < frames:
        the gradient of x (first = half_width) or of the padded x (first = 0)."""
        margin = 2 * self.half_width - first
        # Split on channels first: slicing time and channels at once is very slow on CPU.
        pieces = ops.split(zero_pad_time(dout, margin), dout.shape[2] // self.kernel_size, axis=2)
        grad = None
        for tap in range(self.kernel_size):
            start = margin + first - tap * self.dilation
            piece = pieces[tap][:, start:start + frames, :]
            grad = piece if grad is None else grad + piece
        return grad

    def bprop(self, x, out, dout):
        frames, width = x.shape[1], self.half_width
        if not self.reflect:
            return (self._summed_taps(dout, width, frames),)
        padded = self._summed_taps(dout, 0, frames + 2 * width)
        # Frame h - 1 - i of the padded start mirrors x[1 + i]; frame T + 2h - 1 - i of its end, x[T - 1 - h + i].
        zero = [ops.zeros((x.shape[0], 1, x.shape[2]), x.dtype)]
        rest = [ops.zeros((x.shape[0], frames - 1 - width, x.shape[2]), x.dtype)] if frames - 1 > width else []
        start = [padded[:, index:index + 1, :] for index in range(width - 1, -1, -1)]
        end = [padded[:, index:index + 1, :] for index in range(frames + 2 * width - 1, frames + width - 1, -1)]
        grad = (padded[:, width:width + frames, :] + ops.concat(zero + start + rest, axis=1)
                + ops.concat(rest + end + zero, axis=1))
        return (grad,)


class TimeConv1d(nn.Cell):
    """Convolution over time with 'same' padding: (N, T, C_in) -> (N, T, C_out).

    Weights are kept in float32 and cast to the input's type, so the layer runs in float16
    under mixed precision.

    kernel_size must be odd; the receptive field is dilation * (kernel_size - 1) + 1 frames.
    ``impl`` chooses the formulation ('shifted' or 'native'); results agree to float tolerance.
    ``padding`` 'zeros' or 'reflect' (:func:`reflect_pad_time`) fills the frames past each end.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, has_bias=True,
                 impl="shifted", padding="zeros"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if impl not in CONV_IMPLS:
            raise ValueError(f"impl must be one of {CONV_IMPLS}, got {impl!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.half_width = dilation * (kernel_size - 1) // 2
        self.shifted = impl == "shifted"
        self.padding = padding
        fan_in = in_channels * kernel_size
        self.weight = Parameter(initializer(HeUniform(negative_slope=math.sqrt(5)),
                                            (out_channels, in_channels, 1, kernel_size), ms.float32),
                                name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(initializer(Uniform(1.0 / math.sqrt(fan_in)), (out_channels,), ms.float32),
                                  name="bias")
        self.matmul = ops.MatMul(transpose_b=True)
        self.shifted_copies = _ShiftedCopies(kernel_size, dilation, padding)
        # Zero padding is the kernel's own; reflection pads the input before a 'valid' kernel.
        pad = 0 if padding == "reflect" else self.half_width
        self.conv2d = ops.Conv2D(out_channels, (1, kernel_size), pad_mode="pad", pad=(0, 0, pad, pad),
                                 dilation=(1, dilation))

    def weight_matrix(self):
        """The weight as the (C_out, k * C_in) matrix of the shifted formulation: row o lists
        tap 0's input channels, then tap 1's, ..."""
        if self.kernel_size > 1:
            return self.weight.squeeze(2).transpose(0, 2, 1).reshape(self.out_channels, -1)
        return self.weight.reshape(self.out_channels, self.in_channels)

    def _shifted(self, x):
        batch, frames, _ = x.shape
        if self.kernel_size > 1:
            x = self.shifted_copies(x)
        y = self.matmul(x.reshape(-1, self.kernel_size * self.in_channels), self.weight_matrix().astype(x.dtype))
        if self.has_bias:
            y = y + repeat_rows(self.bias.reshape(1, -1).astype(x.dtype), y.shape[0])
        return y.reshape(batch, frames, self.out_channels)

    def _native(self, x):
        if self.padding == "reflect" and self.half_width:
            x = reflect_pad_time(x, self.half_width)
        y = self.conv2d(x.transpose(0, 2, 1).expand_dims(2), self.weight.astype(x.dtype)).squeeze(2)
        if self.has_bias:
            y = y + self.bias.reshape(1, -1, 1).astype(x.dtype)
        return y.transpose(0, 2, 1)

    def construct(self, x):
        if self.shifted:
            return self._shifted(x)
        return self._native(x)

    def of_concatenation(self, parts):
        """The convolution of ``ops.concat(parts, axis=2)``; the parts are (N, T, C_in / len(parts)).

        With the 'shifted' formulation and kernel_size 1 the concatenation is not built:
        each part is multiplied by its block of weight columns and the products are
        summed. The input gradients then come from narrower products, which oneDNN runs
        markedly faster than one (N*T, C_out) x (C_out, C_in) product.
        """
        if not self.shifted or self.kernel_size > 1:
            return self.construct(ops.concat(parts, axis=2))
        batch, frames, width = parts[0].shape
        widths = [part.shape[2] for part in parts]
        if widths != [width] * len(parts) or width * len(parts) != self.in_channels:
            raise ValueError(f"of_concatenation needs parts of equal width adding up to {self.in_channels} "
                             f"channels, got widths {widths}")
        blocks = ops.split(self.weight.reshape(self.out_channels, self.in_channels).astype(parts[0].dtype), width,
                           axis=1)
        y = None
        for part, block in zip(parts, blocks):
            product = self.matmul(part.reshape(-1, part.shape[2]), block)
            y = product if y is None else y + product
        if self.has_bias:
            y = y + repeat_rows(self.bias.reshape(1, -1).astype(y.dtype), y.shape[0])
        return y.reshape(batch, frames, self.out_channels)


class _BatchStatisticsNorm(nn.Cell):
    """Normalisation with the batch's statistics, with a hand-written gradient.

    (rows (R, C), gamma (C,), beta (C,)) -> (out, centred (R, C), mean (1, C), variance (1, C))
    where centred = rows - mean, variance is the biased variance (two passes) and
    out = gamma * centred / sqrt(variance + eps) + beta. Only ``out`` carries a gradient.
    With normalised = centred / std the backward pass is the closed form
    d_rows = gamma / std * (d_out - mean(d_out) - normalised * mean(d_out * normalised)),
    which takes far fewer passes over the data than differentiating the forward ops.
    Sums over rows are products with ones; rows are repeated by tiling.
    """

    def __init__(self, eps):
        super().__init__()
        self.eps = eps
        self.matmul = ops.MatMul()
        self.tile = ops.Tile()
        self.rsqrt = ops.Rsqrt()

    def _column_sum(self, rows):
        return self.matmul(ops.ones((1, rows.shape[0]), rows.dtype), rows)

    def _tile(self, row, count):
        return self.tile(row.reshape(1, -1), (count, 1))

    def construct(self, rows, gamma, beta):
        count = rows.shape[0]
        mean = self._column_sum(rows) / count
        centred = rows - self._tile(mean, count)
        variance = self._column_sum(centred * centred) / count
        scale = gamma.reshape(1, -1) * self.rsqrt(variance + self.eps)
        out = centred * self._tile(scale, count) + self._tile(beta, count)
        return out, centred, mean, variance

    def bprop(self, rows, gamma, beta, out, dout):
        count = rows.shape[0]
        d_out = dout[0]
        centred, variance = out[1], out[3]
        inverse_std = self.rsqrt(variance + self.eps)
        scale = gamma.reshape(1, -1) * inverse_std
        d_beta = self._column_sum(d_out)
        d_gamma = self._column_sum(d_out * centred) * inverse_std
        d_rows = (d_out * self._tile(scale, count)
                  - centred * self._tile(scale * inverse_std * d_gamma / count, count)
                  - self._tile(scale * d_beta / count, count))
        return d_rows, d_gamma.reshape(-1), d_beta.reshape(-1)


class ChannelBatchNorm(nn.Cell):
    """Batch normalisation of each channel (last axis) over all other axes: (..., C) -> (..., C).

    Training normalises with the batch statistics and folds them into the moving
    averages (``moving = momentum * moving + (1 - momentum) * batch``, unbiased variance);
    inference uses the moving averages as one per-channel scale and shift. Written out
    (see _BatchStatisticsNorm) because MindSpore's CPU BatchNorm kernel is ~30x slower
    on (N*T, C) inputs. Parameters are named as in ``nn.BatchNorm1d``. Mixed precision
    keeps this cell in float32 (``keeps_float32``, see src/device.py).
    """

    keeps_float32 = True

    def __init__(self, channels, momentum=0.9, eps=1e-5):
        super().__init__()
        self.channels = channels
        self.momentum = momentum
        self.eps = eps
        self.gamma = Parameter(initializer("ones", (channels,), ms.float32), name="gamma")
        self.beta = Parameter(initializer("zeros", (channels,), ms.float32), name="beta")
        self.moving_mean = Parameter(initializer("zeros", (channels,), ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(initializer("ones", (channels,), ms.float32),
                                         name="moving_variance", requires_grad=False)
        self.batch_norm = _BatchStatisticsNorm(eps)

    def update_moving_statistics(self, mean, variance, count):
        """Fold a batch's mean and biased variance (C values each, from ``count`` rows) into the
        moving averages; no gradient flows through them."""
        unbiased = ops.stop_gradient(variance.reshape(-1)) * (count / max(count - 1, 1))
        ops.assign(self.moving_mean, self.momentum * self.moving_mean
                   + (1 - self.momentum) * ops.stop_gradient(mean.reshape(-1)))
        ops.assign(self.moving_variance, self.momentum * self.moving_variance + (1 - self.momentum) * unbiased)

    def construct(self, x):
        rows = x.reshape(-1, self.channels)
        count = rows.shape[0]
        if self.training:
            out, _, mean, variance = self.batch_norm(rows, self.gamma, self.beta)
            self.update_moving_statistics(mean, variance, count)
        else:
            scale = self.gamma * ops.rsqrt(self.moving_variance + self.eps)
            shift = self.beta - self.moving_mean * scale
            out = rows * tile_rows(scale.reshape(1, -1), count) + tile_rows(shift.reshape(1, -1), count)
        return out.reshape(x.shape)


class ChannelAffine(nn.Cell):
    """``x * scale + shift`` per channel (last axis) with constant parameters: (..., C) -> (..., C).

    What a batch norm becomes once folded (src/inference/folding.py). ``scale`` None means 1
    (only the shift is added). Rows are repeated by tiling, as in ChannelBatchNorm's
    inference path.
    """

    def __init__(self, shift, scale=None):
        super().__init__()
        self.channels = int(shift.shape[0])
        self.shift = Parameter(Tensor(np.asarray(shift, np.float32)), name="shift", requires_grad=False)
        self.has_scale = scale is not None
        if self.has_scale:
            self.scale = Parameter(Tensor(np.asarray(scale, np.float32)), name="scale", requires_grad=False)

    def construct(self, x):
        rows = x.reshape(-1, self.channels)
        count = rows.shape[0]
        if self.has_scale:
            rows = rows * tile_rows(self.scale.reshape(1, -1), count)
        return (rows + tile_rows(self.shift.reshape(1, -1), count)).reshape(x.shape)


class TDNNBlock(nn.Cell):
    """TimeConv1d -> ReLU -> batch norm: (N, T, C_in) -> (N, T, C_out)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, impl="shifted", padding="zeros"):
        super().__init__()
        self.conv = TimeConv1d(in_channels, out_channels, kernel_size, dilation, impl=impl, padding=padding)
        self.relu = nn.ReLU()
        self.norm = ChannelBatchNorm(out_channels)

    def construct(self, x):
        return self.norm(self.relu(self.conv(x)))

    def of_concatenation(self, parts):
        """The block applied to ``ops.concat(parts, axis=2)`` (see TimeConv1d.of_concatenation)."""
        return self.norm(self.relu(self.conv.of_concatenation(parts)))
