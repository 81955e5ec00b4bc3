"""Train ECAPA-TDNN: python train.py [--config FILE.yaml] [--key=value ...]"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

from src.cli import run_main
from src.config import load_config


def main(argv=None):
    """Train with the settings of ``argv`` (default: the command line)."""
    config, _ = load_config(argv, description="Train a speaker embedding network (default ECAPA-TDNN, AAM-softmax).")
    from src.train.trainer import train

    train(config)


if __name__ == "__main__":
    run_main(main)
