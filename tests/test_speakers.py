"""Enrolled speakers: models, the store, decisions, and speakers.py from the command line."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from eval_support import embed_file, program_in_process
from fixtures import REPO_ROOT, TINY_NETWORK, randomise, speaker_wave, tiny_network
from src.checkpoint import save_checkpoint
from src.data.audio import read_audio, write_audio
from src.data.lists import ListFormatError, TrainList, Trial
from src.errors import InputError
from src.evaluation.calibration import Calibration, CalibrationError, load_calibration, save_calibration
from src.evaluation.embeddings import EmbeddingExtractor
from src.evaluation.scoring import EmbeddingTable, score_trials
from src.fileio import TextEncodingError, file_fingerprint
from src.evaluation.calibration_list import build_enrollment_trials
from src.speakers.claims import identify, llrs_of
from src.speakers.identification import identification_figures, open_set_rates, top_k_accuracy
from src.speakers.lists import read_enrollment_list, read_labelled_list, read_speaker_trials
from src.speakers.models import ProbeScorer, speaker_embedding, top_k
from src.speakers.store import SpeakerStore, StoreError

SPEAKERS_SCRIPT = os.path.join(REPO_ROOT, "speakers.py")


def unit(vector):
    return vector / np.linalg.norm(vector)


def test_a_speaker_model_has_the_mean_direction_and_the_mean_length(rng):
    embeddings = rng.standard_normal((3, 5))
    model = speaker_embedding(embeddings)
    expected_direction = unit(sum(unit(row) for row in embeddings))
    np.testing.assert_allclose(unit(model), expected_direction, rtol=1e-6)
    assert np.linalg.norm(model) == pytest.approx(np.linalg.norm(embeddings, axis=1).mean(), rel=1e-6)


def test_enrolling_in_two_steps_gives_the_model_of_one_step(rng):
    embeddings = rng.standard_normal((5, 4))
    once, twice = SpeakerStore("fp", 0), SpeakerStore("fp", 0)
    once.enroll("alice", [f"r{k}" for k in range(5)], embeddings, [1.0] * 5)
    twice.enroll("bob", ["b"], rng.standard_normal((1, 4)), [2.0])
    twice.enroll("alice", ["r0", "r1"], embeddings[:2], [1.0] * 2)
    twice.enroll("alice", ["r2", "r3", "r4"], embeddings[2:], [1.0] * 3)
    np.testing.assert_allclose(twice.embeddings()[1], once.embeddings()[0], rtol=1e-6)
    np.testing.assert_allclose(once.embeddings()[0], speaker_embedding(embeddings), rtol=1e-6)
    assert twice.counts.tolist() == [1, 5] and twice.seconds.tolist() == [2.0, 5.0]
    with pytest.raises(StoreError, match="r3 is already enrolled for speaker 'alice'"):
        twice.enroll("alice", ["r5", "r3"], embeddings[:2], [1.0] * 2)
    twice.remove("alice", "s.npz")
    assert twice.speakers == ["bob"] and twice.recordings == [["b"]] and twice.embeddings().shape == (1, 4)
    with pytest.raises(StoreError, match=r"speaker 'bobb' is not enrolled \(did you mean 'bob'\?\)"):
        twice.remove("bobb", "s.npz")


def test_the_store_file_round_trips_and_refuses_foreign_or_damaged_files(tmp_path, rng):
    store = SpeakerStore('{"model_sha256": "aaa", "network": 1}', 0)
    store.enroll("alice", ["a.wav", "b.wav"], rng.standard_normal((2, 6)), [1.5, 2.5])
    path = store.save(tmp_path / "store.npz")
    loaded = SpeakerStore.load(str(path))
    assert loaded.speakers == ["alice"] and loaded.recordings == [["a.wav", "b.wav"]]
    assert loaded.seconds.tolist() == [4.0] and loaded.counts.tolist() == [2]
    np.testing.assert_allclose(loaded.embeddings(), store.embeddings(), rtol=1e-6)  # float32 sums on file
    with pytest.raises(StoreError, match=r"enrolled with another model file \(SHA-256 aaa"):
        loaded.check_model('{"model_sha256": "bbb", "network": 1}', "store.npz")
    with pytest.raises(StoreError, match="another network description"):
        loaded.check_model('{"model_sha256": "aaa", "network": 2}', "store.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:300])
    with pytest.raises(StoreError, match="cut.npz: damaged speaker store"):
        SpeakerStore.load(str(tmp_path / "cut.npz"))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(StoreError, match="not a speaker store"):
        SpeakerStore.load(str(tmp_path / "other.npz"))


def test_probe_scores_are_cosines_and_asnorm_equals_the_trial_scoring(rng):
    models, probe, cohort = rng.standard_normal((4, 8)), rng.standard_normal(8), rng.standard_normal((12, 8))
    cosine = ProbeScorer.build(models).scores(probe)
    np.testing.assert_allclose(cosine, [unit(model) @ unit(probe) for model in models], rtol=1e-5)
    mean = rng.standard_normal(8) * 0.1
    normalised = ProbeScorer.build(models, mean, cohort, top_n=5).scores(probe)
    names = [f"m{k}" for k in range(4)]
    table = EmbeddingTable(names + ["probe"], np.vstack([models, probe]))
    expected = score_trials(table, [Trial(True, name, "probe") for name in names], mean=mean, cohort=cohort,
                            top_n=5)
    np.testing.assert_allclose(normalised, expected, rtol=1e-4, atol=1e-5)


def test_identification_ranks_and_answers_unknown_below_the_threshold():
    speakers, scores = ["a", "b", "c", "d"], np.array([0.2, 0.9, 0.5, 0.9])
    assert top_k(scores, 3).tolist() == [1, 3, 2]
    ranked, found = identify(speakers, scores, None, 0.6, 2)
    assert [c.speaker for c in ranked] == ["b", "d"] and found == "b"
    _, found = identify(speakers, scores, None, 0.95, 2)
    assert found is None


def test_qmf_llrs_use_the_enrollment_duration_and_model_length():
    calibration = Calibration("qmf", ("score", "min_log_duration", "max_log_duration", "mean_embedding_norm"),
                              (4.0, 0.5, 0.25, 0.1), -1.0, 0.5, "cosine against enrolled speaker models",
                              "sha", {})
    llrs = llrs_of(calibration, np.array([0.5, 0.1]), np.array([12.0, 2.0]), np.array([3.0, 5.0]), 4.0, 7.0)
    expected = [-1 + 4 * 0.5 + 0.5 * np.log(4) + 0.25 * np.log(12) + 0.1 * 5.0,
                -1 + 4 * 0.1 + 0.5 * np.log(2) + 0.25 * np.log(4) + 0.1 * 6.0]
    np.testing.assert_allclose(llrs, expected, rtol=1e-12)
    # With the LLRs, the ranking follows them, not the scores.
    ranked, found = identify(["x", "y"], np.array([0.5, 0.6]), np.array([1.0, 0.2]), 0.5, 2)
    assert [c.speaker for c in ranked] == ["x", "y"] and found == "x"


def test_list_formats_and_their_errors(tmp_path):
    enrollment = tmp_path / "enroll.txt"
    enrollment.write_text("alice a/1.wav ./a/2.wav\nbob b/1.wav\nalice a/3.wav\n")
    assert read_enrollment_list(enrollment).speakers == {"alice": ["a/1.wav", "a/2.wav", "a/3.wav"],
                                                         "bob": ["b/1.wav"]}
    enrollment.write_text("alice a/1.wav\nbob b/1.wav\nalice a/1.wav\n")
    with pytest.raises(ListFormatError, match=r"enroll.txt:3: a/1.wav is already enrolled for this speaker on line 1"):
        read_enrollment_list(enrollment)
    enrollment.write_text("alice a/1.wav\nbob a/1.wav\n")
    with pytest.raises(ListFormatError, match=r":2: a/1.wav is already enrolled for speaker 'alice' on line 1"):
        read_enrollment_list(enrollment)
    enrollment.write_bytes(b"alice a/1.wav\nb\xe9b b.wav\n")
    with pytest.raises(TextEncodingError, match=r"enroll.txt:2: not UTF-8 text"):
        read_enrollment_list(enrollment)
    trials = tmp_path / "trials.txt"
    trials.write_text("alice t/1.wav target\nalice t/2.wav nontarget\ncarol t/1.wav 0\n")
    with pytest.raises(ListFormatError, match=r"trials.txt:3: speaker 'carol' is not in the enrollment list"):
        read_speaker_trials(trials, _enrollment(tmp_path))
    trials.write_text("alice t/1.wav yes\n")
    with pytest.raises(ListFormatError, match=r":1: expected '<speaker> <test utt> <target\|nontarget>'"):
        read_speaker_trials(trials)
    labelled = tmp_path / "test.txt"
    labelled.write_text("alice t/1.wav\nbob ./t/1.wav\n")
    with pytest.raises(ListFormatError, match=r"test.txt:2: t/1.wav is listed already on line 1"):
        read_labelled_list(labelled)


def _enrollment(folder):
    path = folder / "ok.txt"
    path.write_text("alice a/1.wav\n")
    return read_enrollment_list(path)


def test_a_killed_save_leaves_the_previous_store(tmp_path):
    """SIGKILL at random moments of repeated saves of a large store: the file always loads whole."""
    path = tmp_path / "store.npz"
    program = f"""
import sys, numpy as np
sys.path.insert(0, {REPO_ROOT!r})
from src.speakers.store import SpeakerStore
store = SpeakerStore("fp", 0)
rng = np.random.default_rng(0)
store.enroll("first", ["x"], rng.standard_normal((1, 192)), [1.0])
store.save({str(path)!r})
print("ready", flush=True)
for round in range(10 ** 6):
    store.enroll(f"s{{round}}", [f"r{{round}}"], rng.standard_normal((1, 192)), [1.0])
    if round % 2000 == 0:
        store.save({str(path)!r})
"""
    for delay in (0.4, 0.7, 1.1):
        child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        store = SpeakerStore.load(str(path))
        assert store.speakers[0] == "first" and len(store) % 2000 in (1, 2)
        assert len(store.embeddings()) == len(store)
    # A kill during a save leaves its temporary file; the next change of the store removes it.
    # Another file's temporary is not the store's to remove.
    (tmp_path / ".store.npz.abcdef.part.npz").write_bytes(b"left by a killed save")
    (tmp_path / ".other.npz.abcdef.part.npz").write_bytes(b"another file's")
    store.remove("first", str(path))
    store.save(str(path))
    assert sorted(os.listdir(tmp_path)) == [".other.npz.abcdef.part.npz", "store.npz"]


# ---- speakers.py


def write_voice(path, speaker, seconds, rng):
    write_audio(path, speaker_wave(speaker, seconds, rng))
    return str(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Recordings of three speakers, an enrollment list, a tiny model and another one."""
    root = tmp_path_factory.mktemp("speakers")
    rng = np.random.default_rng(5)
    for speaker in range(3):
        for take in range(4):
            write_voice(root / "wav" / f"s{speaker}_{take}.wav", speaker, rng.uniform(1.0, 1.6), rng)
    (root / "enroll.txt").write_text("alice wav/s0_0.wav wav/s0_1.wav\nbob wav/s1_0.wav\nbob wav/s1_1.wav\n")
    network = tiny_network()
    save_checkpoint(network, str(root / "model.ckpt"))
    other = randomise(tiny_network(), seed=3)
    save_checkpoint(other, str(root / "other.ckpt"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(dict(TINY_NETWORK, eval_output_dir=str(root / "out"))))
    return root, EmbeddingExtractor(network)


@pytest.fixture(scope="module")
def speakers_script():
    with program_in_process("speakers.py", "speakers_script") as module:
        yield module


def run(script, root, *arguments, model="model.ckpt"):
    script.main(["--config", str(root / "tiny.yaml"), "--model_path", str(root / model), *map(str, arguments)])


@pytest.fixture(scope="module")
def enrolled(workspace, speakers_script):
    root, _ = workspace
    store = root / "store.npz"
    run(speakers_script, root, "enroll", store, "--list", root / "enroll.txt")
    run(speakers_script, root, "enroll", store, "carol", root / "wav/s2_0.wav")
    return store


def test_enroll_verify_and_identify_score_against_the_mean_of_the_recordings(
        workspace, enrolled, speakers_script, capsys):
    root, reference = workspace
    capsys.readouterr()
    vectors = {name: embed_file(reference, root / "wav" / f"{name}.wav")
               for name in ("s0_0", "s0_1", "s1_0", "s1_1", "s2_0", "s0_3")}
    models = {"alice": speaker_embedding(np.stack([vectors["s0_0"], vectors["s0_1"]])),
              "bob": speaker_embedding(np.stack([vectors["s1_0"], vectors["s1_1"]])),
              "carol": speaker_embedding(vectors["s2_0"][None])}
    cosines = {name: float(unit(model) @ unit(vectors["s0_3"])) for name, model in models.items()}
    threshold = round(cosines["alice"], 4) - 0.001
    run(speakers_script, root, "verify", enrolled, "alice", root / "wav/s0_3.wav", f"--threshold={threshold}")
    printed = capsys.readouterr().out.splitlines()
    match = re.fullmatch(r".*s0_3.wav as alice  score = (-?\d\.\d{4})  threshold = \S+  (ACCEPT|REJECT)", printed[0])
    assert match, printed
    assert float(match.group(1)) == pytest.approx(cosines["alice"], abs=1e-4) and match.group(2) == "ACCEPT"
    run(speakers_script, root, "identify", enrolled, root / "wav/s0_3.wav", "--top_k=3", "--threshold=-1")
    printed = capsys.readouterr().out.splitlines()
    ranked = [re.match(r"\d\. (\w+)  score = (-?\d\.\d{4})", line).groups() for line in printed[:3]]
    expected = sorted(cosines, key=cosines.get, reverse=True)
    assert [name for name, _ in ranked] == expected
    for name, score in ranked:
        assert float(score) == pytest.approx(cosines[name], abs=1e-4)
    assert printed[3] == f"identified: {expected[0]}"
    run(speakers_script, root, "identify", enrolled, root / "wav/s0_3.wav", "--threshold=1.01")
    assert "identified: unknown (the best" in capsys.readouterr().out
    run(speakers_script, root, "list", enrolled)
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listing[:3]] == [["alice", "2"], ["bob", "2"], ["carol", "1"]]


def test_verify_with_a_calibration_of_enrolled_trials(workspace, enrolled, speakers_script, capsys):
    root, reference = workspace
    capsys.readouterr()
    model = SpeakerStore.load(str(enrolled)).embeddings()[0]
    probe = embed_file(reference, root / "wav/s0_3.wav")
    cosine = float(unit(model) @ unit(probe))
    common = dict(prior=0.5, model_sha256=file_fingerprint(root / "model.ckpt"), fitted_on={})
    path = save_calibration(root / "enrolled.json", Calibration("linear", ("score",), (10.0,), -2.0,
                                                                scoring="cosine against enrolled speaker models",
                                                                **common))
    run(speakers_script, root, "verify", enrolled, "alice", root / "wav/s0_3.wav", f"--calibration_file={path}",
        "--p_target=0.5")
    printed = capsys.readouterr().out.splitlines()
    llr = float(re.search(r"llr = (-?\d+\.\d{4})", printed[0]).group(1))
    assert llr == pytest.approx(10 * cosine - 2, abs=1e-3)
    assert printed[0].endswith("ACCEPT" if llr >= 0 else "REJECT")
    pairs = save_calibration(root / "pairs.json", Calibration("linear", ("score",), (10.0,), -2.0,
                                                              scoring="cosine", **common))
    with pytest.raises(CalibrationError, match="fitted on 'cosine' scores, but the settings give 'cosine against "
                                        "enrolled speaker models'"):
        run(speakers_script, root, "verify", enrolled, "alice", root / "wav/s0_3.wav",
            f"--calibration_file={pairs}")


def run_cli(*arguments, cwd):
    return subprocess.run([sys.executable, SPEAKERS_SCRIPT, *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_bad_input_is_one_line(workspace, enrolled, speakers_script, tmp_path):
    root, _ = workspace
    silent = tmp_path / "silent.wav"
    write_audio(silent, np.zeros(16000, np.float32))
    short = tmp_path / "short.wav"
    write_audio(short, read_audio(root / "wav/s0_2.wav")[:4000])
    (tmp_path / "twice.txt").write_text(f"dan {root}/wav/s2_1.wav\ndan {root}/wav/s2_1.wav\n")
    (tmp_path / "latin1.txt").write_bytes(b"d\xe9n x.wav\n")
    empty = tmp_path / "empty.npz"
    SpeakerStore("fp", 0).save(empty)
    new = tmp_path / "new.npz"
    cases = [
        (["verify", enrolled, "zed", root / "wav/s0_3.wav"], "speaker 'zed' is not enrolled"),
        (["identify", empty, root / "wav/s0_3.wav"], "the store holds no speakers"),
        (["enroll", new, "--list", tmp_path / "twice.txt"], "already enrolled for this speaker"),
        (["enroll", enrolled, "alice", root / "wav/s0_0.wav"], "s0_0.wav is already enrolled for speaker 'alice'"),
        (["enroll", new, "dan", short], "short.wav: is 0.25 s long"),
        (["enroll", new, "--list", tmp_path / "latin1.txt"], "latin1.txt:1: not UTF-8"),
        (["verify", enrolled, "alice"], "verify takes SPEAKER WAV after STORE"),
    ]
    for arguments, fragment in cases:
        with pytest.raises(InputError, match=re.escape(fragment)):
            run(speakers_script, root, *arguments)
    settings = ["--config", root / "tiny.yaml", "--model_path", root / "model.ckpt"]
    for arguments, fragment in [
            (["verify", enrolled, "alice", root / "wav/s0_3.wav", "--model_path", root / "other.ckpt"],
             "the store was enrolled with another model file"),
            (["enroll", new, "dan", silent], "silent.wav: has 0.00 s of active speech")]:
        completed = run_cli(*settings, *arguments, cwd=tmp_path)
        errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
        assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
        assert len(errors) == 1 and fragment in errors[0], (arguments, completed.stderr[-2000:])
    assert not new.exists()


# ---- eval.py against enrolled speakers


@pytest.fixture(scope="module")
def eval_script():
    with program_in_process("eval.py", "eval_script_speakers") as module:
        yield module


@pytest.fixture(scope="module")
def enrolled_lists(workspace):
    root, _ = workspace
    rng = np.random.default_rng(9)
    lines = []
    for speaker in range(4):
        for take in range(3):
            name = f"t{speaker}/v1/{take}.wav"
            write_voice(root / "train" / name, speaker + 3, rng.uniform(1.0, 1.4), rng)
            lines.append(f"t{speaker} {name}\n")
    (root / "train.txt").write_text("".join(lines))
    (root / "enroll_eval.txt").write_text("alice s0_0.wav s0_1.wav\nbob s1_0.wav\nbob s1_1.wav\n")
    (root / "trials_eval.txt").write_text("alice s0_2.wav target\nalice s1_2.wav nontarget\n"
                                          "bob s1_2.wav 1\nbob s0_2.wav 0\nalice s2_2.wav nontarget\n")
    (root / "queries.txt").write_text("alice s0_3.wav\nbob s1_3.wav\ncarol s2_3.wav\nbob s1_2.wav\n")
    return ["--config", root / "tiny.yaml", "--model_path", root / "model.ckpt", "--eval_path", root / "wav",
            "--enroll_list", root / "enroll_eval.txt", "--train_list", root / "train.txt",
            "--train_path", root / "train"]


def enrolled_cosines(root, reference, speakers, tests):
    """{(speaker, test): cosine of the speaker's model and the test recording}."""
    vectors = {name: embed_file(reference, root / "wav" / name)
               for name in {*tests, *(name for names in speakers.values() for name in names)}}
    models = {speaker: speaker_embedding(np.stack([vectors[name] for name in names]))
              for speaker, names in speakers.items()}
    return {(speaker, test): float(unit(models[speaker]) @ unit(vectors[test]))
            for speaker in speakers for test in tests}


def test_eval_scores_trials_against_enrolled_speakers_and_calibrates_on_enrolled_trials(
        workspace, enrolled_lists, eval_script, enrolled, speakers_script, capsys):
    root, reference = workspace
    out = root / "out_enrolled"
    eval_script.main([*map(str, enrolled_lists), "--eval_list", str(root / "trials_eval.txt"),
                      "--eval_output_dir", str(out), "--score_calibration=qmf", "--cal_enroll_utterances=2",
                      "--cal_trials=12"])
    printed = capsys.readouterr().out
    assert "scores are LLRs of the qmf calibration" in printed
    cosines = enrolled_cosines(root, reference, {"alice": ["s0_0.wav", "s0_1.wav"], "bob": ["s1_0.wav", "s1_1.wav"]},
                               ["s0_2.wav", "s1_2.wav", "s2_2.wav"])
    # The calibration list: each training speaker enrolled from 2 of its 3 utterances, tested on the third.
    enrollment = read_enrollment_list(out / "calibration_enrollment.txt")
    assert sorted(enrollment.speakers) == ["t0", "t1", "t2", "t3"]
    assert all(len(names) == 2 for names in enrollment.speakers.values())
    cal_trials = read_speaker_trials(out / "calibration_trials.txt", enrollment)
    assert sum(trial.target for trial in cal_trials) == 4 and len(cal_trials) == 10
    for trial in cal_trials:
        assert (trial.utt_b.split("/")[0] == trial.utt_a) == trial.target
        assert trial.utt_b not in enrollment.speakers[trial.utt_a]
    calibration = load_calibration(out / "calibration.json")
    assert calibration.scoring == "cosine against enrolled speaker models"
    lines = [line.split() for line in (out / "scores.txt").read_text().splitlines()]
    assert [line[:2] for line in lines][:2] == [["alice", "s0_2.wav"], ["alice", "s1_2.wav"]]
    seconds = {name: read_audio(root / "wav" / name).size / 16000 for name in
               ("s0_0.wav", "s0_1.wav", "s1_0.wav", "s1_1.wav", "s0_2.wav", "s1_2.wav", "s2_2.wav")}
    enrolled_seconds = {"alice": seconds["s0_0.wav"] + seconds["s0_1.wav"],
                        "bob": seconds["s1_0.wav"] + seconds["s1_1.wav"]}
    for speaker, test, llr, target in lines:
        model = speaker_embedding(np.stack([embed_file(reference, root / "wav" / name)
                                            for name in {"alice": ["s0_0.wav", "s0_1.wav"],
                                                         "bob": ["s1_0.wav", "s1_1.wav"]}[speaker]]))
        probe = embed_file(reference, root / "wav" / test)
        expected = calibration.llrs([cosines[(speaker, test)]], [[enrolled_seconds[speaker], seconds[test]]],
                                    [[np.linalg.norm(model), np.linalg.norm(probe)]])[0]
        assert float(llr) == pytest.approx(expected, rel=1e-3, abs=1e-2)  # float32 kernels vs plain ops
        assert target == str(int(speaker == {"s0": "alice", "s1": "bob"}.get(test[:2])))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["enrolled_speakers"] == 2 and metrics["trials"] == 5
    # The fitted calibration is the one speakers.py verify takes for the same model and scoring.
    capsys.readouterr()
    run(speakers_script, root, "verify", enrolled, "alice", root / "wav/s0_3.wav",
        f"--calibration_file={out / 'calibration.json'}")
    printed = capsys.readouterr().out.splitlines()
    assert re.search(r"llr = -?\d+\.\d{4}", printed[0]) and "qmf calibration" in printed[1]


def test_eval_identifies_a_labelled_list_among_the_enrolled_speakers(
        workspace, enrolled_lists, eval_script, capsys):
    root, reference = workspace
    out = root / "out_identify"
    eval_script.main([*map(str, enrolled_lists), "--identify", str(root / "queries.txt"),
                      "--eval_output_dir", str(out)])
    printed = capsys.readouterr().out
    tests = ["s0_3.wav", "s1_3.wav", "s2_3.wav", "s1_2.wav"]
    cosines = enrolled_cosines(root, reference, {"alice": ["s0_0.wav", "s0_1.wav"], "bob": ["s1_0.wav", "s1_1.wav"]},
                               tests)
    truth = {"s0_3.wav": "alice", "s1_3.wav": "bob", "s1_2.wav": "bob"}
    correct = [max(("alice", "bob"), key=lambda speaker: cosines[(speaker, test)]) == speaker
               for test, speaker in truth.items()]
    figures = json.loads((out / "identification.json").read_text())
    assert figures["queries"] == 4 and figures["unknown_speaker_queries"] == 1
    assert figures["top_k_accuracy"]["1"] == pytest.approx(np.mean(correct))
    assert figures["top_k_accuracy"]["5"] == 1.0
    unknown_best = max(cosines[(speaker, "s2_3.wav")] for speaker in ("alice", "bob"))
    detected = [ok and max(cosines[(s, test)] for s in ("alice", "bob")) > unknown_best
                for ok, test in zip(correct, truth)]
    assert figures["open_set"][0]["dir"] == pytest.approx(np.mean(detected))
    assert f"top-1 accuracy = {100 * np.mean(correct):.2f}%" in printed
    with pytest.raises(InputError, match="--identify ranks and thresholds the scores themselves"):
        eval_script.main([*map(str, enrolled_lists), "--identify", str(root / "queries.txt"),
                          "--eval_output_dir", str(out), "--score_calibration=linear"])
    saved = np.load(out / "identification_scores.npz")
    np.testing.assert_allclose(saved["scores"][:, 0], [cosines[("alice", test)] for test in tests], atol=1e-5)


def test_identification_figures_on_a_constructed_case():
    # 4 enrolled speakers; queries 0-3 by speakers 0, 1, 2, 3; queries 4-5 by unknown speakers.
    scores = np.array([[0.9, 0.1, 0.2, 0.3],   # right, best 0.9
                       [0.6, 0.5, 0.1, 0.0],   # wrong at top-1 (rank 2)
                       [0.1, 0.2, 0.7, 0.3],   # right, best 0.7
                       [0.1, 0.2, 0.3, 0.4],   # right, best 0.4
                       [0.8, 0.1, 0.1, 0.1],   # unknown, best 0.8
                       [0.2, 0.3, 0.1, 0.1]])  # unknown, best 0.3
    truth = np.array([0, 1, 2, 3, -1, -1])
    figures = identification_figures(scores, truth)
    assert figures["top_k_accuracy"] == {"1": 0.75, "5": 1.0}
    assert top_k_accuracy(scores[:4], truth[:4], 2) == 1.0
    rates = {entry["false_alarm_rate"]: entry for entry in open_set_rates(scores, truth, [0.0, 0.5, 1.0])}
    assert rates[0.0]["dir"] == 0.25 and 0.8 < rates[0.0]["threshold"] < 0.81  # only 0.9 clears 0.8
    assert rates[0.5]["dir"] == 0.75 and 0.3 < rates[0.5]["threshold"] < 0.31  # one of two unknowns passes
    assert rates[1.0]["dir"] == 0.75  # no threshold: the top-1 accuracy


def test_enrollment_calibration_trials_are_balanced_seeded_and_disjoint():
    train = TrainList(utterances=[f"s{k}/{n}.wav" for k in range(4) for n in range(5)] + ["s4/0.wav"],
                      labels=[k for k in range(4) for _ in range(5)] + [4], speakers=["s0", "s1", "s2", "s3", "s4"])
    models, trials = build_enrollment_trials(train, 3, 20, seed=1)
    assert sorted(models) == ["s0", "s1", "s2", "s3"]  # s4 has too few utterances
    assert all(len(own) == 3 and all(u.startswith(f"{speaker}/") for u in own) for speaker, own in models.items())
    targets = [trial for trial in trials if trial.target]
    # Every possible target (4 speakers x 2 held-out utterances), and half of the 20 as non-targets.
    assert len(targets) == 8 and len(trials) == 18
    assert len({(trial.utt_a, trial.utt_b) for trial in trials}) == 18
    for trial in trials:
        assert trial.utt_b not in models[trial.utt_a] and trial.utt_b.startswith(trial.utt_a + "/") == trial.target
        assert trial.utt_b.split("/")[0] in models
    assert build_enrollment_trials(train, 3, 20, seed=1) == (models, trials)
    with pytest.raises(ValueError, match="at least two speakers with more than 5 utterances"):
        build_enrollment_trials(train, 5, 20, seed=1)


def test_the_docstring_examples_hold():
    import doctest

    from src.speakers import identification, models
    for module in (models, identification):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_two_programs_changing_one_store_take_turns(workspace, enrolled, speakers_script, tmp_path, capsys):
    """A program holds the store's lock between reading and writing it (adding 'xavier'); an enrollment
    started meanwhile waits for it and then adds to its result, so no speaker is lost."""
    root, _ = workspace
    store = tmp_path / "shared.npz"
    store.write_bytes(enrolled.read_bytes())
    program = f"""
import sys, time, numpy as np
sys.path.insert(0, {REPO_ROOT!r})
from src.speakers.store import SpeakerStore, store_lock
with store_lock({str(store)!r}):
    store = SpeakerStore.load({str(store)!r})
    print("locked", flush=True)
    time.sleep(3)
    store.enroll("xavier", ["x.wav"], np.ones((1, store.unit_sums.shape[1])), [1.0])
    store.save({str(store)!r})
"""
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    start = time.monotonic()
    run(speakers_script, root, "enroll", store, "dan", root / "wav/s2_1.wav")
    assert child.wait() == 0 and time.monotonic() - start > 1.0  # it waited for the other program
    assert SpeakerStore.load(str(store)).speakers == ["alice", "bob", "carol", "xavier", "dan"]
