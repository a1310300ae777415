"""The paper's grid search of SVM parameters by stratified k-fold CV (paper §6.1).

Every grid point (:class:`illustration_tl.heads.svm_params.SvmParams`) is scored on the
same stratified folds, its scaling fitted inside each fold. Exact kernels share one
kernel matrix per (fold, scaling, kernel, γ), computed with one BLAS product, and
every C and strategy is fitted on it (``SVC(kernel="precomputed")``); Nyström
points fit the whole pipeline per fold. :func:`select_best` picks the winner.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.evaluation.metrics import top_k_accuracy, top_k_applicable
from illustration_tl.heads.svm_params import (
    SvmParams,
    decision_scores,
    make_classifier,
    make_pipeline,
    make_scaler,
)


def _gram_kernel(params: SvmParams, dot: np.ndarray, sq_a: np.ndarray | None,
                 sq_b: np.ndarray | None) -> np.ndarray:
    """The kernel matrix from the dot products (sklearn's kernel definitions)."""
    if params.kernel == "linear":
        return dot
    if params.kernel == "rbf":
        d2 = sq_a[:, None] + sq_b[None, :] - 2.0 * dot
        return np.exp(-params.gamma * np.maximum(d2, 0.0))
    if params.kernel == "poly":
        return (params.gamma * dot + params.coef0) ** params.degree
    return np.tanh(params.gamma * dot + params.coef0)


@dataclasses.dataclass
class CvResult:
    """Cross-validated top-1/top-5 of one grid point (top-5 None with <= 5 classes)."""

    params: SvmParams
    fold_top1: list[float]
    fold_top5: list[float | None]  # None: 5 classes or fewer (top-5 not applicable)
    fit_seconds: float

    @property
    def mean_top1(self) -> float:
        return float(np.mean(self.fold_top1))

    @property
    def mean_top5(self) -> float | None:
        if any(v is None for v in self.fold_top5):
            return None
        return float(np.mean(self.fold_top5))

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params.as_dict(), "label": self.params.label(),
                "mean_top1": self.mean_top1, "std_top1": float(np.std(self.fold_top1)),
                "mean_top5": self.mean_top5, "fold_top1": self.fold_top1,
                "fold_top5": self.fold_top5, "fit_seconds": round(self.fit_seconds, 3)}


Score = tuple  # (fold, params, top1, top5, seconds)


def _precomputed_task(x: np.ndarray, y: np.ndarray, fold: int, train: np.ndarray,
                      val: np.ndarray, group: list[SvmParams], num_classes: int
                      ) -> list[Score]:
    """Fits every C/strategy of one (fold, scaling, kernel, gamma) on one kernel matrix."""
    first = group[0]
    xa, xb = x[train], x[val]
    scaler = make_scaler(first.scaling)
    if scaler is not None:
        xa = scaler.fit_transform(xa)
        xb = scaler.transform(xb)
    xa = np.asarray(xa, dtype=np.float64)
    xb = np.asarray(xb, dtype=np.float64)
    sq_a = np.einsum("ij,ij->i", xa, xa)
    sq_b = np.einsum("ij,ij->i", xb, xb)
    k_train = _gram_kernel(first, xa @ xa.T, sq_a, sq_a)
    k_val = _gram_kernel(first, xb @ xa.T, sq_b, sq_a)
    out = []
    for p in group:
        start = time.perf_counter()
        clf = make_classifier(p, kernel="precomputed").fit(k_train, y[train])
        s = decision_scores(clf, k_val, num_classes)
        out.append((fold, p, top_k_accuracy(s, y[val], 1), _top5(s, y[val]),
                    time.perf_counter() - start))
    return out


def _top5(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Top-5 accuracy, or None where it is meaningless (5 classes or fewer)."""
    if not top_k_applicable(5, scores.shape[1]):
        return None
    return top_k_accuracy(scores, labels, 5)


def _pipeline_task(x: np.ndarray, y: np.ndarray, fold: int, train: np.ndarray,
                   val: np.ndarray, p: SvmParams, num_classes: int, seed: int
                   ) -> list[Score]:
    start = time.perf_counter()
    model = make_pipeline(p, seed).fit(x[train], y[train])
    s = decision_scores(model, x[val], num_classes)
    return [(fold, p, top_k_accuracy(s, y[val], 1), _top5(s, y[val]),
             time.perf_counter() - start)]


def _result_key(p: SvmParams) -> tuple:
    """Grid points with equal keys give equal fits (a linear kernel ignores gamma)."""
    return p.kernel_key() + (p.C, p.multiclass, p.approximation, p.max_iter,
                             p.nystroem_components if p.approximation != "none" else None)


def cross_validate(x: np.ndarray, y: np.ndarray, candidates: Sequence[SvmParams], *,
                   folds: int = 3, n_jobs: int = -1, seed: int = 0,
                   precompute: bool | None = None, precompute_max_rows: int = 12000,
                   log: Any = None, progress_interval: float = 10.0) -> list[CvResult]:
    """Stratified ``folds``-fold CV of every candidate, in parallel (``n_jobs`` processes).

    Exact-kernel candidates share one kernel matrix per (fold, scaling, kernel, γ)
    when ``precompute`` (default: when a training fold has at most
    ``precompute_max_rows`` rows). Candidates that differ only in an ignored
    parameter (γ of a linear kernel) are fitted once.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    if folds < 2:
        raise UserError(f"--cv_folds={folds}: cross-validation needs at least 2 folds")
    if (counts[counts > 0] < folds).any():
        small = int(counts[counts > 0].min())
        raise UserError(f"{folds}-fold cross-validation needs at least {folds} training "
                        f"examples per class, but one class has {small}; lower --cv_folds "
                        "or give single parameter values to skip the grid search")
    num_classes = int(y.max()) + 1
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    if precompute is None:
        precompute = len(x) * (folds - 1) / folds <= precompute_max_rows

    unique: dict[tuple, SvmParams] = {}
    for p in candidates:
        unique.setdefault(_result_key(p), p)
    by_kernel: dict[tuple, list[SvmParams]] = {}
    single: list[SvmParams] = []
    for p in unique.values():
        if precompute and p.approximation == "none":
            by_kernel.setdefault(p.kernel_key(), []).append(p)
        else:
            single.append(p)
    tasks = []
    for f, (tr, va) in enumerate(splits):
        tasks += [delayed(_precomputed_task)(x, y, f, tr, va, g, num_classes)
                  for g in by_kernel.values()]
        tasks += [delayed(_pipeline_task)(x, y, f, tr, va, p, num_classes, seed)
                  for p in single]

    scores: dict[tuple, dict[int, tuple[float, float]]] = {}
    seconds: dict[tuple, float] = {}
    start = time.perf_counter()
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
    last_line = start
    for done, task_out in enumerate(results, 1):
        for fold, p, top1, top5, sec in task_out:
            key = _result_key(p)
            scores.setdefault(key, {})[fold] = (top1, top5)
            seconds[key] = seconds.get(key, 0.0) + sec
        now = time.perf_counter()
        if log and (done == len(tasks) or now - last_line >= progress_interval):
            last_line = now
            log(f"svm grid: {done}/{len(tasks)} tasks ({len(unique)} distinct fits x "
                f"{folds} folds), {time.perf_counter() - start:.0f}s elapsed")
    out = []
    for p in candidates:
        key = _result_key(p)
        per_fold = [scores[key][f] for f in range(folds)]
        out.append(CvResult(p, [a for a, _ in per_fold], [b for _, b in per_fold],
                            seconds[key]))
    return out


def select_best(results: Sequence[CvResult]) -> CvResult:
    """Highest mean CV top-1, then top-5; the earliest grid point wins remaining ties."""
    return max(results, key=lambda r: (round(r.mean_top1, 12), round(r.mean_top5 or 0.0, 12),
                                       -results.index(r)))
