"""ECAPA-TDNN building blocks against independent numpy references."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.model.aam_softmax import AAMSoftmax
from fixtures import TINY_NETWORK, tiny_network
from src.model import count_parameters
from src.model.ecapa_tdnn import ECAPA_TDNN, AttentiveStatsPooling, SqueezeExcitation
from src.model.layers import ChannelBatchNorm, TDNNBlock, TimeConv1d
from src.device import conv_impl_for_device


def numpy_conv(x, weight, bias, dilation, padding="zeros"):
    """Reference 'same'-padded dilated convolution. x (N, T, Ci), weight (Co, Ci, 1, k);
    padding 'zeros' or 'reflect' (numpy's reflect mode is PyTorch's)."""
    batch, frames, _ = x.shape
    taps = weight.shape[3]
    half = dilation * (taps - 1) // 2
    padded = np.pad(x, ((0, 0), (half, half), (0, 0)), mode="constant" if padding == "zeros" else "reflect")
    out = np.zeros((batch, frames, weight.shape[0]))
    for t in range(frames):
        for tap in range(taps):
            out[:, t, :] += padded[:, t + tap * dilation, :] @ weight[:, :, 0, tap].T
    return out + bias


# Through a deep network with batch statistics over 60 frames, float32 rounding in two
# different summation orders moves gradients by up to ~1e-3 of their largest entry.
GRAD_TOLERANCE = 1e-3


def twelve_band_network(impl):
    return tiny_network(in_channels=12, impl=impl, emb_size=6)


def test_default_network_has_14_7_million_parameters():
    network = ECAPA_TDNN()
    assert count_parameters(network) == pytest.approx(14.7e6, rel=0.01)


def test_impl_follows_device():
    assert conv_impl_for_device("CPU") == "shifted"
    assert conv_impl_for_device("Ascend") == "native"
    assert conv_impl_for_device("GPU") == "native"


@pytest.mark.parametrize("impl", ["shifted", "native"])
@pytest.mark.parametrize("kernel_size,dilation,padding", [(1, 1, "zeros"), (3, 2, "zeros"), (5, 1, "zeros"),
                                                          (1, 1, "reflect"), (3, 4, "reflect"), (5, 1, "reflect")])
def test_time_conv_matches_numpy(impl, kernel_size, dilation, padding, rng):
    conv = TimeConv1d(5, 7, kernel_size, dilation, impl=impl, padding=padding)
    x = rng.standard_normal((2, 11, 5)).astype(np.float32)
    expected = numpy_conv(x, conv.weight.asnumpy(), conv.bias.asnumpy(), dilation, padding)
    np.testing.assert_allclose(conv(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def test_conv_parameters_match_nn_conv1d():
    conv = TimeConv1d(5, 7, 3, 2)
    reference = nn.Conv1d(5, 7, 3, has_bias=True)
    assert conv.weight.shape == reference.weight.shape
    assert sorted(p.name for p in conv.get_parameters()) == ["bias", "weight"]


class _ProjectedOutput(nn.Cell):
    """A scalar with a non-degenerate gradient: the output's sum weighted by fixed values."""

    def __init__(self, network, projection):
        super().__init__()
        self.network = network
        self.projection = Tensor(projection)

    def construct(self, x):
        return (self.network(x) * self.projection).sum()


def _output_and_gradients(network, x):
    network.set_train(False)
    projection = np.random.default_rng(1).standard_normal(network(Tensor(x)).shape).astype(np.float32)
    loss = _ProjectedOutput(network, projection)
    loss.set_train(True)
    grad = ops.GradOperation(get_all=False, get_by_list=True)(loss, ms.ParameterTuple(network.trainable_params()))
    gradients = grad(Tensor(x))
    network.set_train(False)
    return network(Tensor(x)).asnumpy(), {p.name: g.asnumpy() for p, g in zip(network.trainable_params(), gradients)}


def test_shifted_and_native_networks_agree_in_output_and_gradients(rng):
    shifted, native = twelve_band_network("shifted"), twelve_band_network("native")
    ms.load_param_into_net(native, {p.name: ms.Parameter(p.data.copy(), p.name)
                                    for p in shifted.get_parameters()})
    x = rng.standard_normal((3, 20, 12)).astype(np.float32)
    out_s, grads_s = _output_and_gradients(shifted, x)
    out_n, grads_n = _output_and_gradients(native, x)
    assert out_s.shape == (3, 6)
    np.testing.assert_allclose(out_s, out_n, rtol=1e-4, atol=1e-4)
    assert grads_s.keys() == grads_n.keys()
    # Some gradients are exactly zero in theory (e.g. a bias under a softmax over time),
    # so differences are measured against the largest gradient of the whole network.
    scale = max(np.abs(gradient).max() for gradient in grads_s.values())
    for name in grads_s:
        np.testing.assert_allclose(grads_s[name] / scale, grads_n[name] / scale, atol=GRAD_TOLERANCE,
                                   err_msg=name)


@pytest.mark.parametrize("kernel_size,dilation,padding", [(3, 2, "zeros"), (5, 1, "zeros"), (3, 3, "reflect")])
def test_shifted_and_native_conv_gradients_agree(kernel_size, dilation, padding, rng):
    shifted = TimeConv1d(6, 5, kernel_size, dilation, impl="shifted", padding=padding)
    native = TimeConv1d(6, 5, kernel_size, dilation, impl="native", padding=padding)
    native.weight.set_data(shifted.weight.data.copy())
    native.bias.set_data(shifted.bias.data.copy())
    x = rng.standard_normal((2, 9, 6)).astype(np.float32)
    out_s, grads_s = _output_and_gradients(shifted, x)
    out_n, grads_n = _output_and_gradients(native, x)
    np.testing.assert_allclose(out_s, out_n, rtol=1e-5, atol=1e-5)
    for name in grads_s:
        np.testing.assert_allclose(grads_s[name], grads_n[name], rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("kernel_size,dilation,padding,frames", [(3, 2, "zeros", 7), (5, 1, "zeros", 7),
                                                                 (3, 2, "reflect", 7), (5, 1, "reflect", 7),
                                                                 (3, 4, "reflect", 5)])
def test_shifted_conv_input_gradient_matches_numpy(kernel_size, dilation, padding, frames, rng):
    # frames 5 with half width 4: the mirrored frames at both ends meet (x[1..4] and x[0..3]).
    conv = TimeConv1d(3, 2, kernel_size, dilation, impl="shifted", padding=padding)
    x = rng.standard_normal((2, frames, 3)).astype(np.float32)
    projection = rng.standard_normal((2, frames, 2)).astype(np.float32)
    _, gradient = _value_and_input_gradient(conv, x, projection)
    weight, bias = conv.weight.asnumpy().astype(np.float64), conv.bias.asnumpy().astype(np.float64)
    expected = numeric_gradient(lambda v: (numpy_conv(v, weight, bias, dilation, padding) * projection).sum(),
                                x.astype(np.float64))
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-4)


def test_batch_norm_training_and_inference_match_numpy(rng):
    norm = ChannelBatchNorm(3, momentum=0.9)
    norm.gamma.set_data(Tensor(np.array([1.0, 2.0, 0.5], np.float32)))
    norm.beta.set_data(Tensor(np.array([0.0, -1.0, 3.0], np.float32)))
    x = (rng.standard_normal((4, 5, 3)) * [1, 3, 0.2] + [0, 5, -2]).astype(np.float32)
    rows = x.reshape(-1, 3)
    mean, var = rows.mean(0), rows.var(0)
    expected = (x - mean) / np.sqrt(var + 1e-5) * [1.0, 2.0, 0.5] + [0.0, -1.0, 3.0]
    norm.set_train(True)
    np.testing.assert_allclose(norm(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)
    moving_mean = 0.1 * mean
    moving_var = 0.9 + 0.1 * rows.var(0, ddof=1)
    np.testing.assert_allclose(norm.moving_mean.asnumpy(), moving_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.asnumpy(), moving_var, rtol=1e-5)
    norm.set_train(False)
    expected_eval = (x - moving_mean) / np.sqrt(moving_var + 1e-5) * [1.0, 2.0, 0.5] + [0.0, -1.0, 3.0]
    np.testing.assert_allclose(norm(Tensor(x)).asnumpy(), expected_eval, rtol=1e-4, atol=1e-4)


def test_embedding_does_not_depend_on_other_utterances_in_eval_mode(rng):
    network = twelve_band_network("shifted")
    network.set_train(False)
    x = rng.standard_normal((3, 20, 12)).astype(np.float32)
    together = network(Tensor(x)).asnumpy()
    alone = network(Tensor(x[1:2])).asnumpy()
    np.testing.assert_allclose(together[1:2], alone, rtol=1e-5, atol=1e-5)


def _numpy_aam_logits(embeddings, weight, labels, margin, scale):
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    cosine = np.clip(e @ w.T, -1, 1)
    theta = np.arccos(cosine)
    target = np.where(theta + margin <= np.pi, np.cos(theta + margin), cosine - np.sin(np.pi - margin) * margin)
    logits = scale * cosine
    rows = np.arange(len(labels))
    logits[rows, labels] = scale * target[rows, labels]
    return logits, cosine


def test_aam_logits_match_angle_formula(rng):
    head = AAMSoftmax(4, 6, margin=0.2, scale=30.0)
    embeddings = rng.standard_normal((5, 4)).astype(np.float32)
    labels = np.array([0, 1, 5, 3, 3], np.int32)
    head.weight.set_data(Tensor(np.concatenate([-embeddings[:1], rng.standard_normal((5, 4))]).astype(np.float32)))
    logits, cosine = head(Tensor(embeddings), Tensor(labels))
    expected_logits, expected_cosine = _numpy_aam_logits(embeddings, head.weight.asnumpy(), labels, 0.2, 30.0)
    np.testing.assert_allclose(cosine.asnumpy(), expected_cosine, atol=1e-5)
    np.testing.assert_allclose(logits.asnumpy(), expected_logits, atol=2e-3)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_aam_is_finite_at_cosine_plus_minus_one(sign):
    head = AAMSoftmax(3, 2)
    direction = np.array([[0.6, 0.0, 0.8]], np.float32)
    head.weight.set_data(Tensor(np.concatenate([sign * direction, [[0.0, 1.0, 0.0]]]).astype(np.float32)))
    labels = Tensor(np.array([0], np.int32))
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def loss(embeddings, weight):
        head.weight.set_data(weight)
        return loss_fn(head(embeddings, labels)[0], labels)

    class Loss(nn.Cell):
        def __init__(self):
            super().__init__()
            self.head = head

        def construct(self, embeddings):
            return loss_fn(self.head(embeddings, labels)[0], labels)

    net = Loss()
    embeddings = Tensor(direction * 2.0)
    value = net(embeddings).asnumpy()
    gradient_of = ops.GradOperation(get_all=True, get_by_list=True)
    gradients = gradient_of(net, ms.ParameterTuple(net.trainable_params()))(embeddings)
    assert np.isfinite(value)
    for part in gradients:
        for gradient in part:
            assert np.all(np.isfinite(gradient.asnumpy()))


def test_repeated_gradient_calls_are_identical(rng):
    """Gradients depend only on weights and input: no kernel may carry state between calls
    of the same compiled graph (ops.pad's CPU gradient once did)."""
    network = twelve_band_network("shifted")
    x = Tensor(rng.standard_normal((2, 16, 12)).astype(np.float32))
    network.set_train(False)
    projection = rng.standard_normal(network(x).shape).astype(np.float32)
    loss = _ProjectedOutput(network, projection)
    loss.set_train(True)
    grad = ops.GradOperation(get_by_list=True)(loss, ms.ParameterTuple(network.trainable_params()))
    first, second, third = grad(x), grad(x), grad(x)
    for parameter, a, b, c in zip(network.trainable_params(), first, second, third):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=parameter.name)
        np.testing.assert_array_equal(a.asnumpy(), c.asnumpy(), err_msg=parameter.name)


# --- Independent float64 references for the hand-written formulations -------------------

def numeric_gradient(function, value, step=1e-5):
    """Central-difference gradient of the scalar ``function`` at float64 array ``value``."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        shifted = value.copy()
        shifted[index] += step
        upper = function(shifted)
        shifted[index] -= 2 * step
        gradient[index] = (upper - function(shifted)) / (2 * step)
    return gradient


def numpy_batch_norm(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm over every axis but the last."""
    rows = x.reshape(-1, x.shape[-1])
    normalised = (rows - rows.mean(0)) / np.sqrt(rows.var(0) + eps)
    return (normalised * gamma + beta).reshape(x.shape)


def numpy_tdnn_1x1(x, weight, bias, gamma, beta):
    """TDNNBlock with kernel 1 in training mode: conv, ReLU, batch norm. weight (Co, Ci, 1, 1)."""
    return numpy_batch_norm(np.maximum(x @ weight[:, :, 0, 0].T + bias, 0.0), gamma, beta)


def numpy_attentive_pooling(x, params):
    """Attentive statistics pooling with global context, training mode: (N, T, C) -> (N, 2C)."""
    def stats(weights):
        mean = (weights * x).sum(1, keepdims=True)
        variance = (weights * x * x).sum(1, keepdims=True) - mean * mean
        return mean, np.sqrt(np.maximum(variance, 1e-4))

    mean, std = stats(np.full_like(x, 1.0 / x.shape[1]))
    context = np.concatenate([x, np.broadcast_to(mean, x.shape), np.broadcast_to(std, x.shape)], axis=2)
    hidden = np.tanh(numpy_tdnn_1x1(context, *params[:4]))
    logits = hidden @ params[4][:, :, 0, 0].T + params[5]
    weights = np.exp(logits - logits.max(1, keepdims=True))
    mean, std = stats(weights / weights.sum(1, keepdims=True))
    return np.concatenate([mean, std], axis=2)[:, 0, :]


def numpy_squeeze_excitation(x, squeeze_w, squeeze_b, excite_w, excite_b):
    summary = x.mean(1, keepdims=True)
    hidden = np.maximum(summary @ squeeze_w[:, :, 0, 0].T + squeeze_b, 0.0)
    return x / (1.0 + np.exp(-(hidden @ excite_w[:, :, 0, 0].T + excite_b)))


def _randomise(cell, rng, scale=0.5):
    """Give every parameter of ``cell`` random values (weights otherwise start at 1 / 0)."""
    for parameter in cell.get_parameters():
        values = rng.standard_normal(parameter.shape) * scale
        if "variance" in parameter.name or "gamma" in parameter.name:
            values = 1.0 + np.abs(values)
        parameter.set_data(Tensor(values.astype(np.float32)))


def _value_and_input_gradient(cell, x, projection):
    """sum(cell(x) * projection) and its gradient with respect to x, in training mode."""
    loss = _ProjectedOutput(cell, projection)
    loss.set_train(True)
    value = loss(Tensor(x)).asnumpy()
    gradient = ops.GradOperation()(loss)(Tensor(x)).asnumpy()
    return value, gradient


def test_batch_norm_gradients_match_finite_differences(rng):
    norm = ChannelBatchNorm(3)
    _randomise(norm, rng)
    x = (rng.standard_normal((2, 5, 3)) * [1, 3, 0.2] + [0, 5, -2]).astype(np.float32)
    projection = rng.standard_normal((2, 5, 3)).astype(np.float32)
    gamma, beta = norm.gamma.asnumpy().astype(np.float64), norm.beta.asnumpy().astype(np.float64)
    _, gradient = _value_and_input_gradient(norm, x, projection)
    expected = numeric_gradient(lambda v: (numpy_batch_norm(v, gamma, beta) * projection).sum(),
                                x.astype(np.float64))
    np.testing.assert_allclose(gradient, expected, rtol=1e-3, atol=1e-3)
    grad_params = ops.GradOperation(get_by_list=True)(_ProjectedOutput(norm, projection),
                                                       ms.ParameterTuple([norm.gamma, norm.beta]))
    d_gamma, d_beta = (g.asnumpy() for g in grad_params(Tensor(x)))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(d_gamma, numeric_gradient(
        lambda g: (numpy_batch_norm(x64, g, beta) * projection).sum(), gamma), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(d_beta, numeric_gradient(
        lambda b: (numpy_batch_norm(x64, gamma, b) * projection).sum(), beta), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("impl", ["shifted", "native"])
def test_attentive_pooling_matches_numpy_in_value_and_input_gradient(impl, rng):
    pooling = AttentiveStatsPooling(3, 2, impl)
    _randomise(pooling, rng)
    attention = pooling.attention
    params = [p.asnumpy().astype(np.float64) for p in (
        attention.conv.weight, attention.conv.bias, attention.norm.gamma, attention.norm.beta,
        pooling.logits.weight, pooling.logits.bias)]
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    projection = rng.standard_normal((2, 6)).astype(np.float32)
    value, gradient = _value_and_input_gradient(pooling, x, projection)
    reference = lambda v: (numpy_attentive_pooling(v, params) * projection).sum()  # noqa: E731
    np.testing.assert_allclose(value, reference(x.astype(np.float64)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gradient, numeric_gradient(reference, x.astype(np.float64)),
                               rtol=1e-3, atol=1e-3)


def test_squeeze_excitation_matches_numpy_in_value_and_input_gradient(rng):
    se = SqueezeExcitation(4, 2, "shifted")
    _randomise(se, rng)
    params = [p.asnumpy().astype(np.float64) for p in (se.squeeze.weight, se.squeeze.bias,
                                                       se.excite.weight, se.excite.bias)]
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    projection = rng.standard_normal((2, 5, 4)).astype(np.float32)
    value, gradient = _value_and_input_gradient(se, x, projection)
    reference = lambda v: (numpy_squeeze_excitation(v, *params) * projection).sum()  # noqa: E731
    np.testing.assert_allclose(value, reference(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient, numeric_gradient(reference, x.astype(np.float64)),
                               rtol=1e-3, atol=1e-4)


class _PartsLoss(nn.Cell):
    """sum(block(concat(a, b)) * projection), through of_concatenation or a built concatenation."""

    def __init__(self, block, projection, joined):
        super().__init__()
        self.block = block
        self.projection = Tensor(projection)
        self.joined = joined

    def construct(self, a, b):
        if self.joined:
            out = self.block(ops.concat([a, b], axis=2))
        else:
            out = self.block.of_concatenation([a, b])
        return (out * self.projection).sum()


@pytest.mark.parametrize("impl", ["shifted", "native"])
def test_block_of_parts_equals_block_of_their_concatenation(impl, rng):
    block = TDNNBlock(8, 4, 1, impl=impl)
    _randomise(block, rng)
    a = Tensor(rng.standard_normal((2, 5, 4)).astype(np.float32))
    b = Tensor(rng.standard_normal((2, 5, 4)).astype(np.float32))
    projection = rng.standard_normal((2, 5, 4)).astype(np.float32)
    results = []
    for joined in (False, True):
        loss = _PartsLoss(block, projection, joined)
        loss.set_train(True)
        grad = ops.GradOperation(get_all=True, get_by_list=True)(loss, ms.ParameterTuple(block.trainable_params()))
        inputs_grads, weight_grads = grad(a, b)
        results.append([loss(a, b).asnumpy()] + [g.asnumpy() for g in inputs_grads + weight_grads])
    for split, joined in zip(*results):
        np.testing.assert_allclose(split, joined, rtol=1e-4, atol=1e-5)


def test_parts_of_unequal_width_are_refused(rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MindSpore writes a graph dump into the working folder on errors
    loss = _PartsLoss(TDNNBlock(7, 4, 1), np.ones((2, 5, 4), np.float32), joined=False)
    parts = [Tensor(rng.standard_normal((2, 5, width)).astype(np.float32)) for width in (3, 4)]
    with pytest.raises(ValueError, match=r"equal width adding up to 7 channels, got widths \[3, 4\]"):
        loss(*parts)


def test_training_flops_match_a_hand_count():
    from benchmarks.bench_train_step import training_flops

    rows, batch = 2 * 10, 2  # 2 utterances of 10 frames
    layer1 = 2 * rows * 12 * 5 * 16
    groups = TINY_NETWORK["scale"]
    width = 16 // groups  # Res2Net: groups - 1 convolutions, k = 3, of width C / scale
    se_block = 2 * rows * 16 * 16 * 2 + (groups - 1) * 2 * rows * (width * 3) * width + 2 * batch * (16 * 4 + 4 * 16)
    mfa = 2 * rows * 48 * 24
    attention = 2 * rows * 24 * 8 + 2 * batch * 48 * 8  # frame third per frame, statistics per utterance
    logits, fc, head = 2 * rows * 8 * 24, 2 * batch * 48 * 6, 2 * batch * 6 * 5
    forward = layer1 + 3 * se_block + mfa + attention + logits + fc + head
    flops = training_flops(twelve_band_network("shifted"), AAMSoftmax(6, 5), batch, 10)
    assert flops == (forward, 2 * forward - layer1)


@pytest.mark.parametrize("floor", [1e-4, 1e-2])
def test_pooling_variance_floor_is_the_setting(floor, rng):
    # A signal constant over time has variance 0 under any weights: its std is the floor's root.
    pooling = AttentiveStatsPooling(3, 2, "shifted", variance_floor=floor)
    _randomise(pooling, rng)
    pooling.set_train(False)
    x = np.tile(rng.standard_normal((2, 1, 3)), (1, 9, 1)).astype(np.float32)
    statistics = pooling(Tensor(x)).asnumpy()
    np.testing.assert_allclose(statistics[:, :3], x[:, 0, :], rtol=1e-5)
    np.testing.assert_allclose(statistics[:, 3:], np.sqrt(floor), rtol=1e-3)


def test_network_without_embedding_norm_ends_at_the_dense_layer(rng):
    network = tiny_network(embedding_norm=False)
    names = [parameter.name for parameter in network.get_parameters()]
    assert not [name for name in names if name.startswith("embedding_norm")] and "fc.weight" in names
    network.set_train(False)
    x = Tensor(rng.standard_normal((2, 20, 80)).astype(np.float32))
    out2 = network.layer2(network.layer1(x))
    out3 = network.layer3(out2)
    out4 = network.layer4(out3)
    pooled = network.pooling_norm(network.pooling(network.mfa.of_concatenation([out2, out3, out4])))
    np.testing.assert_allclose(network(x).asnumpy(), network.fc(pooled).asnumpy(), rtol=1e-5, atol=1e-6)
