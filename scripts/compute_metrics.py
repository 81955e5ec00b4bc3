"""EER and minDCF of a score file, such as the scores.txt that eval.py and postprocess.py write.

    python scripts/compute_metrics.py SCORES [SCORES ...]

A score file has one trial a line, ``<utt_a> <utt_b> <score> <1|0>`` (1 = target). The
metrics are computed by the same code as eval.py's; for several files, one block each.
"""

from src.cli import ArgumentParser, run_main
from src.errors import InputError
from src.evaluation.metrics import evaluate
from src.evaluation.report import format_summary, read_scores
from src.evaluation.scoring import trial_labels


def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", nargs="+", metavar="SCORES", help="score file(s)")
    args = parser.parse_args(argv)
    for path in args.scores:
        trials, scores = read_scores(path)
        try:
            result = evaluate(scores, trial_labels(trials))
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        print(f"{path}: {len(trials)} trials, {result.roc.num_targets} target")
        for line in format_summary(result):
            print(f"  {line}")


if __name__ == "__main__":
    run_main(main)
