"""The TensorFlow SVM decision function equals scikit-learn's, for every layout."""

import numpy as np
import pytest
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import SVC

from illustration_tl.heads import svm_graph


def _data(n_classes, n=90, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)) * 3
    y = np.arange(n) % n_classes
    x = centers[y] + rng.normal(size=(n, d))
    return np.abs(x) * 20, y  # non-negative, large magnitude: like ReLU fc2 features


@pytest.mark.parametrize("kernel", svm_graph.KERNELS)
@pytest.mark.parametrize("multiclass", ["ovr", "ovo"])
@pytest.mark.parametrize("scaling", ["none", "standard", "l2"])
def test_decision_function_parity(kernel, multiclass, scaling):
    x, y = _data(4)
    gamma = {"none": 1e-4, "standard": 0.05, "l2": 1.0}[scaling]
    svc = SVC(kernel=kernel, C=10, gamma=gamma, coef0=0.5 if kernel != "sigmoid" else 0.0,
              degree=2)
    clf = OneVsRestClassifier(svc) if multiclass == "ovr" else svc
    scaler = {"none": "passthrough", "standard": StandardScaler(), "l2": Normalizer()}[scaling]
    model = Pipeline([("scale", scaler), ("svm", clf)]).fit(x[:70], y[:70])
    expected = model.decision_function(x[70:])
    tensors = svm_graph.from_sklearn(model)
    got = svm_graph.decision_function(x[70:].astype(np.float32), tensors).numpy()
    assert got.shape == expected.shape == (20, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_binary_svc():
    x, y = _data(2)
    model = SVC(kernel="rbf", gamma=1e-4).fit(x, y)
    got = svm_graph.decision_function(x, svm_graph.from_sklearn(model)).numpy()
    d = model.decision_function(x)
    assert got.shape == (len(x), 2)  # one decision value d scores the two classes [-d, d]
    np.testing.assert_allclose(got, np.stack([-d, d], 1), rtol=1e-4, atol=1e-5)


def test_unsupported_models_are_named():
    from sklearn.linear_model import LogisticRegression

    x, y = _data(3)
    with pytest.raises(ValueError, match="LogisticRegression"):
        svm_graph.from_sklearn(LogisticRegression().fit(x, y))
    with pytest.raises(ValueError, match="precomputed"):
        svm_graph.from_sklearn(SVC(kernel="precomputed").fit(x @ x.T, y))


@pytest.mark.parametrize("kernel", svm_graph.KERNELS)
@pytest.mark.parametrize("multiclass", ["ovr", "ovo"])
def test_nystroem_linear_svm_parity(kernel, multiclass):
    """The SVM stage's approximation for large sets (Nystroem + linear SVM) exports too."""
    from illustration_tl.heads import svm

    x, y = _data(4)
    params = svm.SvmParams(kernel=kernel, C=1.0, gamma=0.05, multiclass=multiclass,
                           scaling="standard", approximation="nystroem", nystroem_components=30,
                           coef0=0.5 if kernel == "poly" else 0.0, degree=2)
    model = svm.make_pipeline(params).fit(x[:70], y[:70])
    expected = model.decision_function(x[70:])
    got = svm_graph.decision_function(x[70:], svm_graph.from_sklearn(model)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
