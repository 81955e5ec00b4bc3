"""The base class of every error caused by the user's input rather than by a bug.

Entry scripts catch :class:`InputError` and print its message as one line, so a
wrong setting, list line or audio file never surfaces as a stack trace.
"""


class InputError(ValueError):
    """Bad input (setting, list file, audio, checkpoint) with a message naming the culprit."""
