"""One way to fail: a clear line on stderr, exit code 2, no traceback.

Library code raises `UsageError` for anything the user can fix (a path, an option, a file);
`cli` turns it into one line naming what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence


class UsageError(Exception):
    """Bad input the user can fix. The message is the whole explanation: name the thing, say what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one `error:` line (via UsageError) instead of usage + error."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def first_line(error: BaseException) -> str:
    """An exception's first line, cut to 200 characters, to quote inside a one-line UsageError."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def cli(main: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's `main(argv)` so user errors exit 2 with one line and Ctrl-C exits 130 quietly."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as interrupt:  # its message, if any, says what was kept and how to go on
            print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
            return 130

    return wrapped
