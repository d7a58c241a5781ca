"""The one exception type a user is meant to see.

Code inside hpo raises :class:`HpoError` for problems the user can fix (a bad flag, a missing
file, an unreachable database). The CLI prints its message, which is one sentence naming the
problem and the fix, and exits non-zero without a traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class HpoError(Exception):
    """A problem the user can fix; ``str(error)`` is the sentence the CLI prints."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: BaseException, *, typed: bool = False, limit: int | None = None) -> str:
    """The first line of ``error``'s message, for a sentence that quotes it: its type's name if
    it has none, prefixed with the type (``typed``), cut at ``limit`` characters."""
    lines = str(error).strip().splitlines()
    name = type(error).__name__
    if not lines:
        return name
    text = f"{name}: {lines[0]}" if typed else lines[0]
    return text[:limit] if limit is not None else text
