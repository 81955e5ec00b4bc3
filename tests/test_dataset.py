"""Training data pipeline: sampling, sharding, resuming, labels and bad input."""
import os
import re

import numpy as np
import pytest

from fixtures import bad_files, training_settings, write_tone_corpus
from src.data.audio import SAMPLE_RATE, write_audio
from src.data.dataset import (BadAudioRegister, DataError, DrawBatches, DrawSampler, TrainingSamples,
                              create_train_dataset, missing_files, read_training_list, training_batches)
from src.data.features import log_mel
from src.data.lists import ListFormatError, read_train_list
from src.fileio import TextEncodingError


_config = training_settings


def test_each_epoch_is_a_permutation_dealt_to_ranks():
    full = list(DrawSampler(10, 4, 2, seed=3))
    assert len(full) == len(DrawSampler(10, 4, 2, seed=3)) == 16  # 2 steps of 4 per epoch
    first, second = np.array(full[:8]), np.array(full[8:])
    assert len(set(first)) == 8 and set(first) <= set(range(10))
    assert len(set(second)) == 8 and set(second) <= set(range(10, 20))
    assert list(first % 10) != list(second % 10)
    ranks = [list(DrawSampler(10, 4, 2, seed=3, rank=r, group_size=2)) for r in range(2)]
    assert all(len(draws) == 8 for draws in ranks)
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted(full)


def test_resumed_sampler_continues_the_uninterrupted_stream():
    full = list(DrawSampler(13, 4, 3, seed=1, rank=1, group_size=2))
    per_rank_batch, steps_per_epoch = 2, 3
    for done in (0, 1, 3, 4, 8):
        resumed = DrawSampler(13, 4, 3, seed=1, rank=1, group_size=2, start_epoch=done // steps_per_epoch,
                              skip_batches=done % steps_per_epoch)
        assert list(resumed) == full[done * per_rank_batch:]
        assert len(resumed) == len(full) - done * per_rank_batch


def test_samples_are_deterministic_labelled_and_repeat_padded(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=3, utterances=2, seconds=(0.3, 0.4))
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path, class_num=3))
    samples = TrainingSamples(utterances, labels, os.path.join(tmp_path, "train", "wav"), segment_frames=100,
                              seed=5)
    features, label = samples[2 + 6]  # draw 8 = utterance 2 in epoch 1
    again, _ = samples[8]
    assert features.shape == (100, 80) and features.dtype == np.float32
    assert label == 1 and utterances[2].startswith("id00001/")
    np.testing.assert_array_equal(features, again)
    assert not np.array_equal(features, samples[2][0])  # same utterance, other epoch: new crop
    # 0.3-0.4 s of audio is repeated to the 0.99 s segment: the crop is the tiled wave.
    from src.data.audio import read_audio
    wave = read_audio(os.path.join(tmp_path, "train", "wav", utterances[0]))
    crop_start = np.random.default_rng([5, 0]).integers(0, 3 * len(wave) - 15840 + 1)
    expected = log_mel(np.tile(wave, 3)[crop_start:crop_start + 15840])
    np.testing.assert_allclose(samples[0][0], expected, atol=1e-5)


def test_class_num_must_match_speakers(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=3, utterances=1)
    with pytest.raises(DataError, match="class_num: set to 5 but .* has 3 speakers"):
        read_training_list(_config(tmp_path, list_path, class_num=5))


def test_missing_files_are_dropped_up_to_the_limit(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=3)
    os.remove(os.path.join(tmp_path, "train", "wav", "id00001", "v0", "00002.wav"))
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path, class_num=2, max_bad_audio=1))
    assert len(utterances) == 5 and "id00001/v0/00002.wav" not in utterances
    assert labels == [0, 0, 0, 1, 1]
    with pytest.raises(DataError, match="1 listed files are missing .*id00001/v0/00002.wav"):
        read_training_list(_config(tmp_path, list_path, class_num=2, max_bad_audio=0))


def test_unreadable_audio_is_replaced_by_the_next_utterance_and_counted(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    wav_root = os.path.join(tmp_path, "train", "wav")
    bad = os.path.join(wav_root, "id00000", "v0", "00001.wav")
    with open(bad, "wb") as handle:
        handle.write(b"not a wav file at all")
    write_audio(os.path.join(wav_root, "id00001", "v0", "00000.wav"), np.zeros(8000), sample_rate=8000)
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path, class_num=2))
    samples = TrainingSamples(utterances, labels, wav_root, segment_frames=50, seed=0, max_bad_audio=2)
    _, label = samples[1]  # unreadable -> utterance 2 (wrong sample rate) -> utterance 3
    assert label == 1
    assert bad_files(samples) == {bad, os.path.join(wav_root, "id00001", "v0", "00000.wav")}
    strict = TrainingSamples(utterances, labels, wav_root, segment_frames=50, seed=0, max_bad_audio=1)
    with pytest.raises(DataError, match="2 unreadable training files .*sample rate is 8000 Hz"):
        strict[1]


def test_stereo_audio_counts_as_unreadable(tmp_path):
    import soundfile

    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    wav_root = os.path.join(tmp_path, "train", "wav")
    soundfile.write(os.path.join(wav_root, "id00000", "v0", "00000.wav"), np.zeros((SAMPLE_RATE, 2)), SAMPLE_RATE)
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path, class_num=2))
    samples = TrainingSamples(utterances, labels, wav_root, segment_frames=50, seed=0, max_bad_audio=0)
    with pytest.raises(DataError, match="has 2 channels, expected mono"):
        samples[0]


def test_dataset_batches_have_the_promised_shapes(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=4, utterances=3)
    config = _config(tmp_path, list_path, minibatch_size=4, num_epochs=2)
    dataset, steps_per_epoch = create_train_dataset(config, rank=1, group_size=2, start_step=1)
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert steps_per_epoch == 3
    assert len(batches) == 2 * 3 - 1
    features, labels = batches[0]
    assert features.shape == (2, 50, 80) and labels.dtype == np.int32
    with pytest.raises(DataError, match="minibatch_size: 4 is not divisible by the 3 devices"):
        create_train_dataset(config, rank=0, group_size=3)


def test_a_list_path_leaving_train_path_is_refused(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    (tmp_path / "outside.wav").write_bytes(b"")
    with open(list_path, "a", encoding="utf-8") as handle:
        handle.write("id00001 id00001/../../../outside.wav\n")
    with pytest.raises(ListFormatError, match=r"train.txt:5: utterance 'id00001/\.\./\.\./\.\./outside\.wav' "
                                              r"leaves the train_path folder"):
        read_training_list(_config(tmp_path, list_path, class_num=2))


def test_a_list_in_another_encoding_names_line_and_byte_and_a_byte_order_mark_is_accepted(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    text = open(list_path, encoding="utf-8").read()
    with open(list_path, "w", encoding="utf-8-sig") as handle:
        handle.write(text)
    assert read_train_list(list_path).speakers == ["id00000", "id00001"]
    lines = text.splitlines()
    with open(list_path, "wb") as handle:
        handle.write("".join(line + "\n" for line in lines[:2]).encode("utf-8"))
        handle.write(lines[2].replace("id00001/", "id00001/\u00e9").encode("latin-1") + b"\n")
    with pytest.raises(TextEncodingError, match=rf"^{re.escape(list_path)}:3: not UTF-8 text "
                                                r"\(byte 0xe9 at column 17\)"):
        read_train_list(list_path)


def test_repeated_list_lines_are_counted_in_a_warning(tmp_path, caplog):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=2)
    lines = open(list_path, encoding="utf-8").read().splitlines()
    with open(list_path, "a", encoding="utf-8") as handle:
        handle.write("\n".join([lines[0], lines[0], lines[3]]) + "\n")
    with caplog.at_level("WARNING"):
        utterances, _, _ = read_training_list(_config(tmp_path, list_path, class_num=2))
    assert len(utterances) == 7
    assert "3 lines repeat an utterance listed before (e.g. id00000/v0/00000.wav)" in caplog.text


def test_unchecked_missing_files_are_found_when_drawn_and_counted(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=2, utterances=3)
    os.remove(os.path.join(tmp_path, "train", "wav", "id00001", "v0", "00002.wav"))
    settings = _config(tmp_path, list_path, class_num=2, max_bad_audio=1, check_train_files=False)
    utterances, labels, _ = read_training_list(settings)
    assert len(utterances) == 6
    samples = TrainingSamples(utterances, labels, settings.train_path, segment_frames=50, seed=0, max_bad_audio=1)
    features, label = samples[5]  # the missing file: the next utterance (wrapping round) stands in
    assert label == labels[0] and features.shape == (50, 80)
    assert bad_files(samples) == {os.path.join(settings.train_path, "id00001/v0/00002.wav")}


def test_parallel_existence_check_matches_a_plain_one(tmp_path):
    names = [f"f{index}.wav" for index in range(103)]
    for index, name in enumerate(names):
        if index % 7:
            (tmp_path / name).write_bytes(b"")
    assert missing_files(str(tmp_path), names, threads=5) == [index for index in range(103) if index % 7 == 0]
    assert missing_files(str(tmp_path), [], threads=5) == []


# ---- speed perturbation ----

def _peak_frequency(wave):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * SAMPLE_RATE / len(wave)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbed_crop_scales_the_frequency_and_keeps_the_length(factor, rng):
    from src.data.speed_perturb import SpeedPerturb

    tone = np.sin(2 * np.pi * 400.0 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    speed = SpeedPerturb((1.0, factor), 1.0)
    crop = speed.crop(tone, 16000, 1, rng)
    assert crop.shape == (16000,) and crop.dtype == np.float32
    assert abs(_peak_frequency(crop) - 400.0 * factor) < 2.0
    # The filter's edge stays outside the crop: the ends keep the tone's full level.
    assert np.abs(crop[:200]).max() > 0.95 and np.abs(crop[-200:]).max() > 0.95


def test_speed_classes_follow_the_documented_mapping_and_are_deterministic(tmp_path):
    from src.data.speed_perturb import SpeedPerturb

    list_path = write_tone_corpus(tmp_path, num_speakers=3, utterances=4)
    utterances, labels, _ = read_training_list(_config(tmp_path, list_path, class_num=9), num_speeds=3)
    train_path = os.path.join(tmp_path, "train", "wav")

    def samples(probability):
        return TrainingSamples(utterances, labels, train_path, segment_frames=50, seed=5,
                               speed=SpeedPerturb((1.0, 0.9, 1.1), probability), num_speakers=3)

    always, half = samples(1.0), samples(0.5)
    drawn = [int(half[draw][1]) for draw in range(240)]
    speed_of = [label // 3 for label in drawn]
    assert all(drawn[draw] % 3 == labels[draw % len(labels)] for draw in range(240))
    assert 0.35 < speed_of.count(0) / 240 < 0.65 and speed_of.count(1) > 40 and speed_of.count(2) > 40
    assert all(int(always[draw][1]) >= 3 for draw in range(24))
    for draw in (0, 7, 130):
        first, label = half[draw]
        again, same_label = samples(0.5)[draw]
        np.testing.assert_array_equal(first, again)
        assert label == same_label


def test_class_num_auto_counts_speakers_times_speeds(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=3, utterances=4)
    settings = _config(tmp_path, list_path, class_num="auto", speed_perturb="0.9,1.0,1.1", minibatch_size=4)
    dataset, _ = create_train_dataset(settings)
    assert dataset.class_num == 9
    labels = np.concatenate([batch[1].asnumpy() for batch in dataset.create_tuple_iterator(num_epochs=1)])
    assert labels.min() >= 0 and labels.max() < 9
    settings.class_num = 3
    with pytest.raises(DataError, match=r"class_num: set to 3 but .*train.txt has 3 speakers x 3 speeds = 9 "
                                        r"classes$"):
        create_train_dataset(settings)
    settings.class_num, settings.speed_perturb = "auto", ""
    assert create_train_dataset(settings)[0].class_num == 3


def test_worker_processes_give_the_batches_of_threads(tmp_path):
    """Per-draw seeding: 1 thread, 2 threads and 2 processes deliver the same batches, also resumed."""
    list_path = write_tone_corpus(tmp_path, num_speakers=4, utterances=3)
    runs = {}
    for name, workers, processes, start_step in (("thread", 1, False, 0), ("threads", 2, False, 0),
                                                 ("processes", 2, True, 0), ("resumed", 2, True, 2)):
        config = _config(tmp_path, list_path, num_workers=workers, worker_processes=processes)
        dataset, _ = create_train_dataset(config, start_step=start_step)
        runs[name] = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(runs["thread"]) == 6 and len(runs["resumed"]) == 4
    for name in ("threads", "processes"):
        for (features, labels), (expected_features, expected_labels) in zip(runs[name], runs["thread"]):
            np.testing.assert_array_equal(features, expected_features)
            np.testing.assert_array_equal(labels, expected_labels)
    for (features, _), (expected, _) in zip(runs["resumed"], runs["thread"][2:]):
        np.testing.assert_array_equal(features, expected)


def test_worker_processes_count_each_bad_file_once_across_processes(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=4, utterances=3)
    for name in ("id00001/v0/00000.wav", "id00002/v0/00002.wav"):
        (tmp_path / "train" / "wav" / name).write_bytes(b"not audio")
    config = _config(tmp_path, list_path, num_workers=2, worker_processes=True, max_bad_audio=2, num_epochs=3)
    dataset, _ = create_train_dataset(config)
    assert len(list(training_batches(dataset))) == 9
    assert len(bad_files(dataset.training_samples)) == 2
    strict = _config(tmp_path, list_path, num_workers=2, worker_processes=True, max_bad_audio=1)
    dataset, _ = create_train_dataset(strict)
    with pytest.raises(DataError, match=r"^2 unreadable training files \(max_bad_audio is 1\); last: .*cannot read"):
        list(training_batches(dataset))


def test_bad_audio_register_counts_distinct_files_up_to_its_limit():
    register = BadAudioRegister(limit=2)
    assert not register.add(5, "five") and not register.add(5, "five again")
    assert 5 in register and 7 not in register and register.stop_error() is None
    assert not register.add(7, "seven")
    assert register.add(9, "nine") and register.indices() == [5, 7, 9]
    assert str(register.stop_error()) == "3 unreadable training files (max_bad_audio is 2); last: nine"



def test_batches_are_the_samples_of_consecutive_draws_and_resume_mid_epoch(tmp_path):
    list_path = write_tone_corpus(tmp_path, num_speakers=4, utterances=3)
    config = _config(tmp_path, list_path, minibatch_size=4, num_epochs=3)
    sampler = DrawSampler(12, 4, 3, seed=config.seed, rank=1, group_size=2, start_epoch=1, skip_batches=1)
    batches = DrawBatches(sampler, 2)
    draws = list(sampler)
    assert len(batches) == len(draws) // 2 == 5
    assert [int(draw) for number in range(len(batches)) for draw in batches[number]] == draws
    with pytest.raises(IndexError):
        batches[5]
    dataset, _ = create_train_dataset(config, rank=1, group_size=2, start_step=4)
    samples = dataset.training_samples
    for number, (features, labels) in enumerate(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)):
        expected = [samples[draw] for draw in batches[number]]
        np.testing.assert_array_equal(features, np.stack([feats for feats, _ in expected]))
        np.testing.assert_array_equal(labels, [label for _, label in expected])
    assert number == 4
