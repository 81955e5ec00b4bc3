"""The training run: builds everything from the config, loops, logs, validates and checkpoints."""
import logging
import sys
import time

import numpy as np
from mindspore import Tensor, nn

from src.checkpoint import weights_fingerprint
from src.config import ConfigError, format_config, require_dirs, require_files
from src.data.dataset import create_train_dataset, training_batches
from src.cli import USAGE_ERROR_STATUS, exit_now
from src.errors import InputError
from src.interrupts import Interrupted, StopRequests, signal_name
from src.kernels.network import apply_cpu_kernels
from src.model import build_embedding_network, build_head, count_parameters, model_entry
from src.model.speaker_loss import SpeakerLoss
from src.device import (amp_level, apply_mixed_precision, conv_impl, init_context,
                         init_data_parallel, launched_distributed)
from src.train.batch_feed import BatchFeed, DataStallError, DataWorkerDiedError
from src.train.folder_lock import claim_folder, release_folder
from src.train.lr_schedule import cyclic_lr, half_cycle_steps
from src.train.margin_schedule import MarginSchedule
from src.train.run_folder import (BEST_BY_EER, BEST_BY_LOSS, CheckpointManager, TrainingState, initialise_from,
                                  last_checkpoint, prepare_checkpoint_folder)
from src.train.run_record import RunRecord
from src.train.step import TrainStep
from src.train.validation import Validator

LOGGER = logging.getLogger("train")


# The figures of a log line, in its order; each also goes to the run's record (src/train/run_record.py).
LOGGED_FIGURES = ("loss", "accuracy", "learning_rate", "samples_per_second", "skipped", "loss_scale", "margin",
                  "grad_norm", "data_wait")


class TrainingError(InputError):
    """A run that trained nothing (every step skipped)."""


class _Progress:
    """Running sums between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self, waited=0.0):
        """Start a window; ``waited``: the seconds the loop had waited for batches so far."""
        self.loss = 0.0
        self.correct = 0.0
        self.samples = 0
        self.steps = 0
        self.started = time.perf_counter()
        self.waited = waited

    def add(self, loss, correct, samples):
        self.loss += loss
        self.correct += correct
        self.samples += samples
        self.steps += 1


def _progress_bar(total, initial):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def train(config):
    """Train the configured model; returns the path of the last checkpoint saved (rank 0).

    Rank 0 holds ``ckpt_save_dir`` for the whole run (src/train/folder_lock.py).
    """
    require_files(config, "train_list")
    require_dirs(config, "train_path")
    distributed = launched_distributed()
    device = init_context(config, distributed)
    rank, group_size = init_data_parallel() if distributed else (0, 1)
    if rank != 0:
        return _train(config, device, distributed, rank, group_size)
    with claim_folder(config.ckpt_save_dir):
        LOGGER.info("settings:\n%s", format_config(config))
        return _train(config, device, distributed, rank, group_size)


def _train(config, device, distributed, rank, group_size):
    """Build the network, data, head and optimizer; resume or initialise; run the loop."""
    prefix = model_entry(config).checkpoint_prefix
    impl = conv_impl(config, device)
    precision = amp_level(config, device)
    network = apply_mixed_precision(build_embedding_network(config, impl), precision)
    apply_cpu_kernels(network, config.cpu_kernels, device, config.num_threads, precision, input_gradient=False)
    validator = Validator(config, network) if config.valid_list and rank == 0 else None
    if config.init_from:
        require_files(config, "init_from")

    checkpoint_file = prepare_checkpoint_folder(config.ckpt_save_dir, config.resume, config.overwrite_checkpoints) \
        if rank == 0 else _resume_path_of_worker(config)
    state = TrainingState(checkpoint_file) if checkpoint_file else None
    start_step = state.trained_steps if state else 0
    dataset, steps_per_epoch = create_train_dataset(config, rank, group_size, start_step)
    loss_net = SpeakerLoss(network, build_head(config, dataset.class_num))
    LOGGER.info("device %s (rank %d of %d), conv %s, amp %s; %s embedding network %.2f M parameters, "
                "%s head %.2f M (%d classes)", device, rank, group_size, impl, precision, config.model,
                count_parameters(network) / 1e6, config.head, count_parameters(loss_net.head) / 1e6,
                dataset.class_num)
    margins = MarginSchedule.from_config(config, steps_per_epoch)
    if not margins.fixed and not hasattr(loss_net.head, "set_margin"):
        raise ConfigError(f"margin_warmup_end: the {config.head} head has no margin to schedule")
    if not margins.fixed and config.margin_warmup_end > config.num_epochs:
        LOGGER.warning("margin_warmup_end %d is after the last epoch (num_epochs %d): the margin ends at "
                       "%.3f, not aam_margin %g, and no checkpoint is 'best' (it compares epochs at the "
                       "final margin); shorten the warm-up for a short run (margin_warmup_end 0 fixes the "
                       "margin)", config.margin_warmup_end, config.num_epochs,
                       margins(steps_per_epoch * config.num_epochs - 1), config.aam_margin)
    if state is None and config.init_from:
        LOGGER.info("%s", initialise_from(config.init_from, loss_net))
    run_settings = {"minibatch_size": config.minibatch_size, "num_epochs": config.num_epochs,
                    "group_size": group_size, "steps_per_epoch": steps_per_epoch}
    if state:
        state.check_run_settings(run_settings)
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    if start_step >= total_steps:
        LOGGER.info("%s already holds all %d steps; nothing to train", checkpoint_file, total_steps)
        return checkpoint_file
    rates = cyclic_lr(config.base_lrate, config.max_lrate,
                      half_cycle_steps(config.lr_step_size, steps_per_epoch),
                      steps_per_epoch * config.num_epochs, config.lr_mode)
    optimizer = nn.Adam(loss_net.trainable_params(), learning_rate=Tensor(np.array(rates, np.float32)),
                        weight_decay=config.weight_decay)
    loss_scale = config.loss_scale if precision != "O0" and device != "CPU" else 1.0
    step_cell = TrainStep(loss_net, optimizer, config.grad_clip, loss_scale, distributed)
    step_cell.set_train(True)
    if state:
        state.restore(step_cell)
        LOGGER.info("resumed from %s at step %d", checkpoint_file, start_step)
    manager = CheckpointManager(config.ckpt_save_dir, config.keep_checkpoint_max, prefix,
                                BEST_BY_EER if validator else BEST_BY_LOSS) if rank == 0 else None
    record = RunRecord(config.ckpt_save_dir, start_step, config.as_dict(), config.tensorboard) if rank == 0 else None
    try:
        return _loop(config, step_cell, optimizer, rates, dataset, steps_per_epoch, start_step, total_steps,
                     manager, run_settings, margins, validator, record)
    finally:
        if record is not None:
            record.close()


def _resume_path_of_worker(config):
    """The checkpoint a rank other than 0 resumes from: the one rank 0 resumes (it checks the folder)."""
    if config.resume == "auto":
        return last_checkpoint(config.ckpt_save_dir)
    return config.resume or None


def _set_margin(head, margin, current):
    """Give ``head`` the margin ``margin`` unless it has it already; return the margin in use."""
    if margin != current and hasattr(head, "set_margin"):
        head.set_margin(margin)
    return margin


def _validate(validator, step_cell, epoch, step, window, record):
    """Score the validation list; log (and ``record``, when rank 0's) and return the EER (a fraction).
    Its time is kept out of ``window``."""
    result, seconds = validator.run(step_cell)
    window.started += seconds
    if record is not None:
        record.validation(step, epoch, result.eer, {p: value for p, (value, _) in result.min_dcf.items()})
    dcf = ", ".join(f"minDCF(p={p:g}) {value:.4f}" for p, (value, _) in sorted(result.min_dcf.items()))
    LOGGER.info("epoch %d validation: EER %.2f%%, %s (%d trials, %.1f s)", epoch, 100 * result.eer, dcf,
                len(validator.trials), seconds)
    return result.eer


class _Position:
    """Where the loop is, for the watch thread that may end the run while the loop waits for a batch:
    the global step reached, the last checkpoint saved and its step."""

    def __init__(self, step):
        self.first = self.step = step
        self.saved = self.saved_step = None


def _save_position(manager, step_cell, steps_per_epoch, run_settings, position):
    """The checkpoint of ``position.step``: the last one saved if it is that step's, else a new one;
    None on ranks other than 0 (``manager`` None) and when this run has trained no step."""
    if manager is None or position.step == position.first:
        return None
    if position.saved_step != position.step:
        epoch, step_in_epoch = divmod(position.step - 1, steps_per_epoch)
        position.saved = manager.save(step_cell, epoch + 1, step_in_epoch + 1, position.step, None, run_settings)
        position.saved_step = position.step
        LOGGER.info("saved %s", position.saved)
    return position.saved


def _stopped(signum, feed, manager, step_cell, steps_per_epoch, run_settings, position):
    """The error ending a run stopped by signal ``signum``, its position saved: Interrupted, or
    DataWorkerDiedError when the signal is MindSpore's answer to a data worker process that ended."""
    path = _save_position(manager, step_cell, steps_per_epoch, run_settings, position)
    epoch, step_in_epoch = divmod(position.step - 1, steps_per_epoch)
    where = (f"at epoch {epoch + 1} step {step_in_epoch + 1} (global {position.step})"
             if position.step > position.first else f"before this run's first step (global {position.step})")
    resume = (f", saved {path}; --resume=auto continues" if path else "; rank 0 saves the position" if manager is None
              else "; nothing was trained in this run")
    dead = feed.dead_workers()
    if dead:
        return DataWorkerDiedError(
            f"a data worker process ended during training (killed, or out of memory?): MindSpore stopped the run "
            f"with {signal_name(signum)} and ended the other workers (gone: {', '.join(map(str, dead))}); "
            f"stopped {where}{resume}")
    return Interrupted(signum, f"interrupted by {signal_name(signum)} {where}{resume}")


def _leave_stuck_run(signum, feed, manager, step_cell, steps_per_epoch, run_settings, position):
    """From the watch thread, end a run whose loop waits on a stuck pipeline (src/train/batch_feed.py):
    save the position, print the error, have the workers killed after the exit, exit at once."""
    if signum is not None:
        error = _stopped(signum, feed, manager, step_cell, steps_per_epoch, run_settings, position)
    else:
        path = _save_position(manager, step_cell, steps_per_epoch, run_settings, position)
        where = ("nothing was trained in this run" if position.step == position.first else
                 f"position saved in {path}; once the data reads, --resume=auto continues" if path else
                 "rank 0 saves the position")
        error = DataStallError(f"the data pipeline delivered no batch for {feed.timeout} s (data_timeout): "
                               f"{feed.describe_workers()}; {where}")
    if manager is not None:
        release_folder(manager.folder)
    feed.end_workers_after_exit()
    exit_now(error, error.status if isinstance(error, Interrupted) else USAGE_ERROR_STATUS)


def _loop(config, step_cell, optimizer, rates, dataset, steps_per_epoch, step, total_steps, manager,
          run_settings, margins, validator=None, record=None):
    """Run steps ``step..total_steps-1``; set the margin, log (and ``record``: rank 0's RunRecord),
    validate and checkpoint on the way."""
    window = _Progress()
    epoch_sums = _Progress()  # the steps of this epoch (since the resume, in a resumed epoch)
    skipped = 0
    group_size = run_settings["group_size"]
    bar = _progress_bar(total_steps, step)
    first_step = step
    head = step_cell.loss_net.head
    margin = None
    # Device outputs of the steps not read yet: (loss, correct, was_skipped, samples). Reading a
    # value waits for its step, so they are read only where a log line, checkpoint or
    # validation needs them; in between, an accelerator queues step after step.
    unread = []
    position = _Position(step)
    feed = BatchFeed(training_batches(dataset), config.data_timeout,
                     lambda signum: _leave_stuck_run(signum, feed, manager, step_cell, steps_per_epoch, run_settings,
                                                     position))
    try:
        # Starting MindSpore's data pipeline installs its own SIGTERM and SIGINT handlers (which end
        # the process with status 0), so the run's own go in once the first batch is there.
        batch = feed.next()
        with StopRequests() as stop:
            while batch is not None and step < total_steps:
                features, labels = batch
                margin = _set_margin(head, margins(step), margin)
                loss, correct, was_skipped, scale, norm = step_cell(features, labels)
                stop.reclaim()
                unread.append((loss, correct, was_skipped, features.shape[0] * group_size))
                step += 1
                position.step = step
                epoch, step_in_epoch = divmod(step - 1, steps_per_epoch)
                epoch, step_in_epoch = epoch + 1, step_in_epoch + 1
                end_of_epoch = step_in_epoch == steps_per_epoch
                periodic = config.save_checkpoint_steps and step % config.save_checkpoint_steps == 0
                logging_step = step % config.log_interval == 0 or step == total_steps
                if step == first_step + 1 or logging_step or end_of_epoch or periodic:
                    for index, (loss, correct, was_skipped, samples) in enumerate(unread):
                        loss_value, correct_value = float(loss.asnumpy()), float(correct.asnumpy())
                        skipped += int(was_skipped.asnumpy())
                        epoch_sums.add(loss_value, correct_value, samples)
                        if step > first_step + 1 or index > 0:
                            window.add(loss_value, correct_value, samples)
                    unread = []
                    if step == first_step + 1:
                        # Log windows start after the first step so samples/s excludes graph compilation.
                        LOGGER.info("first step, including graph compilation, took %.1f s",
                                    time.perf_counter() - window.started)
                        window.reset(feed.waited)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss_value:.3f}", epoch=epoch)
                if bar is not None:
                    bar.update(1)
                if logging_step and window.steps:
                    elapsed = time.perf_counter() - window.started
                    rate_index = min(int(optimizer.global_step.asnumpy()[0]), len(rates)) - 1
                    figures = {"loss": window.loss / window.steps,
                               "accuracy": 100.0 * window.correct / window.samples * group_size,
                               "learning_rate": rates[max(rate_index, 0)],
                               "samples_per_second": window.samples / elapsed,
                               "skipped": skipped, "loss_scale": float(scale.asnumpy()), "margin": margin,
                               "grad_norm": float(norm.asnumpy()),
                               "data_wait": 100.0 * (feed.waited - window.waited) / elapsed}
                    LOGGER.info("epoch %d step %d/%d (global %d) loss %.4f acc %.2f%% lr %.3e samples/s %.1f "
                                "skipped %d scale %.0f margin %.4f grad %.4g wait %.1f%%", epoch, step_in_epoch,
                                steps_per_epoch, step, *(figures[key] for key in LOGGED_FIGURES))
                    if record is not None:
                        record.step(step, epoch, **figures)
                    window.reset(feed.waited)
                validating = validator is not None and end_of_epoch and validator.due(epoch)
                valid_eer = _validate(validator, step_cell, epoch, step, window, record) if validating else None
                # A signal saves the position too (src/interrupts.py).
                if manager is not None and (end_of_epoch or periodic or step == total_steps or stop.signal_name):
                    # Losses of epochs at a smaller margin are lower for that alone: 'best' skips them.
                    comparable = end_of_epoch and margins.final_from((epoch - 1) * steps_per_epoch)
                    epoch_loss = epoch_sums.loss / epoch_sums.steps if comparable else None
                    position.saved = manager.save(step_cell, epoch, step_in_epoch, step, epoch_loss, run_settings,
                                                  valid_eer)
                    position.saved_step = step
                    LOGGER.info("saved %s", position.saved)
                    record.flush()  # the events up to a checkpoint are on disk once it is
                if end_of_epoch:
                    if record is not None:
                        record.epoch(step, epoch, loss=epoch_sums.loss / epoch_sums.steps,
                                     accuracy=100.0 * epoch_sums.correct / epoch_sums.samples * group_size,
                                     seconds=time.perf_counter() - epoch_sums.started)
                    epoch_sums.reset()
                if stop.signal_name:
                    raise _stopped(stop.signum, feed, manager, step_cell, steps_per_epoch, run_settings, position)
                batch = feed.next() if step < total_steps else None
    finally:
        feed.close()
        feed.release_workers()
    saved = position.saved
    skipped += sum(int(was_skipped.asnumpy()) for _, _, was_skipped, _ in unread)
    if bar is not None:
        bar.close()
    if skipped and skipped == step - first_step:
        raise TrainingError(f"every one of the {skipped} steps of this run was skipped because of non-finite "
                            f"gradients, so the weights in {saved} are not trained; check the data, "
                            "max_lrate, aam_scale and loss_scale")
    if skipped:
        LOGGER.warning("%d steps were skipped because of non-finite gradients", skipped)
    LOGGER.info("finished at step %d; weights fingerprint %s", step, weights_fingerprint(step_cell.loss_net))
    return saved
