"""One way to fail: a clear line on stderr, exit code 2, no traceback.

Library code raises `UsageError` for anything the user can fix (a path, an option, a file);
`cli` turns it into one line naming what went wrong and what to do. A message that quotes what someone
sent (a name, a label, a file name) quotes it through `quoted` or `clipped`: at most `QUOTED_CHARS` of
it, so no error carries a long value back (or keeps it in memory with the error).
"""

from __future__ import annotations

import argparse
import functools
import reprlib
from typing import Callable, Sequence

from .console import say

QUOTED_CHARS = 60  # of a value someone sent, in a message about it
_REPR = reprlib.Repr()  # a short sketch of any value: a few items of a container, 60 characters of a string
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 2, 4, 4, QUOTED_CHARS, QUOTED_CHARS


class UsageError(Exception):
    """Bad input the user can fix. The message is the whole explanation: name the thing, say what to do."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), to quote inside a one-line UsageError."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def clipped(text: str, most: int = QUOTED_CHARS) -> str:
    """`text` as a message may show it: whole when short, else its first `most` characters and its length."""
    text = str(text)
    return text if len(text) <= most else f"{text[:most]}... ({len(text):,} characters)"


def quoted(value) -> str:
    """`value` quoted as `repr` would (a string in quotes), but at most `QUOTED_CHARS` of it, for a message."""
    if isinstance(value, str):
        return repr(value) if len(value) <= QUOTED_CHARS else f"{value[:QUOTED_CHARS]!r}... ({len(value):,} characters)"
    return _REPR.repr(value)  # a list or dict sent where a name was expected: a short sketch of it


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
