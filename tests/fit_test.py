"""``fit`` (issue 13): search mechanics, features, the API in a plain script, export parity.

Random-weight tiny backbones: these check plumbing, never accuracy (the accuracy
claims come from benchmarks/fit_vs_paper.py on real clip art with ImageNet weights).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from illustration_tl.features import multilayer as features
from illustration_tl.heads import grids, search, svm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           TF_CPP_MIN_LOG_LEVEL="3")


def _store(n_per_class=8, classes=4, seed=0) -> features.FeatureStore:
    """A feature store of random numbers: for the search's mechanics only."""
    rng = np.random.default_rng(seed)
    blocks = [features.PAPER_BLOCK] + [features.block_name(n, p) for n in ("a", "b", "c")
                                       for p in features.POOLS]
    arrays, labels, names = {}, {}, {}
    for split, n in (("train", n_per_class), ("validation", 2), ("test", 3)):
        y = np.repeat(np.arange(classes), n)
        labels[split], names[split] = y, [f"{split}/{i}.png" for i in range(len(y))]
        arrays[split] = {}
        for mode in ("squash", "pad"):
            for view in features.VIEWS:
                for b in blocks:
                    x = rng.random((len(y), 6)) + y[:, None] * 0.3
                    arrays[split][features.key(mode, view, b)] = x.astype(np.float32)
    return features.FeatureStore(arrays, labels, names, [f"c{i}" for i in range(classes)],
                                 blocks, ["squash", "pad"], list(features.VIEWS),
                                 {"layers": ["a", "b", "c"], "backbone": "vgg16"})


def test_paper_mode_is_exactly_the_papers_grid():
    cands = search.candidates("paper", _store())
    grid = svm.paper_grid()
    assert len(cands) == len(grid) == 64
    assert [(c.kernel, c.C, float(c.gamma), c.multiclass) for c in cands] == \
        [(p.kernel, p.C, p.gamma, p.multiclass) for p in grid]
    assert {c.blocks for c in cands} == {(features.PAPER_BLOCK,)}
    assert {(c.resize, c.norm, c.flip_train, c.flip_test) for c in cands} == \
        {("squash", "none", False, False)}


def test_fast_search_halves_and_ranks_with_out_of_fold_scores():
    store = _store()
    results = search.run(store, "fast", n_jobs=1)
    full = [r for r in results if len(r.fold_top1) == 3]
    cands = search.candidates("fast", store)
    # probes rank the 4 feature sets (2 resize modes x 2 layer sets); the best 2 get
    # the whole list on fold 0, the best third of those all folds
    assert len({c.feature_key() for c in cands}) == 4
    assert len({r.config.feature_key() for r in results if not grids.is_fast_probe(
        r.config)}) == search.FAST_FEATURE_SETS
    assert len(results) < len(cands)
    assert 2 <= len(full) < len(results)           # successive halving dropped some
    assert results[0] is full[0] and results[0].oof.shape == (40, 4)
    assert [r.top1 for r in full] == sorted((r.top1 for r in full), reverse=True)
    assert results[0].top5 is None                   # 4 classes: top-5 not applicable
    md = search.leaderboard_markdown(results, results[0].config, "fast", 1.0)
    assert sum("**chosen**" in line for line in md.splitlines() if line.startswith("| ")) == 1


def test_identical_resize_modes_are_searched_once():
    store = _store()
    assert grids.distinct_resize_modes(store) == ["squash", "pad"]
    for arrays in store.arrays.values():   # square images: pad == squash
        for k in list(arrays):
            if k.startswith("pad/"):
                arrays[k] = arrays["squash/" + k[len("pad/"):]]
    assert grids.distinct_resize_modes(store) == ["squash"]
    assert {c.resize for c in search.candidates("fast", store)} == {"squash"}


def test_thorough_is_wider_and_gamma_rules():
    store = _store()
    assert len(search.candidates("thorough", store)) > 5 * len(search.candidates("fast", store))
    x = np.random.default_rng(0).random((10, 4))
    assert search.resolve_gamma("scale", x) == pytest.approx(1 / (4 * x.var()))
    assert search.resolve_gamma("4*scale", x) == pytest.approx(4 / (4 * x.var()))
    assert search.resolve_gamma("1e-4", x) == 1e-4


def test_thorough_extends_fast_and_probes_feature_sets():
    store = _store(n_per_class=6, classes=3)
    fast = search.run(store, "fast", n_jobs=1)
    thorough = search.run(store, "thorough", n_jobs=1)
    assert {r.config for r in fast} <= {r.config for r in thorough}
    assert thorough[0].top1 >= fast[0].top1 and len(thorough[0].fold_top1) == 3
    keys = {r.config.feature_key() for r in thorough if not grids.is_probe(r.config)}
    fast_keys = {c.feature_key() for c in search.candidates("fast", store)}
    assert len(keys - fast_keys) <= search.THOROUGH_FEATURE_SETS


def test_numpy_head_matches_search_scores_and_calibrates():
    from illustration_tl.heads import calibration, head

    store = _store()
    cfg = search.Config("pad", ("a:avg", "c:max"), True, True, "l2", "svm", "rbf", 3.0, "scale")
    h = head.fit(store, cfg, ["train", "validation"], None)
    orig = head.store_blocks(store, ["test"], "pad", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "pad", "flip", cfg.blocks)
    p = h.probabilities(orig, flip)
    assert p.shape == (12, 4) and np.allclose(p.sum(axis=1), 1.0)
    s = np.random.default_rng(1).normal(size=(200, 3)) * 5
    y = s.argmax(axis=1)
    assert calibration.fit_temperature(s, y) < 1.0  # confident and right: sharpen


@pytest.mark.parametrize("classifier,multiclass,norm", [("svm", "ovo", "l2"),
                                                        ("svm", "ovr", "standard"),
                                                        ("logreg", "ovo", "power_l2")])
def test_tf_head_matches_numpy_head(classifier, multiclass, norm):
    """The exported graph's head equals the numpy head for every classifier fast picks."""
    from illustration_tl.heads import head

    store = _store()
    cfg = search.Config("squash", ("a:avg", "b:max"), True, True, norm, classifier, "rbf",
                        3.0, "2*scale", multiclass)
    h = head.fit(store, cfg, ["train", "validation"], None)
    orig = head.store_blocks(store, ["test"], "squash", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", cfg.blocks)
    got = h.tf_probabilities(orig, flip, h.tf_variables()).numpy()
    np.testing.assert_allclose(got, h.probabilities(orig, flip), atol=1e-6)


@pytest.mark.parametrize("backbone,size", [("vgg16", 32), ("mobilenetv2", 32)])
def test_feature_blocks_of_two_families(backbone, size):
    model, blocks, source = features.extractor(backbone, None, size)
    outs = model(np.zeros((2, size, size, 3), np.float32))
    assert blocks[0] == features.PAPER_BLOCK and len(outs) == len(blocks) == 7
    for b, o in zip(blocks[1:], outs[1:]):
        assert o.shape[0] == 2 and len(o.shape) == 2, b


def _run_fit(args, cwd):
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit", *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def four_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("four")
    for c in ("bird", "flower", "fruit", "house"):
        shutil.copytree(os.path.join(SMALL, c), root / "images" / c)
    out = root / "run"
    r = _run_fit([f"--images={root / 'images'}", f"--output={out}", "--weights=none",
                  "--image_size=32", "--num_workers=1"], str(root))
    assert r.returncode == 0, r.stderr[-3000:]
    return root, out, r.stdout


def test_cli_with_four_classes_prints_no_top5_and_resumes(four_classes):
    root, out, stdout = four_classes
    assert "top-1" in stdout and "top-5" not in stdout
    assert (out / "report.md").is_file() and (out / "search" / "leaderboard.md").is_file()
    again = _run_fit([f"--images={root / 'images'}", f"--output={out}", "--weights=none",
                      "--image_size=32", "--num_workers=1"], str(root))
    assert again.returncode == 0 and "up to date" in again.stderr
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    refused = _run_fit([f"--images={root / 'images'}", f"--output={foreign}",
                        "--weights=none"], str(root))
    assert refused.returncode == 2 and (foreign / "keep.txt").read_text() == "mine"


def test_load_predict_equals_the_export_and_the_test_scores(four_classes):
    import tensorflow as tf

    import illustration_tl
    from illustration_tl.evaluation.metrics import EvalResult

    root, out, _ = four_classes
    clf = illustration_tl.load(str(out))
    ev = EvalResult.load(str(out / "evaluate"))
    files = [os.path.join(root, "images", n) if os.path.exists(os.path.join(root, "images", n))
             else n for n in ev.file_names[:6]]
    files = [f for f in files if os.path.isfile(f)]
    assert files, ev.file_names[:3]
    names, probs = clf.predict(files)
    assert probs.shape == (len(files), 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    served = tf.saved_model.load(str(out / "model")).signatures["serving_default"](
        image_bytes=tf.constant([open(f, "rb").read() for f in files]))
    np.testing.assert_allclose(served["probabilities"].numpy(), probs, atol=2e-3)
    assert names == [clf.class_names[i] for i in served["probabilities"].numpy().argmax(1)]


def test_api_in_a_plain_script_without_main_guard(tmp_path):
    script = tmp_path / "plain.py"
    bird = os.path.join(SMALL, "bird", sorted(os.listdir(os.path.join(SMALL, "bird")))[0])
    script.write_text(textwrap.dedent(f"""
        import illustration_tl
        clf = illustration_tl.fit({SMALL!r}, output={str(tmp_path / 'run')!r},
                                  weights=None, image_size=32)
        clf = illustration_tl.load({str(tmp_path / 'run')!r})
        names, probs = clf.predict([{bird!r}])
        print("PREDICTED", names[0], round(float(probs.sum()), 4))
    """))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PREDICTED" in r.stdout and "1.0" in r.stdout and "top-5" in r.stdout


def test_import_stays_light():
    r = subprocess.run([sys.executable, "-c", "import sys, illustration_tl; "
                        "print('tensorflow' in sys.modules, callable(illustration_tl.fit))"],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.stdout.split()[0] == "False", r.stdout + r.stderr


def test_predict_and_evaluate_commands_read_the_fit_export(four_classes):
    """The SavedModel `fit` writes serves `predict` and `evaluate` like `export`'s do."""
    import json as json_lib

    root, out, _ = four_classes
    images = root / "images"
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "predict",
                        f"--model={out / 'model'}", f"--images={images}", "--format=json",
                        "--top_k=2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json_lib.loads(line) for line in r.stdout.splitlines()]
    assert rows and all(len(row["classes"]) == 2 for row in rows)
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "evaluate",
                        f"--model={out / 'model'}", f"--images={images}",
                        f"--output={root / 'eval'}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json_lib.loads((root / "eval" / "evaluation.json").read_text())
    assert doc["scored"] == doc["overall"]["n"] == len(rows) and doc["overall"]["top5"] is None
