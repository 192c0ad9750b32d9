"""User-facing errors: the CLI prints them as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import difflib
from typing import Iterable


class I2IError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class ModelOutputError(I2IError):
    """A model gave values no image can show (NaN, infinity): the model's fault (damaged weights, a
    float16 overflow), not the input's."""


class UnknownNameError(I2IError, KeyError):
    """A name that no registry, config or catalogue knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``name`` (for 'did you mean' hints)."""
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if not matches:  # prefix/substring matches catch 'unet' -> 'unet_256'
        matches = [c for c in candidates if name.lower() in c.lower()][:n]
    return matches


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    matches = close_matches(name, candidates)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


def os_error_line(exc: OSError) -> str:
    """One line for an OSError a command met: what the system said, about which path, and what to do."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(n if len(n) <= 120 else n[:57] + "..." + n[-60:] for n in names)
    what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    return f"{what}{f' ({where})' if where else ''}: check the path, its folders and the free space"
