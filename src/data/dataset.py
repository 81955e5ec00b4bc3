"""Training data: train list -> random crops -> augmentation -> log-mel -> mindspore.dataset.

Every sample is addressed by a *draw*: ``draw = epoch * num_utterances + position``.
The sampler lists the draws of the epochs still to run, each epoch a seeded permutation
of the utterances sharded over the ranks, so that a resumed run continues with exactly
the draws an uninterrupted run would have made. A sample's crop offset and augmentation
come from a generator seeded by (seed, draw), so they do not depend on worker count or
scheduling.
"""
import logging
import os
import threading
from collections import Counter

import numpy as np

from src.data.audio import AudioError, crop_or_pad, read_audio
from src.data.augment import Augmenter
from src.data.features import log_mel, samples_for_frames
from src.data.lists import read_train_list
from src.data.speech_content import RULE, measure
from src.errors import InputError

LOGGER = logging.getLogger(__name__)


class DataError(InputError):
    """Training data that cannot be used (labels, missing or too many unreadable files)."""


def load_training_list(config):
    """Read train_list, check class_num against its speakers and that every file exists.

    Missing files are dropped with a warning while there are at most ``max_bad_audio``
    of them; more stop training with an error listing the first ones. Lines that repeat
    an utterance are kept (it is drawn as often as listed) and counted in a warning.
    """
    train_list = read_train_list(config.train_list)
    repeated = len(train_list.utterances) - len(set(train_list.utterances))
    if repeated:
        first = next(utterance for utterance, count in Counter(train_list.utterances).items() if count > 1)
        LOGGER.warning("%s: %d lines repeat an utterance listed before (e.g. %s); each line is trained on",
                       config.train_list, repeated, first)
    if len(train_list.speakers) != config.class_num:
        raise DataError(f"class_num: set to {config.class_num} but {config.train_list} has "
                        f"{len(train_list.speakers)} speakers")
    missing = [index for index, utterance in enumerate(train_list.utterances)
               if not os.path.isfile(os.path.join(config.train_path, utterance))]
    if len(missing) > config.max_bad_audio:
        examples = ", ".join(train_list.utterances[index] for index in missing[:3])
        raise DataError(f"{config.train_list}: {len(missing)} listed files are missing under "
                        f"{config.train_path} (e.g. {examples}); max_bad_audio is {config.max_bad_audio}")
    for index in missing:
        LOGGER.warning("%s: %s not found under %s; skipped", config.train_list,
                       train_list.utterances[index], config.train_path)
    keep = sorted(set(range(len(train_list.utterances))) - set(missing))
    return [train_list.utterances[i] for i in keep], [train_list.labels[i] for i in keep]


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


class TrainingSamples:
    """Random-access source: draw -> (log-mel (segment_frames, 80) float32, label int32).

    An unreadable file, or one without any active speech (silence, see
    :mod:`src.data.speech_content`), is logged and replaced by the next utterance of the
    list (with that utterance's own label); more than ``max_bad_audio`` of them stop
    training. Each file is checked for speech once, as a whole, not per crop; a file
    found bad is not read again.
    """

    def __init__(self, utterances, labels, train_path, segment_frames, seed, augmenter=None,
                 max_bad_audio=0):
        self.utterances = utterances
        self.labels = np.asarray(labels, dtype=np.int32)
        self.train_path = train_path
        self.segment_samples = samples_for_frames(segment_frames)
        self.seed = seed
        self.augmenter = augmenter
        self.max_bad_audio = max_bad_audio
        self.bad_files = set()
        self.stop_error = None
        self._checked_files = set()
        self._lock = threading.Lock()

    def _note_bad(self, path, error):
        with self._lock:
            if path not in self.bad_files:
                self.bad_files.add(path)
                LOGGER.warning("skipping unreadable training audio: %s", error)
            if len(self.bad_files) > self.max_bad_audio:
                self.stop_error = DataError(f"{len(self.bad_files)} unreadable training files (max_bad_audio "
                                            f"is {self.max_bad_audio}); last: {error}")
                raise self.stop_error

    def _read_usable(self, path):
        """The waveform of ``path``; AudioError if it is unreadable or holds no active speech."""
        wave = read_audio(path)
        if path not in self._checked_files:
            content = measure(wave)
            if not content.has_speech:
                raise AudioError(f"{path}: no active speech in {content.duration_seconds:.2f} s "
                                 f"(silence; {RULE})")
            self._checked_files.add(path)
        return wave

    def sample(self, draw):
        """Features and label of one draw."""
        rng = np.random.default_rng([self.seed, draw])
        index = draw % len(self.utterances)
        for attempt in range(len(self.utterances)):
            candidate = (index + attempt) % len(self.utterances)
            path = os.path.join(self.train_path, self.utterances[candidate])
            if path in self.bad_files:
                continue
            try:
                wave = self._read_usable(path)
                break
            except AudioError as error:
                self._note_bad(path, error)
        else:
            raise DataError(f"none of the {len(self.utterances)} training files is usable audio")
        segment = crop_or_pad(wave, self.segment_samples, rng)
        if self.augmenter is not None:
            segment = self.augmenter(segment, rng)
        return log_mel(segment), self.labels[candidate]

    def __getitem__(self, draw):
        return self.sample(int(draw))

    def __len__(self):
        return len(self.utterances)


def create_train_dataset(config, rank=0, group_size=1, start_step=0):
    """The batched training pipeline of one rank and the number of steps per epoch.

    ``minibatch_size`` is the global batch; each of ``group_size`` ranks gets an equal
    share. ``start_step`` (global steps already done) makes a resumed run skip what was
    already trained. Returns (dataset, steps_per_epoch).
    """
    import mindspore.dataset as ds

    if config.minibatch_size % group_size:
        raise DataError(f"minibatch_size: {config.minibatch_size} is not divisible by the "
                        f"{group_size} devices")
    utterances, labels = load_training_list(config)
    steps_per_epoch = len(utterances) // config.minibatch_size
    if steps_per_epoch == 0:
        raise DataError(f"minibatch_size: {config.minibatch_size} exceeds the {len(utterances)} "
                        f"utterances of {config.train_list}")
    augmenter = Augmenter.from_config(config) if config.augment else None
    samples = TrainingSamples(utterances, labels, config.train_path, config.segment_frames,
                              config.seed, augmenter, config.max_bad_audio)
    sampler = DrawSampler(len(utterances), config.minibatch_size, config.num_epochs, config.seed,
                          rank, group_size, start_epoch=start_step // steps_per_epoch,
                          skip_batches=start_step % steps_per_epoch)
    dataset = ds.GeneratorDataset(samples, column_names=["features", "labels"], sampler=sampler,
                                  num_parallel_workers=config.num_workers, python_multiprocessing=False)
    dataset = dataset.batch(config.minibatch_size // group_size, drop_remainder=True)
    dataset.training_samples = samples
    return dataset, steps_per_epoch


def training_batches(dataset):
    """Iterate the (features, labels) batches of :func:`create_train_dataset`'s dataset once.

    MindSpore wraps an error raised inside the pipeline into a RuntimeError with its own
    stack; when the samples stopped training (too many bad files), that DataError is
    raised instead, so the user sees its one-line message.
    """
    try:
        yield from dataset.create_tuple_iterator(num_epochs=1)
    except RuntimeError:
        stop_error = dataset.training_samples.stop_error
        if stop_error is None:
            raise
        raise stop_error from None
