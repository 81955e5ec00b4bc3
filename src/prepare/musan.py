"""Cutting MUSAN into fixed-length chunks and listing the simulated room impulse responses.

MUSAN ships ``musan/<category>/<subset>/<name>.wav`` (16 kHz mono) for the
categories noise, speech and music. :func:`split_musan` writes
``musan_split/<category>/<name>/<chunk>.wav``:

- chunk ``k`` (file ``%05d.wav`` of ``k``, counting from 0) holds samples
  ``[k * L, (k + 1) * L)`` of the source, ``L`` = ``chunk_seconds`` (default 5 s);
- the remainder after the last whole chunk is kept as a shorter final chunk when
  it lasts at least ``min_last_seconds`` (default 1 s) and dropped otherwise, so
  a source shorter than that yields no chunk at all;
- samples are copied unchanged (16-bit in, 16-bit out).

Chunks are written atomically, so a chunk file that exists is complete; a run
skips the sources whose chunks all exist and writes only the missing ones of the
others. The chunk layout depends on the two lengths: use a fresh output folder
after changing them.
"""
import os
from collections import Counter
from dataclasses import dataclass, field

import soundfile

from src.data.audio import SAMPLE_RATE, AudioError, read_audio, write_audio
from src.fileio import list_files, write_lines
from src.prepare.common import (WAV_SUFFIX, Failure, PrepareError, require_folder, require_jobs,
                                run_parallel)

CATEGORIES = ("noise", "speech", "music")


@dataclass(frozen=True)
class SourceFile:
    """One MUSAN recording: category, path relative to the MUSAN folder, chunk folder name."""
    category: str
    relative: str
    name: str


@dataclass
class SplitSummary:
    """Counts of one split run.

    ``sources`` and ``chunks`` count per category the recordings found and the
    chunks they make (whether written now or before); ``written`` counts chunk
    files written by this run; ``skipped`` the recordings whose chunks all existed;
    ``too_short`` the recordings that make no chunk; ``missing_categories`` the
    categories without a folder.
    """
    sources: Counter = field(default_factory=Counter)
    chunks: Counter = field(default_factory=Counter)
    written: int = 0
    skipped: int = 0
    too_short: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    missing_categories: list = field(default_factory=list)


def chunk_bounds(num_samples, chunk_samples, min_last_samples):
    """``(start, stop)`` sample ranges of the chunks of a ``num_samples``-long recording.

    Whole chunks of ``chunk_samples``, then the remainder if it has at least
    ``min_last_samples`` (> 0) samples.
    """
    bounds = [(start, start + chunk_samples)
              for start in range(0, num_samples - chunk_samples + 1, chunk_samples)]
    rest_start = len(bounds) * chunk_samples
    if num_samples - rest_start >= min_last_samples:
        bounds.append((rest_start, num_samples))
    return bounds


def chunk_name(index):
    """File name of chunk ``index`` (0-based): ``00000.wav``, ``00001.wav``, ..."""
    return f"{index:05d}{WAV_SUFFIX}"


def find_sources(musan_root):
    """The recordings under ``musan_root`` and the categories that have no folder.

    Returns ``(sources, missing)``; a recording's name is its file name without
    ``.wav``. Raises :class:`PrepareError` when no category folder exists or two
    recordings of one category share a name.
    """
    require_folder(musan_root, "MUSAN")
    sources, missing = [], []
    for category in CATEGORIES:
        folder = os.path.join(musan_root, category)
        if not os.path.isdir(folder):
            missing.append(category)
            continue
        seen = {}
        for relative in list_files(folder, WAV_SUFFIX):
            name = relative.rsplit("/", 1)[-1][:-len(WAV_SUFFIX)]
            if name in seen:
                raise PrepareError(f"{folder}: recordings {seen[name]!r} and {relative!r} "
                                   f"would both be cut into {category}/{name}/")
            seen[name] = relative
            sources.append(SourceFile(category, f"{category}/{relative}", name))
    if len(missing) == len(CATEGORIES):
        raise PrepareError(f"{musan_root}: none of the folders {', '.join(CATEGORIES)} found; "
                           "give the folder that holds them")
    return sources, missing


def split_file(source_path, chunk_folder, chunk_samples, min_last_samples):
    """Write the missing chunks of one recording; return ``(chunk count, chunks written)``.

    The audio is read only when some chunk is missing. Raises :class:`AudioError`
    for an unreadable recording or one that is not 16 kHz mono.
    """
    try:
        num_samples = soundfile.info(source_path).frames
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"{source_path}: cannot read audio ({error})") from None
    bounds = chunk_bounds(num_samples, chunk_samples, min_last_samples)
    todo = [(index, start, stop) for index, (start, stop) in enumerate(bounds)
            if not os.path.isfile(os.path.join(chunk_folder, chunk_name(index)))]
    if todo:
        wave = read_audio(source_path, SAMPLE_RATE)
        for index, start, stop in todo:
            write_audio(os.path.join(chunk_folder, chunk_name(index)), wave[start:stop])
    return len(bounds), len(todo)


def split_musan(musan_root, out_root, jobs=1, chunk_seconds=5.0, min_last_seconds=1.0,
                progress=None):
    """Cut every MUSAN recording into chunks under ``out_root``; return a :class:`SplitSummary`.

    A recording that cannot be read is recorded as a failure and the run goes on.
    Raises :class:`PrepareError` for bad lengths or a MUSAN folder without categories.
    """
    require_jobs(jobs)
    if chunk_seconds <= 0 or not 0 < min_last_seconds <= chunk_seconds:
        raise PrepareError(f"need chunk length > 0 and 0 < minimum last chunk <= chunk length, "
                           f"got {chunk_seconds} s and {min_last_seconds} s")
    chunk_samples = round(chunk_seconds * SAMPLE_RATE)
    min_last_samples = round(min_last_seconds * SAMPLE_RATE)
    sources, missing = find_sources(musan_root)
    summary = SplitSummary(missing_categories=missing)

    def attempt(source):
        try:
            return split_file(os.path.join(musan_root, source.relative),
                              os.path.join(out_root, source.category, source.name),
                              chunk_samples, min_last_samples)
        except AudioError as error:
            return Failure(source.relative, str(error))

    for source, outcome in run_parallel(attempt, sources, jobs, "MUSAN split", progress):
        summary.sources[source.category] += 1
        if isinstance(outcome, Failure):
            summary.failures.append(outcome)
            continue
        chunks, written = outcome
        summary.chunks[source.category] += chunks
        summary.written += written
        if chunks == 0:
            summary.too_short.append(source.relative)
        elif written == 0:
            summary.skipped += 1
    summary.failures.sort(key=lambda failure: failure.path)
    summary.too_short.sort()
    return summary


def locate_simulated_rirs(rir_root):
    """The ``simulated_rirs`` folder: ``rir_root`` itself or its ``simulated_rirs`` subfolder."""
    require_folder(rir_root, "RIR")
    inner = os.path.join(rir_root, "simulated_rirs")
    return inner if os.path.isdir(inner) else rir_root


def list_rirs(rir_root, list_path):
    """Write the sorted wav paths under ``rir_root`` (relative to it) to ``list_path``.

    Training reads the list at ``<rir_root>/rir_list.txt``
    (:data:`src.data.augment.RIR_LIST_NAME`) instead of scanning the folder. Returns a
    :class:`collections.Counter` of RIRs per room type, the room type being a path's first
    folder (``smallroom``, ``mediumroom``, ``largeroom`` in RIRS_NOISES). Raises
    :class:`PrepareError` when there is no wav or a wav lies directly in ``rir_root``.
    """
    require_folder(rir_root, "RIR")
    rirs = list_files(rir_root, WAV_SUFFIX)
    if not rirs:
        raise PrepareError(f"{rir_root}: no {WAV_SUFFIX} files found")
    loose = [relative for relative in rirs if "/" not in relative]
    if loose:
        raise PrepareError(f"{rir_root}: expected <room type>/.../<rir>.wav, found {loose[0]!r}")
    write_lines(list_path, rirs)
    return Counter(relative.split("/", 1)[0] for relative in rirs)
