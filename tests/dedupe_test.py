"""``fit --dedupe``: groups of duplicates that span training and test end on one side."""

from __future__ import annotations

import numpy as np

from illustration_tl.evaluation import duplicates
from illustration_tl.features import store


def _images(splits):
    return duplicates.Images([f"{i}.png" for i in range(len(splits))], list(splits),
                             np.zeros(len(splits), np.int64), ["a"])


def test_each_group_spanning_train_and_test_goes_to_its_majority_side():
    splits = ["train", "train", "test", "validation", "test", "train", "test", "test"]
    pairs = [duplicates.Pair(0, 1, 0.95, False), duplicates.Pair(1, 2, 0.93, False),  # 2 vs 1
             duplicates.Pair(3, 4, 1.0, True),                                       # tie
             duplicates.Pair(6, 7, 0.99, False)]                                     # test only
    out = duplicates.grouped_splits(pairs, _images(splits))
    assert out == ["train", "train", "train", "test", "test", "train", "test", "test"]
    leaked = [p for p in pairs if _images(out).is_leakage(p)]
    assert leaked == []


def test_a_regrouped_store_moves_rows_and_keeps_their_features():
    rng = np.random.default_rng(0)
    arrays = {s: {"m/orig/b": rng.random((n, 2))} for s, n in (("train", 3), ("test", 2))}
    s = store.FeatureStore(arrays, {"train": np.array([0, 1, 0]), "test": np.array([1, 1])},
                           {"train": ["a", "b", "c"], "test": ["d", "e"]}, ["x", "y"],
                           ["b"], ["m"], ["orig"], {})
    r = s.regrouped(["train", "test"], ["train", "test", "train", "train", "test"])
    assert r.file_names == {"train": ["a", "c", "d"], "test": ["b", "e"]}
    np.testing.assert_array_equal(r.labels["test"], [1, 1])
    np.testing.assert_array_equal(r.block("train", "m", "orig", "b")[2],
                                  arrays["test"]["m/orig/b"][0])


def test_fit_dedupe_leaves_no_duplicate_group_across_train_and_test(tmp_path):
    """A real fit (ImageNet VGG16 conv base, 64 px: near duplicates need trained
    features) with recompressed copies planted beside their originals: the copies'
    groups span train and test before; after --dedupe none does, the report and
    duplicates.csv agree, and a rerun without --dedupe redoes the search."""
    import csv
    import json
    import os
    import shutil
    import subprocess
    import sys

    from fit_helpers import ROOT, SMALL
    from PIL import Image

    from illustration_tl.evaluation import dedupe, fit_run

    images = tmp_path / "images"
    for c in ("bird", "flower", "house"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
        for i, name in enumerate(sorted(os.listdir(images / c))[:8]):
            im = Image.open(images / c / name).convert("RGBA")
            flat = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im)
            flat.convert("RGB").save(images / c / f"copy_{i}.jpg", quality=90)
    out = tmp_path / "run"
    weights = os.environ.get("ILLUSTRATION_TL_VGG16_WEIGHTS")
    assert weights, "set ILLUSTRATION_TL_VGG16_WEIGHTS to the VGG16 ImageNet conv base"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "illustration_tl.cli", "fit", f"--images={images}",
           f"--output={out}", f"--weights={weights}", "--image_size=64", "--num_workers=1",
           "--resize_modes=pad"]
    r = subprocess.run(cmd + ["--dedupe"], env=env, capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = dedupe.summary(str(out / "dedupe"))
    assert done["leakage_pairs_before"] > 0 and done["moved"] > 0
    assert f"dedupe: {done['moved']} images moved" in r.stderr
    assert json.loads((out / "fit.json").read_text())["dedupe"] is True
    run = fit_run.load(str(out))
    images_, pairs = fit_run.find_duplicates(run.store, None)
    assert duplicates.count_leakage(pairs, images_) == 0
    assert sum(len(v) for v in run.store.labels.values()) == len(images_.file_names)
    with open(out / "duplicates.csv", newline="") as f:
        assert [row for row in csv.DictReader(f) if row["kind"] == "leakage"] == []
    assert "inflated" not in r.stderr

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[features] up to date" in again.stderr and "[search] running" in again.stderr
    assert json.loads((out / "fit.json").read_text())["dedupe"] is False
