"""Tests of the paper §7 layer surgery: rebuilding, layer specs, re-initialization."""

import os

import h5py
import keras
import numpy as np
import pytest

from illustration_tl.errors import UserError
from illustration_tl.models import layer_surgery

VGG19_CONVS = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
               "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
               "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
               "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]


@pytest.fixture(scope="module")
def vgg19():
    return layer_surgery.rebuild("vgg19", 7, weights=None, image_size=32, seed=3)


@pytest.fixture(scope="module")
def vgg16():
    return layer_surgery.rebuild("vgg16", 4, weights=None, image_size=32, seed=0).model


def weights_of(model):
    return {v.path: np.array(v.numpy()) for v in model.weights}


def test_vgg19_rebuilt_with_dropout_and_new_classifier(vgg19):
    model = vgg19.model
    names = [layer.name for layer in model.layers]
    assert names[-6:] == ["flatten", "fc1", "fc1_dropout", "fc2", "fc2_dropout", "predictions"]
    for name in ("fc1_dropout", "fc2_dropout"):
        assert isinstance(model.get_layer(name), keras.layers.Dropout)
        assert model.get_layer(name).rate == 0.5
    assert model.get_layer("predictions").units == 7
    assert model.output.shape == (None, 7)
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert vgg19.weights_source == "none" and vgg19.loaded_layers == []
    assert vgg19.fresh_layers == VGG19_CONVS + ["fc1", "fc2", "predictions"]


def test_paper_numbering_counts_weighted_layers(vgg19):
    model = vgg19.model
    numbered = [layer.name for layer in layer_surgery.weighted_layers(model)]
    assert numbered == VGG19_CONVS + ["fc1", "fc2", "predictions"]
    # Paper §7: re-initialize 1-10 and 17-19, keep 11-16.
    chosen = layer_surgery.parse_layer_spec("1-10,17-19", model)
    assert chosen == VGG19_CONVS[:10] + ["fc1", "fc2", "predictions"]
    kept = layer_surgery.parse_layer_spec("11-16", model)
    assert kept == VGG19_CONVS[10:]
    assert layer_surgery.layer_number(model)["block4_conv3"] == 11


def test_spec_globs_names_and_mixtures(vgg19, vgg16):
    model = vgg19.model
    assert layer_surgery.parse_layer_spec("block1_*,fc*", model) == [
        "block1_conv1", "block1_conv2", "fc1", "fc2"]
    # Numbers, globs and exact names combine; duplicates collapse; model order is kept.
    assert layer_surgery.parse_layer_spec("predictions, 2, block1_*, 1-1", model) == [
        "block1_conv1", "block1_conv2", "predictions"]
    assert layer_surgery.parse_layer_spec("none", model) == []
    assert layer_surgery.parse_layer_spec("", model) == []
    assert len(layer_surgery.parse_layer_spec("all", model)) == 19
    # VGG16's paper-equivalent recipe: blocks 1-4 (layers 1-10) and the classifier (14-16).
    globs = layer_surgery.parse_layer_spec(
        "block1_*,block2_*,block3_*,block4_*,fc1,fc2,predictions", vgg16)
    assert globs == layer_surgery.parse_layer_spec("1-10,14-16", vgg16)
    # A list of names (no model needed) parses the same way.
    names = layer_surgery.weighted_layer_names("vgg19", 32)
    assert names == VGG19_CONVS + ["fc1", "fc2", "predictions"]
    assert layer_surgery.parse_layer_spec("1-10,17-19", names) == \
        layer_surgery.parse_layer_spec("1-10,17-19", model)


@pytest.mark.parametrize("spec, message", [
    ("0-3", "outside 1-19"),
    ("15-20", "outside 1-19"),
    ("block9_*", "matches no weighted layer"),
    ("block1_pool", "has no weights"),
])
def test_bad_specs_are_named(vgg19, spec, message):
    with pytest.raises(UserError, match=message):
        layer_surgery.parse_layer_spec(spec, vgg19.model, flag="--reinit_layers")


def test_reinitialize_changes_exactly_the_chosen_layers():
    model = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, seed=0)
    for v in model.weights:  # a recognizable "pretrained" state
        v.assign(np.full(v.shape, 0.125, dtype="float32"))
    before = weights_of(model)
    chosen = layer_surgery.parse_layer_spec("block2_*,fc2", model)
    layer_surgery.reinitialize(model, chosen, seed=11)
    after = weights_of(model)
    for path, value in after.items():
        layer = path.split("/")[0]
        if layer in chosen:
            if path.endswith("kernel"):
                assert not np.any(value == 0.125), path
                # Glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out)).
                shape = value.shape
                receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
                limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
                assert np.abs(value).max() <= limit
                assert np.abs(value).max() > 0.9 * limit
            else:
                assert np.array_equal(value, np.zeros_like(value)), path  # zeros initializer
        else:
            assert np.array_equal(value, before[path]), path  # bit-identical


def test_reinitialize_is_seeded_per_variable():
    a = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, seed=0)
    b = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, seed=0)
    # Same seed, different set of layers: the shared layer gets the same values.
    layer_surgery.reinitialize(a, ["block1_conv1"], seed=5)
    layer_surgery.reinitialize(b, ["block1_conv1", "fc1"], seed=5)
    np.testing.assert_array_equal(a.get_layer("block1_conv1").kernel.numpy(),
                                  b.get_layer("block1_conv1").kernel.numpy())
    layer_surgery.reinitialize(b, ["block1_conv1"], seed=6)
    assert not np.array_equal(a.get_layer("block1_conv1").kernel.numpy(),
                              b.get_layer("block1_conv1").kernel.numpy())


def test_rebuild_is_reproducible_from_the_seed():
    a = weights_of(layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32,
                                                  seed=1))
    b = weights_of(layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32,
                                                  seed=1))
    c = weights_of(layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32,
                                                  seed=2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["block3_conv1/kernel"], c["block3_conv1/kernel"])


def test_reinitialize_batch_norm_and_missing_initializer():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)

    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.alpha = self.add_weight(shape=(), initializer="ones", name="alpha")

        def call(self, x):
            return x * self.alpha

    model = keras.Model(inputs, Scale(name="scale")(x))
    bn = model.get_layer("bn")
    for v in bn.weights:
        v.assign(np.full(v.shape, 7.0, dtype="float32"))
    layer_surgery.reinitialize(model, ["bn"], seed=0)
    np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(4))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(4))
    np.testing.assert_array_equal(bn.beta.numpy(), np.zeros(4))
    with pytest.raises(UserError, match="declares no initializer"):
        layer_surgery.reinitialize(model, ["scale"], seed=0)


@pytest.mark.slow
def test_weights_from_notop_and_top_files(tmp_path, vgg16):
    # A no-top Keras 3 file (the shape of the shared ImageNet VGG16 file).
    notop = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    for i, v in enumerate(notop.weights):
        v.assign(np.random.default_rng(i).normal(size=v.shape).astype("float32"))
    notop_path = str(tmp_path / "notop.weights.h5")
    notop.save_weights(notop_path)
    assert layer_surgery.weights_file_top(notop_path) is None
    # The conv base loads into a with-top classifier, at another image size too.
    rebuilt = layer_surgery.rebuild("vgg16", 5, weights=notop_path, image_size=64, seed=0)
    assert rebuilt.loaded_layers == [layer.name for layer in
                                     layer_surgery.weighted_layers(notop)]
    assert rebuilt.fresh_layers == ["fc1", "fc2", "predictions"]
    for layer in layer_surgery.weighted_layers(notop):
        for a, b in zip(layer.weights, rebuilt.model.get_layer(layer.name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

    # A with-top file (Keras 3 format) made at 32 px with 10 classes: conv and fc1/fc2 load,
    # predictions is new; the top is read from the file.
    top = keras.applications.VGG16(include_top=True, weights=None, input_shape=(32, 32, 3),
                                   classes=10)
    top_path = str(tmp_path / "top.weights.h5")
    top.save_weights(top_path)
    info = layer_surgery.weights_file_top(top_path)
    assert info == layer_surgery.FileTop(classes=10, first_dense_inputs=512)
    rebuilt = layer_surgery.rebuild("vgg16", 3, weights=top_path, image_size=32, seed=0)
    assert "fc1" in rebuilt.loaded_layers and "fc2" in rebuilt.loaded_layers
    assert rebuilt.fresh_layers == ["predictions"]
    np.testing.assert_array_equal(rebuilt.model.get_layer("fc2").kernel.numpy(),
                                  top.get_layer("fc2").kernel.numpy())
    # top_weights=False keeps only the conv base; at 64 px fc1 cannot fit and is reported.
    conv_only = layer_surgery.rebuild("vgg16", 3, weights=top_path, image_size=32,
                                      top_weights=False)
    assert conv_only.fresh_layers == ["fc1", "fc2", "predictions"]
    at64 = layer_surgery.rebuild("vgg16", 3, weights=top_path, image_size=64)
    assert at64.unfit_layers == ["fc1"] and "fc2" in at64.loaded_layers

    # Legacy whole-model .h5 files are read too.
    legacy = str(tmp_path / "legacy.h5")
    top.save(legacy)
    assert layer_surgery.weights_file_top(legacy) == info
    classifier = layer_surgery.imagenet_classifier("vgg16", legacy)
    assert classifier.output.shape == (None, 10)
    with pytest.raises(UserError, match="no classifier top"):
        layer_surgery.imagenet_classifier("vgg16", notop_path)


@pytest.mark.parametrize("weights, message", [
    ("/nonexistent/vgg.weights.h5", "no such file"),
    ("vgg.bin", "expected 'imagenet', 'none'"),
])
def test_bad_weights_argument(weights, message):
    with pytest.raises(UserError, match=message):
        layer_surgery.rebuild("vgg16", 3, weights=weights, image_size=32)


def test_gap_head_for_other_backbones():
    model = layer_surgery.build_classifier("mobilenetv2", 6, weights=None, image_size=32,
                                           dropout=0.2)
    assert [layer.name for layer in model.layers[-3:]] == ["avg_pool", "top_dropout",
                                                           "predictions"]
    embedder = layer_surgery.embedding_model(model)
    assert embedder.output.shape == (None, 1280)


def test_embedding_model_is_fc2(vgg16):
    embedder = layer_surgery.embedding_model(vgg16)
    assert embedder.output.shape == (None, 4096)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    fc2 = keras.Model(vgg16.inputs, vgg16.get_layer("fc2").output)
    np.testing.assert_allclose(embedder.predict(x, verbose=0), fc2.predict(x, verbose=0))
    with pytest.raises(UserError, match="not in"):
        layer_surgery.embedding_model(vgg16, "fc9")


@pytest.mark.slow
def test_save_and_load_trained(tmp_path):
    model = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, seed=4)
    config = {"backbone": "vgg16", "image_size": 32, "num_classes": 3,
              "class_names": ["a", "b", "c"], "dropout": 0.5, "resize_mode": "squash",
              "weights_source": "none", "reinit_layers": [], "dataset": "synthetic"}
    out = str(tmp_path / "trained")
    layer_surgery.save_trained(model, out, config)
    assert sorted(os.listdir(out)) == ["model.keras", "model_config.json"]
    loaded, loaded_config = layer_surgery.load_trained(out)
    assert loaded_config == config
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    again = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, seed=9)
    loaded.save_weights(str(tmp_path / "copy.weights.h5"))
    again.load_weights(str(tmp_path / "copy.weights.h5"))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(UserError, match="not a trained-model directory"):
        layer_surgery.load_trained(str(tmp_path))
    with pytest.raises(ValueError, match="lacks"):
        layer_surgery.save_trained(model, out, {"backbone": "vgg16"})


def test_fc_units_sets_the_vgg_head_width():
    model = layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32,
                                           fc_units=64)
    assert model.get_layer("fc1").units == 64 and model.get_layer("fc2").units == 64
    with pytest.raises(UserError, match="--fc_units=0"):
        layer_surgery.build_classifier("vgg16", 3, weights=None, image_size=32, fc_units=0)


@pytest.mark.real_weights
@pytest.mark.slow
def test_shared_imagenet_vgg16_conv_base_survives_reinit_of_blocks_1_to_4():
    path = os.environ.get("ILLUSTRATION_TL_VGG16_WEIGHTS")
    assert path, "set ILLUSTRATION_TL_VGG16_WEIGHTS to the ImageNet VGG16 no-top weights"
    rebuilt = layer_surgery.rebuild("vgg16", 10, weights=path, image_size=64, seed=0)
    model = rebuilt.model
    assert rebuilt.weights_source == path and rebuilt.fresh_layers == ["fc1", "fc2",
                                                                       "predictions"]
    reinit = layer_surgery.parse_layer_spec("block1_*,block2_*,block3_*,block4_*,fc*", model)
    assert reinit == layer_surgery.parse_layer_spec("1-10,14-15", model)
    layer_surgery.reinitialize(model, reinit, seed=0)
    # The file stores the 13 convolutions in order as layers/conv2d, conv2d_1, ...
    with h5py.File(path, "r") as f:
        stored = [[np.array(f["layers"][name]["vars"][str(i)]) for i in range(2)]
                  for name in ["conv2d"] + [f"conv2d_{i}" for i in range(1, 13)]]
    convs = [layer for layer in layer_surgery.weighted_layers(model)
             if layer.name.startswith("block")]
    assert len(convs) == len(stored) == 13
    for layer, (kernel, bias) in zip(convs, stored):
        if layer.name.startswith("block5"):
            np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
            np.testing.assert_array_equal(layer.bias.numpy(), bias)
        else:
            assert not np.array_equal(layer.kernel.numpy(), kernel), layer.name
            assert not np.any(layer.bias.numpy()), layer.name  # zeros after re-init
