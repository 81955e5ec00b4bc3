"""The libraries' side of the interoperability checks: SpeechBrain's and WeSpeaker's own classes.

Runs in a scratch environment with torch, torchaudio and speechbrain (never in the project's):

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install torch==2.9.1 "torchaudio==2.9.*" speechbrain

WeSpeaker is not on PyPI; its two model files (wespeaker/models/ecapa_tdnn.py and
pooling_layers.py) are loaded from a copy of its repository (``--wespeaker_repo``).
tests/data/make_library_models.py uses the functions below to make the test fixtures, and
benchmarks/interop_parity.py calls this file as a program:

    make  --model NAME --wespeaker_repo DIR --audio LIST --out DIR   build NAME with random weights and
          batch-norm statistics of the audio, save its files, the library's features and embeddings
    embed --model NAME --wespeaker_repo DIR --audio LIST --files DIR --out FILE.npz
          load NAME's files with strict=True and embed the audio

NAME: speechbrain_c1024 (spkrec-ecapa-voxceleb's network), wespeaker_c512 / wespeaker_c1024
(ECAPA_TDNN_GLOB_c512 / _c1024, 192-dim embeddings). LIST: one WAV path a line.
"""
import argparse
import importlib.util
import os
import sys
import types
import wave

import numpy as np
import torch
import torchaudio
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization

SAMPLE_RATE = 16000
FILES = {"speechbrain": "embedding_model.ckpt", "wespeaker": "avg_model.pt"}


def speechbrain_features(samples):
    """spkrec-ecapa-voxceleb's features of a waveform (S,) in [-1, 1): (1, T, 80)."""
    fbank, normalise = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    return normalise(fbank(samples[None]), torch.ones(1))


def kaldi_features(samples):
    """WeSpeaker's features of a waveform (S,) in [-1, 1): Kaldi fbank, mean removed, (1, T, 80)."""
    kaldi = torchaudio.compliance.kaldi.fbank(samples[None] * (1 << 15), num_mel_bins=80, frame_length=25,
                                              frame_shift=10, dither=0.0, sample_frequency=SAMPLE_RATE,
                                              window_type="hamming", use_energy=False)
    return (kaldi - kaldi.mean(dim=0))[None]


def randomise(model, features, seed, crop=200, passes=3):
    """Random weights (scaled by fan-in), gammas of both signs and betas; batch-norm statistics
    as cumulative averages of training-mode passes on ``features`` ((1, T, 80) tensors), cut
    to their first ``crop`` frames (or the shortest one's)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (1.5 / parameter[0].numel()) ** 0.5)
            else:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        for norm in (module for module in model.modules() if isinstance(module, torch.nn.BatchNorm1d)):
            norm.weight.copy_(torch.randn(norm.weight.shape, generator=generator).sign()
                              * (0.5 + torch.rand(norm.weight.shape, generator=generator)))
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        crop = min([crop] + [feats.shape[1] for feats in features])
        batch = torch.cat([feats[:, :crop] for feats in features])
        for _ in range(passes):
            for start in range(0, batch.shape[0], 32):
                part = batch[start:start + 32]
                model(part + 0.1 * torch.randn(part.shape, generator=generator))
    model.eval()


def wespeaker_module(repository, name="ecapa_tdnn"):
    """WeSpeaker's wespeaker.models.<name> module, loaded from its repository's model files alone.

    Only ``pooling_layers`` and ``name`` are executed: the package's own ``__init__`` files
    import the whole toolkit, which needs more than torch.
    """
    for package in ("wespeaker", "wespeaker.models"):
        sys.modules.setdefault(package, types.ModuleType(package))
    for module_name in ("pooling_layers", name):
        full_name = f"wespeaker.models.{module_name}"
        if full_name not in sys.modules:
            path = os.path.join(repository, "wespeaker", "models", f"{module_name}.py")
            spec = importlib.util.spec_from_file_location(full_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full_name] = module
            setattr(sys.modules["wespeaker.models"], module_name, module)
            spec.loader.exec_module(module)
    return sys.modules[f"wespeaker.models.{name}"]


def library_model(name, wespeaker_repo):
    """(library, model in eval mode, front end) of NAME (module docstring)."""
    if name == "speechbrain_c1024":
        model = ECAPA_TDNN(80, channels=[1024, 1024, 1024, 1024, 3072], attention_channels=128, res2net_scale=8,
                           se_channels=128, lin_neurons=192)
        return "speechbrain", model, speechbrain_features
    module = wespeaker_module(wespeaker_repo)
    builders = {"wespeaker_c512": module.ECAPA_TDNN_GLOB_c512, "wespeaker_c1024": module.ECAPA_TDNN_GLOB_c1024}
    return "wespeaker", builders[name](feat_dim=80, embed_dim=192), kaldi_features


def embedding(library, model, feats):
    """The model's embedding (E,) of features (1, T, 80)."""
    out = model(feats)
    return (out[0, 0] if library == "speechbrain" else out[1][0]).numpy()


def read_wave(path):
    with wave.open(path, "rb") as handle:
        if handle.getframerate() != SAMPLE_RATE or handle.getsampwidth() != 2 or handle.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16 kHz 16-bit mono PCM")
        samples = np.frombuffer(handle.readframes(handle.getnframes()), np.int16)
    return torch.from_numpy(samples.astype(np.float32) / 32768.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=("make", "embed"))
    parser.add_argument("--model", required=True, choices=("speechbrain_c1024", "wespeaker_c512", "wespeaker_c1024"))
    parser.add_argument("--wespeaker_repo", default="")
    parser.add_argument("--audio", required=True, help="file listing one WAV path a line")
    parser.add_argument("--files", default="", help="embed: folder of the model's files")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    paths = open(args.audio).read().split()
    library, model, front_end = library_model(args.model, args.wespeaker_repo)
    with torch.no_grad():
        features = [front_end(read_wave(path)) for path in paths]
        if args.action == "make":
            randomise(model, features[:64], args.seed)
            os.makedirs(args.out, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(args.out, FILES[library]))
            output = os.path.join(args.out, "reference.npz")
        else:
            model.load_state_dict(torch.load(os.path.join(args.files, FILES[library]), weights_only=True), strict=True)
            model.eval()
            output = args.out
        arrays = {}
        for index, feats in enumerate(features):
            arrays[f"embedding_{index}"] = embedding(library, model, feats)
            if args.action == "make":
                arrays[f"features_{index}"] = feats[0].numpy()
    np.savez(output, **arrays)
    print(f"{args.action} {args.model}: {len(paths)} utterances -> {output}")


if __name__ == "__main__":
    main()
