"""A quiet console for the CLI and the Python API: the one place that silences
TensorFlow's C++ logging, absl and tqdm (issue 23).

:func:`install` (called by :mod:`illustration_tl.commands` unless the user asked
for absl's ``--verbosity``, and by :mod:`illustration_tl.api` on import):

* ``TF_CPP_MIN_LOG_LEVEL=3`` and ``TQDM_DISABLE=1`` (no TFDS bars) unless the
  user set them;
* TensorFlow >= 2.19 logs its import-time notices (oneDNN, CUDA drivers,
  cuInit) through absl's C++ logging before it is initialized, which ignores
  ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442). So the first
  ``import tensorflow`` and its device discovery run with file descriptor 2
  pointed at /dev/null; Python errors still propagate as usual;
* :func:`quiet_python_loggers`: the libraries' Python log records below ERROR
  (TFDS and Keras log through absl) are dropped; this project's own warnings stay.

Progress is the caller's: plain lines (``fit``'s ``log``), never bars.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from typing import Any, Iterator


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


def install() -> None:
    """Quiet C++ logging and tqdm for the rest of this process (see the module doc);
    idempotent. Call it before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


_LIBRARIES = (f"{os.sep}tensorflow_datasets{os.sep}", f"{os.sep}tensorflow{os.sep}",
              f"{os.sep}keras{os.sep}", f"{os.sep}tf_keras{os.sep}")


def _from_library_below_error(record: Any) -> bool:
    """True for a log record below ERROR written by TensorFlow, TFDS or Keras code."""
    return record.levelno < logging.ERROR and any(p in record.pathname for p in _LIBRARIES)


def _keep(record: Any) -> bool:
    """The ``absl`` logger's filter: drops the libraries' records below ERROR."""
    return not _from_library_below_error(record)


def quiet_python_loggers() -> None:
    """Drops the libraries' INFO and WARNING records (TFDS and TensorFlow log through
    absl); this project's own absl warnings still show. Idempotent."""
    for name in ("tensorflow", "tensorflow_datasets", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    absl_logger = logging.getLogger("absl")
    if _keep not in absl_logger.filters:
        absl_logger.addFilter(_keep)
