"""Shared by tests that need a real (tiny) ``fit`` run folder: three openclipart classes
from ``tests/fixtures``, random VGG16 weights at 32 px, one resize mode."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


def tiny_fit_run(tmp_path: pathlib.Path, classes=("bird", "flower", "house")
                 ) -> tuple[pathlib.Path, pathlib.Path]:
    """Runs ``illustration-tl fit`` on a copy of ``classes``; returns (images, run)."""
    images = tmp_path / "images"
    for c in classes:
        shutil.copytree(os.path.join(SMALL, c), images / c)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                        f"--images={images}", f"--output={out}", "--weights=none",
                        "--image_size=32", "--num_workers=1", "--resize_modes=squash"],
                       env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return images, out
