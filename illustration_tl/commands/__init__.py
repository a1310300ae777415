"""absl entry points, one per pipeline stage; see ``illustration_tl.cli``.

Importing this package makes the console quiet before TensorFlow is imported
(:func:`illustration_tl.core.quiet.install`), unless the user asked for
``--verbosity`` (absl's flag, 0 or more).
"""

from __future__ import annotations

import sys

from illustration_tl.core import quiet


def _verbose(argv: list[str]) -> bool:
    """True when ``argv`` sets absl's ``--verbosity``/``-v`` to 0 (INFO) or more."""
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-verbosity", "--v", "-v"):
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            try:
                return int(value) >= 0
            except ValueError:
                return value.lower() in ("debug", "info")
    return False


VERBOSE = _verbose(sys.argv)
if not VERBOSE:
    quiet.install()
