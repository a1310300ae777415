"""``fit``'s ``modes`` stage (pipelines/fit_modes.py): the resize mode decided on a
sample of the training split, the other images embedded in that mode only."""

from __future__ import annotations

import json
import os
import shutil
import types

import numpy as np
import pytest
from fit_helpers import SMALL

from illustration_tl.pipelines import fit_modes

CLASSES = ("bird", "flower", "house")   # 72 real openclipart images: ~46 in train


def test_applies_only_with_several_modes_and_twice_the_sample():
    assert fit_modes.applies(("squash", "pad"), 1024, 2048)
    assert not fit_modes.applies(("squash", "pad"), 1024, 2047)
    assert not fit_modes.applies(("pad",), 16, 10_000)
    assert not fit_modes.applies(("squash", "pad"), 0, 10_000)


def test_passes_count_the_sample_in_every_mode_and_the_rest_once():
    examples = {"train": 2600, "validation": 650, "test": 800}
    assert fit_modes.passes(("squash", "pad"), 1024, examples, 2) == 2 * (4050 + 1024)
    assert fit_modes.passes(("squash", "pad"), 2000, examples, 2) == 2 * 4050 * 2
    assert fit_modes.passes(("squash", "pad"), 0, examples, 1) == 4050 * 2


def test_decide_takes_the_best_configuration_and_each_modes_best_score():
    def result(mode, top1):
        return types.SimpleNamespace(config=types.SimpleNamespace(
            resize=mode, label=lambda: f"[{mode}]"), top1=top1)

    doc = fit_modes.decide([result("pad", 0.8), result("squash", 0.7), result("pad", 0.6)],
                           100)
    assert doc == {"chosen": "pad", "sample": 100, "cv_top1": {"pad": 0.8, "squash": 0.7},
                   "configuration": "[pad]"}


def _fit(images, out, mode_sample, lines, folds=3):
    from illustration_tl.pipelines import fit

    cfg = fit.FitConfig(images=str(images), output=str(out), weights="none", image_size=32,
                        num_workers=1, mode_sample=mode_sample, folds=folds)
    return fit.run(cfg, log=lines.append)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    for c in CLASSES:
        shutil.copytree(os.path.join(SMALL, c), root / "images" / c)
    sampled, every, thin = [], [], []
    _fit(root / "images", root / "sampled", 16, sampled)
    _fit(root / "images", root / "every", 0, every)
    # 16 images of 3 classes: some class has fewer than 6, the folds of this run
    _fit(root / "images", root / "thin", 16, thin, folds=6)
    return root, sampled, every, thin


def test_the_sample_decides_and_features_hold_the_chosen_mode_only(runs):
    from illustration_tl.features.store import FeatureStore

    root, lines, _, _ = runs
    doc = json.loads((root / "sampled" / "modes" / "modes.json").read_text())
    assert doc["sample"] == 16 and doc["chosen"] in ("squash", "pad")
    assert set(doc["cv_top1"]) == {"squash", "pad"}
    store = FeatureStore.load(str(root / "sampled" / "features"))
    assert store.resize_modes == [doc["chosen"]]
    summary = json.loads((root / "sampled" / "fit.json").read_text())
    assert summary["modes"] == doc
    assert summary["chosen"]["config"]["resize"] == doc["chosen"]
    assert "resize mode: " + fit_modes.words(doc) in \
        (root / "sampled" / "report.md").read_text()
    assert any("sample images' " + doc["chosen"] + " rows taken from the modes stage" in m
               for m in lines), lines


def test_the_saved_passes_change_no_number(runs):
    """Every row of the sampled run (the sample's from the modes stage, the rest from the
    features stage) equals the chosen mode's row of a run that embeds every mode."""
    from illustration_tl.features.store import FeatureStore

    root, _, every_lines, _ = runs
    assert not (root / "every" / "modes").exists()
    assert not any(m.startswith("modes:") for m in every_lines)
    every = FeatureStore.load(str(root / "every" / "features"))
    assert every.resize_modes == ["squash", "pad"]
    _assert_same_rows(FeatureStore.load(str(root / "sampled" / "features")), every)


def _assert_same_rows(got, every):
    """Every row of ``got``'s modes equals that mode's row in ``every``."""
    for split in ("train", "validation", "test"):
        assert list(got.file_names[split]) == list(every.file_names[split])
        for mode in got.resize_modes:
            for view in got.views:
                for block in got.blocks:
                    np.testing.assert_allclose(got.block(split, mode, view, block),
                                               every.block(split, mode, view, block),
                                               rtol=1e-5, atol=1e-5)


def test_a_sample_too_thin_for_the_folds_decides_nothing_and_serves_every_mode(runs):
    from illustration_tl.features.store import FeatureStore

    root, _, _, lines = runs
    doc = json.loads((root / "thin" / "modes" / "modes.json").read_text())
    assert doc["chosen"] is None and "fewer than 6 sample images" in doc["reason"]
    assert any("not decided on 16 training images" in m for m in lines), lines
    got = FeatureStore.load(str(root / "thin" / "features"))
    assert got.resize_modes == ["squash", "pad"]
    assert sum("rows taken from the modes stage" in m for m in lines) == 2, lines
    _assert_same_rows(got, FeatureStore.load(str(root / "every" / "features")))
    assert fit_modes.thin_classes(np.array([0, 0, 0, 1, 1, 2, 2, 2]), 3) == 1


def test_a_rerun_is_up_to_date(runs):
    root, _, _, _ = runs
    lines = []
    _fit(root / "images", root / "sampled", 16, lines)
    assert "[modes] up to date, skipped" in lines
    assert "[features] up to date, skipped" in lines
    assert not any("embedded" in m for m in lines)


def test_features_already_extracted_in_every_mode_are_kept(runs, tmp_path):
    """A run that already holds every mode's features (an earlier version's run, or
    ``illustration-tl extract``) searches them all instead of sampling again."""
    root, _, _, _ = runs
    shutil.copytree(root / "every", tmp_path / "run", symlinks=True)
    lines = []
    summary = _fit(root / "images", tmp_path / "run", 16, lines)
    assert "[features] up to date, skipped" in lines
    assert not (tmp_path / "run" / "modes").exists() and "modes" not in summary
    assert any("already extracted or under way" in m for m in lines)
