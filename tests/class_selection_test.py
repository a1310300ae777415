"""``select-classes`` (paper §4.2) on the dummy noisy data: scores, ambiguity, outputs, and a
curated layout that ``build --config=curated`` accepts."""

import collections
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from illustration_tl.pipelines import class_selection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISY = os.path.join(ROOT, "illustration_tl", "datasets", "illustrations", "dummy_data", "noisy")


def _examples():
    # img0 harp only; img1 harp + teapot (word "x"); img2, img3 teapot only.
    return class_selection.NoisyExamples(
        file_names=["a.png", "b.png", "b.png", "c.png", "d.png"],
        labels=np.array([0, 0, 1, 1, 1]), matched_words=["harp", "harp", "teapot", "teapot",
                                                          "teapot"],
        class_names=["n03495258", "n04398044"], class_indices=[594, 849])


def test_imagenet_rule_counts_top1_and_top5_per_class():
    scores = np.zeros((4, 1000))
    scores[0, 594] = 1.0                          # a: harp top-1
    scores[1, :6] = np.arange(6, 0, -1)           # b: harp and teapot outside the top 5
    scores[2, 849] = 1.0                          # c: teapot top-1
    scores[3, :4] = 2.0                           # d: teapot rank 5 (4 above, ties at 0 lose)
    scores[3, 849] = 1.0
    got = class_selection.imagenet_rule(scores, np.array([0, 1, 1, 2, 3]),
                                        np.array([0, 0, 1, 1, 1]), [594, 849])
    assert got[0] == (0.5, 0.5)
    assert got[1] == pytest.approx((1 / 3, 2 / 3))


def test_probe_rule_separable_classes_score_one():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (10, 8)) + 5 * np.eye(8)[0],
                        rng.normal(0, 0.1, (10, 8)) + 5 * np.eye(8)[1]])
    labels = np.array([0] * 10 + [1] * 10)
    for probe in ("logistic", "knn"):
        got = class_selection.probe_rule(x, np.arange(20), labels, 2, probe=probe, folds=5)
        assert got[0] == (1.0, 1.0, 1.0) and got[1] == (1.0, 1.0, 1.0), probe


def test_ambiguity_counts_shared_images_and_words():
    amb = class_selection.ambiguity(_examples())
    assert amb[0]["images"] == 2 and amb[0]["shared_images"] == 1
    assert amb[1]["images"] == 3 and amb[1]["shared_images"] == 1
    assert amb[0]["sharing_words"] == collections.Counter({"harp": 1})
    assert amb[1]["shared_with"] == collections.Counter({"n03495258": 1})
    crane = class_selection.NoisyExamples(["x.png"], np.array([0]), ["crane"], ["n02012849"],
                                          [134])
    assert class_selection.ambiguity(crane)[0]["ambiguous_words"] == {"crane": 2}


def test_rank_filters_shared_and_small_classes():
    ex = _examples()
    amb = class_selection.ambiguity(ex)
    rows, used = class_selection.rank_classes(
        ex, imagenet_scores=None, probe_scores={0: (0.9, 1, 1), 1: (0.5, 1, 1)}, amb=amb,
        num_classes=5, max_shared=0.4, min_images=1)
    assert used == "probe_precision"
    assert [r["wnid"] for r in rows] == ["n03495258", "n04398044"]
    assert not rows[0]["selected"] and "shared" in rows[0]["reason"]   # 50% shared
    assert rows[1]["selected"]                                          # 33% shared
    with pytest.raises(class_selection.UserError, match="classifier top"):
        class_selection.rank_classes(ex, imagenet_scores=None, probe_scores=None, amb=amb,
                                     rank_by="imagenet_top1")


def test_folder_and_file_names_are_safe():
    assert class_selection.folder_name("n03495258") == "harp"
    assert class_selection.folder_name("n02012849") == "crane"  # the bird: find() says so
    assert class_selection.folder_name("n03126707") == "n03126707"  # the machine
    taken = set()
    assert class_selection.image_file_name("clipart/harp 01.svg", taken) == "clipart_harp_01.png"
    assert class_selection.image_file_name("clipart/harp 01.svg", taken) == \
        "clipart_harp_01_2.png"
    assert class_selection.image_file_name("mdi:teapot", taken) == "mdi_teapot.png"


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    b.build("noisy", NOISY, data_dir)
    return data_dir


@pytest.mark.slow
def test_select_with_imagenet_top_random_weights(noisy, tmp_path):
    out = str(tmp_path / "sel")
    summary = class_selection.select_classes(
        dataset="illustrations/noisy", data_dir=noisy, output=out, backbone="vgg16",
        weights=None, image_size=32, include_top="yes", probe="knn", folds=3,
        num_classes=2, max_shared=1.0, min_images=1)
    assert summary["imagenet_rule"] and summary["rank_by"] == "imagenet_top1"
    with open(os.path.join(out, "ranking.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["classes"]
    assert all(r["imagenet_top1"] != "" for r in rows)
    assert sum(r["selected"] == "True" for r in rows) == 2


@pytest.mark.slow
def test_cli_conv_base_only_then_build_curated(noisy, tmp_path):
    out = tmp_path / "sel"
    cmd = [sys.executable, "-m", "illustration_tl.cli", "select-classes",
           f"--data_dir={noisy}", "--weights=none", "--image_size=32", "--folds=3",
           "--min_images=1", "--max_shared=1", "--num_classes=2", f"--output={out}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (out / "ranking.md").read_text()
    assert "imagenet_top1/top5 n/a" in md and "probe_precision" in md
    summary = json.loads((out / "selection.json").read_text())
    assert not summary["imagenet_rule"] and len(summary["selected"]) == 2
    for s in summary["selected"]:
        assert (out / "contact_sheets" / f"{s['folder']}.png").is_file()
        assert len(os.listdir(out / "curated" / s["folder"])) == s["images"]
    # Never replaced without --overwrite; a user's file in it is never lost.
    r2 = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r2.returncode == 2 and "--overwrite" in r2.stderr
    (out / "notes.txt").write_text("mine")
    r3 = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, cwd=ROOT,
                        timeout=600)
    assert r3.returncode == 2 and (out / "notes.txt").read_text() == "mine"
    # The curated layout builds as is.
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    builder = b.build("curated", str(out / "curated"), str(tmp_path / "tfds2"))
    names = builder.info.features["label"].names
    assert sorted(names) == sorted(s["folder"] for s in summary["selected"])
    total = sum(builder.info.splits[s].num_examples for s in builder.info.splits)
    assert total == sum(s["images"] for s in summary["selected"])
