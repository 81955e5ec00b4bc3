"""Fixed-length ECAPA-TDNN inference of an exported MindIR on the CPU, the twin of
ascend310_infer/out/main (same options, files and timing report; see src.inference.runner).

    python scripts/infer_cpu.py --mindir_path=FILE --input_path=DIR [--result_path=DIR]
                                [--device_id=N] [--time_file=FILE]

Writes <result_path>/<utt>.bin embeddings (default ./result_Files) and the timing report
(default <result_path>/../time_Result/test_perform_static.txt). Exit status: 0; 2 for a
usage error, as out/main; 1 with one "error:" line naming the file for a failure.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

from src.cli import run_main
from src.inference.runner import format_timing, parse_args, run_inference


def main(argv=None):
    """Embed the feature files the command line ``argv`` names, on the CPU in graph mode."""
    args = parse_args(argv)
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    files, total_ms = run_inference(args.mindir_path, args.input_path, args.result_path, args.time_file)
    print(f"{format_timing(len(files), total_ms)}embeddings in {args.result_path}, timing in {args.time_file}")


if __name__ == "__main__":
    run_main(main)
