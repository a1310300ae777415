"""Probabilities from classifier scores: a softmax with a temperature fitted on CV folds.

SVM decision values (one-vs-one votes plus confidences, or one-vs-rest margins)
and logistic-regression logits are not probabilities. ``fit`` keeps each
training image's out-of-fold scores from the search's cross-validation and
fits one temperature ``T`` minimizing their negative log-likelihood under
``softmax(scores / T)`` (Guo et al. 2017, temperature scaling; a multi-class
Platt scaling with one shared parameter). ``T`` never changes the ranking, so
top-1/top-5 are those of the raw scores.
"""

from __future__ import annotations

import numpy as np


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(scores, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(scores: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(scores, temperature)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimizing the NLL of ``softmax(scores / T)`` (golden-section
    search on log T over [1e-3, 1e3] after a coarse grid)."""
    labels = np.asarray(labels, np.int64)
    grid = np.linspace(-3, 3, 61)
    losses = [nll(scores, labels, float(np.exp(g))) for g in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if nll(scores, labels, float(np.exp(a))) < nll(scores, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))
