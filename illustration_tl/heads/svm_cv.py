"""The ``svm`` stage's grid search (paper §6.1), run by ``fit``'s CV engine.

The svm stage names its grid points as :class:`illustration_tl.heads.svm_params.SvmParams`
(kernel, γ, C, strategy, scaling, ...); :func:`~illustration_tl.heads.config.paper_point`
maps each to the search point
:class:`illustration_tl.heads.config.Config` on the one block ``paper`` (the embedding,
raw), one resize mode, no mirrors, the scaling as the normalization (``standard``
fitted inside each fold) and γ absolute. :func:`cross_validate` puts the embeddings in
an in-memory :class:`illustration_tl.features.multilayer.FeatureStore` and hands the
configs to :func:`illustration_tl.heads.search.run`: the same stratified folds, shared
kernel matrices, fold fits, top-k and ranking as ``fit --search=paper``. The results
are :class:`illustration_tl.heads.search.Result`, one per grid point.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.features import multilayer as feats
from illustration_tl.heads import budget, search
from illustration_tl.heads.config import PAPER_RESIZE, paper_point
from illustration_tl.heads.search import Result
from illustration_tl.heads.svm_params import SvmParams

SPLIT = "train"             # the store's one split: the rows to cross-validate
# Kernel matrices are shared (precomputed) up to this many rows per training fold and
# while they fit the search's memory budget; beyond, libsvm computes each fit's kernel.
# The svm stage never samples: the search runs it without a budget.
PRECOMPUTE_MAX_ROWS = 12000
NO_SAMPLING_BUDGET = sys.maxsize


def feature_store(x: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None = None
                  ) -> feats.FeatureStore:
    """Embeddings ``x`` (n, d) with labels ``y`` as a one-split, one-block store (class
    names: ``class_names``, default the labels' numbers up to the largest)."""
    if class_names is None:
        class_names = [str(c) for c in range(int(y.max()) + 1)]
    return feats.FeatureStore(
        {SPLIT: {feats.key(PAPER_RESIZE, "orig", feats.PAPER_BLOCK): x}}, {SPLIT: y},
        {SPLIT: [str(i) for i in range(len(y))]}, list(class_names),
        [feats.PAPER_BLOCK], [PAPER_RESIZE], ["orig"], {})


def check_folds(y: np.ndarray, folds: int) -> None:
    """A one-line :class:`UserError` naming ``--cv_folds`` when the grid cannot run."""
    counts = np.bincount(y)
    if folds < 2:
        raise UserError(f"--cv_folds={folds}: cross-validation needs at least 2 folds")
    if (counts[counts > 0] < folds).any():
        small = int(counts[counts > 0].min())
        raise UserError(f"{folds}-fold cross-validation needs at least {folds} training "
                        f"examples per class, but one class has {small}; lower --cv_folds "
                        "or give single parameter values to skip the grid search")


def cross_validate(x: np.ndarray, y: np.ndarray, candidates: Sequence[SvmParams], *,
                   folds: int = 3, n_jobs: int = -1, seed: int = 0,
                   precompute: bool | None = None, log: Any = None) -> list[Result]:
    """Stratified ``folds``-fold CV of every candidate by the search engine; one
    :class:`Result` per candidate, in the candidates' order (equal configs share one).

    ``precompute``: fit exact kernels on slices of one kernel matrix per feature set
    and γ (default: when a training fold has at most :data:`PRECOMPUTE_MAX_ROWS` rows
    and the matrices fit the search's memory budget, :mod:`illustration_tl.heads.budget`).
    ``seed``: the folds and the Nyström sampling.
    """
    y = np.asarray(y, dtype=np.int64)
    check_folds(y, folds)
    if precompute is None:
        precompute = (len(x) * (folds - 1) / folds <= PRECOMPUTE_MAX_ROWS
                      and budget.choose(len(x), 1, budget.default_max_memory_bytes(),
                                        x.shape[1]).exact)
    configs = [paper_point(p, seed=seed) for p in candidates]
    results = search.run(feature_store(x, y), "paper", splits=(SPLIT,), folds=folds,
                         seed=seed, n_jobs=n_jobs, configs=configs, log=log,
                         max_memory_bytes=NO_SAMPLING_BUDGET, precompute=precompute)
    by_config = {r.config: r for r in results}
    return [by_config[c] for c in configs]


def select_best(results: Sequence[Result]) -> int:
    """The index of the winner in ``results`` (candidate order): the search's ranking,
    highest mean CV top-1, then top-5, the earliest point on remaining ties."""
    order = [r.config for r in results]
    return min(range(len(results)), key=lambda i: search.rank_key(results[i], order))


def cv_row(params: SvmParams, result: Result) -> dict[str, Any]:
    """One row of ``svm.json``'s ``cv_results``: the grid point and its fold scores."""
    folds = sorted(result.fold_top1)
    top1 = [result.fold_top1[f] for f in folds]
    return {"params": params.as_dict(), "label": params.label(), "mean_top1": result.top1,
            "std_top1": float(np.std(top1)), "mean_top5": result.top5, "fold_top1": top1,
            "fold_top5": [result.fold_top5[f] for f in folds],
            "fit_seconds": round(result.seconds, 3)}
