"""Validation during training: the cosine EER of a trial list under the current weights.

The code path is eval.py's: full-length embeddings from an
:class:`~src.evaluation.embeddings.EmbeddingExtractor` (inference mode, a dynamic time axis,
so one graph is compiled for the first validation and reused by every later one), cosine
scores, then EER and minDCF. The extractor switches the embedding network to inference
mode; the training cell is switched back to training mode afterwards. Inference mode
leaves the batch-norm statistics untouched and the training data do not depend on it, so
a run with validation follows the trajectory of the same run without.
"""
import os
import time

from src.config import ConfigError
from src.data.lists import read_trial_list, trial_utterances
from src.data.front_ends import front_end_of
from src.evaluation.embeddings import EmbeddingExtractor, extract_embeddings, require_audio_files
from src.evaluation.evaluate import EvaluationError
from src.evaluation.metrics import evaluate
from src.evaluation.scoring import score_trials, trial_labels


class Validator:
    """Scores ``valid_list`` (paths relative to ``valid_path``) every ``valid_interval`` epochs.

    The list and every audio file it names are checked when the validator is made, before
    training starts. ``network`` is the embedding network being trained.
    """

    def __init__(self, config, network):
        if not os.path.isfile(config.valid_list):
            raise ConfigError(f"valid_list: file {config.valid_list!r} not found")
        self.trials = read_trial_list(config.valid_list)
        self.labels = trial_labels(self.trials)
        if self.labels.all() or not self.labels.any():
            raise EvaluationError(f"{config.valid_list}: all {len(self.trials)} trials are of one kind; "
                                  "the EER needs target and non-target trials")
        self.utterances = trial_utterances(self.trials)
        self.root = config.valid_path
        require_audio_files(self.utterances, self.root, f"valid_list {config.valid_list}")
        self.interval = config.valid_interval
        self.num_epochs = config.num_epochs
        self.network = network
        self.n_mels = config.in_channels
        self.front_end = front_end_of(config)
        self.extractor = None

    def due(self, epoch):
        """True when epoch ``epoch`` (from 1) ends with a validation: every interval, and the last."""
        return epoch % self.interval == 0 or epoch == self.num_epochs

    def run(self, train_cell):
        """Score the trials with the current weights; return (VerificationResult, seconds).

        ``train_cell`` (the cell that holds the network) is set back to training mode.
        """
        start = time.perf_counter()
        try:
            if self.extractor is None:
                self.extractor = EmbeddingExtractor(self.network, self.n_mels, front_end=self.front_end)
            else:
                self.network.set_train(False)
            table, _ = extract_embeddings(self.extractor, self.utterances, self.root, description="validation")
        finally:
            train_cell.set_train(True)
        result = evaluate(score_trials(table, self.trials), self.labels)
        return result, time.perf_counter() - start
