"""Write tiny SpeechBrain and WeSpeaker ECAPA-TDNN models and the embeddings the libraries compute.

tests/test_library_models.py imports these files and checks that this project's networks
give the same embeddings. Run once in a scratch environment with the libraries (the project
and its tests do not need them); WeSpeaker's model code is read from a copy of its
repository (wenet-e2e/wespeaker), as it is not on PyPI:

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install torch==2.9.1 "torchaudio==2.9.*" speechbrain
    PYTHONPATH=. /tmp/sb/bin/python tests/data/make_library_models.py /path/to/wespeaker

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
over training-mode passes on their first frames), with random gammas of both signs and betas
(benchmarks/library_reference.py).
"""
import importlib
import os
import sys

import numpy as np
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier

from benchmarks.library_reference import kaldi_features, randomise, speechbrain_features, wespeaker_module
from tests.data.make_front_end_references import clips

HERE = os.path.dirname(os.path.abspath(__file__))


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
    torch.manual_seed(3)
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
