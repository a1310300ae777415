"""A Nyström head (the approximate regime of issue 21) is served by the ``fit`` export:
the SavedModel's probabilities equal the numpy head's on the same pixels."""

import os

import numpy as np
from fit_helpers import served_and_numpy, tiny_fit_run

from illustration_tl.features import multilayer as features
from illustration_tl.heads import budget, head, search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


def test_a_nystroem_head_is_served_by_the_fit_export(tmp_path):
    from illustration_tl.pipelines import fit_export

    images, out = tiny_fit_run(tmp_path)
    feat_dir = out / "features"
    store = features.FeatureStore.load(str(feat_dir))
    layers = store.meta["layers"]
    # the approximate regime's search on this run's features (a budget it cannot meet)
    results = search.run(store, "fast", n_jobs=1, max_memory_bytes=1)
    assert not results[0].regime.exact
    cfg = next(r.config for r in results if r.config.classifier.startswith("nystroem"))
    assert cfg.components == min(budget.NYSTROEM_COMPONENTS, results[0].regime.images)
    final = tmp_path / "final"
    final.mkdir()
    h = head.fit(store, cfg, ["train", "validation"], results[0].oof)
    h.save(str(final))
    fit_export.export(str(final), str(feat_dir), str(tmp_path / "model"))
    got, expected = served_and_numpy(tmp_path / "model", images, store, h)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert layers
