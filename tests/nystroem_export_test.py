"""A Nyström head (the approximate regime of issue 21) is served by the ``fit`` export:
the SavedModel's probabilities equal the numpy head's on the same pixels."""

import os

import numpy as np
from fit_helpers import tiny_fit_run

from illustration_tl.features import multilayer as features
from illustration_tl.heads import head, search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")


def test_a_nystroem_head_is_served_by_the_fit_export(tmp_path):
    import tensorflow as tf

    from illustration_tl.models import backbones
    from illustration_tl.pipelines import fit_export

    images, out = tiny_fit_run(tmp_path)
    feat_dir = out / "features"
    store = features.FeatureStore.load(str(feat_dir))
    layers = store.meta["layers"]
    # the approximate regime's search on this run's features (a budget it cannot meet)
    results = search.run(store, "fast", n_jobs=1, max_memory_bytes=1)
    assert not results[0].regime.exact
    cfg = next(r.config for r in results if r.config.classifier.startswith("nystroem"))
    assert cfg.components == min(2048, results[0].regime.images)
    final = tmp_path / "final"
    final.mkdir()
    h = head.fit(store, cfg, ["train", "validation"], results[0].oof)
    h.save(str(final))
    fit_export.export(str(final), str(feat_dir), str(tmp_path / "model"))
    served = tf.saved_model.load(str(tmp_path / "model"))
    pixels = np.stack([np.asarray(
        tf.image.resize(tf.io.decode_png(tf.io.read_file(str(images / f)), channels=3),
                        (32, 32)), np.float32) for f in store.file_names["test"]
        if (images / f).is_file()])
    assert len(pixels) >= 3
    got = served.signatures["classify_images"](images=tf.constant(pixels))["probabilities"]
    recipe = store.meta["recipe"]
    model, blocks, _ = features.extractor(recipe["backbone"], recipe["weights"],
                                          recipe["image_size"], recipe["layers"] or None,
                                          recipe["seed"], precision=recipe.get("precision",
                                                                               "float32"))
    pre = backbones.get(store.meta["backbone"]).preprocess_input
    orig = {b: np.asarray(o) for b, o in zip(blocks, model(pre(pixels.copy())))}
    flip = {b: np.asarray(o) for b, o in zip(blocks, model(pre(pixels[:, :, ::-1].copy())))}
    np.testing.assert_allclose(got.numpy(), h.probabilities(orig, flip), atol=1e-4)
    assert layers
