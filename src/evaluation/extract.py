"""Embeddings outside a trial list: one pair of files (verify) or a list of files (to .npy).

Both accept audio at any sample rate (it is resampled to 16 kHz). Audio that is too short
or holds too little speech (:mod:`src.data.speech_content`) is refused by verification and
embedded with a warning by extraction.

Audio list format: one audio path per line; blank lines are skipped. A relative path is
relative to the folder that holds the list file, an absolute path is used as is. Each
embedding is written as ``<out_dir>/<name>.npy`` holding a (emb_size,) float32 vector,
where ``<name>`` is the path as written in the list, normalised, without its leading
``/``, its extension removed and every ``/`` replaced by ``_`` (``spk1/a/001.wav`` ->
``spk1_a_001.npy``).
"""
import os

import numpy as np

from src.data.audio import read_audio
from src.data.lists import ListFormatError, Trial
from src.data.speech_content import SpeechContentError, measure
from src.evaluation.embeddings import extract_embeddings, finite_embedding, require_audio_files
from src.evaluation.scoring import score_trials


def read_verification_audio(path):
    """16 kHz waveform (S,) of a file to verify, read at any sample rate.

    Raises AudioError for unreadable audio and SpeechContentError, naming the file, its
    duration or active speech and the threshold, for audio too short or too silent to verify.
    """
    wave = read_audio(path, allow_resample=True)
    problem = measure(wave).problem()
    if problem:
        raise SpeechContentError(f"{path}: {problem}; cannot verify with it")
    return wave


def verify_pair(extractor, path_a, wave_a, path_b, wave_b):
    """Cosine similarity (float) of the embeddings of two waveforms (S,) read from path_a and path_b."""
    embeddings = {path: finite_embedding(extractor.embed_wave(wave), path)
                  for path, wave in ((path_a, wave_a), (path_b, wave_b))}
    return float(score_trials(embeddings, [Trial(target=True, utt_a=path_a, utt_b=path_b)])[0])


def output_name(entry):
    """File name (without folder) of the .npy written for list entry ``entry``."""
    stem = os.path.splitext(os.path.normpath(entry).lstrip("/"))[0]
    return stem.replace("/", "_") + ".npy"


def read_audio_list(path):
    """Parse an audio list; return ``[(entry as written, resolved path)]``, one per file.

    A file listed twice is kept once. Raises ListFormatError when the list is missing or
    empty, or when two different files would be written to the same .npy name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ListFormatError(f"{path}: list file not found")
    folder = os.path.dirname(os.path.abspath(path))
    entries = []
    resolved_paths = set()
    first_line = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            entry = line.strip()
            resolved = os.path.normpath(os.path.join(folder, entry))
            if not entry or resolved in resolved_paths:
                continue
            name = output_name(entry)
            if name in first_line:
                raise ListFormatError(f"{path}:{number}: {entry!r} would be written to {name}, "
                                      f"like the entry on line {first_line[name]}")
            first_line[name] = number
            resolved_paths.add(resolved)
            entries.append((entry, resolved))
    if not entries:
        raise ListFormatError(f"{path}: list is empty")
    return entries


def check_audio_list(path):
    """Parse an audio list and check every file exists; return it like :func:`read_audio_list`."""
    entries = read_audio_list(path)
    require_audio_files([resolved for _, resolved in entries], "", f"audio list {path}")
    return entries


def extract_to_folder(extractor, entries, out_dir):
    """Write the embedding of every ``(entry, resolved path)`` to ``out_dir``; return ExtractionStats."""
    os.makedirs(out_dir, exist_ok=True)
    table, stats = extract_embeddings(extractor, [resolved for _, resolved in entries],
                                      description="audio list", allow_resample=True)
    for entry, resolved in entries:
        np.save(os.path.join(out_dir, output_name(entry)), table.matrix[table.index[resolved]])
    return stats
