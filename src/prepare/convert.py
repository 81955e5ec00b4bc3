"""Conversion of a VoxCeleb2 ``aac`` tree to the project's 16 kHz mono 16-bit WAV tree.

``<source>/<spk>/<video>/<n>.m4a`` becomes ``<target>/<spk>/<video>/<n>.wav``. Each
file is decoded by ffmpeg into a hidden temporary file (:func:`src.fileio.atomic_write`)
renamed into place when complete, so an existing ``.wav`` is always a finished file:
running again converts only what is still missing (files that failed before are tried
again) and first removes the temporaries a killed run left beside them. A file that
ffmpeg cannot decode is recorded as a :class:`Failure` and the run goes on.
"""
import os
import shutil
import subprocess
from dataclasses import dataclass, field

import soundfile

from src.data.audio import SAMPLE_RATE, AudioError
from src.fileio import atomic_write, list_files, remove_stale_temporaries
from src.prepare.common import (WAV_SUFFIX, Failure, PrepareError, check_utterance_layout,
                                require_folder, require_jobs, run_parallel)

SOURCE_SUFFIX = ".m4a"
FFMPEG_TIMEOUT_SECONDS = 600


@dataclass
class ConversionSummary:
    """Counts of one conversion run over ``total`` source files."""
    total: int = 0
    converted: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def usable(self):
        """Source files whose wav exists after the run (converted now or before)."""
        return self.converted + self.skipped

    def run_failed(self, strict):
        """Whether the run counts as failed: nothing usable, or with ``strict`` any failure."""
        return self.usable == 0 or (strict and bool(self.failures))


def ffmpeg_command(source, target):
    """ffmpeg arguments decoding ``source`` to 16 kHz mono 16-bit PCM WAV at ``target``."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1",
            "-i", source, "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-c:a", "pcm_s16le", "-f", "wav", target]


def convert_file(source, target):
    """Decode ``source`` (any format ffmpeg reads) into a 16 kHz mono 16-bit WAV ``target``.

    ffmpeg writes the temporary file of :func:`src.fileio.atomic_write`, which is renamed
    to ``target`` on success (``-f wav`` makes its suffix irrelevant). Raises
    :class:`AudioError` naming ``source`` and ffmpeg's last error line when decoding
    fails, times out or yields no samples; ``target`` is then left as it was.
    """
    with atomic_write(target) as temporary:
        try:
            result = subprocess.run(ffmpeg_command(source, temporary), capture_output=True,
                                    text=True, errors="replace", timeout=FFMPEG_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AudioError(
                f"{source}: ffmpeg did not finish within {FFMPEG_TIMEOUT_SECONDS} s") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
            message = lines[-1].strip().removeprefix(f"{source}: ")
            raise AudioError(f"{source}: ffmpeg failed: {message}")
        if soundfile.info(temporary).frames == 0:
            raise AudioError(f"{source}: decodes to no audio samples")


def target_path(relative_source):
    """The wav path (relative) that ``relative_source`` (an ``.m4a`` path) converts to."""
    return relative_source[:-len(SOURCE_SUFFIX)] + WAV_SUFFIX


def require_ffmpeg():
    """Raise :class:`PrepareError` with the install hint when ffmpeg is not on PATH."""
    if shutil.which("ffmpeg") is None:
        raise PrepareError("ffmpeg not found on PATH; install it first "
                           "(Debian/Ubuntu: apt-get install ffmpeg)")


def convert_tree(source_root, target_root, jobs=1, progress=None):
    """Convert each ``.m4a`` (any case) under ``source_root`` lacking its wav in ``target_root``.

    ``jobs`` files are converted at once; ``progress`` is passed to
    :func:`run_parallel`. Returns a :class:`ConversionSummary` whose failures are
    sorted by path. Raises :class:`PrepareError` for a missing folder, a tree not
    laid out as ``<speaker>/<video>/<n>.m4a``, no ``.m4a`` files, or no ffmpeg.
    """
    require_folder(source_root, "source")
    require_jobs(jobs)
    sources = list_files(source_root, SOURCE_SUFFIX)
    if not sources:
        raise PrepareError(f"{source_root}: no {SOURCE_SUFFIX} files found")
    check_utterance_layout(source_root, sources, SOURCE_SUFFIX)
    summary = ConversionSummary(total=len(sources))
    pending = [relative for relative in sources
               if not os.path.isfile(os.path.join(target_root, target_path(relative)))]
    summary.skipped = len(sources) - len(pending)
    if pending:
        require_ffmpeg()
    for folder in sorted({os.path.dirname(os.path.join(target_root, target_path(relative)))
                          for relative in pending}):
        remove_stale_temporaries(folder)

    def attempt(relative):
        try:
            convert_file(os.path.join(source_root, relative),
                         os.path.join(target_root, target_path(relative)))
        except AudioError as error:
            return Failure(relative, str(error))
        return None

    for _, failure in run_parallel(attempt, pending, jobs, "m4a -> wav", progress):
        if failure is None:
            summary.converted += 1
        else:
            summary.failures.append(failure)
    summary.failures.sort(key=lambda failure: failure.path)
    return summary


def failure_lines(failures):
    """Lines of a failures file: ``<relative path>\\t<reason>`` per failure."""
    return [f"{failure.path}\t{failure.reason}" for failure in failures]
