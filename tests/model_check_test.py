"""The op allowlist (issue 20) is derived from this project's own exports and stays tight;
exports store each variable once (issue 23).

Every kind of model the project writes is exported here at a tiny size: ``export``
with an SVM (every kernel, one-vs-rest and one-vs-one, standard and l2 scaling, a
binary SVM) or a CNN softmax head, the ImageNet classifier of every
``keras.applications`` backbone, and a ``fit`` model. Their ops must all be in
:data:`model_check.ALLOWED_OPS`, and the list may hold nothing else but its
documented margin. The KerasHub towers' ops are in that margin and checked by
``tests/hub_backbones_test.py``, whose ``load()`` calls go through the check.
"""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

from illustration_tl.serving import model_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
SIZE = 16


def _tiny_embedder():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="relu", name="fc2")(x))


def _svm_pipelines():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 10)), np.arange(40) % 4
    for kernel in ("linear", "rbf", "poly", "sigmoid"):
        for multiclass in ("ovr", "ovo"):
            for scaler in (StandardScaler, Normalizer):
                if scaler is Normalizer and kernel != "rbf":
                    continue
                svc = SVC(kernel=kernel, C=10, gamma=0.1, degree=2)
                clf = OneVsRestClassifier(svc) if multiclass == "ovr" else svc
                yield (f"{kernel}_{multiclass}_{scaler.__name__}", 4,
                       Pipeline([("s", scaler()), ("svm", clf)]).fit(feats, labels))
    yield "binary", 2, Pipeline([("s", StandardScaler()), ("svm", SVC())]).fit(
        feats, labels % 2)


def _svm_head(pipe, n):
    """The fitted pipeline as the head an export serves (its scaler the normalization)."""
    from illustration_tl.heads import config, svm_graph
    from illustration_tl.heads.head import Head

    clf = pipe.named_steps["svm"]
    svc = clf.estimators_[0] if hasattr(clf, "estimators_") else clf  # a fitted SVC
    point = config.Config(classifier="svm", kernel=svc.kernel, C=svc.C,
                          gamma=repr(float(svc._gamma)), degree=svc.degree,
                          multiclass="ovr" if svc is not clf else "ovo")
    return Head.from_svm(svm_graph.from_sklearn(pipe, n), [f"c{i}" for i in range(n)], point)


def checkpoint_params(model_dir: str) -> int:
    """Numbers stored in a SavedModel's checkpoint (its object graph left out)."""
    import tensorflow as tf

    return sum(int(np.prod(shape)) for name, shape in
               tf.train.list_variables(os.path.join(model_dir, "variables", "variables"))
               if "_CHECKPOINTABLE_OBJECT_GRAPH" not in name)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{kind: (SavedModel folder, parameters of the model it serves)}."""
    import keras

    import illustration_tl
    from illustration_tl.datasets import imagenet
    from illustration_tl.models import backbones, layer_surgery
    from illustration_tl.serving import export

    root = tmp_path_factory.mktemp("kinds")
    out: dict[str, tuple[str, int]] = {}
    model = _tiny_embedder()
    for name, n, pipe in _svm_pipelines():
        head = _svm_head(pipe, n)
        export.export_classifier(str(root / name), model=model, backbone="vgg16",
                                 image_size=SIZE, head=head, top_k=3)
        mod = head.tf_variables()  # what the export stores
        out[name] = (str(root / name),
                     model.count_params() + sum(int(np.prod(v.shape)) for v in mod.variables))
    export.export_classifier(str(root / "pad"), model=model, backbone="vgg16", image_size=SIZE,
                             head=_svm_head(pipe, 2), resize_mode="pad")
    out["pad"] = (str(root / "pad"), 0)
    head = keras.Sequential([model, keras.layers.Dense(4, activation="softmax")])
    export.export_classifier(str(root / "softmax"), model=head, backbone="vgg16",
                             image_size=SIZE, class_names=["a", "b", "c", "d"])
    out["softmax"] = (str(root / "softmax"), head.count_params())
    names = [c.name for c in imagenet.classes()]
    for bb in backbones.NAMES:
        size = 75 if bb == "inceptionv3" else 32
        net = layer_surgery.imagenet_classifier(bb, "none", size)
        export.export_classifier(str(root / bb), model=net, backbone=bb, image_size=size,
                                 class_names=names)
        out[bb] = (str(root / bb), net.count_params())
    images = root / "images"
    for c in ("bird", "flower", "fruit", "house"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    illustration_tl.fit(str(images), output=str(root / "fit"), weights=None, image_size=32,
                        verbose=0)
    out["fit"] = (str(root / "fit" / "model"), 0)
    return out


@pytest.mark.slow
def test_every_export_kind_passes_and_the_allowlist_is_tight(exports):
    seen: set[str] = set()
    for path, _ in exports.values():
        model_check.check_saved_model(path)          # raises UserError on any other op
        seen |= model_check.model_ops(model_check.parse(path)) - model_check.SAVER_OPS
    assert seen <= model_check.ALLOWED_OPS
    # Ops only some of fit's searched configurations use (flip test-time augmentation,
    # max-pooled blocks, signed square root): the search may choose another one here.
    config_dependent = {"ReverseV2", "Max", "Sign"}
    assert model_check.EXPORTED_OPS - seen <= config_dependent, \
        sorted(model_check.EXPORTED_OPS - seen)
    assert set(model_check.MARGIN_OPS).isdisjoint(seen)
    assert len(model_check.MARGIN_OPS) <= 20 and all(model_check.MARGIN_OPS.values())
    assert not model_check.ALLOWED_OPS & model_check.SAVER_OPS


@pytest.mark.slow
def test_checkpoints_hold_each_variable_once(exports):
    """keras#23553: Keras's ExportArchive stored every variable twice when a model was
    tracked; the checkpoint's numbers now equal the model's parameters (within 1%)."""
    from illustration_tl.pipelines import fit as fitting

    for kind in ("softmax", "vgg16", "mobilenetv2", "rbf_ovr_StandardScaler"):
        path, params = exports[kind]
        stored = checkpoint_params(path)
        assert abs(stored - params) <= 0.01 * params, (kind, stored, params)
    path = exports["fit"][0]
    stored = checkpoint_params(path)
    conv_base = _vgg16_conv_params()
    # the fit model: VGG16's conv blocks (at most) plus a small head
    assert stored < 1.05 * conv_base, (stored, conv_base)
    assert os.path.isfile(os.path.join(path, "..", fitting.MARKER))


def _vgg16_conv_params() -> int:
    from illustration_tl.models import backbones

    return backbones.get("vgg16").application()(include_top=False, weights=None,
                                                 input_shape=(32, 32, 3)).count_params()


@pytest.mark.real_weights
def test_a_real_vgg16_fit_model_is_at_most_65_mb(tmp_path):
    import illustration_tl

    weights = os.environ.get("ILLUSTRATION_TL_VGG16_WEIGHTS")
    assert weights, "set ILLUSTRATION_TL_VGG16_WEIGHTS to the VGG16 ImageNet conv base"
    images = tmp_path / "images"
    for c in ("bird", "flower", "fruit"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    clf = illustration_tl.fit(str(images), output=str(tmp_path / "run"), weights=weights,
                              image_size=64, verbose=0)
    size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(clf.model_dir, "**"),
                                                     recursive=True) if os.path.isfile(f))
    print(f"VGG16 fit model: {size / 1e6:.1f} MB")
    assert size <= 65e6, size
