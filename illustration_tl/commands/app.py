"""Shared plumbing for the absl entry points in ``illustration_tl.commands``."""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags
from absl import logging as absl_logging

from illustration_tl.commands import VERBOSE
from illustration_tl.core import presets, quiet
from illustration_tl.errors import UserError

flags.DEFINE_string("preset", None, "A named preset shipped with the package (see "
                    "`illustration-tl presets`); its flags stand where --preset does, so "
                    "later flags override them.")


USAGE_EXIT_CODE = 2
"""Exit status of every user mistake: a bad flag, a bad value, a missing file."""


def run(main: Callable[[Sequence[str]], int | None]) -> None:
    """``app.run(main)`` with presets expanded, quiet logs, and every user mistake as one
    line and exit 2: :class:`UserError`, flag-parse errors (unknown flag, bad value) and
    positional arguments. ``--help``, ``--helpshort`` and ``--helpfull`` exit 0."""
    try:
        sys.argv = [sys.argv[0]] + presets.expand(sys.argv[1:])
    except UserError as e:
        _fail(str(e))

    def guarded(argv: Sequence[str]) -> int | None:
        if len(argv) > 1:
            _fail(f"unexpected positional arguments {list(argv[1:])}; every option is a "
                  "--flag")
        if not VERBOSE:
            absl_logging.set_verbosity(absl_logging.WARNING)
            quiet.quiet_python_loggers()
        try:
            return main(argv)
        except UserError as e:
            print(f"{_prog()}: error: {e}", file=sys.stderr)
            return USAGE_EXIT_CODE
        except KeyboardInterrupt:
            print(f"{_prog()}: interrupted", file=sys.stderr)
            return 130

    app.run(guarded, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a parse error as one line and exit 2 (absl prints two
    lines and exits 1), and help exiting 0 (absl exits 1 after printing it)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(f"{' '.join(str(e).split())} (see `{_prog()} --helpshort`)")
    except SystemExit as e:
        # While parsing, only the help flags exit (with 1, after printing the help).
        sys.exit(0 if e.code == 1 else e.code)


def _fail(message: str) -> NoReturn:
    print(f"{_prog()}: error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def _prog() -> str:
    """``illustration-tl map-names`` or ``map_names.py``: the name the user typed."""
    return os.path.basename(sys.argv[0])
