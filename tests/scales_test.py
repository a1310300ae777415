"""``fit --scales`` (issue 21): an extra input size gets its own features stage, the chosen
configuration cross-validated on it and a head whose calibrated probabilities are
averaged with the main size's when that beats the main size alone, in ``evaluate`` and
in the SavedModel; without ``--scales`` nothing changes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fit_helpers import ROOT, SMALL

from illustration_tl.evaluation.metrics import EvalResult
from illustration_tl.features import multilayer as features
from illustration_tl.heads import head
from illustration_tl.pipelines import fit_scales

SPLITS = ["train", "validation"]
# fit.json's keys without --scales, as before the option
SUMMARY_KEYS = {"status", "search", "chosen", "search_seconds", "test_top1", "test_top5",
                "num_test", "num_classes", "model", "reject", "dedupe", "timings",
                "peak_rss_gb"}


def _fit(images, out, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                           f"--images={images}", f"--output={out}", "--weights=none",
                           "--image_size=32", "--num_workers=1", "--resize_modes=squash",
                           *flags], env=env, capture_output=True, text=True, timeout=900,
                          cwd=os.path.dirname(str(out)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny fit with --scales=32,48 (32 px is the main size, so 48 is the extra one)."""
    tmp = tmp_path_factory.mktemp("scales")
    images = tmp / "images"
    for c in ("bird", "flower", "house"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    r = _fit(images, tmp / "run", "--scales=32,48")
    assert r.returncode == 0, r.stderr[-3000:]
    return images, tmp / "run", r.stderr


def _probs(store, folder):
    return head.split_probabilities(store, head.Head.load(str(folder)), "test")


def test_decide_keeps_the_average_only_when_it_beats_the_main_size():
    labels = np.array([0, 1, 0, 1])
    main = np.array([[.6, .4], [.6, .4], [.6, .4], [.4, .6]])     # 3 of 4
    helps = np.array([[.9, .1], [.1, .9], [.9, .1], [.1, .9]])    # average: 4 of 4
    doc = fit_scales.decide({224: main, 320: helps}, labels, 224)
    assert doc["kept"] == [224, 320] and doc["oof_top1_main"] == 0.75
    assert doc["oof_top1_average"] == 1.0 and doc["oof_top1"] == {"224": .75, "320": 1.0}
    hurts = np.array([[.1, .9], [.9, .1], [.1, .9], [.9, .1]])    # average: 2 of 4
    assert fit_scales.decide({224: main, 320: hurts}, labels, 224)["kept"] == [224]
    nan = helps.copy()
    nan[0] = np.nan   # rows a scale did not score are left out
    assert fit_scales.decide({224: main, 320: nan}, labels, 224)["rows"] == 3
    assert fit_scales.extra_sizes((320, 224, 320), 224) == (320,)


def test_fit_with_scales_extracts_decides_and_averages(run):
    images, out, stderr = run
    big = features.FeatureStore.load(str(out / "features_48"))
    main = features.FeatureStore.load(str(out / "features"))
    assert big.meta["recipe"]["image_size"] == 48 and main.meta["recipe"]["image_size"] == 32
    assert big.file_names["test"] == main.file_names["test"]
    doc = json.loads((out / "scales" / "scales.json").read_text())
    assert doc["main"] == 32 and doc["extra"] == [48]
    assert doc["kept"] == ([32, 48] if doc["oof_top1_average"] > doc["oof_top1_main"]
                           else [32])
    assert "scales: 32 px alone" in stderr
    summary = json.loads((out / "fit.json").read_text())
    assert summary["scales"]["kept"] == doc["kept"]
    main_probs = _probs(main, out / "final")
    labels = main.labels["test"]
    assert summary["scales"]["test_top1_main"] == pytest.approx(
        (main_probs.argmax(1) == labels).mean())
    kept = [main_probs] + ([_probs(big, out / "final" / "scale_48")]
                           if len(doc["kept"]) > 1 else [])
    assert (out / "final" / "scale_48").is_dir() == (len(doc["kept"]) > 1)
    ev = EvalResult.load(str(out / "evaluate"))
    np.testing.assert_allclose(ev.scores, np.mean(kept, axis=0), atol=1e-12)
    assert "scales:" in (out / "report.md").read_text()
    meta = json.loads((out / "model" / "illustration_tl.json").read_text())
    assert meta.get("scales", [32]) == doc["kept"]


def test_the_report_reads_the_served_out_of_fold_probabilities(run):
    """report.html's reliability and risk-coverage plots and the label issues read the
    probabilities the reject threshold was chosen on: the kept scales' average."""
    from illustration_tl.evaluation import fit_run

    _, out, _ = run
    assert fit_run.SCALES_OOF == os.path.join("scales", fit_scales.OOF_PROBABILITIES)
    served = np.load(out / fit_run.SCALES_OOF)
    got = fit_run.load(str(out))
    np.testing.assert_array_equal(got.oof_probabilities(), served)
    labels = got.train_rows()[0]
    threshold = json.loads((out / "reject" / "reject.json").read_text())
    from illustration_tl.evaluation import reject

    assert reject.choose_threshold(served, labels, threshold["target"]
                                   ).threshold == pytest.approx(threshold["threshold"])


def test_two_scale_export_serves_the_average_and_load_reads_it(run, tmp_path):
    """A head at 48 px beside the run's 32 px head (whatever the run decided): the
    SavedModel's probabilities equal the numpy average, from pixels and from files."""
    import tensorflow as tf

    import illustration_tl
    from illustration_tl.pipelines import fit_export

    images, out, _ = run
    main = features.FeatureStore.load(str(out / "features"))
    big = features.FeatureStore.load(str(out / "features_48"))
    final = tmp_path / "final"
    shutil.copytree(out / "final", final, ignore=shutil.ignore_patterns("scale_*"))
    h = head.Head.load(str(final))
    decided = tmp_path / "scales"   # the run's decision, the average kept
    shutil.copytree(out / "scales", decided)
    doc = json.loads((decided / "scales.json").read_text())
    (decided / "scales.json").write_text(json.dumps({**doc, "kept": [32, 48]}))
    fit_scales.fit_heads({48: big}, h.config, str(decided), SPLITS, str(final))
    h48 = head.Head.load(str(final / "scale_48"))
    assert h48.config == h.config and h48.temperature == head.fit(
        big, h.config, SPLITS, np.load(out / "scales" / "oof_48.npy")).temperature
    model = tmp_path / "model"
    meta = fit_export.export(str(final), str(out / "features"), str(model),
                             scales={48: str(out / "features_48")})
    assert meta["scales"] == [32, 48] and json.loads(
        (model / "illustration_tl.json").read_text())["scales"] == [32, 48]
    files = [f for f in main.file_names["test"] if (images / f).is_file()]
    assert len(files) >= 3 and files == [f for f in big.file_names["test"]
                                         if (images / f).is_file()]
    clf = illustration_tl.load(str(model))
    pixels = clf.pixels([str(images / f) for f in files])
    assert [tuple(p.shape[1:3]) for p in pixels] == [(32, 32), (48, 48)]

    def blocks(store_model, blocks_, x):
        outs = store_model(x)
        return {b: np.asarray(o) for b, o in zip(blocks_, outs)}

    from illustration_tl.models import backbones

    pre = backbones.get("vgg16").preprocess_input
    expected = []
    for px, store, hd in zip(pixels, (main, big), (h, h48)):
        r = store.meta["recipe"]
        net, names, _ = features.extractor(r["backbone"], r["weights"], r["image_size"],
                                           r["layers"] or None, r["seed"],
                                           precision=r.get("precision", "float32"))
        x = np.asarray(px, np.float32)
        expected.append(hd.probabilities(blocks(net, names, pre(x.copy())),
                                         blocks(net, names, pre(x[:, :, ::-1].copy()))))
    expected = np.mean(expected, axis=0)
    served = tf.saved_model.load(str(model)).signatures["classify_images"](
        images=pixels[0], images_48=pixels[1])["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)
    got = clf.predict([str(images / f) for f in files]).probabilities
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the store's own test features give the same average (evaluate's numbers)
    rows = [main.file_names["test"].index(f) for f in files]
    both = fit_scales.average_test(_probs(main, final), main, 32, {48: big}, str(final),
                                   "test")[0]
    np.testing.assert_allclose(both[rows], expected, atol=1e-3)


def test_without_scales_the_run_is_as_before(run):
    """The same output rerun without --scales: no scale stage runs, final and what follows
    are redone with their upstream of before, fit.json has its keys of before."""
    images, out, _ = run
    r = _fit(images, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "features_48" not in r.stderr and "[scales]" not in r.stderr
    assert "[features] up to date" in r.stderr and "[search] up to date" in r.stderr
    final = json.loads((out / "final" / "stage.json").read_text())
    assert final["upstream"] == ["features", "search"]
    assert not (out / "final" / "scale_48").exists()
    assert set(json.loads((out / "fit.json").read_text())) == SUMMARY_KEYS
    assert "scales" not in json.loads((out / "model" / "illustration_tl.json").read_text())
    assert "scales:" not in (out / "report.md").read_text()


@pytest.mark.parametrize("value", ["16", "abc", "224,-3"])
def test_a_bad_scale_is_one_line_and_exit_2(tmp_path, value):
    (tmp_path / "images").mkdir()
    r = _fit(tmp_path / "images", tmp_path / "run", f"--scales={value}")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"--scales={value}: give input sizes in px, whole numbers of at least 32, "
        "e.g. 224,320"), lines
    assert not (tmp_path / "run").exists()


def test_one_network_serves_both_sizes_only_when_its_outputs_are_the_same():
    """The export shares the main size's extractor (one copy of the weights) with an
    extra size when it gives that size's very outputs; another network is kept apart."""
    from illustration_tl.pipelines import fit_export

    small, _, _ = features.extractor("vgg16", None, 32, None, 0, include_top="no")
    big, _, _ = features.extractor("vgg16", None, 48, None, 0, include_top="no")
    other, _, _ = features.extractor("vgg16", None, 48, None, 1, include_top="no")
    assert not fit_export._serves(small, other, 48)   # other weights
    assert small.input_spec is not None               # left as it was
    assert fit_export._serves(small, big, 48)
