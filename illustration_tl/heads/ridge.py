"""Ridge regression on one-hot targets by normal equations accumulated chunk by chunk
(issue 21: the approximate head of large folders in flat memory).

scikit-learn's ``RidgeClassifier`` (targets ``+1`` for the class, ``-1`` otherwise, an
unpenalized intercept, ``α = 1 / C``) solves, for dense rows with more rows than
features, the normal equations ``(Xcᵀ W Xc + αI) B = Xcᵀ W Yc`` of the centred rows
``Xc`` (``W``: the sample weights). Every term is a sum over rows, so
:class:`RidgeClassifier` adds the rows a chunk at a time (:meth:`RidgeClassifier.add`)
and solves once (:meth:`RidgeClassifier.solve`): memory ``d² + d·C`` floats whatever
the number of rows, and the rows never need to be in memory together (``heads.head``
streams a 100k-image folder's Nyström features through it). :meth:`RidgeClassifier.fit`
is the same on an in-memory matrix; its coefficients equal scikit-learn's to rounding
(``tests/ridge_test.py``), a binary problem included (two columns ``[-d, d]``, as
``metrics.scores_2d`` makes of scikit-learn's one).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

CHUNK_ROWS = 4096   # rows added at once by ``fit`` (bounds the float64 copy of a chunk)


def balanced_weights(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """scikit-learn's ``class_weight="balanced"``: ``n / (classes x count)`` per class."""
    counts = np.array([np.sum(y == c) for c in classes], np.float64)
    return len(y) / (len(classes) * counts)


class RidgeClassifier:
    """``RidgeClassifier(alpha, class_weight)`` with ``add``/``solve`` for chunked rows;
    ``coef_`` (C, d), ``intercept_`` (C,), ``classes_`` and ``decision_function`` as
    scikit-learn's (two columns for a binary problem)."""

    def __init__(self, alpha: float = 1.0, class_weight: str | None = None) -> None:
        if class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight {class_weight!r} is not None or 'balanced'")
        self.alpha, self.class_weight = float(alpha), class_weight

    def start(self, y_all: np.ndarray, dims: int) -> RidgeClassifier:
        """Empty sums for rows of ``dims`` features whose labels, all of them, are
        ``y_all`` (the classes and their balanced weights come from it)."""
        self.classes_ = np.unique(np.asarray(y_all))
        self._w = (balanced_weights(np.asarray(y_all), self.classes_)
                   if self.class_weight == "balanced" else np.ones(len(self.classes_)))
        c = len(self.classes_)
        self._s, self._sx, self._sy = 0.0, np.zeros(dims), np.zeros(c)
        self._xx, self._xy = np.zeros((dims, dims)), np.zeros((dims, c))
        return self

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Adds rows ``x`` (n, d) with labels ``y`` (n,) to the sums."""
        x = np.asarray(x, np.float64)
        col = np.searchsorted(self.classes_, y)
        t = np.full((len(x), len(self.classes_)), -1.0)
        t[np.arange(len(x)), col] = 1.0
        w = self._w[col]
        xw = x * w[:, None]
        self._s += float(w.sum())
        self._sx += xw.sum(axis=0)
        self._sy += w @ t
        self._xx += xw.T @ x
        self._xy += xw.T @ t

    def solve(self) -> RidgeClassifier:
        """``coef_`` and ``intercept_`` from the sums (centred: ``Σwxxᵀ - s̄xs̄xᵀ/Σw``)."""
        mx, my = self._sx / self._s, self._sy / self._s
        a = self._xx - np.outer(self._sx, mx)
        a[np.diag_indices_from(a)] += self.alpha
        b = self._xy - np.outer(self._sx, my)
        try:
            coef = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:   # singular with α = 0: least squares
            coef = np.linalg.lstsq(a, b, rcond=None)[0]
        self.coef_ = coef.T
        self.intercept_ = my - mx @ coef
        del self._xx, self._xy
        return self

    def fit_chunks(self, chunks: Iterable[tuple[np.ndarray, np.ndarray]], y_all: np.ndarray,
                   dims: int) -> RidgeClassifier:
        """Fitted on ``(x, y)`` chunks of ``dims`` features (any iterable, e.g. a generator
        that maps rows as it goes), whose labels together are ``y_all``."""
        self.start(y_all, dims)
        for x, y in chunks:
            self.add(x, y)
            del x, y   # not alive while the next chunk is made
        return self.solve()

    def fit(self, x: np.ndarray, y: np.ndarray) -> RidgeClassifier:
        """The in-memory fit: :meth:`fit_chunks` over :data:`CHUNK_ROWS` rows at a time."""
        return self.fit_chunks(((x[i:i + CHUNK_ROWS], y[i:i + CHUNK_ROWS])
                                for i in range(0, len(x), CHUNK_ROWS)), y, x.shape[1])

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.coef_.T + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(axis=1)]

