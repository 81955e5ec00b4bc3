"""Write a checkpoint of this project as SpeechBrain's or WeSpeaker's ECAPA-TDNN files.

    python scripts/export_checkpoint.py speechbrain CKPT OUT_FOLDER --config run.yaml
    python scripts/export_checkpoint.py wespeaker CKPT OUT_FOLDER --config run.yaml [--with_head]

The settings (--config, e.g. the YAML scripts/import_checkpoint.py wrote) must describe the
library's network: SpeechBrain's ecapa_tdnn pads by reflection, has no last batch norm and
its own front end; WeSpeaker's is the wespeaker_ecapa_tdnn model with the Kaldi front end.
SpeechBrain gets embedding_model.ckpt (and classifier.ckpt from the margin head), WeSpeaker
avg_model.pt; torch.load and the library's model classes read them with strict=True. The
files are written together (a failure changes none of them), and a classifier.ckpt of an
earlier export is removed when the checkpoint has no head.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import sys

from src.cli import run_main
from src.config import load_config
from src.interop.library_models import LIBRARIES


def add_arguments(parser):
    parser.add_argument("library", choices=sorted(LIBRARIES), help="the library to write for")
    parser.add_argument("checkpoint", help="a checkpoint of this project (training, averaged or imported)")
    parser.add_argument("output", help="folder to write the library's files into")
    parser.add_argument("--with_head", action="store_true",
                        help="wespeaker: put the margin head into avg_model.pt as projection.weight")


def main(argv=None):
    """Export what the command line ``argv`` names and print the files written."""
    settings, args = load_config(sys.argv[1:] if argv is None else argv, __doc__.split("\n\n", 1)[0],
                                 add_arguments)
    from src.interop.library_checkpoints import export_model

    written, removed = export_model(args.library, args.checkpoint, settings, args.output, args.with_head)
    for path in written:
        print(f"wrote {path}")
    for path in removed:
        print(f"removed {path}, the head of an earlier export (this checkpoint has no head)")


if __name__ == "__main__":
    run_main(main)
