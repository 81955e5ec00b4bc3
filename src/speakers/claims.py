"""Decisions about enrolled speakers from scores: verify a claim, identify among all of them.

Scores come from :class:`src.speakers.models.ProbeScorer`. With a calibration (a fit on
trials against enrolled speaker models, see docs/speakers.md) each score becomes an LLR; a
qmf calibration reads the model's total enrollment duration and embedding length beside the
test recording's. A candidate is accepted when its LLR (or, uncalibrated, its raw score) is
at or above the threshold of the verification setup (src/evaluation/verify_extract.py).
Identification ranks by LLR when calibrated (qmf makes it differ from the raw ranking
between speakers of different enrollment lengths), else by score.
"""
from dataclasses import dataclass

import numpy as np

from src.speakers.models import top_k


@dataclass(frozen=True)
class Candidate:
    """One enrolled speaker's result: score, LLR (None uncalibrated) and the decision."""
    speaker: str
    score: float
    llr: object
    accepted: bool

    def describe(self, threshold):
        """``alice  score = 0.7132  [llr = 2.1034]  threshold = T  ACCEPT|REJECT``."""
        llr = "" if self.llr is None else f"  llr = {self.llr:.4f}"
        return (f"{self.speaker}  score = {self.score:.4f}{llr}  threshold = {threshold:.4g}  "
                f"{'ACCEPT' if self.accepted else 'REJECT'}")


def llrs_of(calibration, scores, model_seconds, model_norms, probe_seconds, probe_norm):
    """LLRs (K,) of scores (K,) against K models, or None without a calibration.

    model_seconds, model_norms: (K,) enrollment durations and model embedding lengths;
    probe_seconds, probe_norm: the test recording's duration and embedding length.
    """
    if calibration is None:
        return None
    if not calibration.needs_qualities:
        return calibration.llrs(scores)
    count = len(scores)
    durations = np.column_stack([model_seconds, np.full(count, probe_seconds)])
    norms = np.column_stack([model_norms, np.full(count, probe_norm)])
    return calibration.llrs(scores, durations, norms)


def candidates(speakers, scores, llrs, threshold, rows):
    """Candidates of the model ``rows`` (indices into speakers/scores/llrs), in that order."""
    values = scores if llrs is None else llrs
    return [Candidate(speakers[row], float(scores[row]), None if llrs is None else float(llrs[row]),
                      bool(values[row] >= threshold)) for row in rows]


def identify(speakers, scores, llrs, threshold, k):
    """The ``k`` best candidates, best first, and the identified speaker (None: unknown, open set)."""
    ranked = candidates(speakers, scores, llrs, threshold, top_k(scores if llrs is None else llrs, k))
    return ranked, ranked[0].speaker if ranked[0].accepted else None
