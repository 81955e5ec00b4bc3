"""ECAPA-TDNN building blocks against independent numpy references."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.model.aam_softmax import AAMSoftmax
from src.model.ecapa_tdnn import ECAPA_TDNN, count_parameters
from src.model.layers import ChannelBatchNorm, TimeConv1d, conv_impl_for_device


def numpy_conv(x, weight, bias, dilation):
    """Reference 'same' zero-padded dilated convolution. x (N, T, Ci), weight (Co, Ci, 1, k)."""
    batch, frames, _ = x.shape
    taps = weight.shape[3]
    half = dilation * (taps - 1) // 2
    padded = np.pad(x, ((0, 0), (half, half), (0, 0)))
    out = np.zeros((batch, frames, weight.shape[0]))
    for t in range(frames):
        for tap in range(taps):
            out[:, t, :] += padded[:, t + tap * dilation, :] @ weight[:, :, 0, tap].T
    return out + bias


# Through a deep network with batch statistics over 60 frames, float32 rounding in two
# different summation orders moves gradients by up to ~1e-3 of their largest entry.
GRAD_TOLERANCE = 1e-3


def tiny_network(impl):
    return ECAPA_TDNN(in_channels=12, channels=16, mfa_channels=24, attention_channels=8,
                      se_channels=4, scale=4, emb_size=6, impl=impl)


def test_default_network_has_14_7_million_parameters():
    network = ECAPA_TDNN()
    assert count_parameters(network) == pytest.approx(14.7e6, rel=0.01)


def test_impl_follows_device():
    assert conv_impl_for_device("CPU") == "shifted"
    assert conv_impl_for_device("Ascend") == "native"
    assert conv_impl_for_device("GPU") == "native"


@pytest.mark.parametrize("impl", ["shifted", "native"])
@pytest.mark.parametrize("kernel_size,dilation", [(1, 1), (3, 2), (5, 1)])
def test_time_conv_matches_numpy(impl, kernel_size, dilation, rng):
    conv = TimeConv1d(5, 7, kernel_size, dilation, impl=impl)
    x = rng.standard_normal((2, 11, 5)).astype(np.float32)
    expected = numpy_conv(x, conv.weight.asnumpy(), conv.bias.asnumpy(), dilation)
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
    shifted, native = tiny_network("shifted"), tiny_network("native")
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


@pytest.mark.parametrize("kernel_size,dilation", [(3, 2), (5, 1)])
def test_shifted_and_native_conv_gradients_agree(kernel_size, dilation, rng):
    shifted = TimeConv1d(6, 5, kernel_size, dilation, impl="shifted")
    native = TimeConv1d(6, 5, kernel_size, dilation, impl="native")
    native.weight.set_data(shifted.weight.data.copy())
    native.bias.set_data(shifted.bias.data.copy())
    x = rng.standard_normal((2, 9, 6)).astype(np.float32)
    out_s, grads_s = _output_and_gradients(shifted, x)
    out_n, grads_n = _output_and_gradients(native, x)
    np.testing.assert_allclose(out_s, out_n, rtol=1e-5, atol=1e-5)
    for name in grads_s:
        np.testing.assert_allclose(grads_s[name], grads_n[name], rtol=1e-4, atol=1e-4, err_msg=name)


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
    network = tiny_network("shifted")
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
    gradients = ops.GradOperation(get_all=True, get_by_list=True)(net, ms.ParameterTuple(net.trainable_params()))(embeddings)
    assert np.isfinite(value)
    for part in gradients:
        for gradient in part:
            assert np.all(np.isfinite(gradient.asnumpy()))


def test_repeated_gradient_calls_are_identical(rng):
    """Gradients depend only on weights and input: no kernel may carry state between calls
    of the same compiled graph (ops.pad's CPU gradient once did)."""
    network = tiny_network("shifted")
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
