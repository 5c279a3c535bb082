"""The one error type users see: a one-line message naming the problem and the fix."""


class PimgptError(ValueError):
    """Base class of every user-facing error; the CLI prints it on one line and exits 1."""
