"""Shared plumbing for the absl entry points in ``trainers/``."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app

from illustration_tl.errors import UserError


def run(main: Callable[[Sequence[str]], int | None]) -> None:
    """``app.run(main)``, with :class:`UserError` shown as one line (exit 2)."""

    def guarded(argv: Sequence[str]) -> int | None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected positional arguments {list(argv[1:])}; "
                                 "every option is a --flag")
        try:
            return main(argv)
        except UserError as e:
            print(f"{_prog()}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{_prog()}: interrupted", file=sys.stderr)
            return 130

    app.run(guarded)


def _prog() -> str:
    """``illustration-tl map-names`` or ``map_names.py``: the name the user typed."""
    import os

    return os.path.basename(sys.argv[0])
