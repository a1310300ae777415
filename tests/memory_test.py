"""Per-stage peak RSS (core/memory.py): a stage's peak is its own, not the process's."""

import sys

import numpy as np
import pytest

from illustration_tl.core import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="VmHWM and clear_refs are Linux's")


def test_reset_then_peak_measures_one_stage():
    assert memory.reset_peak()
    base = memory.peak_bytes()
    big = np.ones(200 * 1024 * 1024 // 8)   # 200 MB, touched
    grown = memory.peak_bytes()
    del big
    assert grown - base >= 150 * 1024 * 1024
    assert memory.reset_peak()
    assert memory.peak_bytes() < grown - 100 * 1024 * 1024   # the old peak is forgotten


def test_the_stage_runner_records_each_stage_peak(tmp_path):
    from illustration_tl.pipelines.stages import Stages

    st = Stages(str(tmp_path / "run"), log=lambda m: None)

    def heavy(folder):
        a = np.ones(120 * 1024 * 1024 // 8)
        (tmp_path / "x").write_text(str(a[0]))

    st.run("light", {}, lambda folder: None)
    st.run("heavy", {}, heavy)
    assert st.peak_rss["heavy"] - st.peak_rss["light"] >= 90 * 1024 * 1024
