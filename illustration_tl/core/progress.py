"""Progress lines for long work: counts, rate and ETA, as plain text on stderr."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    """Prints ``done/total images, images/s, ETA`` at most every ``interval`` seconds
    (``unit``: what is counted, ``images`` unless said) on ``stream`` (stderr), or hands
    each line to ``log`` (a command's or the API's logger: quiet when it is)."""

    def __init__(self, label: str, total: int | None = None, interval: float = 5.0,
                 stream: TextIO | None = None, unit: str = "images",
                 log: Callable[[str], None] | None = None) -> None:
        self.label, self.total, self.interval, self.unit = label, total, interval, unit
        self.stream = stream if stream is not None else sys.stderr
        self.log = log
        self.done = 0
        self._printed = -1  # ``done`` at the last printed line: the final line prints once
        self.start = self._last = time.perf_counter()

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.perf_counter()
        if (force and self.done != self._printed) or now - self._last >= self.interval:
            self._last, self._printed = now, self.done
            if self.log is not None:
                self.log(self.line())
                return
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        text = f"{self.label}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
            if rate > 0 and self.done < self.total:
                text += (f", {rate:.1f} {self.unit}/s, "
                         f"ETA {_duration((self.total - self.done) / rate)}")
            else:
                text += f", {rate:.1f} {self.unit}/s"
        else:
            text += f" {self.unit}, {rate:.1f} {self.unit}/s"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
