"""Score files round-trip exactly; summary lines have the documented form."""
import os
import subprocess
import sys

import numpy as np
import pytest

from src.data.lists import ListFormatError, Trial
from src.evaluation.metrics import evaluate
from src.evaluation.report import append_summary, format_summary, read_scores, write_scores

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIALS = [Trial(True, "id1/a/00001.wav", "id1/b/00002.wav"),
          Trial(False, "id1/a/00001.wav", "id2/c/00001.wav"),
          Trial(False, "id2/c/00001.wav", "id3/d/00003.wav")]


def test_scores_round_trip_exactly(tmp_path):
    scores = np.array([0.1 + 0.2, -1.0 / 3.0, 1e-7])
    path = write_scores(tmp_path / "out" / "scores.txt", TRIALS, scores)
    assert open(path).read().splitlines()[0] == "id1/a/00001.wav id1/b/00002.wav 0.30000000000000004 1"
    trials, read_back = read_scores(path)
    assert trials == TRIALS
    np.testing.assert_array_equal(read_back, scores)


def test_score_count_must_match_trials(tmp_path):
    with pytest.raises(ValueError, match="expected 3 scores"):
        write_scores(tmp_path / "scores.txt", TRIALS, [0.1, 0.2])


@pytest.mark.parametrize("content, message", [
    ("a b 0.5 1\nc d 0.5\n", r"scores.txt:2: expected '<utt_a> <utt_b> <score> <1\|0>'"),
    ("a b 0.5 yes\n", r"scores.txt:1: expected"),
    ("\na b high 1\n", r"scores.txt:2: score 'high' is not a finite number"),
    ("a b nan 0\n", r"scores.txt:1: score 'nan' is not a finite number"),
    ("\n\n", r"scores.txt: score file is empty"),
])
def test_malformed_score_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "scores.txt"
    path.write_text(content)
    with pytest.raises(ListFormatError, match=message):
        read_scores(path)


def test_missing_score_file(tmp_path):
    with pytest.raises(ListFormatError, match="score file not found"):
        read_scores(tmp_path / "absent.txt")


def test_summary_lines():
    # Hand-computed: EER 1/4 and minDCF(0.01) 0.5 (see test_metrics); at p=0.05 the
    # normalised costs are 19, 9.5, 0.5, 1 -> 0.5. Read as LLRs, every score is below the
    # Bayes thresholds log 99 and log 19: all rejected, actDCF 1. Cllr: targets 0.5, 0.9
    # cost log2(1 + e^-s), non-targets 0.1, 0.5 cost log2(1 + e^s): 0.9138. minCllr: PAV
    # LLRs -inf, 0, 0, +inf, so one target and one non-target cost 1 bit: 0.5.
    result = evaluate([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    assert format_summary(result) == ["EER = 25.00%", "minDCF(p=0.01) = 0.5000",
                                      "minDCF(p=0.05) = 0.5000", "actDCF(p=0.01) = 1.0000",
                                      "actDCF(p=0.05) = 1.0000", "Cllr = 0.9138", "minCllr = 0.5000"]


def test_summary_rounding_and_append(tmp_path):
    # EER 2/3 (see test_metrics); no operating point beats rejecting everything, so both
    # minDCF values are 1. Cllr 1.0354 and minCllr 0.8091 are computed in test_metrics.
    result = evaluate([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0])
    lines = format_summary(result)
    assert lines[0] == "EER = 66.67%"
    assert lines[1:3] == ["minDCF(p=0.01) = 1.0000", "minDCF(p=0.05) = 1.0000"]
    assert lines[3:] == ["actDCF(p=0.01) = 1.0000", "actDCF(p=0.05) = 1.0000", "Cllr = 1.0354",
                         "minCllr = 0.8091"]
    log = tmp_path / "acc.log"
    log.write_text("earlier run\n")
    append_summary(log, result)
    assert log.read_text().splitlines() == ["earlier run"] + lines


def test_compute_metrics_reads_a_score_file(tmp_path):
    # The hand-computed case of test_summary_lines, through the command line.
    path = tmp_path / "scores.txt"
    path.write_text("a b 0.1 0\nc d 0.5 1\ne f 0.5 0\ng h 0.9 1\n")
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "compute_metrics.py"), str(path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [f"{path}: 4 trials, 2 target", "  EER = 25.00%",
                                             "  minDCF(p=0.01) = 0.5000", "  minDCF(p=0.05) = 0.5000",
                                             "  actDCF(p=0.01) = 1.0000", "  actDCF(p=0.05) = 1.0000",
                                             "  Cllr = 0.9138", "  minCllr = 0.5000"]
    path.write_text("a b 0.1 0\nc d\n")
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "compute_metrics.py"), str(path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [
        f"error: {path}:2: expected '<utt_a> <utt_b> <score> <1|0>', got 'c d'"]
