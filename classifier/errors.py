"""One way to fail: a clear line on stderr, exit code 2, no traceback.

Library code raises `UsageError` for anything the user can fix (a path, an option, a file);
`cli` turns it into one line naming what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import functools
from typing import Callable, Sequence

from .console import say


class UsageError(Exception):
    """Bad input the user can fix. The message is the whole explanation: name the thing, say what to do."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), to quote inside a one-line UsageError."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one `error:` line (via UsageError) instead of usage + error."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def cli(main: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's `main(argv)` so user errors exit 2 with one line and Ctrl-C exits 130 quietly."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UsageError as error:
            say(f"error: {error}")
            return 2
        except KeyboardInterrupt as interrupt:  # its message, if any, says what was kept and how to go on
            say(f"interrupted: {interrupt}" if str(interrupt) else "interrupted")
            return 130

    return wrapped
