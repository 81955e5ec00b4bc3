"""Cut MUSAN into 5 s chunks for augmentation and list the simulated room impulse responses.

Reads musan/{noise,speech,music}/<subset>/<name>.wav (16 kHz mono) and writes
<out>/<category>/<name>/00000.wav, 00001.wav, ...: chunk k holds seconds
[5k, 5k + 5) of the recording (--chunk_seconds); the remainder after the last
whole chunk is kept as a shorter last chunk when it lasts at least 1 s
(--min_last_seconds), else dropped. Running again writes only missing chunks.

With --rirs (RIRS_NOISES or its simulated_rirs folder) it also writes the list
simulated_rirs/rir_list.txt of the RIR wav paths, relative to simulated_rirs, and
prints the count per room type. Training (rir_path=.../simulated_rirs) uses the RIRs
of that list instead of scanning the folder; --rir_list writes it elsewhere instead.

Exit status: 0 on success; 1 for bad options, when the input is unusable, nothing
could be cut, or (with --strict) any recording failed.
"""
import argparse
import os
import sys

from src.cli import ArgumentParser, run_main
from src.data.augment import RIR_LIST_NAME
from src.fileio import check_writable_file
from src.prepare.common import PrepareError
from src.prepare.musan import list_rirs, locate_simulated_rirs, split_musan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--musan", required=True,
                        help="MUSAN folder holding noise/, speech/ and music/")
    parser.add_argument("--out", required=True,
                        help="output folder, e.g. dataset/Others/musan_split (config musan_path)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="recordings cut at once (default: number of CPUs)")
    parser.add_argument("--chunk_seconds", type=float, default=5.0, help="chunk length (default 5)")
    parser.add_argument("--min_last_seconds", type=float, default=1.0,
                        help="shortest last chunk kept (default 1)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any recording cannot be read")
    parser.add_argument("--rirs", help="RIRS_NOISES folder (or its simulated_rirs subfolder)")
    parser.add_argument("--rir_list", help=f"where to write the RIR list (default: {RIR_LIST_NAME} "
                                           "in the simulated_rirs folder, where training reads it)")
    return parser.parse_args(argv)


def report_split(summary):
    """Print the per-category counts, failures and skipped recordings of a split run."""
    for category in sorted(summary.sources):
        print(f"{category}: {summary.sources[category]} recordings -> "
              f"{summary.chunks[category]} chunks")
    for category in summary.missing_categories:
        print(f"{category}: folder not found, skipped")
    print(f"wrote {summary.written} chunk files; {summary.skipped} recordings were already cut")
    if summary.too_short:
        print(f"{len(summary.too_short)} recordings too short for a chunk, e.g. "
              f"{summary.too_short[0]}")
    for failure in summary.failures:
        print(f"failed: {failure.reason}", file=sys.stderr)


def run(args):
    """Split MUSAN, then list the RIRs when asked; return the exit status."""
    if args.rirs:
        rir_root = locate_simulated_rirs(args.rirs)
        list_path = check_writable_file(args.rir_list or os.path.join(rir_root, RIR_LIST_NAME),
                                        "--rir_list")
    summary = split_musan(args.musan, args.out, jobs=args.jobs, chunk_seconds=args.chunk_seconds,
                          min_last_seconds=args.min_last_seconds)
    report_split(summary)
    if not sum(summary.chunks.values()) or (args.strict and summary.failures):
        return 1
    print(f"set musan_path={args.out}")
    if args.rirs:
        counts = list_rirs(rir_root, list_path)
        for room_type in sorted(counts):
            print(f"{room_type}: {counts[room_type]} RIRs")
        print(f"wrote {list_path}: {sum(counts.values())} RIRs")
        print(f"set rir_path={rir_root}")
    return 0


def main(argv=None):
    """Run the command line ``argv``; return the exit status (bad input raises InputError)."""
    args = parse_args(argv)
    try:
        return run(args)
    except OSError as error:
        raise PrepareError(str(error)) from None


if __name__ == "__main__":
    run_main(main)
