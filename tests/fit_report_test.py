"""``fit``'s report.html and data findings (issue 22): intervals, calibration, label issues,
duplicates, the page's sections and escaping, and the page of a real ``fit`` run rendered
by headless Chromium."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from browser_helpers import CHROMIUM

from illustration_tl.evaluation import duplicates, fit_run, html_report, label_issues
from illustration_tl.evaluation.metrics import (
    EvalResult,
    precision_recall_f1,
    reliability,
    wilson_interval,
)
from illustration_tl.features import multilayer as features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


# --- Numbers -------------------------------------------------------------------------

def test_wilson_interval_matches_published_values():
    # Brown, Cai & DasGupta (2001): for x=0 of n=10 the 95% Wilson interval is [0, 0.2775]
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(22, 29)
    assert lo < 22 / 29 < hi and (lo, hi) == pytest.approx((0.5789, 0.8775), abs=1e-3)
    assert all(v != v for v in wilson_interval(0, 0))


def test_precision_recall_f1_per_class():
    labels = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    rows = precision_recall_f1(labels, pred, 4)
    assert rows[0] == dict(index=0, support=2, predicted=2, precision=0.5, recall=0.5, f1=0.5)
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0
    assert rows[2]["precision"] is None and rows[2]["recall"] == 0.0   # never predicted
    assert rows[3]["support"] == 0 and rows[3]["recall"] is None and rows[3]["f1"] is None


def test_reliability_and_ece():
    # 10 images at confidence 0.9, 9 right: calibrated (ECE 0); at 0.9 with 5 right: 0.4
    probs = np.tile([0.9, 0.1], (10, 1))
    assert reliability(probs, np.array([0] * 9 + [1])).ece == pytest.approx(0.0, abs=1e-12)
    rel = reliability(probs, np.array([0] * 5 + [1] * 5))
    assert rel.ece == pytest.approx(0.4) and rel.counts.sum() == 10 and rel.counts[8] == 10


# --- Label issues --------------------------------------------------------------------

def test_confident_learning_ranks_flipped_labels_first():
    rng = np.random.default_rng(0)
    n, k = 300, 5
    true = np.arange(n) % k
    probs = rng.dirichlet(np.ones(k) * 0.3, n) * 0.3
    probs[np.arange(n), true] += 0.7
    given = true.copy()
    flipped = rng.choice(n, 15, replace=False)
    given[flipped] = (true[flipped] + 1) % k
    found = label_issues.find(probs, given)
    # flagged only where the true class clears its threshold (the class's mean
    # self-confidence): a subset of the flips here, ranked before every clean image
    assert 0 < found.num_flagged and set(found.issues().tolist()) <= set(flipped.tolist())
    precision, recall = label_issues.precision_recall_at(found.order, np.isin(
        np.arange(n), flipped), 15)
    assert precision == recall == 1.0
    assert (found.suggested[found.issues()] == true[found.issues()]).all()
    assert sorted(found.order.tolist()) == list(range(n))   # every row, once
    for method in label_issues.RANKINGS:
        order = label_issues.ranking(probs, given, method)
        assert sorted(order.tolist()) == list(range(n))
        assert set(order[:15].tolist()) == set(flipped.tolist()), method
    with pytest.raises(ValueError, match="not one of"):
        label_issues.ranking(probs, given, "entropy")
    text = label_issues.to_csv(found, [f"f{i}" for i in range(n)], ["train"] * n, given,
                               [f"c{j}" for j in range(k)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == found.num_flagged and rows[0]["rank"] == "1"
    assert float(rows[0]["p_given"]) <= float(rows[-1]["p_given"])


# --- Duplicates ----------------------------------------------------------------------

def _images() -> duplicates.Images:
    return duplicates.Images([f"f{i}" for i in range(6)],
                             ["train", "train", "test", "train", "validation", "test"],
                             np.array([0, 0, 0, 1, 1, 1]), ["a", "b"])


def test_duplicates_exact_near_and_their_kinds():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 32))
    x[1] = x[0] + 0.01 * rng.normal(size=32)    # near copy, same class, both train
    x[2] = x[0] + 0.01 * rng.normal(size=32)    # near copy in the test split: leakage
    hashes = ["h0", "h1", "h2", "same", "same", "h5"]   # 3 and 4: exact, same class
    pairs = duplicates.find(x, hashes, threshold=0.99)
    im = _images()
    kinds = {(p.a, p.b): im.kind(p) for p in pairs}
    assert kinds == {(0, 1): "within class", (0, 2): "leakage", (1, 2): "leakage",
                     (3, 4): "within class"}
    assert [p.exact for p in pairs if (p.a, p.b) == (3, 4)] == [True]
    assert duplicates.count_leakage(pairs, im) == 2
    assert duplicates.leaked_test_images(pairs, im) == {2}
    conflict = duplicates.Pair(0, 3, 0.97, False)
    assert im.kind(conflict) == "conflict"
    rows = list(csv.DictReader(io.StringIO(duplicates.to_csv(pairs, im))))
    assert len(rows) == 4 and rows[0]["exact"] == "1" and rows[0]["similarity"] == "1.0000"


def test_near_pairs_in_chunks_match_the_full_matrix(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8))
    full = duplicates.near_pairs(x, 0.6)
    monkeypatch.setattr(duplicates, "_CHUNK", 7)
    chunked = duplicates.near_pairs(x, 0.6)
    assert [p[:2] for p in chunked] == [p[:2] for p in full] and full
    np.testing.assert_allclose([p[2] for p in chunked], [p[2] for p in full], atol=1e-12)


# --- The page, from a synthetic run (no TensorFlow) ----------------------------------

HOSTILE = ['<script>alert(1)</script>', 'a "quoted" & <b>bold</b>', "plain"]


def _synthetic_run(tmp_path) -> tuple[fit_run.FitRun, fit_run.Thumbs]:
    rng = np.random.default_rng(0)
    labels, names, arrays = {}, {}, {}
    for split, n in (("train", 12), ("validation", 3), ("test", 6)):
        y = np.arange(n) % 3
        labels[split] = y
        names[split] = [f"{HOSTILE[c]}/{split}{i}.png" for i, c in enumerate(y)]
        arrays[split] = {features.key(m, "orig", b): (rng.random((n, 4)) + y[:, None]
                                                      ).astype(np.float32)
                         for m in ("squash", "pad") for b in ("l:avg", "l:max")}
    store = features.FeatureStore(arrays, labels, names, HOSTILE, ["l:avg", "l:max"],
                                  ["squash", "pad"], ["orig"], {})
    scores = rng.dirichlet(np.ones(3), 6)
    result = EvalResult("vgg16 fit (fast)", HOSTILE, labels["test"], scores, names["test"])
    cfg = {"resize": "pad", "blocks": ["l:avg", "l:max"], "flip_train": True,
           "flip_test": True, "norm": "l2", "classifier": "svm", "kernel": "rbf", "C": 3.0,
           "gamma": "scale", "multiclass": "ovr"}
    board = {"mode": "fast", "seconds": 1.0, "folds": 3,
             "chosen": {"config": cfg, "label": "<chosen>", "cv_top1": 0.8, "folds": 3},
             "results": [{"config": cfg, "label": "<chosen>", "cv_top1": 0.8,
                          "cv_top5": None, "folds": 3, "seconds": 0.1},
                         {"config": dict(cfg, C=10.0), "label": "other", "cv_top1": 0.9,
                          "cv_top5": None, "folds": 1, "seconds": 0.1}]}
    oof = rng.normal(size=(15, 3))
    run = fit_run.FitRun(str(tmp_path), result, board, {"temperature": 0.5}, {}, store, oof)
    thumbs = fit_run.Thumbs({}, {f: fit_run.thumbnail_jpeg(np.full((40, 30, 3), 200, np.uint8))
                                 for s in names.values() for f in s})
    return run, thumbs


def test_page_has_every_section_and_escapes_names(tmp_path):
    run, thumbs = _synthetic_run(tmp_path)
    found = fit_run.findings(run, None, threshold=0.999)
    page = html_report.render(run, found, thumbs)
    for sid in html_report.SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "train + validation" in page and "training split only" not in page
    assert "1 of 3" in page and "3 of 3" in page                 # fold counts shown
    assert 'href="search/leaderboard.md"' in page
    assert "fewer than 5 test images" in page                     # 2 test images a class
    assert "src=\"http" not in page and "<link" not in page        # nothing external
    words = html_report.describe_config(run.chosen, 0.5)
    assert "one-vs-rest" in words and "mirror" in words and "padded" in words


def test_load_refuses_an_unfinished_run(tmp_path):
    from illustration_tl.errors import UserError

    (tmp_path / "search").mkdir()
    (tmp_path / "fit.json").write_text("{}")
    with pytest.raises(UserError, match="not a finished `fit` run: .*eval.json is missing"):
        fit_run.load(str(tmp_path))


# --- A real fit run, and the page in a real browser ----------------------------------

@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    """``fit`` on 3 real clip-art classes (72 images), with one bird picture also filed
    under flower (a pixel-identical conflict) and one more bird copy under fruit."""
    root = tmp_path_factory.mktemp("three")
    images = root / "images"
    for c in ("bird", "flower", "fruit"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    bird = sorted(os.listdir(images / "bird"))[0]
    shutil.copy(images / "bird" / bird, images / "flower" / "copied_bird.png")
    weights = os.environ.get("ILLUSTRATION_TL_VGG16_WEIGHTS", "none")
    out = root / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                        f"--images={images}", f"--output={out}", f"--weights={weights}",
                        "--image_size=32", "--num_workers=1", "--resize_modes=squash"],
                       cwd=str(root), env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    logged: list[str] = []
    path = html_report.write_fit_report(str(out), log=logged.append)
    return out, path, logged, bird


def test_real_run_writes_the_page_and_both_csvs(three_class_run):
    out, path, logged, bird = three_class_run
    assert path == str(out / "report.html") and os.path.getsize(path) < 5_000_000
    page = open(path, encoding="utf-8").read()
    for sid in html_report.SECTIONS:
        assert f'<section id="{sid}">' in page
    assert page.count("data:image/jpeg;base64,") >= 2   # thumbnails inlined
    with open(out / "duplicates.csv", encoding="utf-8") as f:
        dups = list(csv.DictReader(f))
    conflict = [d for d in dups if {d["file_a"], d["file_b"]} ==
                {f"bird/{bird}", "flower/copied_bird.png"}]
    assert len(conflict) == 1 and conflict[0]["exact"] == "1"
    assert conflict[0]["kind"] in ("conflict", "leakage")
    with open(out / "label_issues.csv", encoding="utf-8") as f:
        header, *issues = list(csv.reader(f))
    assert header == list(label_issues.CSV_FIELDS)
    issues = [dict(zip(header, row)) for row in issues]
    train_names = set(fit_run.load(str(out)).train_rows()[1])
    assert all(row["file_name"] in train_names for row in issues)
    assert logged[-1].startswith("report: ")
    assert fit_run.count_train_test_duplicates(str(out)) == sum(
        d["kind"] == "leakage" for d in dups)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install "
                    "chromium; .ci/run installs it)")
def test_chromium_renders_every_section(three_class_run, tmp_path):
    from PIL import Image

    _, path, _, _ = three_class_run
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = "file://" + os.path.abspath(path)
    shot = tmp_path / "shot.png"
    r = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,4000",
                        url], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (4000, 1200) and pixels.std() > 20
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120).stdout
    for sid in html_report.SECTIONS:
        assert f'<section id="{sid}">' in dom
    assert dom.count("<img") >= 4


def test_near_pairs_keep_each_images_closest_ones_only():
    """A tight cluster of look-alikes (40 rows) and 10 loners: uncapped, every pair of the
    cluster passes (780); capped at 3 per image, each image keeps its 3 closest, the
    pairs are at most 3 per image, and with no cap reached the result is every pair."""
    rng = np.random.default_rng(4)
    x = np.concatenate([np.ones((40, 16)) + 0.01 * rng.normal(size=(40, 16)),
                        rng.normal(size=(10, 16))])
    every = duplicates.near_pairs(x, 0.9, per_image=len(x))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    brute = {(i, j) for i in range(50) for j in range(i + 1, 50) if sims[i, j] >= 0.9}
    assert {(i, j) for i, j, _ in every} == brute and len(brute) >= 780
    capped = duplicates.near_pairs(x, 0.9, per_image=3)
    kept = {(i, j) for i, j, _ in capped}
    assert len(kept) <= 3 * 40
    for i in range(40):
        row = np.where(np.arange(50) == i, -np.inf, sims[i])
        for j in np.argsort(-row)[:3]:
            assert (min(i, j), max(i, j)) in kept


def test_the_leak_warning_advises_dedupe_only_when_the_pairs_look_like_copies():
    few = html_report.leak_warning(12, 300, 15)
    assert few.startswith("warning: 12 of 300 test images have a near duplicate in "
                          "training (15 pairs, duplicates.csv)") and "rerun with --dedupe" in few
    most = html_report.leak_warning(19_263, 19_766, 90_000)
    assert "look-alike" in most and "rerun with --dedupe" not in most
