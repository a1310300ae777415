"""Ridge by chunked normal equations (heads/ridge.py) and the Nyström head's streamed
final fit (heads/head.py, issue 21): equal to scikit-learn's RidgeClassifier and to
the in-memory fit, in memory that does not grow with the rows."""

import tracemalloc

import numpy as np
import pytest
from scalable_search_test import _store
from sklearn.linear_model import RidgeClassifier as SkRidge

from illustration_tl.evaluation.metrics import scores_2d
from illustration_tl.heads import head, ridge, search
from illustration_tl.heads.approximate import NystroemMap
from illustration_tl.heads.config import Normalizer, resolve_gamma

SPLITS = ["train", "validation"]


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_equals_scikit_learn(classes, class_weight):
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 900)
    y[:300] = 0   # unbalanced, so that the weights matter
    x = rng.normal(size=(900, 30))
    x[np.arange(900), y] += 1.5
    ours = ridge.RidgeClassifier(0.3, class_weight)
    ridge_chunk = ridge.CHUNK_ROWS
    try:
        ridge.CHUNK_ROWS = 128   # several chunks
        ours.fit(x, y)
    finally:
        ridge.CHUNK_ROWS = ridge_chunk
    sk = SkRidge(alpha=0.3, class_weight=class_weight).fit(x, y)
    np.testing.assert_allclose(ours.decision_function(x), scores_2d(sk.decision_function(x)),
                               atol=1e-9)
    assert (ours.predict(x) == sk.predict(x)).all()


def test_chunks_in_any_grouping_give_one_solution():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 12)), rng.integers(0, 4, 500)
    whole = ridge.RidgeClassifier(1.0).fit(x, y)
    split = ridge.RidgeClassifier(1.0).fit_chunks(
        [(x[i:i + 37], y[i:i + 37]) for i in range(0, 500, 37)], y, 12)
    np.testing.assert_allclose(split.coef_, whole.coef_, atol=1e-12)
    np.testing.assert_allclose(split.intercept_, whole.intercept_, atol=1e-12)


def _in_memory_head(store, cfg):
    """The final fit as it was before streaming: every row's Nyström features in memory,
    scikit-learn's RidgeClassifier on them."""
    y = np.concatenate([store.labels[s] for s in SPLITS])
    fs = search.feature_set(store, SPLITS, cfg)
    gamma = resolve_gamma(cfg.gamma, fs.x[:fs.n])
    ny = NystroemMap.fit(fs.x[:fs.n], y, gamma, cfg.components)
    z = ny.transform(fs.x)
    rows = np.arange(len(z)) if cfg.flip_train else np.arange(fs.n)
    sk = SkRidge(alpha=1.0 / cfg.C).fit(z[rows], y[rows % fs.n])
    return fs.normalizer, gamma, ny, sk


@pytest.mark.parametrize("norm", ["l2", "standard"])
def test_streamed_nystroem_head_equals_the_in_memory_fit(monkeypatch, norm):
    store = _store(n_per_class=30, classes=4, modes=("squash",))
    cfg = search.Config("squash", ("a:avg", "b:max"), True, True, norm, "nystroem_ridge",
                        C=100.0, gamma="scale", components=20)
    monkeypatch.setattr(head, "FIT_CHUNK_IMAGES", 7)   # many chunks, one ragged
    logged = []
    h = head.fit(store, cfg, SPLITS, None, log=logged.append)
    assert logged and logged[-1].startswith(
        "final: nystroem_ridge on every training image: 256/256 rows (100%)"), logged
    normalizer, gamma, ny, sk = _in_memory_head(store, cfg)
    assert h.gamma == pytest.approx(gamma, rel=1e-9)
    if norm == "standard":
        np.testing.assert_allclose(h.normalizer.mean, normalizer.mean, atol=1e-12)
        np.testing.assert_allclose(h.normalizer.std, normalizer.std, rtol=1e-9)
    np.testing.assert_allclose(h.nystroem.components, ny.components, atol=1e-12)
    orig = head.store_blocks(store, ["test"], "squash", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", cfg.blocks)
    expected = (sk.decision_function(ny.transform(h.row_features(orig)))
                + sk.decision_function(ny.transform(h.row_features(flip)))) / 2
    np.testing.assert_allclose(h.scores(orig, flip), expected, atol=1e-8)
    assert isinstance(h.normalizer, Normalizer)
    # the test split's probabilities, 7 images at a time, equal the whole split's
    np.testing.assert_allclose(head.split_probabilities(store, h, "test"),
                               h.probabilities(orig, flip), atol=1e-12)


def test_streamed_fit_memory_does_not_hold_the_mapped_rows(monkeypatch):
    """6,000 images x 2 views x 512 components: the mapped rows would be 49 MB; the
    streamed fit's peak allocation stays far below, at a few chunks."""
    store = _store(n_per_class=1500, classes=4, modes=("squash",), dim=16)
    cfg = search.Config("squash", ("a:avg", "b:max", "c:avg"), True, True, "l2",
                        "nystroem_ridge", C=100.0, gamma="scale", components=512)
    monkeypatch.setattr(head, "FIT_CHUNK_IMAGES", 512)
    mapped_bytes = 2 * 6000 * 512 * 8
    tracemalloc.start()
    try:
        h = head.fit(store, cfg, SPLITS, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mapped_bytes / 4, (peak, mapped_bytes)
    orig = head.store_blocks(store, ["test"], "squash", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", cfg.blocks)
    assert (h.scores(orig, flip).argmax(1) == store.labels["test"]).mean() > 0.5
