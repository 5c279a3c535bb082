"""The one error type users see: a one-line message naming the problem and the fix."""


class PimgptError(ValueError):
    """Base class of every user-facing error; the CLI prints it on one line and exits 1."""


def plural(n: int, noun: str) -> str:
    """``"1 token"``, ``"2 tokens"``: a count and its noun for messages (regular plurals only).

    Examples
    --------
    >>> plural(1, "prompt token"), plural(3, "new token")
    ('1 prompt token', '3 new tokens')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
