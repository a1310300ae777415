"""Shared by the hostile tests: a per-test time limit, so a hang (a FIFO opened for
reading, an endless read) fails one test instead of stalling the suite."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raises ``TimeoutError`` in the test if it runs longer than ``seconds`` (SIGALRM)."""

    def expired(signum, frame):
        raise TimeoutError(f"test took over {seconds} s: a hang?")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
