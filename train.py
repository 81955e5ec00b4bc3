"""Train ECAPA-TDNN: python train.py [--config FILE.yaml] [--key=value ...]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from src.cli import run_main  # noqa: E402
from src.config import load_config  # noqa: E402


def main(argv=None):
    """Train with the settings of ``argv`` (default: the command line)."""
    config, _ = load_config(argv, description="Train a speaker embedding network (default ECAPA-TDNN, AAM-softmax).")
    from src.train.trainer import train

    train(config)


if __name__ == "__main__":
    run_main(main)
