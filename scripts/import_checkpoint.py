"""Import SpeechBrain's or WeSpeaker's ECAPA-TDNN weights as a checkpoint of this project.

    python scripts/import_checkpoint.py speechbrain MODEL_FOLDER --output sb_ecapa.ckpt
    python scripts/import_checkpoint.py wespeaker MODEL_FOLDER/avg_model.pt --output ws_ecapa.ckpt

MODEL_FOLDER holds the library's files: SpeechBrain's embedding_model.ckpt (and
classifier.ckpt), WeSpeaker's avg_model.pt. Writes the checkpoint (network, and the
classifier as the margin head when the files have one) and, beside it, the YAML of the
settings that compute the library's function (model, front end, sizes, padding, variance
floor); eval.py, export.py and train.py (init_from) take both, e.g.
``python eval.py --config sb_ecapa.yaml``. The files are read without torch and without
running code from them.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import sys

from src.cli import ArgumentParser, run_main
from src.interop.library_models import LIBRARIES


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("library", choices=sorted(LIBRARIES), help="the library that wrote the files")
    parser.add_argument("source", help="the model's folder, or its model file")
    parser.add_argument("--output", required=True, help="checkpoint to write (.ckpt); the settings go beside it")
    return parser.parse_args(argv)


def main(argv=None):
    """Import what the command line ``argv`` names and print the settings written."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from src.interop.library_checkpoints import import_model

    settings, yaml_path, classes = import_model(args.library, args.source, args.output)
    head = f", with a margin head of {classes} classes" if classes else " (no classifier found: no margin head)"
    print(f"imported {args.library}'s ECAPA-TDNN into {args.output}{head}")
    print(f"settings, in {yaml_path}:")
    for key, value in settings.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    run_main(main)
