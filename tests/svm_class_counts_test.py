"""Issue 15: every SVM layout works for any number of classes from 2 up.

For class counts {2, 3, 5, 23, 200} x every kernel x {ovr, ovo} x every scaling,
the TensorFlow head (what the export serves) gives the numpy head's scores
(n, num_classes) within 1e-4 and the same top-1; the numpy head equals
scikit-learn's decision_function of the grid point's pipeline (a binary d as
[-d, d]); and the head survives ``head.npz`` + ``head.json`` without pickle. Tiny
synthetic embeddings (8 wide, 2-3 per class) keep the 120 cases fast; no CNN is
involved.
"""

import functools
import tempfile

import numpy as np
import pytest

from illustration_tl.evaluation.metrics import EvalResult
from illustration_tl.heads import head as head_lib
from illustration_tl.heads import svm

CLASS_COUNTS = (2, 3, 5, 23, 200)
DIM = 8


@functools.cache
def _data(num_classes):
    rng = np.random.default_rng(num_classes)
    per_class = 3 if num_classes < 100 else 2
    centers = rng.normal(size=(num_classes, DIM)) * 2
    y = np.repeat(np.arange(num_classes), per_class)
    x = centers[y] + rng.normal(size=(len(y), DIM)) * 0.7 + 1.0
    test = centers[rng.integers(0, num_classes, 24)] + rng.normal(size=(24, DIM)) + 1.0
    return x.astype(np.float32), y, test.astype(np.float32)


def _params(kernel, multiclass, scaling):
    return svm.SvmParams(kernel=kernel, multiclass=multiclass, scaling=scaling, C=1.0,
                         gamma=0.1, coef0=0.5 if kernel == "poly" else 0.0, degree=2)


def _graph(head, x):
    """The served head's scores (uncalibrated: one candidate, temperature 1), float64."""
    assert head.temperature == 1.0
    return head.tf_logits({svm.PAPER_BLOCK: x}, None, head.tf_variables()).numpy()


@pytest.mark.parametrize("scaling", svm.SCALINGS)
@pytest.mark.parametrize("multiclass", svm.MULTICLASS)
@pytest.mark.parametrize("kernel", svm.KERNELS)
@pytest.mark.parametrize("num_classes", CLASS_COUNTS)
def test_tf_graph_equals_python_pipeline(num_classes, kernel, multiclass, scaling):
    x, y, test = _data(num_classes)
    params = _params(kernel, multiclass, scaling)
    fitted = svm.fit(x, y, params)
    python = fitted.scores(test)
    assert python.shape == (len(test), num_classes)
    # The head is sklearn's decision function ([-d, d] for a binary SVM) of the grid
    # point's SVM fitted on the head's normalized rows (the scaling is the head's
    # normalization; tests/svm_test.py holds it to the whole sklearn pipeline).
    norm = fitted.head.normalizer
    exact = svm.decision_scores(svm.make_classifier(params).fit(norm(x), y), norm(test),
                                num_classes)
    np.testing.assert_allclose(python, exact, rtol=1e-6, atol=1e-6 * np.abs(python).max())
    if num_classes == 2:
        np.testing.assert_array_equal(python[:, 0], -python[:, 1])

    # The head goes through head.npz (no pickle) + head.json and comes back identical.
    with tempfile.TemporaryDirectory() as tmp:
        fitted.head.save(tmp)
        head = head_lib.Head.load(tmp)
    np.testing.assert_array_equal(svm.head_scores(head, test), python)

    # One eager call of the TF head per case, ranked in float64 as the export ranks.
    graph = _graph(head, test)
    assert graph.shape == (len(test), num_classes)
    np.testing.assert_allclose(graph, python, rtol=1e-4, atol=1e-4 * np.abs(python).max())
    np.testing.assert_array_equal(graph.argmax(1), python.argmax(1))
    # Top-5 is only reported where it means something.
    result = EvalResult("svm", [str(c) for c in range(num_classes)],
                        np.arange(len(test)) % num_classes, python)
    assert (result.summary()["top5"] is None) == (num_classes <= 5)


@pytest.mark.parametrize("multiclass", svm.MULTICLASS)
@pytest.mark.parametrize("kernel", svm.KERNELS)
def test_binary_nystroem_models(kernel, multiclass):
    """The large-set approximation (Nystroem + LinearSVC / OvO LinearSVC) at 2 classes."""
    x, y, test = _data(2)
    params = svm.SvmParams(kernel=kernel, multiclass=multiclass, scaling="standard",
                           approximation="nystroem", nystroem_components=5, C=1.0, gamma=0.1,
                           coef0=0.5 if kernel == "poly" else 0.0, degree=2)
    fitted = svm.fit(x, y, params)
    python = fitted.scores(test)
    assert python.shape == (len(test), 2)
    graph = _graph(fitted.head, test)
    np.testing.assert_allclose(graph, python, rtol=1e-4, atol=1e-4 * np.abs(python).max())
    np.testing.assert_array_equal(graph.argmax(1), python.argmax(1))


def test_a_class_without_training_rows_scores_last_in_both():
    x, y, test = _data(5)
    keep = y != 3
    for multiclass in svm.MULTICLASS:
        fitted = svm.fit(x[keep], y[keep], _params("rbf", multiclass, "none"), num_classes=5)
        python = fitted.scores(test)
        assert python.shape == (len(test), 5) and (python[:, 3] == svm.MISSING_CLASS_SCORE).all()
        np.testing.assert_allclose(_graph(fitted.head, test), python, rtol=1e-4)
    # Two trained classes out of three: a binary SVM placed into three columns.
    keep = y < 2
    fitted = svm.fit(x[keep], y[keep], _params("linear", "ovr", "none"), num_classes=3)
    python = fitted.scores(test)
    assert python.shape == (len(test), 3) and (python[:, 2] == svm.MISSING_CLASS_SCORE).all()
    np.testing.assert_array_equal(python[:, 0], -python[:, 1])
    np.testing.assert_allclose(_graph(fitted.head, test), python, rtol=1e-4)
