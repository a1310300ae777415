"""absl entry points, one per pipeline stage; see ``illustration_tl.cli``.

Importing this package makes the console quiet before TensorFlow is imported,
unless the user asked for ``--verbosity`` (absl's flag, 0 or more):

* ``TF_CPP_MIN_LOG_LEVEL=3`` and ``TQDM_DISABLE=1`` (no TFDS bars) unless the
  user set them;
* TensorFlow >= 2.19 logs its import-time notices (oneDNN, CUDA drivers,
  cuInit) through absl's C++ logging before it is initialized, which ignores
  ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442). So the first
  ``import tensorflow`` and its device discovery run with file descriptor 2
  pointed at /dev/null; Python errors still propagate as usual.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from typing import Any, Iterator


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


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2 (what C++ code writes to) at /dev/null for a while."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` (and device discovery) with stderr silenced.

    Stays installed until TensorFlow actually loads: libraries probe for it with
    ``importlib.util.find_spec("tensorflow")`` long before TFDS imports it lazily.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        hook = self

        def quiet_exec(module: Any) -> None:
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            with stderr_silenced():
                exec_module(module)
                module.config.list_physical_devices()

        spec.loader.exec_module = quiet_exec  # type: ignore[method-assign]
        return spec


VERBOSE = _verbose(sys.argv)
if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())
