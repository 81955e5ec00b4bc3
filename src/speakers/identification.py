"""Identification figures: closed-set top-k accuracy and open-set detection and identification.

Every test recording (a query) is scored against all K enrolled speakers. Closed set: the
share of queries by enrolled speakers whose speaker is among the k best-scored (top-1,
top-5). Open set (when some queries are by speakers who are not enrolled, "unknown"): at a
false-alarm rate F, the threshold is set so that at most F of the unknown queries have a
best score at or above it; the detection and identification rate (DIR) is then the share
of enrolled speakers' queries whose best-scored speaker is theirs *and* scores at or above
the threshold (Phillips et al.'s open-set measure, as NIST reports it).

>>> scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.4]])  # 3 queries x 2 speakers
>>> truth = np.array([0, 0, -1])                              # -1: an unknown speaker
>>> top_k_accuracy(scores[:2], truth[:2], 1)
0.5
>>> open_set_rates(scores, truth, [0.0])[0]["dir"]            # threshold above the unknown's 0.5
0.5
"""
import numpy as np

TOP_K = (1, 5)
FALSE_ALARM_RATES = (0.01, 0.05, 0.1)
UNKNOWN = -1


def top_k_accuracy(scores, truth, k):
    """Share of queries (rows of scores (N, K)) whose true column ``truth`` (N,) is among the k best."""
    k = min(k, scores.shape[1])
    true_scores = scores[np.arange(len(truth)), truth]
    better = (scores > true_scores[:, None]).sum(axis=1)  # ties count in the query's favour
    return float(np.mean(better < k))


def open_set_rates(scores, truth, false_alarm_rates=FALSE_ALARM_RATES):
    """``[{"false_alarm_rate", "threshold", "dir"}]`` of scores (N, K) with truth (N,), -1 = unknown."""
    best = scores.max(axis=1)
    unknown = np.sort(best[truth == UNKNOWN])[::-1]
    known = truth != UNKNOWN
    correct = known & (scores.argmax(axis=1) == np.where(known, truth, 0))
    rates = []
    for rate in false_alarm_rates:
        allowed = int(np.floor(rate * unknown.size + 1e-9))
        threshold = float(np.nextafter(unknown[allowed], np.inf)) if allowed < unknown.size else -np.inf
        rates.append({"false_alarm_rate": rate, "threshold": threshold,
                      "dir": float(np.mean(correct[known] & (best[known] >= threshold)))})
    return rates


def identification_figures(scores, truth):
    """Every figure of the module docstring as a dict: queries, top-k accuracies, open-set rates."""
    known = truth != UNKNOWN
    figures = {"queries": int(truth.size), "enrolled_speaker_queries": int(known.sum()),
               "unknown_speaker_queries": int((~known).sum()), "enrolled_speakers": int(scores.shape[1])}
    if known.any():
        figures["top_k_accuracy"] = {str(k): top_k_accuracy(scores[known], truth[known], k) for k in TOP_K}
    if known.any() and not known.all():
        figures["open_set"] = open_set_rates(scores, truth)
    return figures


def describe(figures):
    """Summary lines of :func:`identification_figures`."""
    lines = [f"identification: {figures['queries']} queries against {figures['enrolled_speakers']} enrolled "
             f"speakers ({figures['unknown_speaker_queries']} by unknown speakers)"]
    if "top_k_accuracy" in figures:
        lines.append("closed set: " + ", ".join(f"top-{k} accuracy = {100 * value:.2f}%"
                                                for k, value in figures["top_k_accuracy"].items()))
    for entry in figures.get("open_set", []):
        lines.append(f"open set: at a false-alarm rate of {100 * entry['false_alarm_rate']:g}% "
                     f"(threshold {entry['threshold']:.4f}) DIR = {100 * entry['dir']:.2f}%")
    return lines
