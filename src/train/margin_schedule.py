"""The AAM margin of each training step: fixed, or rising over a span of epochs.

With ``margin_warmup_end`` 0 the margin is ``aam_margin`` throughout. Otherwise it is
``aam_margin_start`` before epoch ``margin_warmup_start`` (counted from 0), ``aam_margin``
from epoch ``margin_warmup_end`` on, and in between rises exponentially, step by step, as
WeSpeaker's exponential margin scheduler does: at the fraction t of the warm-up steps done,

    margin = start + (final - start) * (1 - 0.001 ** t) / (1 - 0.001)

which covers most of the rise early in the span (half of it by t = 0.1) and ends exactly at
the final margin. The margin is a function of the global step alone, so a resumed run
(whose step count the checkpoint restores) continues with exactly the margins of an
uninterrupted run.
"""

# 0.001 ** t: the remaining share of the rise after the fraction t of the warm-up.
_FLOOR = 1e-3


class MarginSchedule:
    """Margin (radians) of each global step (0-based) of a run of ``steps_per_epoch`` steps per epoch."""

    def __init__(self, start_margin, final_margin, start_epoch, end_epoch, steps_per_epoch):
        self.start_margin = start_margin
        self.final_margin = final_margin
        self.start_step = start_epoch * steps_per_epoch
        self.end_step = end_epoch * steps_per_epoch
        self.fixed = end_epoch == 0

    @classmethod
    def from_config(cls, config, steps_per_epoch):
        """The schedule of the ``aam_margin``, ``aam_margin_start`` and ``margin_warmup_*`` settings."""
        return cls(config.aam_margin_start, config.aam_margin, config.margin_warmup_start,
                   config.margin_warmup_end, steps_per_epoch)

    def final_from(self, step):
        """True when step ``step`` (0-based) and every later one have the final margin."""
        return self.fixed or step >= self.end_step

    def __call__(self, step):
        if self.fixed or step >= self.end_step:
            return self.final_margin
        if step < self.start_step:
            return self.start_margin
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        rise = (1.0 - _FLOOR ** progress) / (1.0 - _FLOOR)
        return self.start_margin + (self.final_margin - self.start_margin) * rise
