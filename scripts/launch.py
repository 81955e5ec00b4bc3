"""Start train.py on one device, on the devices of an HCCL rank table, or through msrun.

    python scripts/launch.py standalone {Ascend,GPU,CPU} DEVICE_ID [--key=value ...]
    python scripts/launch.py rank_table RANK_TABLE_FILE [--key=value ...]
    python scripts/launch.py msrun {GPU,CPU} DEVICE_NUM [--key=value ...]
    python scripts/launch.py --script=eval.py {rank_table RANK_TABLE_FILE | msrun {GPU,CPU} DEVICE_NUM} ...

The run_{standalone,distribute}_train_*.sh launchers run this program, with --launcher
naming themselves in the usage; run_distribute_eval_*.sh run it with --script=eval.py, a
distributed evaluation (eval.py splits the utterances over the processes; run folders
eval_parallel<RANK_ID>/ and eval_parallel_logs/). train.py runs from the repository root under PYTHON
(default: python); run folders and logs are made in the current folder:
./train_standalone/train.log, ./train_parallel<RANK_ID>/train.log, or
./train_parallel_logs/worker_<rank>.log. The --key=value settings go to train.py as given.

Environment: PYTHON; SERVER_ID picks this server in a rank table of several; MASTER_PORT
sets msrun's scheduler port (default: a free port). msrun over several machines: run the
same command (same DEVICE_NUM = workers in all, same settings) on each, with MASTER_ADDR (the
address of machine 0), MASTER_PORT, NODE_RANK (0, 1, ...) and LOCAL_WORKER_NUM (its workers).

Exit status: 0 when training finished; 1 for bad arguments (one "error:" line and the
usage), an invalid rank table, or a failed rank-table or msrun training; train.py's own
status for a failed standalone run; 130 / 143 when interrupted by Ctrl-C / SIGTERM, which
stop every process the launcher started.
"""
import argparse
import os

from src.cli import ArgumentParser, UsageError, run_main
from src.launch.runs import (MSRUN_TARGETS, TARGETS, Launcher, Nodes, run_msrun, run_rank_table,
                             run_standalone)

SETTINGS_HELP = "the launcher argument, then --key=value settings for train.py"


def parse_args(argv):
    """The parsed command line; the arguments after the mode (and target) stay unparsed in ``arguments``."""
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--launcher", default="",
                        help="name of the shell launcher that runs this program, shown in usage messages")
    parser.add_argument("--script", default="train.py", choices=("train.py", "eval.py"),
                        help="the program to start (eval.py: distributed evaluation; not standalone)")
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    standalone = modes.add_parser("standalone", help="one train.py on device DEVICE_ID")
    standalone.add_argument("target", choices=TARGETS)
    rank_table = modes.add_parser("rank_table", help="one train.py per Ascend device of this server in "
                                                     "RANK_TABLE_FILE")
    msrun = modes.add_parser("msrun", help="DEVICE_NUM workers started by msrun")
    msrun.add_argument("target", choices=MSRUN_TARGETS)
    for mode in (standalone, rank_table, msrun):
        mode.add_argument("arguments", nargs=argparse.REMAINDER, help=SETTINGS_HELP)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the launch the command line ``argv`` asks for; return its exit status."""
    args = parse_args(argv)
    words = [args.mode] + ([args.target] if args.mode != "rank_table" else [])
    command = f"bash {args.launcher}" if args.launcher else " ".join(["launch.py", *words])
    launcher = Launcher(command, os.getcwd(), os.environ.get("PYTHON", "python"), args.script)
    if args.script == "eval.py" and args.mode == "standalone":
        raise UsageError("a standalone evaluation needs no launcher: run eval.py or scripts/run_eval_*.sh")
    if args.mode == "standalone":
        return run_standalone(launcher, args.target, args.arguments)
    if args.mode == "rank_table":
        return run_rank_table(launcher, args.arguments, os.environ.get("SERVER_ID", ""))
    return run_msrun(launcher, args.target, args.arguments, os.environ.get("MASTER_PORT", ""),
                     Nodes.from_environment(os.environ))


if __name__ == "__main__":
    run_main(main)
