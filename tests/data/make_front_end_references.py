"""Write front_ends.npz: clips and the features SpeechBrain and torchaudio compute for them.

tests/test_front_ends.py checks src/data/front_ends.py against these references. Run once in a
scratch environment with the libraries (the project and its tests do not need them):

    python3 -m venv /tmp/sb && /tmp/sb/bin/pip install torch==2.9.1 "torchaudio==2.9.*" speechbrain
    PYTHONPATH=. /tmp/sb/bin/python tests/data/make_front_end_references.py

Clips (int16 at 16 kHz, as WAV files hold them): a voiced-like tone with noise of 0.3, 0.75
and 1.3 s, and a near-silent one of 0.5 s. References, per clip k: ``speechbrain_k``, the
output of speechbrain.lobes.features.Fbank(n_mels=80) then InputNormalization(sentence,
std_norm=False) as spkrec-ecapa-voxceleb applies them; ``kaldi_k``,
torchaudio.compliance.kaldi.fbank with WeSpeaker's settings, then the mean over time removed.
"""
import os

import numpy as np
import torch

from benchmarks.library_reference import SAMPLE_RATE, kaldi_features, speechbrain_features

HERE = os.path.dirname(os.path.abspath(__file__))


def clips():
    rng = np.random.default_rng(2024)
    made = []
    for seconds, pitch, level in ((0.3, 110.0, 0.3), (0.75, 180.0, 0.5), (1.3, 95.0, 0.1), (0.5, 140.0, 0.0005)):
        time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave = sum(np.sin(2 * np.pi * pitch * k * time + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        wave = level * wave / np.abs(wave).max() + 0.01 * level * rng.standard_normal(time.size)
        made.append(np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16))
    return made


def main():
    arrays = {}
    for index, samples in enumerate(clips()):
        wave = torch.from_numpy(samples.astype(np.float32) / 32768.0)
        arrays[f"clip_{index}"] = samples
        with torch.no_grad():
            arrays[f"speechbrain_{index}"] = speechbrain_features(wave)[0].numpy()
            arrays[f"kaldi_{index}"] = kaldi_features(wave)[0].numpy()
    np.savez_compressed(os.path.join(HERE, "front_ends.npz"), **arrays)
    print({name: value.shape for name, value in arrays.items()})


if __name__ == "__main__":
    main()
