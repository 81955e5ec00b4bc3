"""Synthetic speakers, lists and tiny checkpoints for the evaluation tests."""
import os

import numpy as np

from src.data.audio import SAMPLE_RATE, write_audio
from src.model.aam_softmax import AAMSoftmax, SpeakerLoss
from src.model.ecapa_tdnn import ECAPA_TDNN
from src.model.weights import save_checkpoint_atomic

TINY_NETWORK = {"channels": 16, "mfa_channels": 24, "attention_channels": 8, "se_channels": 4,
                "scale": 4, "emb_size": 8}
TINY_ARGS = [f"--{key}={value}" for key, value in TINY_NETWORK.items()]


def tiny_network(impl="shifted"):
    """A randomly initialised ECAPA_TDNN of TINY_NETWORK sizes."""
    return ECAPA_TDNN(impl=impl, **TINY_NETWORK)


def speaker_wave(speaker, seconds, rng):
    """A voiced-like tone (S,) whose pitch and timbre depend on the speaker index, plus noise."""
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 90.0 + 35.0 * speaker
    wave = sum(np.sin(2 * np.pi * pitch * k * time + rng.uniform(0, 2 * np.pi)) / (k + speaker % 3)
               for k in range(1, 6))
    return (0.2 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(time.size)).astype(np.float32)


def write_corpus(root, num_speakers, per_speaker, rng, prefix="spk"):
    """Write ``num_speakers`` x ``per_speaker`` wav files of 0.4-1.2 s under ``root``.

    Returns the relative paths ``<prefix><k>/v1/<n>.wav`` grouped by speaker (list of lists).
    """
    corpus = []
    for speaker in range(num_speakers):
        names = [f"{prefix}{speaker}/v1/{number:05d}.wav" for number in range(per_speaker)]
        for name in names:
            write_audio(os.path.join(root, name), speaker_wave(speaker, rng.uniform(0.4, 1.2), rng))
        corpus.append(names)
    return corpus


def write_trials(path, corpus):
    """Write a trial list pairing each speaker's first utterance with every other utterance.

    Returns the written lines as (target, utt_a, utt_b) tuples.
    """
    flat = [(speaker, name) for speaker, names in enumerate(corpus) for name in names]
    trials = [(int(speaker == other), names[0], name)
              for speaker, names in enumerate(corpus) for other, name in flat if name != names[0]]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{target} {a} {b}\n" for target, a, b in trials)
    return trials


def write_train_list(path, corpus):
    """Write '<speaker> <path>' lines for every utterance of ``corpus``."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{name.split('/')[0]} {name}\n" for names in corpus for name in names)


def save_training_checkpoint(network, path, class_num=3):
    """Save ``network`` inside a SpeakerLoss cell (prefix 'embedding_network.') with an AAM head."""
    save_checkpoint_atomic(SpeakerLoss(network, AAMSoftmax(TINY_NETWORK["emb_size"], class_num)), path,
                           append_dict={"epoch": 1})
