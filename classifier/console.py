"""Where progress and warnings go: one convention for the whole package.

Library functions that report take a `log` parameter, a callable given one line per call, whose
default is `say` (the line on stderr). A caller passes its own to keep the lines (a list's
`append`, a web page's queue), `silent` to drop them, or `print` where the lines are a command's
output (train, evaluate and export print theirs on stdout). Results a command prints stay on stdout.

`Progress` is the one exception to one-line-per-call: on a terminal it redraws a counter in place
on stderr; everywhere else it hands `log` a single closing line. A caller that draws its own
progress (the web page's Train tab) passes `on_update`, called with the `Progress` at every update.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

Log = Callable[[str], None]


def say(line: str) -> None:
    """The default `log`: the line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


def silent(line: str) -> None:
    """A `log` that drops every line (and turns `Progress` off)."""


class Progress:
    """A counter of bytes (or any `unit`): redrawn in place on stderr when stderr is a terminal and
    `log` is not `silent`, else one closing line through `log`; `on_update(progress)` after every update."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        log: Log = say,
        unit: str = "bytes",
        on_update: Optional[Callable[["Progress"], None]] = None,
    ):
        self.label, self.total, self.log, self.unit, self.on_update = label, total, log, unit, on_update
        self.live = log is not silent and sys.stderr.isatty()
        self.done, self._drawn_at, self._started = 0, 0.0, time.monotonic()

    @property
    def rate(self) -> float:
        """Units per second so far."""
        return self.done / max(time.monotonic() - self._started, 1e-9)

    @property
    def seconds_left(self) -> float | None:
        """At the rate so far, seconds until `total`; None without a total or before the first unit."""
        return (self.total - self.done) / self.rate if self.total and self.done else None

    def update(self, done: int) -> None:
        self.done = done
        if self.on_update is not None:  # may raise (a cancelled job): the caller's loop stops there
            self.on_update(self)
        now = time.monotonic()
        if self.live and now - self._drawn_at >= 0.1:  # at most ten redraws a second
            self._drawn_at = now
            print(f"\r{self._line()}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(f"\r{self._line()}", file=sys.stderr, flush=True)  # the final count, and a newline
        else:
            self.log(self._line())

    def _amount(self, count: float) -> str:
        return f"{count / 1e6:.1f} MB" if self.unit == "bytes" else f"{count:,.0f} {self.unit}"

    def _line(self) -> str:
        speed = f", {self._amount(self.rate)}/s"
        if not self.total:
            return f"{self.label}: {self._amount(self.done)}{speed}"
        filled = min(30, 30 * self.done // self.total)
        percent = 100 * self.done // self.total
        return f"{self.label}: [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}% of {self._amount(self.total)}{speed}"
