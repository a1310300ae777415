"""Backbone.preprocess_input inside tf.data on another Keras backend equals Keras's own
function for every keras.applications row (models/backbones.py, TF_DATA_MODES)."""

import numpy as np

from illustration_tl.models import backbones


def test_tf_arithmetic_equals_keras_for_every_backbone():
    import importlib

    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    modules = {backbones.get(n).module for n in backbones.NAMES}
    assert modules <= set(backbones.TF_DATA_MODES)
    for module in sorted(modules):
        keras_fn = importlib.import_module(f"keras.applications.{module}").preprocess_input
        want = np.asarray(keras_fn(images.copy()))
        got = backbones._tf_preprocess(tf.constant(images), backbones.TF_DATA_MODES[module])
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-4, err_msg=module)
