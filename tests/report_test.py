"""Tests of the run report: tables and figures from evaluation results (paper §7)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from illustration_tl.errors import UserError
from illustration_tl.evaluation import report
from illustration_tl.evaluation.metrics import EvalResult

CLASSES = ["bird", "flower", "fruit", "house"]
N = 24


@pytest.fixture
def images_root(tmp_path):
    """One small PNG per example: a coloured square on white, per class."""
    root = tmp_path / "images"
    colors = [(200, 30, 30), (30, 160, 30), (240, 200, 0), (40, 40, 200)]
    for i in range(N):
        c = i % 4
        (root / CLASSES[c]).mkdir(parents=True, exist_ok=True)
        a = np.full((40, 40, 3), 255, np.uint8)
        a[8 + i % 5:30, 6:34] = colors[c]
        Image.fromarray(a).save(root / CLASSES[c] / f"img{i:02d}.png")
    return str(root)


def results():
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 4
    files = [f"{CLASSES[c]}/img{i:02d}.png" for i, c in enumerate(labels)]
    good = rng.normal(0, 1, (N, 4))
    good[np.arange(N), labels] += 2.5           # mostly right
    bad = rng.normal(0, 1, (N, 4))              # near chance
    return [EvalResult("VGG16 fc2 + SVM", CLASSES, labels, good, files, {"kind": "svm"}),
            EvalResult("Baseline", CLASSES, labels, bad, files[::-1][::-1])]


def test_report_folder_has_every_table_and_figure(tmp_path, images_root):
    rs = results()
    rng = np.random.default_rng(1)
    y = np.arange(60) % 4
    x = rng.normal(0, 1, (60, 16)) + np.eye(4, 16)[y] * 6
    tsne = [report.TsneInput("VGG16 fc2 test", x, y, CLASSES)]
    out = tmp_path / "report"
    doc = report.write_report(rs, str(out), load_image=report.folder_image_loader(images_root),
                              tsne=tsne, options=report.ReportOptions(num_failures=5,
                                                                      num_compare=6))
    files = sorted(os.listdir(out))
    assert files == sorted([
        "report.md", "report.json", "confusion-vgg16-fc2-svm.png", "confusion-baseline.png",
        "tsne-vgg16-fc2-test.png", "failures-vgg16-fc2-svm.png", "failures-baseline.png",
        "compare-vgg16-fc2-svm-vs-baseline.png"])
    with open(out / "report.json") as f:
        assert json.load(f) == json.loads(json.dumps(doc))

    # Table 3: the global numbers of each model.
    assert [r["model_name"] for r in doc["table3"]] == ["VGG16 fc2 + SVM", "Baseline"]
    for row, r in zip(doc["table3"], rs):
        assert row["top1"] == r.top_k(1)
        assert row["top5"] is None  # 4 classes: top-5 is not applicable
    assert rs[0].top_k(1) > rs[1].top_k(1)
    # Table 4: one row per class with both models side by side.
    assert [r["class"] for r in doc["table4"]] == CLASSES
    for row in doc["table4"]:
        assert row["n"] == 6
        assert set(row["VGG16 fc2 + SVM"]) == {"n", "top1", "top5"}
        assert row["Baseline"]["top1"] == next(p["top1"] for p in rs[1].per_class()
                                               if p["class"] == row["class"])
    md = (out / "report.md").read_text()
    assert "Table 3" in md and "Table 4" in md and "| bird | 6 |" in md
    assert f"| VGG16 fc2 + SVM | {N} | {100 * rs[0].top_k(1):.2f} |" in md
    for name in files:
        if name.endswith(".png"):
            assert f"]({name})" in md

    # Every PNG is a real, non-blank image of the size its layout gives.
    expected = {
        "confusion-vgg16-fc2-svm.png": report.confusion_figsize(4),
        "tsne-vgg16-fc2-test.png": report.TSNE_FIGSIZE,
        "failures-vgg16-fc2-svm.png": report.grid_figsize(
            len(report.most_confident_failures(rs[0], 5)), 4),
        "failures-baseline.png": report.grid_figsize(5, 4),
        "compare-vgg16-fc2-svm-vs-baseline.png": report.comparison_figsize(6),
    }
    recorded = {f["file"]: f for group in doc["figures"].values() for f in group}
    assert set(recorded) == {f for f in files if f.endswith(".png")}
    for name, (w, h) in expected.items():
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG"
            assert im.size == (round(w * report.DPI), round(h * report.DPI)) == \
                (recorded[name]["width"], recorded[name]["height"])
            pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
            assert pixels.std() > 10, f"{name} looks blank"


def test_failures_are_the_most_confident_mistakes():
    labels = np.array([0, 1, 2, 0])
    scores = np.array([[0.1, 0.9, 0.0],    # wrong, confidence 0.9
                       [0.0, 1.0, 0.0],    # right
                       [0.6, 0.3, 0.1],    # wrong, confidence 0.6
                       [0.2, 0.1, 0.95]])  # wrong, confidence 0.95
    r = EvalResult("m", ["a", "b", "c"], labels, scores, ["w", "x", "y", "z"])
    assert report.most_confident_failures(r, 10) == [3, 0, 2]
    assert report.most_confident_failures(r, 2) == [3, 0]


def test_comparison_puts_second_model_wins_first():
    labels = np.array([0, 1, 0, 1])
    a = EvalResult("a", ["p", "q"], labels, np.array([[1, 0], [1, 0], [0, 1], [0, 1]]),
                   ["f0", "f1", "f2", "f3"])
    # b lists the same images in another order.
    b = EvalResult("b", ["p", "q"], labels[::-1], np.array([[0, 1], [1, 0], [0, 1], [1, 0]]),
                   ["f3", "f2", "f1", "f0"])
    picks = report.comparison_picks(a, b, 4)
    # f2: a wrong, b right; f1: a wrong, b right; f0: a right, b wrong; f3: both right.
    assert [a.file_names[i] for i, _ in picks] == ["f1", "f2", "f0", "f3"]
    assert all(a.file_names[i] == b.file_names[j] for i, j in picks)


def test_report_without_images_or_embeddings_notes_what_is_missing(tmp_path):
    doc = report.write_report(results(), str(tmp_path / "r"))
    assert len(doc["figures"]["confusion"]) == 2 and not doc["figures"]["failures"]
    assert any("--images_root" in n for n in doc["notes"])
    assert any("--embeddings" in n for n in doc["notes"])
    # Rewriting a report folder replaces it; an unrelated folder is left alone.
    report.write_report(results()[:1], str(tmp_path / "r"))
    assert not os.path.exists(tmp_path / "r" / "confusion-baseline.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a report folder"):
        report.write_report(results(), str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# --- The commands end to end on the dummy curated dataset ---------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURATED_FLAT = os.path.join(REPO, "illustration_tl", "datasets", "illustrations", "dummy_data",
                            "curated_flat")


def cli(*args):
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder_lib.build("curated", CURATED_FLAT, data_dir)
    return data_dir


@pytest.mark.slow
def test_embed_svm_baseline_report_commands(built, tmp_path):
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.features import embeddings
    from illustration_tl.models import extractor

    emb, out = tmp_path / "emb", tmp_path / "out"
    r = cli("embed", "--dataset=illustrations/curated", f"--data_dir={built}",
            "--backbone=vgg16", "--weights=none", "--image_size=32", "--batch_size=4",
            "--shard_size=5", f"--output={emb}")
    assert "layer gap(block5_pool)" in r.stdout and "13 x 512 embeddings in 3 shard(s)" in r.stdout
    assert sorted(os.listdir(emb)) == ["test", "train", "validation"]
    test = embeddings.load(str(emb), "test")
    meta = test.metadata
    assert meta["class_names"] == ["flower", "hammer", "harp"]
    assert meta["dataset"] == "illustrations/curated/1.0.0" and meta["dataset_version"] == "1.0.0"
    assert meta["weights_source"] == "random-init" and meta["image_size"] == 32
    assert "vgg16.preprocess_input" in meta["preprocessing"]
    # The sharded files equal the same model run in memory through the same pipeline.
    source = embeddings.embedding_source(backbone="vgg16", weights=None, image_size=32)
    assert extractor.model_fingerprint(source.model) == meta["model_fingerprint"]
    ds, _ = input_pipeline.load_split("illustrations/curated", "test", built)
    x, y, names = embeddings.compute(source.model, input_pipeline.make_dataset(
        ds, backbone="vgg16", image_size=32, batch_size=3, training=False,
        with_file_names=True))
    np.testing.assert_allclose(test.x, x, rtol=1e-4, atol=1e-4)
    assert test.y.tolist() == y.tolist() and test.file_names == names

    r = cli("svm", f"--embeddings={emb}", f"--output={out / 'svm_grid'}", "--n_jobs=2",
            "--scaling=standard")
    assert "64-point 3-fold grid search" in r.stdout and "test (8 images)" in r.stdout
    with open(out / "svm_grid" / "svm.json") as f:
        info = json.load(f)
    assert len(info["cv_results"]) == 64 and info["steps"] == ["scale", "svm"]
    assert info["embeddings"]["layer"] == "gap(block5_pool)"
    r = cli("svm", "--preset=svm_baseline", f"--embeddings={emb}",
            f"--output={out / 'svm_paper'}")
    assert "fixed parameters rbf C=1 gamma=0.0001 ovo" in r.stdout
    assert "Baseline fc2 + SVM: " in r.stdout

    r = cli("baseline", "--dataset=illustrations/curated", f"--data_dir={built}",
            "--backbone=vgg16", "--weights=none", "--image_size=32",
            f"--output={out / 'baseline'}")
    assert "of 2 ImageNet classes" in r.stdout and "left out" in r.stdout
    full = EvalResult.load(str(out / "baseline" / "imagenet1000"))
    restricted = EvalResult.load(str(out / "baseline" / "restricted"))
    assert full.scores.shape[1] == 1000 and restricted.class_names == ["hammer", "harp"]
    # The test split has 8 images; those of "flower" (no ImageNet class) are left out.
    skipped = full.extra["skipped_examples"]
    assert skipped > 0 and full.num_examples == restricted.num_examples == 8 - skipped
    assert full.file_names == restricted.file_names

    r = cli("report", f"--results={out / 'svm_grid'},{out / 'svm_paper'},{out / 'baseline'}",
            f"--output={out / 'report'}", "--num_failures=4", "--num_compare=3")
    files = set(os.listdir(out / "report"))
    assert {"report.md", "report.json"} <= files
    for prefix, count in [("confusion-", 4), ("tsne-", 1), ("failures-", None),
                          ("compare-", 1)]:
        made = [f for f in files if f.startswith(prefix) and f.endswith(".png")]
        assert made and (count is None or len(made) == count), (prefix, files)
    with open(out / "report" / "report.json") as f:
        doc = json.load(f)
    assert [row["model_name"] for row in doc["table3"]] == [
        "vgg16 gap(block5_pool) + SVM", "Baseline fc2 + SVM", "vgg16 ImageNet (1000-way)",
        "vgg16 ImageNet (restricted)"]
    assert not any("images" in n for n in doc["notes"]), doc["notes"]
