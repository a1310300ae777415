"""absl entry points, one per pipeline stage; see ``illustration_tl.cli``.

Importing this package makes the console quiet before TensorFlow is imported
(TensorFlow reads its C++ log level once, at import): no C++ log lines, no
oneDNN/CUDA notices and no tqdm bars, unless the user asked for ``--verbosity``
(absl's flag) or set ``TF_CPP_MIN_LOG_LEVEL`` / ``TQDM_DISABLE`` themselves.
"""

import os
import sys


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
                return {"debug": True, "info": True}.get(value.lower(), False)
    return False


VERBOSE = _verbose(sys.argv)
if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "1")
