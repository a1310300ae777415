"""A classifier added through the registry (docs/architecture.md, "Add a classifier head"):
ridge regression is one row of ``heads/classifiers.py`` and works in the ``thorough``
search, the fitted head (numpy and TensorFlow) and the exported SavedModel."""

import os

import numpy as np
import pytest
from fit_helpers import served_and_numpy, tiny_fit_run

from illustration_tl.features import multilayer as features
from illustration_tl.heads import classifiers, grids, head, search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
SPLITS = ["train", "validation"]


def _store(classes: int = 4, seed: int = 0) -> features.FeatureStore:
    rng = np.random.default_rng(seed)
    blocks = [features.PAPER_BLOCK] + [features.block_name(n, p) for n in ("a", "b")
                                       for p in features.POOLS]
    arrays, labels, names = {}, {}, {}
    for split, n in (("train", 9), ("validation", 3), ("test", 3)):
        y = np.repeat(np.arange(classes), n)
        labels[split], names[split] = y, [f"{split}/{i}.png" for i in range(len(y))]
        signal = np.eye(5)[y % 5] * 1.5  # one dimension per class
        arrays[split] = {features.key(m, v, b): (rng.random((len(y), 5)) + signal
                                                 ).astype(np.float32)
                         for m in ("squash",) for v in features.VIEWS for b in blocks}
    return features.FeatureStore(arrays, labels, names, [f"c{i}" for i in range(classes)],
                                 blocks, ["squash"], list(features.VIEWS),
                                 {"layers": ["a", "b"], "backbone": "vgg16"})


def _ridge(C: float = 3.0, flip: bool = True) -> search.Config:
    return search.Config("squash", ("a:avg", "b:max"), flip, flip, "l2", "ridge", C=C)


def test_ridge_is_a_registered_linear_kind_in_the_thorough_grid():
    assert classifiers.get("ridge").family == "linear"
    thorough = grids.candidates("thorough", _store())
    assert {c.C for c in thorough if c.classifier == "ridge"} == {0.3, 3.0, 30.0}
    assert not any(c.classifier == "ridge" for c in grids.candidates("fast", _store()))
    assert _ridge().label().endswith("] ridge C=3")


def test_ridge_cross_validates_better_than_chance():
    results = search.run(_store(), configs=[_ridge(0.3), _ridge(3.0)], n_jobs=1)
    assert [len(r.fold_top1) for r in results] == [3, 3]
    assert results[0].top1 > 0.5 and results[0].oof.shape == (48, 4)


@pytest.mark.parametrize("classes", [2, 4])
def test_tf_head_equals_numpy_head_for_ridge(classes):
    store = _store(classes)
    h = head.fit(store, _ridge(), SPLITS, None)
    assert h.svm is None and h.weights.shape == (10, classes)
    orig = head.store_blocks(store, ["test"], "squash", "orig", h.config.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", h.config.blocks)
    got = h.tf_probabilities(orig, flip, h.tf_variables()).numpy()
    np.testing.assert_allclose(got, h.probabilities(orig, flip), atol=1e-6)
    assert (h.probabilities(orig, flip).argmax(1) == store.labels["test"]).mean() > 0.5


def test_a_ridge_head_is_served_by_the_fit_export(tmp_path):
    """A real (tiny) fit run's features, a ridge head fitted on them, exported as fit's
    model: the SavedModel's probabilities equal the numpy head's on the same pixels."""
    from illustration_tl.pipelines import fit_export

    images, out = tiny_fit_run(tmp_path)
    feat_dir = out / "features"
    store = features.FeatureStore.load(str(feat_dir))
    layers = store.meta["layers"]
    cfg = search.Config("squash", tuple(features.block_name(layers[-1], p)
                                        for p in features.POOLS), True, True, "l2", "ridge",
                        C=3.0)
    final = tmp_path / "final"
    final.mkdir()
    h = head.fit(store, cfg, SPLITS, None)
    h.save(str(final))
    fit_export.export(str(final), str(feat_dir), str(tmp_path / "model"))
    got, expected = served_and_numpy(tmp_path / "model", images, store, h)
    np.testing.assert_allclose(got, expected, atol=1e-4)
