"""Helpers shared by the tests: tiny network sizes, a synthetic speaker tone, a tone corpus, a program as a module."""
import importlib.util
import os

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_NETWORK = {"channels": 16, "mfa_channels": 24, "attention_channels": 8, "se_channels": 4,
                "scale": 2, "emb_size": 8}
TINY_NETWORK_ARGS = [f"--{key}={value}" for key, value in TINY_NETWORK.items()]
# The plain training recipe: no speed perturbation, a fixed margin, a triangular cycle (the
# defaults add the first two and halve each new cycle). Tests whose class counts, margins or
# learning rates are worked out for the plain recipe train with these settings.
PLAIN_RECIPE_ARGS = ["--speed_perturb=", "--margin_warmup_end=0", "--lr_mode=triangular"]


def load_program(relative_path, module_name=None):
    """The program at ``relative_path`` (from the repository root) loaded as a module, so a test can
    call its functions or main() in this process; ``module_name`` defaults to the file's stem."""
    path = os.path.join(REPO_ROOT, relative_path)
    name = module_name or os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_network(in_channels=80, impl="shifted", **overrides):
    """A randomly initialised ECAPA_TDNN of TINY_NETWORK sizes (``overrides`` replace some)."""
    from src.model.ecapa_tdnn import ECAPA_TDNN

    return ECAPA_TDNN(in_channels=in_channels, impl=impl, **{**TINY_NETWORK, **overrides})


def tiny_network_copy(network):
    """A new tiny_network() with the weights of ``network``, in inference mode, never called yet
    (so its graphs compile for whatever shapes it gets first)."""
    import mindspore as ms

    copy = tiny_network()
    ms.load_param_into_net(copy, {name: ms.Parameter(value.asnumpy().copy(), name=name)
                                  for name, value in network.parameters_dict().items()})
    copy.set_train(False)
    return copy


def randomise(network, seed=0, negative_gamma=True):
    """``network`` in inference mode with random parameters and batch-norm statistics; gammas of
    both signs unless ``negative_gamma`` is False. Returns the network."""
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    for name, parameter in network.parameters_dict().items():
        values = 0.3 * rng.standard_normal(parameter.shape)
        if name.endswith("moving_variance"):
            values = 0.5 + np.abs(values)
        elif name.endswith("gamma") and not negative_gamma:
            values = 0.5 + np.abs(values)
        parameter.set_data(Tensor(values.astype(np.float32)))
    network.set_train(False)
    return network


def speaker_wave(speaker, seconds, rng):
    """A voiced-like tone (S,) whose pitch and timbre depend on the speaker index, plus noise."""
    from src.data.audio import SAMPLE_RATE

    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 90.0 + 35.0 * speaker
    wave = sum(np.sin(2 * np.pi * pitch * k * time + rng.uniform(0, 2 * np.pi)) / (k + speaker % 3)
               for k in range(1, 6))
    return (0.2 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(time.size)).astype(np.float32)


def write_tone_corpus(root, num_speakers=4, utterances=6, seconds=(1.0, 2.5), seed=0):
    """A tiny VoxCeleb-layout corpus of :func:`speaker_wave` tones.

    Writes root/train/wav/<spk>/v0/<n>.wav and root/train.txt; returns the list path.
    """
    from src.data.audio import write_audio

    generator = np.random.default_rng(seed)
    lines = []
    for speaker in range(num_speakers):
        name = f"id{speaker:05d}"
        for index in range(utterances):
            relative = f"{name}/v0/{index:05d}.wav"
            wave = speaker_wave(speaker, generator.uniform(*seconds), generator)
            write_audio(os.path.join(root, "train", "wav", relative), wave)
            lines.append(f"{name} {relative}")
    list_path = os.path.join(root, "train.txt")
    with open(list_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return list_path


def training_settings(root, list_path, **overrides):
    """The settings the data pipeline reads, for a corpus of :func:`write_tone_corpus` under ``root``."""
    from types import SimpleNamespace

    values = dict(train_list=list_path, train_path=os.path.join(root, "train", "wav"), class_num=4,
                  max_bad_audio=0, minibatch_size=4, segment_frames=50, seed=7, num_epochs=2,
                  augment=False, num_workers=2, worker_processes=False, check_train_files=True,
                  speed_perturb="", speed_perturb_prob=0.667, features="zoo")
    values.update(overrides)
    return SimpleNamespace(**values)


def bad_files(samples):
    """Paths of the unusable files a TrainingSamples' workers have found so far."""
    return {os.path.join(samples.train_path, samples.utterances[index]) for index in samples.bad_audio.indices()}
