"""Write tiny SpeechBrain and WeSpeaker ECAPA-TDNN models and the embeddings the libraries compute.

tests/test_library_models.py imports these files and checks that this project's networks
give the same embeddings. Run once in a scratch environment with the libraries (the project
and its tests do not need them); WeSpeaker's model code is read from a copy of its
repository (wenet-e2e/wespeaker), as it is not on PyPI:

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install torch==2.9.1 "torchaudio==2.9.*" speechbrain
    /tmp/sb/bin/python tests/data/make_library_models.py /path/to/wespeaker

Writes, under tests/data/:
- speechbrain_tiny/embedding_model.ckpt and classifier.ckpt: speechbrain.lobes.models.ECAPA_TDNN's
  ECAPA_TDNN (channels 16, aggregation 48, attention 8, SE 4, scale 4, 8-dim embeddings; reflection
  padding as the library pads) and its Classifier of 5 classes;
- wespeaker_tiny/avg_model.pt: wespeaker.models.ecapa_tdnn.ECAPA_TDNN_GLOB_c512's layers at
  channels 16 (its aggregation, pooling and SE layers are the library's classes made smaller:
  48, 8 and 4 channels), with ``projection.weight`` of 5 classes as WeSpeaker's checkpoints hold it;
- library_models.npz: per clip k of make_front_end_references.clips(), ``speechbrain_k`` and
  ``wespeaker_k``, the embeddings each library computes from the waveform with its own front end.

Weights are random; batch-norm statistics are those of the clips' features (cumulative averages
over training-mode passes on their first frames), with random gammas of both signs and betas.
"""
import importlib
import os
import sys
import tempfile

import numpy as np
import torch
import torchaudio
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.processing.features import InputNormalization

from make_front_end_references import SAMPLE_RATE, clips

HERE = os.path.dirname(os.path.abspath(__file__))


def speechbrain_features(wave):
    fbank, normalise = Fbank(n_mels=80), InputNormalization(norm_type="sentence", std_norm=False)
    return normalise(fbank(wave[None]), torch.ones(1))


def kaldi_features(wave):
    kaldi = torchaudio.compliance.kaldi.fbank(wave[None] * (1 << 15), num_mel_bins=80, frame_length=25,
                                              frame_shift=10, dither=0.0, sample_frequency=SAMPLE_RATE,
                                              window_type="hamming", use_energy=False)
    return (kaldi - kaldi.mean(dim=0))[None]


def randomise(model, features, seed):
    """Random weights; batch-norm statistics of ``features`` (a list of (1, T, 80) tensors)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (1.5 / fan_in) ** 0.5)
            else:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
        norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm1d)]
        for norm in norms:
            norm.weight.copy_(torch.randn(norm.weight.shape, generator=generator).sign()
                              * (0.5 + torch.rand(norm.weight.shape, generator=generator)))
            norm.reset_running_stats()
            norm.momentum = None  # cumulative averages
        model.train()
        crop = min(feats.shape[1] for feats in features)
        for _ in range(3):  # batches of every clip's first frames, with a little noise
            batch = torch.cat([feats[:, :crop] for feats in features])
            model(batch + 0.1 * torch.randn(batch.shape, generator=generator))
    model.eval()


def wespeaker_module(repository):
    """WeSpeaker's models.ecapa_tdnn module, imported from a copy of its two files."""
    package = tempfile.mkdtemp()
    folder = os.path.join(package, "wespeaker", "models")
    os.makedirs(folder)
    for name in ("__init__.py", "models/__init__.py"):
        open(os.path.join(package, "wespeaker", name), "w").close()
    for name in ("ecapa_tdnn.py", "pooling_layers.py"):
        with open(os.path.join(repository, "wespeaker", "models", name)) as source:
            with open(os.path.join(folder, name), "w") as copy:
                copy.write(source.read())
    sys.path.insert(0, package)
    return importlib.import_module("wespeaker.models.ecapa_tdnn")


def tiny_wespeaker(module):
    layers = importlib.import_module("wespeaker.models.pooling_layers")
    model = module.ECAPA_TDNN(channels=16, feat_dim=80, embed_dim=8, global_context_att=True)
    model.conv = torch.nn.Conv1d(48, 48, kernel_size=1)
    model.pool = layers.ASTP(in_dim=48, bottleneck_dim=8, global_context_att=True)
    model.bn = torch.nn.BatchNorm1d(96)
    model.linear = torch.nn.Linear(96, 8)
    for layer in (model.layer2, model.layer3, model.layer4):
        layer.se_res2block[3] = module.SE_Connect(16, se_bottleneck_dim=4)
    return model


def save(state, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)


def main():
    waves = [torch.from_numpy(samples.astype(np.float32) / 32768.0) for samples in clips()[:3]]
    arrays = {}
    with torch.no_grad():
        speechbrain = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, res2net_scale=4,
                                 se_channels=4, lin_neurons=8)
        randomise(speechbrain, [speechbrain_features(wave) for wave in waves], seed=1)
        classifier = Classifier(input_size=8, out_neurons=5)
        save(speechbrain.state_dict(), os.path.join(HERE, "speechbrain_tiny", "embedding_model.ckpt"))
        save(classifier.state_dict(), os.path.join(HERE, "speechbrain_tiny", "classifier.ckpt"))

        wespeaker = tiny_wespeaker(wespeaker_module(sys.argv[1]))
        randomise(wespeaker, [kaldi_features(wave) for wave in waves], seed=2)
        state = wespeaker.state_dict()
        state["projection.weight"] = torch.randn(5, 8)
        save(state, os.path.join(HERE, "wespeaker_tiny", "avg_model.pt"))

        for index, wave in enumerate(waves):
            arrays[f"speechbrain_{index}"] = speechbrain(speechbrain_features(wave))[0, 0].numpy()
            arrays[f"wespeaker_{index}"] = wespeaker(kaldi_features(wave))[1][0].numpy()
    np.savez_compressed(os.path.join(HERE, "library_models.npz"), **arrays)
    print({name: value.shape for name, value in arrays.items()})


if __name__ == "__main__":
    main()
