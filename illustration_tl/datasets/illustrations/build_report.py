"""What a build tells the user: ``skipped.tsv``, ``build_report.json`` and the log.

Every file left out (unreadable, hidden, outside the layout, over ``max_pixels``) is
listed with its reason in ``skipped.tsv`` next to the dataset; ``build_report.json``
counts files, skips, duplicates and examples per split.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from absl import logging

from illustration_tl.core import files

SKIPPED_FILE = "skipped.tsv"
REPORT_FILE = "build_report.json"
LOGGED_SKIPS = 200  # skipped files listed one per line in the build log


def first_skips(skipped: Sequence[tuple[str, str]], n: int = 2) -> str:
    """The first ``n`` skipped files and reasons, for an error message (or "")."""
    if not skipped:
        return ""
    shown = "; ".join(f"{name}: {reason}" for name, reason in sorted(skipped)[:n])
    more = f"; ... see {SKIPPED_FILE}" if len(skipped) > n else ""
    return f" ({shown}{more})"


def write_report(data_dir: str, skipped: Sequence[tuple[str, str]], report: dict) -> None:
    """``skipped.tsv`` (file, reason) and ``build_report.json`` next to the dataset."""
    lines = ["file\treason\n"] + [
        f"{files.display_name(name)}\t{files.display_name(reason)}\n"
        for name, reason in sorted(skipped)]
    files.atomic_write(os.path.join(data_dir, SKIPPED_FILE), "".join(lines))
    files.atomic_write(os.path.join(data_dir, REPORT_FILE),
                       json.dumps(report, indent=2, default=list))


def log_skipped(config_name: str, skipped: Sequence[tuple[str, str]], final_dir: str) -> None:
    """The skipped files in the build log: the count, then up to :data:`LOGGED_SKIPS`."""
    logging.info("illustrations/%s: %d files skipped (listed in %s)", config_name,
                 len(skipped), os.path.join(final_dir, SKIPPED_FILE))
    for name, reason in sorted(skipped)[:LOGGED_SKIPS]:
        logging.info("  skipped %s: %s", name, reason)
    if len(skipped) > LOGGED_SKIPS:
        logging.info("  ... and %d more", len(skipped) - LOGGED_SKIPS)
