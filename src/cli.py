"""Running a command-line program so that bad input ends in one clear line, not a stack trace.

Every program of the project (the top-level scripts, ``scripts/*.py``) builds its options
with :class:`ArgumentParser` and runs through :func:`run_main`: bad input of any kind, a
misspelt option included, prints one line ``error: <what, where>`` and exits with status 1.
"""
import argparse
import difflib
import logging
import os
import sys

from src.errors import InputError
from src.interrupts import Interrupted, interrupt_on_signals

USAGE_ERROR_STATUS = 1


class UsageError(InputError):
    """A command line that names an unknown option, misses a required one or has a bad value."""


def _unknown_options(message):
    """The option names (``--name``) of argparse's 'unrecognized arguments' message."""
    listed = message.split(":", 1)[1] if ":" in message else ""
    return [word.split("=", 1)[0] for word in listed.split() if word.startswith("-")]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors raise :class:`UsageError` instead of printing the usage and exiting 2.

    An unknown option is reported with the closest known one, when there is one:
    ``unknown option --chanels (did you mean --channels?)``. ``--help`` works as usual.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments"):
            known = [option for option in self._option_string_actions if option.startswith("--")]
            parts = []
            for option in _unknown_options(message):
                close = ([name for name in known if name.startswith(option)][:1]
                         or difflib.get_close_matches(option, known, n=1, cutoff=0.75))
                hint = f" (did you mean {close[0]}?)" if close else ""
                parts.append(f"{option}{hint}")
            if parts:
                raise UsageError(f"unknown option {', '.join(parts)}; see --help")
        raise UsageError(" ".join(message.split()) + "; see --help")


def setup_logging():
    """Log INFO lines with a timestamp to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")


def exit_now(error, status):
    """Print ``error``'s line as :func:`run_main` does and end the process at once, from any thread and
    without exit handlers: for a training whose data pipeline is stuck (src/train/batch_feed.py)."""
    print(f"error: {error}" if isinstance(error, InputError) else str(error), file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_main(main, *args):
    """Call ``main(*args)``; an InputError prints 'error: <message>' and exits with status 1.

    A ``main`` that returns an integer exits with it as the status. SIGTERM and SIGINT
    (Ctrl-C) stop it with their line, 'interrupted by SIGTERM ...', and the shell's status
    143 / 130 (see src/interrupts.py).
    """
    setup_logging()
    try:
        with interrupt_on_signals():
            status = main(*args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USAGE_ERROR_STATUS)
    except Interrupted as interruption:
        print(interruption, file=sys.stderr)
        sys.exit(interruption.status)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)
