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
"""
import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

CONV_IMPLS = ("shifted", "native")


def conv_impl_for_device(device_target):
    """The faster convolution formulation for a device: 'shifted' on CPU, else 'native'."""
    return "shifted" if device_target == "CPU" else "native"


class TimeConv1d(nn.Cell):
    """Convolution over time with 'same' zero padding: (N, T, C_in) -> (N, T, C_out).

    kernel_size must be odd; the receptive field is dilation * (kernel_size - 1) + 1 frames.
    ``impl`` chooses the formulation ('shifted' or 'native'); results agree to float tolerance.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, has_bias=True,
                 impl="shifted"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if impl not in CONV_IMPLS:
            raise ValueError(f"impl must be one of {CONV_IMPLS}, got {impl!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.half_width = dilation * (kernel_size - 1) // 2
        self.shifted = impl == "shifted"
        fan_in = in_channels * kernel_size
        self.weight = Parameter(initializer(HeUniform(negative_slope=math.sqrt(5)),
                                            (out_channels, in_channels, 1, kernel_size), ms.float32),
                                name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(initializer(Uniform(1.0 / math.sqrt(fan_in)), (out_channels,), ms.float32),
                                  name="bias")
        self.matmul = ops.MatMul(transpose_b=True)
        self.conv2d = ops.Conv2D(out_channels, (1, kernel_size), pad_mode="pad",
                                 pad=(0, 0, self.half_width, self.half_width), dilation=(1, dilation))

    def _shifted(self, x):
        batch, frames, _ = x.shape
        if self.kernel_size > 1:
            # Zero frames are concatenated rather than added with ops.pad, whose CPU
            # gradient kernel returns stale values on repeated calls.
            edge = ops.zeros((batch, self.half_width, self.in_channels), x.dtype)
            padded = ops.concat([edge, x, edge], axis=1)
            x = ops.concat([padded[:, tap * self.dilation:tap * self.dilation + frames, :]
                            for tap in range(self.kernel_size)], axis=2)
        # Row o of the (C_out, k*C_in) matrix lists tap 0's input channels, then tap 1's, ...
        weight = self.weight.squeeze(2).transpose(0, 2, 1).reshape(self.out_channels, -1)
        y = self.matmul(x.reshape(-1, self.kernel_size * self.in_channels), weight)
        if self.has_bias:
            y = y + self.bias
        return y.reshape(batch, frames, self.out_channels)

    def _native(self, x):
        y = self.conv2d(x.transpose(0, 2, 1).expand_dims(2), self.weight).squeeze(2)
        if self.has_bias:
            y = y + self.bias.reshape(1, -1, 1)
        return y.transpose(0, 2, 1)

    def construct(self, x):
        if self.shifted:
            return self._shifted(x)
        return self._native(x)


class ChannelBatchNorm(nn.Cell):
    """Batch normalisation of each channel (last axis) over all other axes: (..., C) -> (..., C).

    Training normalises with the batch statistics and folds them into the moving
    averages (``moving = momentum * moving + (1 - momentum) * batch``, unbiased variance);
    inference uses the moving averages. Written out with reductions and two fused
    multiply-adds because MindSpore's CPU BatchNorm kernel is ~30x slower on
    (N*T, C) inputs. Parameters are named as in ``nn.BatchNorm1d``.
    """

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

    def construct(self, x):
        if self.training:
            rows = x.reshape(-1, self.channels)
            count = rows.shape[0]
            mean = rows.mean(axis=0)
            centred = rows - mean
            variance = (centred * centred).mean(axis=0)
            unbiased = ops.stop_gradient(variance) * (count / max(count - 1, 1))
            ops.assign(self.moving_mean,
                       self.momentum * self.moving_mean + (1 - self.momentum) * ops.stop_gradient(mean))
            ops.assign(self.moving_variance,
                       self.momentum * self.moving_variance + (1 - self.momentum) * unbiased)
            scale = self.gamma * ops.rsqrt(variance + self.eps)
            return (centred * scale + self.beta).reshape(x.shape)
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.eps)
        return x * scale + (self.beta - self.moving_mean * scale)


class TDNNBlock(nn.Cell):
    """TimeConv1d -> ReLU -> batch norm: (N, T, C_in) -> (N, T, C_out)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, impl="shifted"):
        super().__init__()
        self.conv = TimeConv1d(in_channels, out_channels, kernel_size, dilation, impl=impl)
        self.relu = nn.ReLU()
        self.norm = ChannelBatchNorm(out_channels)

    def construct(self, x):
        return self.norm(self.relu(self.conv(x)))
