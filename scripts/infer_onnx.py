"""Fixed-length ECAPA-TDNN inference of an exported ONNX file with onnxruntime on the CPU: the
ONNX twin of scripts/infer_cpu.py (same files and timing report; see src.inference.runner).

    python scripts/infer_onnx.py --onnx_path=FILE --input_path=DIR [--result_path=DIR]
                                 [--device_id=N] [--time_file=FILE]

Writes <result_path>/<utt>.bin embeddings (default ./result_Files) and the timing report
(default <result_path>/../time_Result/test_perform_static.txt). Exit status: 0; 2 for a
usage error; 1 with one "error:" line naming the file for a failure.
"""

from src.cli import run_main
from src.inference.onnx_model import OnnxModel
from src.inference.runner import format_timing, parse_args, run_inference


def main(argv=None):
    """Embed the feature files the command line ``argv`` names with onnxruntime."""
    args = parse_args(argv, model_option="onnx_path", model_kind="ONNX file")
    files, total_ms = run_inference(OnnxModel(args.onnx_path), args.input_path, args.result_path, args.time_file)
    print(f"{format_timing(len(files), total_ms)}embeddings in {args.result_path}, timing in {args.time_file}")


if __name__ == "__main__":
    run_main(main)
