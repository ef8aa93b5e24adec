"""One exception type for everything a user can get wrong.

The CLI turns an :class:`LrlError` into a single line on stderr and a non-zero exit code, with no traceback
. Library code raises it with a message that says what is wrong and what to do.
"""

from __future__ import annotations


class LrlError(Exception):
    """A user-facing error: bad recipe, bad checkpoint, unreachable server, ..."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RecipeError(LrlError):
    """The recipe (or an override) is invalid. Exit code 2, like a usage error."""

    exit_code = 2


class RunStateError(LrlError):
    """The run directory is in a state the command cannot act on (no checkpoint yet, budget already reached).
    Exit code 2: like a usage error, nothing is written."""

    exit_code = 2
