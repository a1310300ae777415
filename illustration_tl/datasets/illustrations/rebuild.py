"""``build --overwrite``: the new dataset is built beside the old one and replaces it
only once complete, so a failed build leaves the old dataset as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

import tensorflow_datasets as tfds

from illustration_tl.core import files
from illustration_tl.datasets.illustrations import beam_mode


def rebuild_then_swap(old: Any, make_builder: Callable[[str], Any], manual_dir: str,
                      beam_options: Sequence[str] | None = None) -> Any:
    """``--overwrite`` of an existing dataset: the new one is built beside it, and only
    when it is complete does it replace the old one (which a failed build leaves as
    it was). ``make_builder(data_dir)`` gives a builder of the same config; the one
    returned reads the rebuilt dataset."""
    final_dir = os.fspath(old.data_dir)  # <root>/illustrations/<config>/<version>
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.normpath(final_dir))))
    staging = tempfile.mkdtemp(dir=root, prefix=".illustrations-rebuild-")
    try:
        fresh = make_builder(staging)
        fresh.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, beam_options=beam_mode.pipeline_options(beam_options)))
        files.replace_dir(os.fspath(fresh.data_dir), final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return make_builder(root)
