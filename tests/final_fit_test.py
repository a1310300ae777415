"""The final head of an exact kernel SVM is fitted on the kernel matrix computed once by
matrix products (heads/head.py ``_fit_exact``), as the search's folds are: the same
decision function as scikit-learn's SVM fitted on the rows, and rows when the matrix
does not fit the memory budget."""

import numpy as np
import pytest
from ridge_head_test import SPLITS, _store

from illustration_tl.heads import budget, head, search
from illustration_tl.heads.config import resolve_gamma


def _cfg(kernel, multiclass, flip):
    return search.Config("squash", ("a:avg", "b:max"), flip, flip, "l2", "svm",
                         kernel=kernel, C=3.0, gamma="scale", multiclass=multiclass,
                         coef0=0.5 if kernel != "rbf" else 0.0)


def _on_rows(store, cfg):
    """scikit-learn's SVM of ``cfg`` fitted on the feature rows (libsvm's own kernel)."""
    fs = search.feature_set(store, SPLITS, cfg)
    gamma = resolve_gamma(cfg.gamma, fs.x[:fs.n])
    rows = np.arange(len(fs.x)) if cfg.flip_train else np.arange(fs.n)
    y = np.concatenate([store.labels[s] for s in SPLITS])
    model = search.fit_quietly(search.make_classifier(cfg, gamma), fs.x[rows], y[rows % fs.n])
    test = fs.normalizer(np.concatenate([store.block("test", "squash", "orig", b)
                                         for b in cfg.blocks], axis=1))
    return search.decision_scores(model, test, len(store.class_names)), test


@pytest.mark.parametrize("kernel,multiclass,flip", [
    ("rbf", "ovr", True), ("rbf", "ovo", False), ("sigmoid", "ovr", False),
    ("poly", "ovo", True)])
def test_the_kernel_matrix_fit_equals_the_fit_on_rows(kernel, multiclass, flip, monkeypatch):
    store, cfg = _store(4), _cfg(kernel, multiclass, flip)
    fitted = []
    real = head._fit_exact
    monkeypatch.setattr(head, "_fit_exact", lambda *a: fitted.append(real(*a)) or fitted[-1])
    h = head.fit(store, cfg, SPLITS, None)
    assert fitted[-1][1] == (kernel, pytest.approx(h.gamma), cfg.coef0, cfg.degree)
    expected, test = _on_rows(store, cfg)
    np.testing.assert_allclose(h.raw_scores(test), expected, rtol=1e-6, atol=1e-6)


def test_past_the_budget_the_svm_is_fitted_on_rows(monkeypatch):
    store, cfg = _store(4), _cfg("rbf", "ovr", True)
    monkeypatch.setattr(budget, "default_max_memory_bytes", lambda: 1)
    fitted = []
    real = head._fit_exact
    monkeypatch.setattr(head, "_fit_exact", lambda *a: fitted.append(real(*a)) or fitted[-1])
    h = head.fit(store, cfg, SPLITS, None)
    assert fitted[-1][1] is None
    expected, test = _on_rows(store, cfg)
    np.testing.assert_allclose(h.raw_scores(test), expected, rtol=1e-9, atol=1e-9)
