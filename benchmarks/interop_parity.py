"""Parity with SpeechBrain and WeSpeaker: the same weights give the same embeddings here and there.

For each full-size model (speechbrain_c1024, wespeaker_c512, wespeaker_c1024; see
benchmarks/library_reference.py) with random weights and batch-norm statistics of real
speech, on every utterance of a trial list, from the waveform:

1. the library (in a scratch environment with torch, ``--library_python``) builds the model,
   saves its files and computes its features and embeddings;
2. scripts/import_checkpoint.py's import turns the files into this project's checkpoint, and
   this project computes its features (the ``features`` setting the import chose) and
   embeddings (eval.py's extractor, batch norm folded);
3. the checkpoint is written back as the library's files (scripts/export_checkpoint.py's
   export), which the library loads with strict=True and embeds again.

Printed per model: the largest feature difference relative to the library's feature range;
the largest embedding difference relative to the embedding's largest value and the smallest
cosine similarity, for this project against the library and for the exported-back model
against the original; the EER on the trial list from each side's cosine scores. Usage
(about 15 min for the three models on so762 with 2 cores):

    python benchmarks/interop_parity.py --library_python /tmp/sb/bin/python \\
        --wespeaker_repo /path/to/wespeaker --data ../shared/data/so762 [--models ...] [--work DIR]

``--data`` holds eval.txt and eval/wav/ (VoxCeleb layout). Figures also go to
``<work>/parity.json``.
"""
import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore's own log: errors only, unless GLOG_v is set

import argparse
import json
import subprocess
import tempfile
import time

import numpy as np

from src.checkpoint import load_embedding_weights
from src.config import load_config
from src.data.audio import read_audio
from src.data.front_ends import front_end_of
from src.data.lists import read_trial_list, trial_utterances
from src.device import init_context
from src.evaluation.embeddings import EmbeddingExtractor
from src.evaluation.metrics import compute_eer
from src.evaluation.scoring import score_trials, trial_labels
from src.inference.folding import fold_batch_norm
from src.interop.library_checkpoints import export_model, import_model
from src.model import build_embedding_network

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("speechbrain_c1024", "wespeaker_c512", "wespeaker_c1024")


def run_library(args, action, model, audio_list, out, files=""):
    """Run benchmarks/library_reference.py ACTION in the library's environment."""
    command = [args.library_python, os.path.join(HERE, "library_reference.py"), action, "--model", model,
               "--wespeaker_repo", args.wespeaker_repo, "--audio", audio_list, "--out", out]
    subprocess.run(command + (["--files", files] if files else []), check=True)


def compare(found, expected):
    """(largest |difference| / largest |expected|, smallest cosine) over paired rows, in float64."""
    found, expected = ([np.asarray(row, np.float64) for row in rows] for rows in (found, expected))
    relative = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(found, expected))
    cosine = min(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(found, expected))
    return relative, cosine


def eer(embeddings, utterances, trials):
    """EER (%) of the cosine scores of ``trials`` from embeddings listed in ``utterances`` order."""
    scores = score_trials(dict(zip(utterances, embeddings)), trials)
    return 100.0 * compute_eer(scores, trial_labels(trials))[0]


def measure(args, model, utterances, trials, work):
    folder = os.path.join(work, model)
    audio_list = os.path.join(work, "audio.txt")
    start = time.perf_counter()
    run_library(args, "make", model, audio_list, folder)
    reference = np.load(os.path.join(folder, "reference.npz"))
    library = model.split("_")[0]
    checkpoint = os.path.join(folder, "imported.ckpt")
    import_model(library, folder, checkpoint)
    settings = load_config(["--config", os.path.splitext(checkpoint)[0] + ".yaml"])[0]
    network = build_embedding_network(settings, "shifted")
    load_embedding_weights(checkpoint, network)
    network.set_train(False)
    extractor = EmbeddingExtractor(fold_batch_norm(network, settings, "shifted"), front_end=front_end_of(settings))

    feature_error, ours = 0.0, []
    for index, utterance in enumerate(utterances):
        feats = extractor.features(read_audio(os.path.join(args.data, "eval", "wav", utterance)), utterance)
        theirs = reference[f"features_{index}"]
        if feats.shape != theirs.shape:
            raise RuntimeError(f"{utterance}: {feats.shape} frames here, {theirs.shape} in the library")
        feature_error = max(feature_error, float(np.abs(feats - theirs).max() / (theirs.max() - theirs.min())))
        ours.append(extractor.embed_features(feats))
    library_embeddings = [reference[f"embedding_{index}"] for index in range(len(utterances))]

    exported = os.path.join(folder, "exported")
    export_model(library, checkpoint, settings, exported)
    run_library(args, "embed", model, audio_list, os.path.join(folder, "exported.npz"), files=exported)
    reloaded = np.load(os.path.join(folder, "exported.npz"))
    back = [reloaded[f"embedding_{index}"] for index in range(len(utterances))]

    figures = {"model": model, "utterances": len(utterances), "trials": len(trials),
               "feature_difference_of_range": feature_error}
    figures["embedding_difference"], figures["smallest_cosine"] = compare(ours, library_embeddings)
    figures["exported_back_difference"], figures["exported_back_smallest_cosine"] = compare(back, library_embeddings)
    figures["eer_library"] = eer(library_embeddings, utterances, trials)
    figures["eer_here"] = eer(ours, utterances, trials)
    figures["eer_exported_back"] = eer(back, utterances, trials)
    figures["seconds"] = time.perf_counter() - start
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--library_python", required=True, help="Python with torch, torchaudio and speechbrain")
    parser.add_argument("--wespeaker_repo", required=True, help="a copy of wenet-e2e/wespeaker")
    parser.add_argument("--data", required=True, help="folder with eval.txt and eval/wav/")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--work", default="", help="folder for the models and figures (default: a temporary one)")
    args = parser.parse_args()
    init_context(load_config(["--device_target", "CPU"])[0])
    work = args.work or tempfile.mkdtemp(prefix="interop_parity_")
    os.makedirs(work, exist_ok=True)
    trials = read_trial_list(os.path.join(args.data, "eval.txt"))
    utterances = trial_utterances(trials)
    with open(os.path.join(work, "audio.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(os.path.join(args.data, "eval", "wav", utterance) + "\n" for utterance in utterances)
    results = []
    print(f"{len(utterances)} utterances, {len(trials)} trials of {args.data}; load average {os.getloadavg()[0]:.1f}")
    print("model              features  embedding  min cosine  exported-back  min cosine  EER library / here / back")
    for model in args.models:
        figures = measure(args, model, utterances, trials, work)
        results.append(figures)
        print(f"{model:<18} {figures['feature_difference_of_range']:8.1e}  {figures['embedding_difference']:9.1e}"
              f"  {figures['smallest_cosine']:.7f}  {figures['exported_back_difference']:13.1e}"
              f"  {figures['exported_back_smallest_cosine']:.7f}  {figures['eer_library']:.3f} / "
              f"{figures['eer_here']:.3f} / {figures['eer_exported_back']:.3f} %  ({figures['seconds']:.0f} s)",
              flush=True)
    with open(os.path.join(work, "parity.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    print(f"figures in {os.path.join(work, 'parity.json')}")


if __name__ == "__main__":
    main()
