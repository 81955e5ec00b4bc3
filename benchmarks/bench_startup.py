"""Start-up cost of training at VoxCeleb2 size: list reading, file checks, MUSAN/RIR scan.

    python benchmarks/bench_startup.py [--utterances 1092009] [--speakers 5994] [--rirs 60000]
                                       [--work DIR] [--keep]

Builds a corpus shaped like VoxCeleb2 dev in a temporary folder: ``--speakers`` speaker
folders (id00012, ...), about 7 utterances per video, ``--utterances`` wav paths in all,
every one a hard link to one of a few real (generated) 3 s wavs, and a train.txt listing
them; plus ``--rirs`` impulse responses (hard links) in the RIRS_NOISES layout with their
rir_list.txt, and a few MUSAN noise chunks. Then it prints:

- the time to read the train list and to check that every listed file exists
  (``check_train_files: true``), in this process;
- the time to scan the RIR folder by walking it and by reading rir_list.txt;
- for ``python train.py`` (a small network, one step): the wall time from the start of the
  process to the first training step, and the process's peak resident memory (VmHWM) until
  then, with the check on and off, next to the same for a 1,000-utterance list, whose
  difference is what the list size costs.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from src.data.audio import SAMPLE_RATE, write_audio
from src.data.augment import Augmenter
from src.data.dataset import read_training_list
from src.fileio import write_lines

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTTERANCES_PER_VIDEO = 7
# Hard links one file may have, kept below ext4's limit of 65,000.
LINKS_PER_SOURCE = 50000
SMALL_NETWORK = ["--channels=64", "--mfa_channels=96", "--attention_channels=16", "--se_channels=16",
                 "--emb_size=64"]


def _source_wavs(folder, links):
    """Enough 3 s noise-like wavs to make ``links`` hard links to; returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(max(4, -(-links // LINKS_PER_SOURCE))):
        path = os.path.join(folder, f"source{index}.wav")
        write_audio(path, (0.1 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32))
        paths.append(path)
    return paths


def build_corpus(root, utterances, speakers, sources):
    """train/wav/<spk>/<video>/<n>.wav hard links and train.txt; returns (list path, seconds)."""
    start = time.perf_counter()
    lines = []
    base, extra = divmod(utterances, speakers)
    for speaker in range(speakers):
        name = f"id{speaker + 12:05d}"
        count = base + (speaker < extra)
        for index in range(count):
            video = f"v{speaker:05d}{index // UTTERANCES_PER_VIDEO:06d}"
            relative = f"{name}/{video}/{index % UTTERANCES_PER_VIDEO + 1:05d}.wav"
            folder = os.path.join(root, "train", "wav", name, video)
            if index % UTTERANCES_PER_VIDEO == 0:
                os.makedirs(folder, exist_ok=True)
            os.link(sources[len(lines) % len(sources)], os.path.join(root, "train", "wav", relative))
            lines.append(f"{name} {relative}")
    list_path = os.path.join(root, "train.txt")
    write_lines(list_path, lines)
    return list_path, time.perf_counter() - start


def build_rirs(root, count, sources):
    """RIRS_NOISES/simulated_rirs/<room>/Room<k>/Room<k>-<j>.wav links and rir_list.txt."""
    rir_root = os.path.join(root, "RIRS_NOISES", "simulated_rirs")
    relative_paths = []
    for index in range(count):
        room_type = ("smallroom", "mediumroom", "largeroom")[index % 3]
        room = f"Room{index // 100:03d}"
        relative = f"{room_type}/{room}/{room}-{index % 100:05d}.wav"
        os.makedirs(os.path.join(rir_root, room_type, room), exist_ok=True)
        os.link(sources[index % len(sources)], os.path.join(rir_root, relative))
        relative_paths.append(relative)
    noise_folder = os.path.join(root, "musan_split", "noise", "n0")
    os.makedirs(noise_folder, exist_ok=True)
    for index, source in enumerate(sources):
        os.link(source, os.path.join(noise_folder, f"{index:05d}.wav"))
    return rir_root, relative_paths


def _settings(list_path, root, speakers, check):
    from types import SimpleNamespace

    return SimpleNamespace(train_list=list_path, train_path=os.path.join(root, "train", "wav"),
                           class_num=speakers, max_bad_audio=0, check_train_files=check)


def time_list_reading(list_path, root, speakers):
    """Seconds to read the list with and without the existence check."""
    results = {}
    for check in (False, True):
        start = time.perf_counter()
        read_training_list(_settings(list_path, root, speakers, check))
        results[check] = time.perf_counter() - start
    return results


def time_rir_scan(rir_root, relative_paths):
    """Seconds to build the augmenter's RIR list by walking the folder and from rir_list.txt."""
    list_file = os.path.join(rir_root, "rir_list.txt")
    weights = {"clean": 1.0, "reverb": 1.0}
    start = time.perf_counter()
    walked = Augmenter("", rir_path=rir_root, weights=weights)
    walk_seconds = time.perf_counter() - start
    write_lines(list_file, relative_paths)
    start = time.perf_counter()
    listed = Augmenter("", rir_path=rir_root, weights=weights)
    list_seconds = time.perf_counter() - start
    os.remove(list_file)
    assert len(walked.files["reverb"]) == len(listed.files["reverb"]) == len(relative_paths)
    return walk_seconds, list_seconds


def _peak_rss(pid):
    """The process's peak resident memory so far (VmHWM), in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def time_train_start(list_path, root, rir_root, speakers, check, ckpt_dir):
    """(seconds to the first step, peak RSS bytes until then) of ``python train.py``."""
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), f"--train_list={list_path}",
               f"--train_path={root}/train/wav", f"--class_num={speakers}", "--minibatch_size=100",
               "--num_epochs=1", "--max_steps=1", "--log_interval=1", f"--ckpt_save_dir={ckpt_dir}",
               f"--musan_path={root}/musan_split", f"--rir_path={rir_root}", "--aug_babble=0", "--aug_music=0",
               f"--check_train_files={str(check).lower()}", *SMALL_NETWORK]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    first_step = [None]

    def read_log():
        for line in process.stderr:
            if "first step" in line and first_step[0] is None:
                first_step[0] = time.perf_counter() - start
            if line.startswith("error"):
                print(line.rstrip(), file=sys.stderr)

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    while first_step[0] is None and process.poll() is None:
        peak[0] = max(peak[0], _peak_rss(process.pid))
        time.sleep(0.05)
    process.wait()
    reader.join()
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if first_step[0] is None:
        raise SystemExit(f"train.py ended (status {process.returncode}) before its first step")
    # The first step's line is logged after the step, which includes graph compilation.
    return first_step[0], peak[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=1092009)
    parser.add_argument("--speakers", type=int, default=5994)
    parser.add_argument("--rirs", type=int, default=60000)
    parser.add_argument("--work", default="", help="folder for the corpus (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus folder")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench_startup_")
    os.makedirs(work, exist_ok=True)
    try:
        sources = _source_wavs(os.path.join(work, "sources"), args.utterances + args.rirs + 1000)
        large, build_seconds = build_corpus(os.path.join(work, "large"), args.utterances, args.speakers, sources)
        small, _ = build_corpus(os.path.join(work, "small"), 1000, 100, sources)
        rir_root, rirs = build_rirs(work, args.rirs, sources)
        print(f"corpus: {args.utterances} utterances of {args.speakers} speakers (hard links), built in "
              f"{build_seconds:.1f} s; {args.rirs} RIRs; load average {os.getloadavg()[0]:.2f}")

        reading = time_list_reading(large, os.path.join(work, "large"), args.speakers)
        print(f"train list: read {reading[False]:.2f} s; read + check every file exists {reading[True]:.2f} s")
        walk_seconds, list_seconds = time_rir_scan(rir_root, rirs)
        print(f"RIR scan of {args.rirs} files: walking the folder {walk_seconds:.2f} s, "
              f"reading rir_list.txt {list_seconds:.2f} s")
        write_lines(os.path.join(rir_root, "rir_list.txt"), rirs)

        rows = []
        for label, list_path, root, speakers in (("1,000 utterances", small, os.path.join(work, "small"), 100),
                                                 (f"{args.utterances:,} utterances", large,
                                                  os.path.join(work, "large"), args.speakers)):
            for check in (True, False):
                seconds, peak = time_train_start(list_path, root, rir_root, speakers, check,
                                                 os.path.join(work, "ckpt"))
                rows.append((label, check, seconds, peak))
                print(f"train.py, {label}, check_train_files {str(check).lower()}: first step after "
                      f"{seconds:.1f} s (incl. graph compilation), peak RSS {peak / 2**30:.2f} GiB", flush=True)
        baseline = {check: peak for label, check, _, peak in rows[:2]}
        for label, check, seconds, peak in rows[2:]:
            print(f"list-size cost with check_train_files {str(check).lower()}: "
                  f"{(peak - baseline[check]) / 2**30:.2f} GiB above the 1,000-utterance run")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
