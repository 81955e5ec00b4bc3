"""Average the weights of the newest checkpoints of a run folder, or of given checkpoints.

    python scripts/average_checkpoints.py --run_dir CKPT_DIR [--num 5] --output avg.ckpt
    python scripts/average_checkpoints.py A.ckpt B.ckpt ... --output avg.ckpt

The output holds the mean of the embedding network's entries (batch-norm moving
statistics included) and of the margin head's, without optimizer state; eval.py, export.py
and train.py's init_from accept it.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import sys

from src.cli import ArgumentParser, run_main
from src.errors import InputError
from src.fileio import check_writable_file


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoints to average (instead of --run_dir)")
    parser.add_argument("--run_dir", default="", help="a run's checkpoint folder: average its newest --num")
    parser.add_argument("--num", type=int, default=5, help="how many of the run's newest checkpoints")
    parser.add_argument("--output", required=True, help="checkpoint file to write")
    args = parser.parse_args(argv)
    if bool(args.run_dir) == bool(args.checkpoints):
        raise InputError("give either --run_dir or checkpoint paths")
    if args.num < 1:
        raise InputError(f"--num: {args.num} must be >= 1")
    return args


def main(argv=None):
    """Average what the command line ``argv`` names and print what was written."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check_writable_file(args.output, "--output")
    from src.train.averaging import newest_checkpoints, save_average

    paths = newest_checkpoints(args.run_dir, args.num) if args.run_dir else args.checkpoints
    save_average(paths, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(os.path.basename(path) for path in paths)}) "
          f"into {args.output}")


if __name__ == "__main__":
    run_main(main)
