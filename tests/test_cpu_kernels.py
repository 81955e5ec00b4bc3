"""The custom CPU kernels (src/kernels): float32 against MindSpore's ops, bfloat16 against a
numpy emulation, whole TDNN blocks and their gradients, and the fallback."""
import logging

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from src.kernels import build as kernel_build
from src.inference.folding import fold_batch_norm, fold_tdnn_block
from src.kernels.cells import (KernelProduct, KernelTimeMax, TdnnInferenceKernel, TdnnTrainingKernel,
                               bfloat16_bits, unavailable_reason)
from src.kernels.network import KernelSqueezeExcitation, KernelTDNNBlock
from src.model.ecapa_tdnn import AttentiveStatsPooling, SqueezeExcitation
from src.model.layers import ChannelAffine, TDNNBlock, TimeConv1d
from src.model import build_embedding_network
from src.model.masked import MaskedSqueezeExcitation
from src.config import ConfigError, load_config
from src.kernels.network import apply_cpu_kernels
from fixtures import TINY_NETWORK, TINY_NETWORK_ARGS, randomise, tiny_network, tiny_network_copy

KERNELS_MISSING = unavailable_reason()
needs_kernels = pytest.mark.skipif(KERNELS_MISSING is not None, reason=f"CPU kernels: {KERNELS_MISSING}")


def to_bf16(values):
    """float32 values rounded to the nearest bfloat16 (ties to even), as float64."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


class _SquaredSum(nn.Cell):
    """sum((x @ w.T) ** 2 * weights): a loss whose gradients reach both inputs of the product."""

    def __init__(self, product):
        super().__init__()
        self.product = product

    def construct(self, x, w, weights):
        return (self.product(x, w) * self.product(x, w) * weights).sum()


def test_bf16_rounding_emulation_is_round_to_nearest_even():
    # 1 + 2**-8 lies halfway between 1 and 1 + 2**-7: ties go to the even mantissa (1.0).
    values = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -2.5, 3.0e-3], np.float32)
    assert to_bf16(values).tolist() == [1.0, 1.0, 1 + 2 ** -6, 1.0, -2.5, to_bf16(np.float32(3.0e-3))]
    assert to_bf16(np.float32(1 + 2 ** -8 + 2 ** -12)) == 1 + 2 ** -7


def test_packed_weights_are_the_rounded_values():
    values = np.random.default_rng(2).standard_normal(1000).astype(np.float32) * 10.0 ** np.arange(-3, 7).repeat(100)
    bits = bfloat16_bits(values).view(np.uint16).astype(np.uint32) << 16
    np.testing.assert_array_equal(bits.view(np.float32), to_bf16(values))


@needs_kernels
@pytest.mark.parametrize("rows", [1, 37, 300])
def test_product_equals_bfloat16_inputs_summed_in_float32(rows):
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 70)).astype(np.float32)
    w = rng.standard_normal((29, 70)).astype(np.float32)
    result = KernelProduct()(Tensor(x), Tensor(w)).asnumpy()
    expected = to_bf16(x) @ to_bf16(w).T
    # float32 sums of exactly representable bf16 products: error far below bf16 rounding.
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    plain = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(result - plain).max() > 1e-4 * np.abs(plain).max()  # it did round to bfloat16


@needs_kernels
def test_gradients_are_bfloat16_products_of_the_incoming_gradient():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((41, 24)).astype(np.float32)
    w = rng.standard_normal((13, 24)).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, (41, 13)).astype(np.float32)
    grad_x, grad_w = ms.grad(_SquaredSum(KernelProduct()), grad_position=(0, 1))(Tensor(x), Tensor(w),
                                                                               Tensor(weights))
    product = (to_bf16(x) @ to_bf16(w).T).astype(np.float32)
    incoming = to_bf16(2 * product * weights)  # d loss / d product, rounded by the kernels
    np.testing.assert_allclose(grad_x.asnumpy(), incoming @ to_bf16(w), rtol=2e-4, atol=2e-3)
    np.testing.assert_allclose(grad_w.asnumpy(), incoming.T @ to_bf16(x), rtol=2e-4, atol=2e-3)


@needs_kernels
def test_one_graph_serves_inputs_of_every_length():
    class Rows(nn.Cell):
        def __init__(self):
            super().__init__()
            self.product = KernelProduct()

        def construct(self, x, w):
            return self.product(x.reshape(-1, x.shape[2]), w)

    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 10)).astype(np.float32)
    cell = Rows()
    cell.set_inputs(Tensor(shape=[1, None, 10], dtype=ms.float32), Tensor(shape=[6, 10], dtype=ms.float32))
    for frames in (7, 130, 31):
        x = rng.standard_normal((1, frames, 10)).astype(np.float32)
        result = cell(Tensor(x), Tensor(w)).asnumpy()
        assert result.shape == (frames, 6)
        np.testing.assert_allclose(result, to_bf16(x[0]) @ to_bf16(w).T, atol=1e-4)


@needs_kernels
def test_bf16_network_matches_float32_and_learns():
    network = tiny_network()
    network.set_train(False)
    features = Tensor(np.random.default_rng(7).standard_normal((2, 60, 80)).astype(np.float32))
    reference = network(features).asnumpy()
    bf16 = apply_cpu_kernels(tiny_network_copy(network), "bf16", "CPU")
    swapped = [cell for _, cell in bf16.cells_and_names() if isinstance(cell, KernelProduct)]
    convs = [cell for _, cell in network.cells_and_names() if isinstance(cell, (TimeConv1d, AttentiveStatsPooling))]
    assert len(swapped) == len(convs) >= 20
    assert sorted(bf16.parameters_dict()) == sorted(network.parameters_dict())
    embeddings = bf16(features).asnumpy()
    cosine = (embeddings * reference).sum(1) / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.999
    assert np.abs(embeddings - reference).max() > 0  # the products did change

    bf16.set_train(True)
    head = nn.Dense(8, 3)
    loss_net = nn.WithLossCell(nn.SequentialCell([bf16, head]),
                               nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(loss_net, nn.Adam(loss_net.trainable_params(), learning_rate=1e-2))
    labels = Tensor(np.array([0, 2], np.int32))
    losses = [float(step(features, labels).asnumpy()) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0]


def shifted_copies(x, kernel_size, dilation):
    """(N, T, C) -> (N, T, k * C): copy ``tap`` holds x[t + tap * dilation - half] (zero outside)."""
    half = dilation * (kernel_size - 1) // 2
    padded = np.pad(x, ((0, 0), (half, half), (0, 0)))
    frames = x.shape[1]
    return np.concatenate([padded[:, tap * dilation:tap * dilation + frames] for tap in range(kernel_size)], axis=2)


@needs_kernels
@pytest.mark.parametrize("kernel_size, dilation, negative", [(1, 1, False), (3, 2, True), (5, 1, True)])
def test_fused_tdnn_block_against_a_numpy_emulation(kernel_size, dilation, negative):
    block = randomise(TDNNBlock(12, 20, kernel_size, dilation), seed=kernel_size, negative_gamma=negative)
    fold_tdnn_block(block)
    assert isinstance(block.norm, ChannelAffine) and block.norm.has_scale == negative
    rng = np.random.default_rng(11)
    fused = TdnnInferenceKernel(block)
    weight = block.conv.weight.asnumpy()[:, :, 0, :].transpose(0, 2, 1).reshape(20, -1)
    bias, shift = block.conv.bias.asnumpy(), block.norm.shift.asnumpy()
    scale = block.norm.scale.asnumpy() if negative else np.ones(20)
    for frames in (9, 40):
        x = rng.standard_normal((2, frames, 12)).astype(np.float32)
        found = fused(Tensor(x)).asnumpy()
        products = to_bf16(shifted_copies(x, kernel_size, dilation)) @ to_bf16(weight).T
        expected = np.maximum(products + bias, 0) * scale + shift
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
        np.testing.assert_allclose(found, block(Tensor(x)).asnumpy(), rtol=0, atol=2e-2 * np.abs(expected).max())


@needs_kernels
def test_folded_bf16_network_runs_every_block_in_one_call():
    config = load_config(TINY_NETWORK_ARGS)[0]
    network = randomise(tiny_network())
    features = Tensor(np.random.default_rng(8).standard_normal((2, 70, 80)).astype(np.float32))
    reference = network(features).asnumpy()
    folded = apply_cpu_kernels(fold_batch_norm(network, config, "shifted"), "bf16", "CPU")
    blocks = [cell for _, cell in folded.cells_and_names() if isinstance(cell, TDNNBlock)]
    assert blocks and all(isinstance(block, KernelTDNNBlock) and isinstance(block.kernel, TdnnInferenceKernel)
                          for block in blocks)
    embeddings = folded(features).asnumpy()
    cosine = (embeddings * reference).sum(1) / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999 and np.abs(embeddings - reference).max() > 0


@needs_kernels
def test_blocks_padding_by_reflection_keep_their_shifted_copies_with_one_warning(caplog):
    config = load_config([*TINY_NETWORK_ARGS, "--padding", "reflect"])[0]
    network = randomise(build_embedding_network(config, "shifted"))
    features = Tensor(np.random.default_rng(3).standard_normal((2, 30, 80)).astype(np.float32))
    reference = network(features).asnumpy()
    with caplog.at_level(logging.WARNING):
        folded = apply_cpu_kernels(fold_batch_norm(network, config, "shifted"), "float32", "CPU")
    assert caplog.text.count("pad by reflection") == 1
    blocks = [cell for _, cell in folded.cells_and_names() if isinstance(cell, TDNNBlock)]
    mirrored = [block for block in blocks if block.conv.kernel_size > 1]
    assert mirrored and not any(isinstance(block, KernelTDNNBlock) for block in mirrored)
    assert all(isinstance(block.conv.matmul, KernelProduct) for block in mirrored)
    assert all(isinstance(block, KernelTDNNBlock) for block in blocks if block.conv.kernel_size == 1)
    np.testing.assert_allclose(folded(features).asnumpy(), reference, rtol=0, atol=1e-4 * np.abs(reference).max())


@needs_kernels
def test_the_wespeaker_network_runs_on_the_kernels():
    config = load_config([*TINY_NETWORK_ARGS, "--model", "wespeaker_ecapa_tdnn"])[0]
    network = randomise(build_embedding_network(config, "shifted"))
    features = Tensor(np.random.default_rng(5).standard_normal((2, 30, 80)).astype(np.float32))
    reference = network(features).asnumpy()
    folded = apply_cpu_kernels(fold_batch_norm(network, config, "shifted"), "float32", "CPU")
    blocks = [cell for _, cell in folded.cells_and_names() if isinstance(cell, TDNNBlock)]
    assert len(blocks) == 1 + 3 * (2 + TINY_NETWORK["scale"] - 1)  # layer1; tdnn1, tdnn2 and res2 groups
    assert all(isinstance(block, KernelTDNNBlock) for block in blocks)
    np.testing.assert_allclose(folded(features).asnumpy(), reference, rtol=0, atol=1e-4 * np.abs(reference).max())


def test_none_leaves_the_network_unchanged():
    network = tiny_network()
    assert apply_cpu_kernels(network, "none", "CPU") is network
    assert not any(isinstance(cell, KernelProduct) for _, cell in network.cells_and_names())


def test_unavailable_kernels_fall_back_to_float32_with_a_warning(caplog):
    network = tiny_network()
    with caplog.at_level(logging.WARNING):
        apply_cpu_kernels(network, "bf16", "GPU")
    assert "running MindSpore's own ops" in caplog.text and "CPU, not GPU" in caplog.text
    assert not any(isinstance(cell, KernelProduct) for _, cell in network.cells_and_names())
    assert isinstance(network.layer1.conv.matmul, ops.MatMul)


def test_auto_runs_the_float32_kernels_where_they_can_run_and_says_which_in_one_line(caplog, monkeypatch):
    from src.kernels import network as kernel_network

    cases = [("CPU", "O0", None, "the float32 kernels (src/kernels)"),
             ("CPU", "O0", "this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX)",
              "MindSpore's own ops (this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX))"),
             ("CPU", "O2", None, "MindSpore's own ops (the kernels take float32, amp_level is O2)"),
             ("Ascend", "O2", None, "MindSpore's own ops (the kernels run on CPU, not Ascend)")]
    for device, amp, reason, said in cases:
        if reason is None and device == "CPU" and amp == "O0" and KERNELS_MISSING is not None:
            continue  # a machine without the kernels: the fallback case below covers it
        monkeypatch.setattr(kernel_network, "unavailable_reason", lambda reason=reason: reason)
        network = tiny_network()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="src.kernels.network"):
            apply_cpu_kernels(network, "auto", device, amp=amp)
        assert caplog.messages == [f"cpu_kernels auto: {said}"], (device, amp)
        kernels = any(isinstance(cell, KernelProduct) for _, cell in network.cells_and_names())
        assert kernels == (reason is None and device == "CPU" and amp == "O0"), (device, amp)
    assert load_config([])[0].cpu_kernels == "auto"


def test_bf16_with_mixed_precision_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="amp_level is O2"):
        apply_cpu_kernels(tiny_network(), "float32", "CPU", amp="O2")


def test_unavailable_reason_names_the_missing_library(tmp_path):
    missing = str(tmp_path / "libecapa_kernels.so")
    assert unavailable_reason(missing) == f"{missing} is not built (run: python scripts/build_kernels.py)"
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not a library")
    assert unavailable_reason(str(broken)).startswith(f"{broken} does not load:")


def test_build_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(kernel_build, "onednn_headers", lambda: None)
    with pytest.raises(RuntimeError, match="oneDNN headers were not found"):
        kernel_build.build_command()
    monkeypatch.setattr(kernel_build, "mindspore_onednn", lambda: None)
    with pytest.raises(RuntimeError, match="libdnnl.so.3"):
        kernel_build.build_command()


def test_build_into_a_new_folder(tmp_path):
    if kernel_build.onednn_headers() is None:
        pytest.skip("oneDNN headers not installed")
    output = str(tmp_path / "out" / "libecapa_kernels.so")
    assert kernel_build.build(output) == output
    assert unavailable_reason(output) in (None, "this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX)")


@needs_kernels
def test_float32_product_and_gradients_match_mindspore():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((53, 31)).astype(np.float32)
    w = rng.standard_normal((17, 31)).astype(np.float32)
    weights = rng.uniform(0.5, 1.5, (53, 17)).astype(np.float32)
    found = ms.grad(_SquaredSum(KernelProduct(bf16=False)), grad_position=(0, 1))(Tensor(x), Tensor(w), Tensor(weights))
    expected = ms.grad(_SquaredSum(ops.MatMul(transpose_b=True)), grad_position=(0, 1))(Tensor(x), Tensor(w),
                                                                                      Tensor(weights))
    for value, reference in zip(found, expected):
        np.testing.assert_allclose(value.asnumpy(), reference.asnumpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(KernelProduct(bf16=False)(Tensor(x), Tensor(w)).asnumpy(), x @ w.T, rtol=1e-5,
                               atol=1e-5)


class _WeightedSum(nn.Cell):
    """sum(cell(x) * weights): gradients reach the input and every parameter of the cell."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x, weights):
        return (self.cell(x) * weights).sum()


def _training_gradients(cell, x, weights):
    """(output, gradient of x, {parameter name: gradient}) of a cell (a block or a network) in
    training mode, for the loss _WeightedSum; x and weights are numpy arrays."""
    cell.set_train(True)
    named = [(name, parameter) for name, parameter in cell.parameters_and_names() if parameter.requires_grad]
    out = cell(Tensor(x)).asnumpy()
    grads = ms.grad(_WeightedSum(cell), grad_position=0, weights=[parameter for _, parameter in named])(
        Tensor(x), Tensor(weights))
    return out, grads[0].asnumpy(), {name: g.asnumpy() for (name, _), g in zip(named, grads[1])}


def _twin_blocks(kernel_size, dilation, seed):
    """Two TDNNBlocks with equal random weights (gammas of both signs)."""
    first, second = (TDNNBlock(12, 20, kernel_size, dilation) for _ in range(2))
    randomise(first, seed=seed)
    for target, source in zip(second.get_parameters(), first.get_parameters()):
        target.set_data(Tensor(source.asnumpy().copy()))
    return first, second


@needs_kernels
@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 3), (5, 1)])
def test_float32_training_kernel_matches_the_block_and_its_gradients(kernel_size, dilation):
    plain, fused = _twin_blocks(kernel_size, dilation, seed=kernel_size + dilation)
    fused = KernelTDNNBlock(fused, bf16=False)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 17, 12)).astype(np.float32)
    weights = rng.uniform(-1, 1, (3, 17, 20)).astype(np.float32)
    out, dx, dparams = _training_gradients(plain, x, weights)
    fused_out, fused_dx, fused_dparams = _training_gradients(fused, x, weights)
    np.testing.assert_allclose(fused_out, out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused_dx, dx, rtol=1e-4, atol=1e-4)
    assert set(fused_dparams) == set(dparams) == {"conv.weight", "conv.bias", "norm.gamma", "norm.beta"}
    for name, gradient in dparams.items():
        np.testing.assert_allclose(fused_dparams[name], gradient, rtol=1e-4, atol=1e-4, err_msg=name)
    # Each forward call folded its batch statistics into the same moving averages.
    for name in ("moving_mean", "moving_variance"):
        found, expected = getattr(fused.norm, name).asnumpy(), getattr(plain.norm, name).asnumpy()
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(plain.norm.moving_mean.asnumpy(), 0)


@needs_kernels
def test_training_kernel_without_input_gradient_gives_zeros_and_the_same_parameter_gradients():
    full, data_input = _twin_blocks(3, 2, seed=8)
    full = KernelTDNNBlock(full, bf16=False)
    data_input = KernelTDNNBlock(data_input, bf16=False, input_gradient=False)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 13, 12)).astype(np.float32)
    weights = rng.uniform(-1, 1, (2, 13, 20)).astype(np.float32)
    _, dx, dparams = _training_gradients(full, x, weights)
    _, no_dx, no_dx_params = _training_gradients(data_input, x, weights)
    assert np.abs(dx).max() > 0 and not no_dx.any()
    for name, gradient in dparams.items():
        np.testing.assert_array_equal(no_dx_params[name], gradient, err_msg=name)


class _Masked(nn.Cell):
    """The frame-mask variant of a squeeze-excitation cell, applied with a fixed mask."""

    def __init__(self, cell, mask):
        super().__init__()
        self.cell = MaskedSqueezeExcitation(cell)
        self.mask = mask

    def construct(self, x):
        return self.cell(x, self.mask)


@needs_kernels
@pytest.mark.parametrize("frames", [1, 17])
def test_squeeze_excitation_kernel_matches_the_cell_and_its_gradients(frames):
    plain, fused = SqueezeExcitation(300, 8, "shifted"), SqueezeExcitation(300, 8, "shifted")
    randomise(plain, seed=frames)
    for target, source in zip(fused.get_parameters(), plain.get_parameters()):
        target.set_data(Tensor(source.asnumpy().copy()))
    fused = KernelSqueezeExcitation(fused)
    rng = np.random.default_rng(frames)
    x = rng.standard_normal((3, frames, 300)).astype(np.float32)
    weights = rng.uniform(-1, 1, (3, frames, 300)).astype(np.float32)
    out, dx, dparams = _training_gradients(plain, x, weights)
    fused_out, fused_dx, fused_dparams = _training_gradients(fused, x, weights)
    np.testing.assert_allclose(fused_out, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_dx, dx, rtol=1e-4, atol=1e-5)
    assert set(fused_dparams) == set(dparams) == {"squeeze.weight", "squeeze.bias", "excite.weight", "excite.bias"}
    for name, gradient in dparams.items():
        assert np.abs(gradient).max() > 0, name
        np.testing.assert_allclose(fused_dparams[name], gradient, rtol=1e-4, atol=1e-5, err_msg=name)
    # The frame-mask variant of the kernel cell runs the cell's own ops: the average is over the
    # real frames only.
    mask = np.ones((3, frames, 1), np.float32)
    mask[1, frames // 2 + 1:] = 0
    masked = _Masked(fused, Tensor(mask))(Tensor(x)).asnumpy()
    np.testing.assert_allclose(masked, _Masked(plain, Tensor(mask))(Tensor(x)).asnumpy(), rtol=1e-5, atol=1e-6)
    assert (frames == 1) == np.allclose(masked, out, rtol=1e-5, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("shape", [(3, 7, 300), (1, 1, 5), (2, 40, 256)])
def test_time_max_kernel_is_the_maximum_over_frames(shape):
    x = np.random.default_rng(shape[2]).standard_normal(shape).astype(np.float32)
    found = KernelTimeMax()(Tensor(x)).asnumpy()
    np.testing.assert_array_equal(found, x.max(axis=1, keepdims=True))
    weights = Tensor(np.ones((shape[0], 1, shape[2]), np.float32))
    grad = ms.grad(_WeightedSum(KernelTimeMax()), grad_position=0)(Tensor(x), weights).asnumpy()
    assert grad.shape == shape and not grad.any()


@needs_kernels
def test_bf16_training_kernel_against_a_numpy_emulation():
    block = randomise(TDNNBlock(12, 20, 3, 2), seed=4)
    block.set_train(True)
    kernel = TdnnTrainingKernel(block)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 15, 12)).astype(np.float32)
    weight = block.conv.weight_matrix().asnumpy()
    bias, gamma, beta = (block.conv.bias.asnumpy(), block.norm.gamma.asnumpy(), block.norm.beta.asnumpy())
    out, activations, mean, variance = (value.asnumpy() for value in kernel(
        Tensor(x), Tensor(weight), Tensor(bias), Tensor(gamma), Tensor(beta)))
    r = np.maximum(to_bf16(shifted_copies(x, 3, 2)) @ to_bf16(weight).T + bias, 0).reshape(-1, 20)
    np.testing.assert_allclose(activations.reshape(-1, 20), r, rtol=0, atol=1e-5 * np.abs(r).max())
    np.testing.assert_allclose(mean, r.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, r.var(0), rtol=1e-4, atol=1e-6)
    expected = gamma * (r - r.mean(0)) / np.sqrt(r.var(0) + block.norm.eps) + beta
    np.testing.assert_allclose(out.reshape(-1, 20), expected, rtol=1e-4, atol=1e-4)


def unshifted_sum(d_shifted, kernel_size, dilation, channels):
    """The adjoint of shifted_copies: (N, T, k * C) -> (N, T, C)."""
    half = dilation * (kernel_size - 1) // 2
    batch, frames, _ = d_shifted.shape
    padded = np.zeros((batch, frames + 2 * half, channels))
    for tap in range(kernel_size):
        padded[:, tap * dilation:tap * dilation + frames] += d_shifted[:, :, tap * channels:(tap + 1) * channels]
    return padded[:, half:half + frames]


@needs_kernels
def test_bf16_training_gradient_against_a_numpy_emulation():
    block = randomise(TDNNBlock(12, 20, 3, 2), seed=9)
    block.set_train(True)
    kernel = TdnnTrainingKernel(block)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 40, 12)).astype(np.float32)
    dy = rng.uniform(-1, 1, (2, 40, 20)).astype(np.float32)
    weight = block.conv.weight_matrix().asnumpy()
    gamma = block.norm.gamma.asnumpy()
    inputs = [Tensor(x), Tensor(weight), block.conv.bias, block.norm.gamma, block.norm.beta]
    _, activations, mean, variance = (value.asnumpy() for value in kernel(*inputs))
    dx, dweight, dbias, dgamma, dbeta = (value.asnumpy() for value in kernel.bprop(
        *inputs, (None, Tensor(activations), Tensor(mean), Tensor(variance)), (Tensor(dy), None, None, None)))

    r, grad = activations.reshape(-1, 20).astype(np.float64), dy.reshape(-1, 20).astype(np.float64)
    normalised = (r - mean) / np.sqrt(variance + block.norm.eps)
    np.testing.assert_allclose(dbeta, grad.sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dgamma, (grad * normalised).sum(0), rtol=1e-5, atol=1e-5)
    dz = (gamma / np.sqrt(variance + block.norm.eps) * (grad - grad.mean(0) - normalised * (grad * normalised).mean(0))
          * (r > 0))
    np.testing.assert_allclose(dbias, dz.sum(0), rtol=1e-4, atol=1e-5)
    dz16 = to_bf16(dz.astype(np.float32))
    expected_dx = unshifted_sum((dz16 @ to_bf16(weight)).reshape(2, 40, -1), 3, 2, 12)
    expected_dweight = dz16.T @ to_bf16(shifted_copies(x, 3, 2).reshape(80, -1))
    # dz itself is float32 in the kernel and here float64: rounding it to bfloat16 may differ
    # by one unit in a few places, hence 1e-2 of the largest value rather than float32 rounding.
    for found, expected in ((dx, expected_dx), (dweight, expected_dweight)):
        assert np.abs(found - expected).max() <= 1e-2 * np.abs(expected).max()
        assert np.linalg.norm(found - expected) <= 1e-3 * np.linalg.norm(expected)


@needs_kernels
def test_training_kernel_results_do_not_depend_on_thread_timing():
    block = randomise(TDNNBlock(12, 300, 1), seed=3)
    block.set_train(True)
    kernel = TdnnTrainingKernel(block, bf16=False)
    x = Tensor(np.random.default_rng(4).standard_normal((4, 600, 12)).astype(np.float32))
    inputs = [x, Tensor(block.conv.weight_matrix().asnumpy()), block.conv.bias, block.norm.gamma, block.norm.beta]
    runs = [[value.asnumpy() for value in kernel(*inputs)] for _ in range(3)]
    for run in runs[1:]:
        for value, first in zip(run, runs[0]):
            np.testing.assert_array_equal(value, first)


@needs_kernels
@pytest.mark.parametrize("input_gradient", [True, False])
def test_float32_kernels_give_the_network_gradients_of_mindspore(input_gradient):
    network, twin = tiny_network(), tiny_network()
    for target, source in zip(twin.get_parameters(), network.get_parameters()):
        target.set_data(Tensor(source.asnumpy().copy()))
    apply_cpu_kernels(twin, "float32", "CPU", input_gradient=input_gradient)
    blocks = [block for _, block in twin.cells_and_names() if isinstance(block, TDNNBlock)]
    assert all(isinstance(block.kernel, TdnnTrainingKernel) for block in blocks)
    # Only the block that reads the features may skip its input's gradient.
    skips = [int(block.kernel.geometry.asnumpy()[3]) == 0 for block in blocks]
    assert skips == [block is twin.layer1 and not input_gradient for block in blocks]
    rng = np.random.default_rng(13)
    features = rng.standard_normal((3, 50, 80)).astype(np.float32)
    weights = rng.standard_normal((3, 8)).astype(np.float32)
    embeddings, features_grad, grads = _training_gradients(network, features, weights)
    twin_embeddings, twin_features_grad, twin_grads = _training_gradients(twin, features, weights)
    np.testing.assert_allclose(twin_embeddings, embeddings, rtol=1e-4, atol=1e-4)
    if input_gradient:
        scale = np.abs(features_grad).max()
        assert scale > 0 and np.abs(twin_features_grad - features_grad).max() <= 3e-4 * scale
    else:
        assert not twin_features_grad.any()
    assert set(twin_grads) == set(grads)
    # Some gradients are zero but for rounding (a bias before a batch norm or a softmax over
    # time): each is compared on its own scale, but at least 1e-3 of the largest gradient's.
    # Float32 sums in another order differ by a few 1e-5 after the network's dozens of layers.
    largest = max(np.abs(grad).max() for grad in grads.values())
    for name, grad in grads.items():
        scale = max(np.abs(grad).max(), 1e-3 * largest)
        assert np.abs(twin_grads[name] - grad).max() <= 3e-4 * scale, name
