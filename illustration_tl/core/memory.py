"""Peak resident memory of this process, per stage (issue 21: ``fit``'s per-stage peak
RSS in ``fit.json``).

Linux keeps the peak (``VmHWM`` in ``/proc/self/status``) and resets it to the current
size when ``5`` is written to ``/proc/self/clear_refs`` (proc(5)): :func:`reset_peak`
before a stage and :func:`peak_bytes` after it give that stage's own peak. Elsewhere
both are no-ops and the peak is ``None``.
"""

from __future__ import annotations

STATUS, CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"


def peak_bytes() -> int | None:
    """The process's peak resident set since start or the last :func:`reset_peak`."""
    try:
        with open(STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Resets the peak to the current resident set; False where the system cannot."""
    try:
        with open(CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False
