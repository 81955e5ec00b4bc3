"""Training data: train list -> random crops (optionally speed-perturbed) -> augmentation -> log-mel
-> batches -> mindspore.dataset.

Every sample is addressed by a *draw*: ``draw = epoch * num_utterances + position``.
The sampler lists the draws of the epochs still to run, each epoch a seeded permutation
of the utterances sharded over the ranks, so that a resumed run continues with exactly
the draws an uninterrupted run would have made. A sample's speed, crop offset and
augmentation come from a generator seeded by (seed, draw), so they do not depend on worker count or
scheduling. Each data worker builds whole batches (:class:`TrainingBatches`), so the pool's
cost per handed-over item is paid once a batch.
"""
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from src.data.audio import AudioError, crop_or_pad, read_audio, read_audio_crop
from src.data.augment import Augmenter
from src.data.front_ends import FRONT_ENDS, front_end_of
from src.data.lists import read_train_list
from src.data.speed_perturb import SpeedPerturb, speed_class
from src.data.speech_content import RULE, measure
from src.errors import InputError

LOGGER = logging.getLogger(__name__)
# Threads that check the listed training files exist.
CHECK_THREADS = 16
# Bytes kept of the last unusable file's error message.
MESSAGE_BYTES = 1024


class DataError(InputError):
    """Training data that cannot be used (labels, missing or too many unreadable files)."""


def read_training_list(config, num_speeds=1):
    """Read train_list, check class_num against its classes and that every file exists.

    The classes are the speakers times ``num_speeds`` (see src/data/speed_perturb.py);
    ``class_num: auto`` takes that number. Returns (utterances, speaker labels, number of speakers).

    Missing files are dropped with a warning while there are at most ``max_bad_audio``
    of them; more stop training with an error listing the first ones. With
    ``check_train_files`` off nothing is checked here: a missing file is then found when it
    is first drawn and counted against ``max_bad_audio`` like an unreadable one. Lines that repeat
    an utterance are kept (it is drawn as often as listed) and counted in a warning.
    """
    train_list = read_train_list(config.train_list)
    repeated = len(train_list.utterances) - len(set(train_list.utterances))
    if repeated:
        first = next(utterance for utterance, count in Counter(train_list.utterances).items() if count > 1)
        LOGGER.warning("%s: %d lines repeat an utterance listed before (e.g. %s); each line is trained on",
                       config.train_list, repeated, first)
    if len(train_list.speakers) < 2:
        raise DataError(f"{config.train_list}: lists one speaker ({train_list.speakers[0]}); training a "
                        "speaker classifier needs two or more")
    classes = len(train_list.speakers) * num_speeds
    if config.class_num not in ("auto", classes):
        speeds = f" x {num_speeds} speeds = {classes} classes" if num_speeds > 1 else ""
        raise DataError(f"class_num: set to {config.class_num} but {config.train_list} has "
                        f"{len(train_list.speakers)} speakers{speeds}")
    missing = missing_files(config.train_path, train_list.utterances) if config.check_train_files else []
    if len(missing) > config.max_bad_audio:
        examples = ", ".join(train_list.utterances[index] for index in missing[:3])
        raise DataError(f"{config.train_list}: {len(missing)} listed files are missing under "
                        f"{config.train_path} (e.g. {examples}); max_bad_audio is {config.max_bad_audio}")
    for index in missing:
        LOGGER.warning("%s: %s not found under %s; skipped", config.train_list,
                       train_list.utterances[index], config.train_path)
    keep = sorted(set(range(len(train_list.utterances))) - set(missing))
    return ([train_list.utterances[i] for i in keep], [train_list.labels[i] for i in keep],
            len(train_list.speakers))


def missing_files(root, relative_paths, threads=CHECK_THREADS):
    """Indices of the ``relative_paths`` (below ``root``) that are not files, in order.

    The checks run on ``threads`` threads in contiguous chunks: a file-status call releases
    the interpreter lock, which matters on network file systems, where each one waits.
    """
    def check(chunk):
        start, stop = chunk
        return [index for index in range(start, stop)
                if not os.path.isfile(os.path.join(root, relative_paths[index]))]

    size = -(-len(relative_paths) // threads) or 1
    chunks = [(start, min(start + size, len(relative_paths))) for start in range(0, len(relative_paths), size)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [index for found in pool.map(check, chunks) for index in found]


class DrawSampler:
    """Yields the draws of epochs ``start_epoch..num_epochs-1`` for one rank.

    Each epoch is a permutation of the utterances seeded by (seed, epoch), cut to a
    multiple of ``global_batch`` and dealt round-robin to ``group_size`` ranks;
    ``skip_batches`` batches of the first epoch are left out (resuming mid-epoch).
    """

    def __init__(self, num_utterances, global_batch, num_epochs, seed, rank=0, group_size=1,
                 start_epoch=0, skip_batches=0):
        self.num_utterances = num_utterances
        self.global_batch = global_batch
        self.num_epochs = num_epochs
        self.seed = seed
        self.rank = rank
        self.group_size = group_size
        self.start_epoch = start_epoch
        self.skip_batches = skip_batches
        self.steps_per_epoch = num_utterances // global_batch

    def epoch_draws(self, epoch):
        """This rank's draws of one epoch, in order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_utterances)
        used = order[:self.steps_per_epoch * self.global_batch]
        return epoch * self.num_utterances + used[self.rank::self.group_size]

    def __iter__(self):
        per_rank_batch = self.global_batch // self.group_size
        for epoch in range(self.start_epoch, self.num_epochs):
            draws = self.epoch_draws(epoch)
            if epoch == self.start_epoch:
                draws = draws[self.skip_batches * per_rank_batch:]
            yield from (int(draw) for draw in draws)

    def __len__(self):
        per_rank = self.steps_per_epoch * (self.global_batch // self.group_size)
        epochs = self.num_epochs - self.start_epoch
        return max(0, epochs * per_rank - self.skip_batches * (self.global_batch // self.group_size))


class DrawBatches:
    """A rank's batches of draws, by number: ``batches[k]`` lists the draws (int64) of the k-th
    batch of ``batch_size`` consecutive draws that ``sampler`` (a :class:`DrawSampler`) yields.

    Random access lets each data worker build whole batches; the last epoch's permutation is
    kept, as consecutive batches mostly come from one epoch (as one (epoch, draws) pair, which
    worker threads replace in one store).
    """

    def __init__(self, sampler, batch_size):
        self.sampler = sampler
        self.batch_size = batch_size
        self._epoch_draws = (None, None)

    def __len__(self):
        return len(self.sampler) // self.batch_size

    def __getitem__(self, number):
        sampler = self.sampler
        if not 0 <= number < len(self):
            raise IndexError(f"batch {number} of {len(self)}")
        # The first epoch misses its skipped batches; each later one has steps_per_epoch batches.
        position = number + sampler.skip_batches
        epoch = sampler.start_epoch + position // sampler.steps_per_epoch
        position %= sampler.steps_per_epoch
        cached_epoch, draws = self._epoch_draws
        if cached_epoch != epoch:
            draws = sampler.epoch_draws(epoch)
            self._epoch_draws = (epoch, draws)
        return draws[position * self.batch_size:(position + 1) * self.batch_size]


class BadAudioRegister:
    """The distinct unusable training files of a run, shared by every data worker.

    Up to ``limit + 1`` utterance indices and the last error message live in shared
    memory under one lock, so worker processes (``worker_processes: true``, started by
    fork, MindSpore's default on Linux) count each file once, as worker threads do.
    """

    def __init__(self, limit):
        self.limit = limit
        self._lock = multiprocessing.Lock()
        self._indices = multiprocessing.Array("q", limit + 1, lock=False)
        self._count = multiprocessing.Value("q", 0, lock=False)
        self._message = multiprocessing.Array("c", MESSAGE_BYTES, lock=False)

    def __deepcopy__(self, memo):
        # mindspore.dataset deep-copies the pipeline; the copies must share this register.
        return self

    def _known(self):
        return self._indices[:min(self._count.value, self.limit + 1)]

    def add(self, index, message):
        """Record utterance ``index`` as unusable (once); True when that makes too many."""
        with self._lock:
            if index not in self._known():
                if self._count.value <= self.limit:
                    self._indices[self._count.value] = index
                self._count.value += 1
                self._message.value = message.encode("utf-8", "replace")[:MESSAGE_BYTES - 1]
            return self._count.value > self.limit

    def __contains__(self, index):
        with self._lock:
            return index in self._known()

    def indices(self):
        """The recorded utterance indices, in the order they were found."""
        with self._lock:
            return list(self._known())

    def stop_error(self, listed=None):
        """The DataError that stops training: more unusable files than the limit, or all ``listed``
        files unusable; else None."""
        with self._lock:
            count, message = self._count.value, self._message.value.decode("utf-8", "replace")
        if listed is not None and count >= listed:
            return DataError(f"none of the {listed} training files is usable audio; last: {message}")
        if count <= self.limit:
            return None
        return DataError(f"{count} unreadable training files (max_bad_audio is {self.limit}); last: {message}")


class TrainingSamples:
    """Random-access source: draw -> (features (segment_frames, 80) float32, label int32).

    ``front_end`` (src/data/front_ends.py) turns each crop into features; the crop has the
    samples that give exactly ``segment_frames`` frames.

    With ``speed`` (a :class:`~src.data.speed_perturb.SpeedPerturb`) each draw first picks
    its speed; the label is then the speaker's class at that speed (speaker label + speed
    index * ``num_speakers``).

    An unreadable file, or one without any active speech (silence, see
    :mod:`src.data.speech_content`), is logged and replaced by the next utterance of the
    list (with that utterance's own label); more than ``max_bad_audio`` of them stop
    training. Each file is checked for speech once, as a whole, not per crop; a file
    found bad is not read again.
    """

    def __init__(self, utterances, labels, train_path, segment_frames, seed, augmenter=None,
                 max_bad_audio=0, speed=None, num_speakers=0, front_end=FRONT_ENDS["zoo"]):
        self.utterances = utterances
        self.labels = np.asarray(labels, dtype=np.int32)
        self.train_path = train_path
        self.front_end = front_end
        self.segment_samples = front_end.samples_for_frames(segment_frames)
        self.seed = seed
        self.augmenter = augmenter
        self.speed = speed
        self.num_speakers = num_speakers
        self.max_bad_audio = max_bad_audio
        self.bad_audio = BadAudioRegister(max_bad_audio)
        self._checked_files = set()


    def _note_bad(self, index, error):
        if index not in self.bad_audio:
            LOGGER.warning("skipping unreadable training audio: %s", error)
        if self.bad_audio.add(index, str(error)):
            raise self.bad_audio.stop_error()

    def read_crop(self, path, num_samples, rng):
        """``num_samples`` samples of ``path`` from a random offset drawn from ``rng`` (repeated
        if shorter); AudioError if it is unreadable or holds no active speech. A file's first
        read takes it whole and checks it; later ones read only the crop."""
        if path in self._checked_files:
            return read_audio_crop(path, num_samples, rng)
        wave = read_audio(path)
        content = measure(wave)
        if not content.has_speech:
            raise AudioError(f"{path}: no active speech in {content.duration_seconds:.2f} s "
                             f"(silence; {RULE})")
        self._checked_files.add(path)
        return crop_or_pad(wave, num_samples, rng)

    def sample(self, draw):
        """Features and label of one draw."""
        rng = np.random.default_rng([self.seed, draw])
        speed_index = self.speed.draw(rng) if self.speed is not None else 0
        needed = self.speed.source_samples(self.segment_samples, speed_index) if self.speed else self.segment_samples
        index = draw % len(self.utterances)
        for attempt in range(len(self.utterances)):
            candidate = (index + attempt) % len(self.utterances)
            path = os.path.join(self.train_path, self.utterances[candidate])
            if candidate in self.bad_audio:
                continue
            try:
                segment = self.read_crop(path, needed, rng)
                break
            except AudioError as error:
                self._note_bad(candidate, error)
        else:
            raise self.bad_audio.stop_error(len(self.utterances))
        if self.speed is not None:
            segment = self.speed.stretch(segment, self.segment_samples, speed_index)
        if self.augmenter is not None:
            segment = self.augmenter(segment, rng)
        return self.front_end(segment), np.int32(speed_class(self.labels[candidate], speed_index, self.num_speakers))

    def __getitem__(self, draw):
        return self.sample(int(draw))

    def __len__(self):
        return len(self.utterances)

    def batch(self, draws):
        """Features (B, segment_frames, 80) float32 and labels (B,) int32 of the draws (B,)."""
        features, labels = zip(*(self.sample(int(draw)) for draw in draws))
        return np.stack(features), np.array(labels, np.int32)


class TrainingBatches:
    """Random-access source of whole batches for mindspore.dataset: batch number -> (features
    (B, T, 80), labels (B,)) of :class:`DrawBatches`' draws, built by :class:`TrainingSamples`.

    A data worker builds a whole batch and hands it over at once: MindSpore's pool spends a
    fixed time on every item it passes between workers, which with one item per sample
    capped the rate of several workers below that of one.
    """

    def __init__(self, samples, batches):
        self.samples = samples
        self.batches = batches

    def __getitem__(self, number):
        return self.samples.batch(self.batches[int(number)])

    def __len__(self):
        return len(self.batches)


def create_train_dataset(config, rank=0, group_size=1, start_step=0):
    """The batched training pipeline of one rank and the number of steps per epoch.

    ``minibatch_size`` is the global batch; each of ``group_size`` ranks gets an equal
    share. ``start_step`` (global steps already done) makes a resumed run skip what was
    already trained. Returns (dataset, steps_per_epoch); ``dataset.class_num`` is the number
    of classes the labels cover (speakers x speeds).
    """
    import mindspore.dataset as ds

    if config.minibatch_size % group_size:
        raise DataError(f"minibatch_size: {config.minibatch_size} is not divisible by the "
                        f"{group_size} devices")
    speed = SpeedPerturb.from_config(config)
    num_speeds = speed.num_speeds if speed is not None else 1
    utterances, labels, num_speakers = read_training_list(config, num_speeds)
    steps_per_epoch = len(utterances) // config.minibatch_size
    if steps_per_epoch == 0:
        raise DataError(f"minibatch_size: {config.minibatch_size} exceeds the {len(utterances)} "
                        f"utterances of {config.train_list}")
    augmenter = Augmenter.from_config(config) if config.augment else None
    samples = TrainingSamples(utterances, labels, config.train_path, config.segment_frames,
                              config.seed, augmenter, config.max_bad_audio, speed, num_speakers, front_end_of(config))
    sampler = DrawSampler(len(utterances), config.minibatch_size, config.num_epochs, config.seed,
                          rank, group_size, start_epoch=start_step // steps_per_epoch,
                          skip_batches=start_step % steps_per_epoch)
    batches = TrainingBatches(samples, DrawBatches(sampler, config.minibatch_size // group_size))
    dataset = ds.GeneratorDataset(batches, column_names=["features", "labels"], shuffle=False,
                                  num_parallel_workers=config.num_workers,
                                  python_multiprocessing=config.worker_processes)
    dataset.training_samples = samples
    dataset.class_num = num_speakers * num_speeds
    return dataset, steps_per_epoch


def training_batches(dataset):
    """Iterate the (features, labels) batches of :func:`create_train_dataset`'s dataset once.

    MindSpore wraps an error raised inside the pipeline (a worker thread or process) into
    a RuntimeError with its own stack; when the samples stopped training (too many bad
    files), that DataError is raised instead, so the user sees its one-line message.
    """
    try:
        yield from dataset.create_tuple_iterator(num_epochs=1)
    except RuntimeError:
        samples = dataset.training_samples
        stop_error = samples.bad_audio.stop_error(len(samples.utterances))
        if stop_error is None:
            raise
        raise stop_error from None
