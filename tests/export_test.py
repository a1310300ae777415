"""The exported SavedModel gives the training pipeline's answers (issue: export/predict)."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

SIZE = 16
N_CLASSES = 4
KERNELS = ["linear", "rbf", "poly", "sigmoid"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN, its embeddings of 40 images, and an SVM per kernel, exported."""
    import keras
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from illustration_tl.heads import calibration, config, svm, svm_graph
    from illustration_tl.heads.head import Head
    from illustration_tl.models import backbones
    from illustration_tl.serving import export

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, activation="relu", name="fc2")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    labels = np.arange(40) % N_CLASSES
    base = rng.uniform(0, 255, (N_CLASSES, 1, 1, 3))
    images = np.clip(base[labels] + rng.normal(0, 30, (40, SIZE, SIZE, 3)), 0, 255)
    images = np.round(images).astype(np.float32)  # exactly representable as PNG bytes
    feats = model.predict(backbones.get("vgg16").preprocess_input(images.copy()), verbose=0)
    root = tmp_path_factory.mktemp("exports")
    out = {}
    names = [f"class_{i}" for i in range(N_CLASSES)]
    for kernel in KERNELS:
        for multiclass in ["ovr", "ovo"]:
            svc = SVC(kernel=kernel, C=10, gamma=0.1, coef0=0.5 if kernel == "poly" else 0.0,
                      degree=2)
            clf = OneVsRestClassifier(svc) if multiclass == "ovr" else svc
            pipe = Pipeline([("scale", StandardScaler()), ("svm", clf)]).fit(feats, labels)
            point = config.paper_point(svm.SvmParams(
                kernel=kernel, C=10, gamma=0.1, multiclass=multiclass, scaling="standard",
                coef0=0.5 if kernel == "poly" else 0.0, degree=2))
            head = Head.from_svm(svm_graph.from_sklearn(pipe, N_CLASSES), names, point)
            path = str(root / f"{kernel}_{multiclass}")
            export.export_classifier(path, model=model, backbone="vgg16", image_size=SIZE,
                                     class_names=names, head=head, top_k=3)
            # served: the head's probabilities (temperature 1 here) of sklearn's scores
            out[(kernel, multiclass)] = (path, calibration.softmax(
                pipe.decision_function(feats), 1.0))
    softmax_head = keras.Sequential([model, keras.layers.Dense(N_CLASSES,
                                                               activation="softmax")])
    path = str(root / "softmax")
    export.export_classifier(path, model=softmax_head, backbone="vgg16", image_size=SIZE,
                             class_names=names)
    pre = backbones.get("vgg16").preprocess_input(images.copy())
    out["softmax"] = (path, softmax_head.predict(pre, verbose=0))
    return images, out


_LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf  # no project imports: a plain consumer of the SavedModel
    images = np.load(sys.argv[1])
    pngs = [tf.io.encode_png(tf.cast(i, tf.uint8)).numpy() for i in images]
    result = {}
    for path in sys.argv[2:]:
        m = tf.saved_model.load(path)
        a = m.signatures["classify_images"](images=tf.constant(images))
        b = m.signatures["serving_default"](image_bytes=tf.constant(pngs))
        result[path] = {"pixels": a["all_scores"].numpy().tolist(),
                        "bytes": b["all_scores"].numpy().tolist(),
                        "names": [[n.decode() for n in r] for r in a["class_names"].numpy()],
                        "meta": json.loads(m.metadata()["metadata"].numpy())}
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    images, exports = trained
    npy = tmp_path_factory.mktemp("in") / "images.npy"
    np.save(npy, images)
    paths = [p for p, _ in exports.values()]
    r = subprocess.run([sys.executable, "-c", _LOADER, str(npy), *paths], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("multiclass", ["ovr", "ovo"])
def test_svm_export_parity_in_fresh_process(trained, served, kernel, multiclass):
    path, expected = trained[1][(kernel, multiclass)]
    got = np.array(served[path]["pixels"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # Encoded PNG bytes through the serving signature: identical pixels, identical scores.
    np.testing.assert_allclose(np.array(served[path]["bytes"]), got, rtol=1e-5, atol=1e-5)
    meta = served[path]["meta"]
    assert meta["svm"]["kernel"] == kernel and meta["svm"]["multiclass"] == multiclass
    assert meta["head"] == "svm" and meta["config"]["norm"] == "standard"
    assert meta["outputs"] == "probabilities" and meta["temperature"] == 1.0
    top = np.argsort(-expected, axis=1, kind="stable")[:, :3]
    assert served[path]["names"] == [[f"class_{i}" for i in row] for row in top]


@pytest.mark.slow
def test_softmax_head_without_svm(trained, served):
    path, expected = trained[1]["softmax"]
    np.testing.assert_allclose(np.array(served[path]["pixels"]), expected, rtol=1e-4, atol=1e-6)
    assert served[path]["meta"]["head"] == "softmax"


@pytest.mark.slow
def test_saved_model_cli_lists_named_signatures(trained):
    path = trained[1][("rbf", "ovr")][0]
    r = subprocess.run(["saved_model_cli", "show", "--all", "--dir", path], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for text in ["signature_def['serving_default']", "signature_def['classify_images']",
                 "inputs['image_bytes']", "inputs['images']", "outputs['class_names']",
                 "outputs['class_indices']", "outputs['scores']"]:
        assert text in out


def test_decode_composites_alpha_on_white():
    import tensorflow as tf

    from illustration_tl.serving import export

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255          # red ...
    rgba[:2, :, 3] = 255        # ... opaque on the top half, transparent below
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    out = export.decode_image_bytes(tf.constant(buf.getvalue())).numpy()
    assert (out[:2] == [255, 0, 0]).all() and (out[2:] == [255, 255, 255]).all()
    for mode in ["L", "LA", "P", "1"]:
        buf = io.BytesIO()
        Image.new(mode, (5, 3)).save(buf, "PNG")
        assert export.decode_image_bytes(tf.constant(buf.getvalue())).shape == (3, 5, 3)


def test_the_svm_stage_head_is_served_as_the_numpy_head_computes(tmp_path):
    """The svm stage's artifact (a grid search, so a fitted temperature), read back and
    exported by the one builder: the served probabilities and top-k are the numpy
    head's on the same pixels."""
    import keras

    from illustration_tl.heads import svm
    from illustration_tl.models import backbones
    from illustration_tl.serving import export, predict

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(6, 3),
                              keras.layers.GlobalAveragePooling2D()])
    rng = np.random.default_rng(1)
    labels = np.arange(30) % 3
    images = np.clip(rng.uniform(0, 255, (3, 1, 1, 3))[labels]
                     + rng.normal(0, 40, (30, SIZE, SIZE, 3)), 0, 255).astype(np.float32)
    feats = model.predict(backbones.get("vgg16").preprocess_input(images.copy()), verbose=0)
    grid = svm.grid(kernels=["rbf"], gammas=[0.1, 1.0], Cs=[1, 10], multiclass=["ovo"],
                    scalings=["standard"])
    fitted = svm.fit(feats[:24], labels[:24], grid, class_names=["a", "b", "c"], n_jobs=1)
    svm.save(str(tmp_path / "svm"), fitted, ["a", "b", "c"])
    head, _ = svm.load(str(tmp_path / "svm"))
    assert head.temperature != 1.0
    export.export_classifier(str(tmp_path / "model"), model=model, backbone="vgg16",
                             image_size=SIZE, head=head, top_k=2)
    out = predict.Predictor(str(tmp_path / "model")).classify_pixels(images[24:])
    expected = head.probabilities({svm.PAPER_BLOCK: feats[24:]})
    np.testing.assert_allclose(out["all_scores"], expected, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    top = np.argsort(-svm.head_scores(head, feats[24:]), axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(out["class_indices"], top)
