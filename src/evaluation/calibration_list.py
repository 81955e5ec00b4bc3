"""The automatic calibration trial list: target and non-target pairs of training utterances.

Speaker-balanced and seeded: half of the ``num_trials`` trials are target pairs, taken
round-robin over the sorted speakers that have at least two utterances (in each round
every such speaker gives one new pair of two of its utterances, drawn at random, until
the half is reached or every pair is used); the other half are non-target pairs, the
k-th pairing a random utterance of speaker ``k mod S`` with a random utterance of a
random other speaker (drawn again, up to DRAWS_PER_SPEAKER times, when the pair is
already listed). No pair is listed twice. The same list, seed and count always give the
same trials.
"""
import numpy as np

from src.data.lists import Trial

# Draws a speaker gets to find a new non-target pair before its turn passes to the next.
DRAWS_PER_SPEAKER = 100


def round_robin(groups, limit):
    """Up to ``limit`` items taken one from each of ``groups`` (lists) in turn: every group's
    first, then every group's second, and so on, skipping groups that ran out."""
    chosen = []
    for rank in range(max((len(group) for group in groups), default=0)):
        for group in groups:
            if rank < len(group):
                chosen.append(group[rank])
                if len(chosen) == limit:
                    return chosen
    return chosen


def _target_pairs(per_speaker, count, rng):
    """Up to ``count`` distinct same-speaker pairs, round-robin over the speakers."""
    queues = []
    for utterances in per_speaker:
        first, second = np.triu_indices(len(utterances), k=1)
        order = rng.permutation(first.size)
        queues.append([(utterances[first[i]], utterances[second[i]]) for i in order])
    return round_robin(queues, count)


def _nontarget_pairs(per_speaker, count, rng):
    """``count`` distinct different-speaker pairs, side a cycling over the speakers."""
    num_speakers = len(per_speaker)
    possible = sum(len(u) for u in per_speaker) ** 2 - sum(len(u) ** 2 for u in per_speaker)
    count = min(count, possible // 2)
    pairs, seen = [], set()
    speaker = 0
    while len(pairs) < count:
        for _ in range(DRAWS_PER_SPEAKER):
            other = (speaker + 1 + int(rng.integers(num_speakers - 1))) % num_speakers
            pair = (per_speaker[speaker][int(rng.integers(len(per_speaker[speaker])))],
                    per_speaker[other][int(rng.integers(len(per_speaker[other])))])
            if pair not in seen and pair[::-1] not in seen:
                seen.add(pair)
                pairs.append(pair)
                break
        speaker = (speaker + 1) % num_speakers
    return pairs


def build_calibration_trials(train_list, num_trials, seed):
    """Speaker-balanced calibration trials (list of Trial) from a TrainList (module docstring).

    Raises ValueError when the list cannot give both kinds of trial (fewer than two
    speakers, or no speaker with two utterances).
    """
    per_speaker = [[] for _ in train_list.speakers]
    for utterance, label in zip(train_list.utterances, train_list.labels):
        per_speaker[label].append(utterance)
    if len(per_speaker) < 2 or max(len(utterances) for utterances in per_speaker) < 2:
        raise ValueError("needs at least two speakers and a speaker with two utterances")
    rng = np.random.default_rng(seed)
    targets = _target_pairs(per_speaker, num_trials // 2, rng)
    nontargets = _nontarget_pairs(per_speaker, num_trials - num_trials // 2, rng)
    return ([Trial(True, a, b) for a, b in targets] + [Trial(False, a, b) for a, b in nontargets])


def build_enrollment_trials(train_list, enroll_count, num_trials, seed):
    """Calibration trials against enrolled speakers: ``({speaker: enrollment utterances}, trials)``.

    Every speaker with more than ``enroll_count`` utterances is enrolled from ``enroll_count``
    of them, drawn at random; its other utterances are its test utterances. Half of the
    ``num_trials`` trials are targets (a speaker's test utterance against its own model,
    round-robin over the speakers), the other half non-targets (the k-th: a random test
    utterance of speaker ``k mod S`` against the model of a random other speaker, no pair
    twice). Trials name the speaker in ``utt_a`` and the test utterance in ``utt_b``.
    Raises ValueError when fewer than two speakers have enough utterances.
    """
    per_speaker = [[] for _ in train_list.speakers]
    for utterance, label in zip(train_list.utterances, train_list.labels):
        per_speaker[label].append(utterance)
    rng = np.random.default_rng(seed)
    models, tests = {}, []
    for speaker, utterances in zip(train_list.speakers, per_speaker):
        if len(utterances) > enroll_count:
            order = rng.permutation(len(utterances))
            models[speaker] = [utterances[index] for index in order[:enroll_count]]
            tests.append([utterances[index] for index in order[enroll_count:]])
    if len(models) < 2:
        raise ValueError(f"needs at least two speakers with more than {enroll_count} utterances")
    names = list(models)
    targets = round_robin([[(name, test) for test in own] for name, own in zip(names, tests)], num_trials // 2)
    possible = sum(len(own) for own in tests) * (len(names) - 1)
    count = min(num_trials - num_trials // 2, possible)
    nontargets, seen, speaker = [], set(), 0
    while len(nontargets) < count:
        for _ in range(DRAWS_PER_SPEAKER):
            other = (speaker + 1 + int(rng.integers(len(names) - 1))) % len(names)
            pair = (names[other], tests[speaker][int(rng.integers(len(tests[speaker])))])
            if pair not in seen:
                seen.add(pair)
                nontargets.append(pair)
                break
        speaker = (speaker + 1) % len(names)
    return models, [Trial(True, *pair) for pair in targets] + [Trial(False, *pair) for pair in nontargets]
