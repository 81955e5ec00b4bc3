"""Enrolled speakers: enroll recordings into a speaker store, verify a claim, identify a speaker.

    python speakers.py enroll STORE SPEAKER WAV [WAV ...] --model_path CKPT
    python speakers.py enroll STORE --list LIST --model_path CKPT
    python speakers.py verify STORE SPEAKER WAV --model_path CKPT [--calibration_file C.json]
    python speakers.py identify STORE WAV --model_path CKPT [--top_k 5]
    python speakers.py list STORE
    python speakers.py remove STORE SPEAKER

STORE is a .npz file (src/speakers/store.py), created by the first enrollment and tied to
the model and front end it was made with. LIST holds '<speaker> <wav> [<wav> ...]' lines,
paths relative to LIST's folder; a speaker may take several lines, and enrolling a known
speaker again adds to its model; two programs changing one store take turns. Recordings too
short or too silent are refused. verify and identify score like eval.py (cosine; mean
subtraction and AS-norm with the configured cohort) and decide at ``threshold`` on the raw
score, or with a ``calibration_file`` fitted on enrolled-speaker trials (eval.py with
enroll_list) on the LLR at ``p_target`` or ``target_fa_rate``; identify answers 'unknown'
when the best speaker is rejected. Every setting of src/config.py is accepted as --key=value
or from a --config YAML file.
"""
import collections
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import numpy as np

from src.cli import UsageError, run_main
from src.config import load_config, require_files
from src.data.audio import SAMPLE_RATE
from src.data.lists import ListFormatError
from src.evaluation.embeddings import extract_embeddings, finite_embedding, model_fingerprint
from src.evaluation.evaluate import open_cache
from src.evaluation.extractor import load_extractor
from src.evaluation.verify_extract import prepare_verification, read_verification_audio
from src.fileio import check_writable_file
from src.speakers.claims import candidates, identify, llrs_of
from src.speakers.lists import read_enrollment_list
from src.speakers.models import ProbeScorer
from src.speakers.store import SpeakerStore, StoreError, store_lock

ACTIONS = ("enroll", "verify", "identify", "list", "remove")
# Positional items after STORE that each action takes: (fewest, most; None = any number).
ITEMS = {"enroll": (0, None), "verify": (2, 2), "identify": (1, 1), "list": (0, 0), "remove": (1, 1)}
USAGE = {"enroll": "SPEAKER WAV [WAV ...] or --list LIST", "verify": "SPEAKER WAV", "identify": "WAV",
         "list": "nothing", "remove": "SPEAKER"}


def add_arguments(parser):
    """The action, the store, the action's items and the options of enroll and identify."""
    parser.usage = "\n" + __doc__.split("\n\n")[1].rstrip() + "\n\n  [--key=value ...] (every setting below)"
    parser.add_argument("action", choices=ACTIONS, help="what to do with the store")
    parser.add_argument("store", help="the speaker store file (.npz)")
    parser.add_argument("items", nargs="*", help="enroll: SPEAKER WAV...; verify: SPEAKER WAV; identify: WAV; "
                                                 "remove: SPEAKER")
    parser.add_argument("--list", default="", help="enroll: a list of '<speaker> <wav> [<wav> ...]' lines")
    parser.add_argument("--top_k", type=int, default=5, help="identify: the best speakers shown")


def check_items(options):
    """UsageError unless the items and options fit the action."""
    fewest, most = ITEMS[options.action]
    count = len(options.items)
    if options.action == "enroll" and not options.list:
        fewest = 2
    if options.action == "enroll" and options.list and count:
        raise UsageError("enroll takes SPEAKER WAV... or --list LIST, not both")
    if count < fewest or (most is not None and count > most):
        raise UsageError(f"{options.action} takes {USAGE[options.action]} after STORE; got {count} items")
    if options.list and options.action != "enroll":
        raise UsageError("--list belongs to enroll")
    if options.top_k < 1:
        raise UsageError(f"--top_k: {options.top_k} must be >= 1")


def recordings_to_enroll(options):
    """``{speaker: [audio path]}`` from the command line or from --list (paths relative to its folder)."""
    if not options.list:
        return {options.items[0]: [os.path.abspath(path) for path in options.items[1:]]}
    folder = os.path.dirname(os.path.abspath(options.list))
    return {speaker: [os.path.normpath(os.path.join(folder, path)) for path in paths]
            for speaker, paths in read_enrollment_list(options.list).speakers.items()}


def checked_store(path, loaded, extractor, config):
    """The store ``loaded`` from ``path`` (None: a new one) checked against the loaded model."""
    fingerprint = model_fingerprint(config.model_path, extractor.network, extractor.front_end.name)
    if loaded is None:
        return SpeakerStore(fingerprint, 0)
    loaded.check_model(fingerprint, path)
    return loaded


def enroll(config, options):
    """Embed every recording (all read and checked first, before the model loads; kept as durations
    only, so a long list does not fill the memory) and add them to the store."""
    wanted = recordings_to_enroll(options)
    counts = collections.Counter(path for paths in wanted.values() for path in paths)
    repeated = sorted(path for path, count in counts.items() if count > 1)
    if repeated:
        raise ListFormatError(f"{repeated[0]} is given twice")
    seconds = {path: read_verification_audio(path).size / SAMPLE_RATE for path in counts}
    check_writable_file(options.store, "STORE")
    with store_lock(options.store):
        loaded = SpeakerStore.load(options.store) if os.path.exists(options.store) else None
        for speaker, paths in wanted.items():
            if loaded is not None:
                loaded.check_new(speaker, paths)
        extractor = load_extractor(config)
        store = checked_store(options.store, loaded, extractor, config)
        for speaker, paths in wanted.items():
            vectors = np.stack([finite_embedding(extractor.embed_wave(read_verification_audio(path)), path)
                                for path in paths])
            store.enroll(speaker, paths, vectors, [seconds[path] for path in paths])
            row = store.index(speaker, options.store)
            print(f"{speaker}: {store.counts[row]} recordings, {store.seconds[row]:.1f} s (+{len(paths)})")
        store.save(options.store)
    print(f"{options.store}: {len(store)} speakers")


def score_probe(config, options, enrolled_only=None):
    """Load the store and model, embed the test recording; return what the decisions need.

    Returns ``(store, scores, llrs, setup)``: the scores and LLRs (None uncalibrated) of the
    claimed speaker (``enrolled_only``) or of every enrolled speaker."""
    path = options.items[-1]
    wave = read_verification_audio(path)
    setup = prepare_verification(config, enrolled=True)
    store = SpeakerStore.load(options.store)
    if not len(store):
        raise StoreError(f"{options.store}: the store holds no speakers; enroll some first")
    rows = np.arange(len(store)) if enrolled_only is None else np.array([store.index(enrolled_only, options.store)])
    extractor = load_extractor(config)
    checked_store(options.store, store, extractor, config)
    probe = finite_embedding(extractor.embed_wave(wave), path)
    cohort = None
    if setup.cohort:
        cohort, _ = extract_embeddings(extractor, setup.cohort, config.train_path, open_cache(config, extractor),
                                       description="cohort utterances")
    models = store.embeddings(rows)
    try:
        scores = ProbeScorer.for_config(config, models, cohort).scores(probe)
    except ValueError as error:
        raise StoreError(f"{path}: cannot score it against {options.store}: {error}") from None
    llrs = llrs_of(setup.calibration, scores, store.seconds[rows], np.linalg.norm(models, axis=1),
                   wave.size / SAMPLE_RATE, float(np.linalg.norm(probe)))
    return store, scores, llrs, setup


def verify(config, options):
    """Print the score (and LLR) of the recording against the claimed speaker and the decision."""
    speaker, path = options.items
    _, scores, llrs, setup = score_probe(config, options, enrolled_only=speaker)
    candidate = candidates([speaker], scores, llrs, setup.threshold, [0])[0]
    print(f"{path} as {candidate.describe(setup.threshold)}")
    print(setup.rule)


def identify_speaker(config, options):
    """Print the top_k enrolled speakers for the recording and the identified one, or unknown."""
    store, scores, llrs, setup = score_probe(config, options)
    ranked, found = identify(store.speakers, scores, llrs, setup.threshold, options.top_k)
    for rank, candidate in enumerate(ranked, start=1):
        print(f"{rank}. {candidate.describe(setup.threshold)}")
    best = ranked[0]
    print(f"identified: {found}" if found else
          f"identified: unknown (the best, {best.speaker}, is below the threshold {setup.threshold:.4g})")
    print(setup.rule)


def list_speakers(options):
    """Print each enrolled speaker with its recordings' count and total duration."""
    store = SpeakerStore.load(options.store)
    for row, speaker in enumerate(store.speakers):
        print(f"{speaker}  {store.counts[row]} recordings  {store.seconds[row]:.1f} s")
    print(f"{options.store}: {len(store)} speakers")


def remove(options):
    """Remove a speaker from the store."""
    with store_lock(options.store):
        store = SpeakerStore.load(options.store)
        store.remove(options.items[0], options.store)
        store.save(options.store)
    print(f"removed {options.items[0]}; {options.store}: {len(store)} speakers")


def main(argv=None):
    """Parse the settings and run the requested action; ``argv`` defaults to the command line."""
    config, options = load_config(argv, description=__doc__.splitlines()[0], add_arguments=add_arguments)
    check_items(options)
    if options.action == "list":
        list_speakers(options)
    elif options.action == "remove":
        remove(options)
    else:
        require_files(config, "model_path")
        {"enroll": enroll, "verify": verify, "identify": identify_speaker}[options.action](config, options)


if __name__ == "__main__":
    run_main(main)
