"""Synthetic speakers, lists and tiny checkpoints for the evaluation tests."""
import contextlib
import os

import src.evaluation.extractor as extractor_module
from fixtures import TINY_NETWORK, load_program, speaker_wave
from src.checkpoint import save_checkpoint
from src.data.audio import read_audio, write_audio
from src.model.aam_softmax import AAMSoftmax
from src.model.speaker_loss import SpeakerLoss


@contextlib.contextmanager
def program_in_process(relative_path, module_name):
    """A program that loads a model (eval.py, speakers.py) as a module whose main() runs in this
    process, with the device set-up skipped (conftest already chose CPU and GRAPH_MODE; the
    subprocess runs cover it) until the block ends."""
    original = extractor_module.init_context
    extractor_module.init_context = lambda config, distributed=False: "CPU"
    try:
        yield load_program(relative_path, module_name)
    finally:
        extractor_module.init_context = original


def embed_file(extractor, path):
    """Embedding (D,) float32 of a 16 kHz audio file by an EmbeddingExtractor."""
    return extractor.embed_wave(read_audio(path))


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
    save_checkpoint(SpeakerLoss(network, AAMSoftmax(TINY_NETWORK["emb_size"], class_num)), path,
                           append_dict={"epoch": 1})
