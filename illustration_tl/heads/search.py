"""The search behind ``fit``: features x normalization x classifier, by cross-validation.

Each :class:`Config` is one point: which feature blocks (layers x pools, see
:mod:`illustration_tl.features.multilayer`) at which resize mode, whether to train on the
mirror images too and average each image's scores with its mirror's, the
normalization of the concatenated features (``none``, ``standard``, ``l2``,
``power_l2`` = signed square root then l2), and the classifier: an SVM
(rbf, linear, poly, sigmoid; ``ovo`` = sklearn ``SVC``, ``ovr`` = true
one-vs-rest, as :mod:`illustration_tl.heads.svm`) whose γ is either relative to the
feature scale (``scale`` = sklearn's ``1 / (d * X.var())``, and multiples such as
``4*scale``) or absolute (the paper's ``1e-3``, ``1e-4``), or a linear classifier
(``logreg``, a multinomial logistic-regression probe, and the other linear rows
of the registry).

Only the training images (train + validation splits) are used: stratified folds
over *images*, so an image and its mirror are always in the same fold. Nothing a
fold holds out is seen by what is fitted on it: a relative γ (``scale``) is
resolved on the fold's training images, and a normalization with statistics
(``standard``) is fitted on them. For every feature set (resize, blocks, flips,
normalization; per fold for ``standard``) the Gram matrix of all rows is computed
once (one matrix product) and every kernel, C and strategy of a fold is fitted on
slices of it (``SVC(kernel="precomputed")``). The classifiers come from the
registry in :mod:`illustration_tl.heads.classifiers`.

Modes (``--search``):

* ``paper``: exactly :func:`illustration_tl.heads.svm.paper_grid` (64 points: 4
  kernels x γ {1e-3, 1e-4} x C {1, 10, 100, 1000} x ovr/ovo) on the paper's
  embedding (``embed``'s default: fc2, or the pooled last conv block), raw,
  squashed, no mirrors: the same folds and fits as ``illustration-tl svm``.
* ``fast`` (default): per resize mode, the last two transfer blocks and all of
  them (global average + max pooled, a transformer's blocks also their class
  token; each block signed-square-rooted and l2-normalized, the concatenation
  l2-normalized), trained on the images and their mirrors with flip test-time
  averaging; RBF SVMs (one-vs-one) with γ in
  {1/2, 1, 2} x sklearn's ``scale`` and C in {1, 10}, true one-vs-rest RBF SVMs
  (γ = ``scale``, C in {3, 10}), and a logistic-regression probe. Order: two
  cheap RBF probes per feature set on the first fold rank the feature sets; the
  best :data:`FAST_FEATURE_SETS` get the whole list on that fold (successive
  halving), and the best third of those all folds. Kernel matrices are computed
  once per feature set and γ and shared by every C and fold.
* ``thorough``: ``fast`` first (so its CV best is never below fast's), then more
  layer sets, flip variants, normalizations (l2, power_l2, standard) and
  classifiers (RBF over 4 γ x 5 C, true one-vs-rest, linear, poly, sigmoid, the
  paper's absolute γ, logistic regression over 3 C): feature sets ranked by RBF
  probes on one fold, the best :data:`THOROUGH_FEATURE_SETS` get the whole grid
  on that fold, the best half of those all folds.

Memory (issue 21): ``run`` holds a budget (``max_memory_bytes``, default a fifth of
the machine's memory) and a size rule (:mod:`illustration_tl.heads.budget`) picks the
regime. Exact kernel SVMs as above while their matrices fit; beyond, the approximate
list (:func:`illustration_tl.heads.grids.approximate_candidates`: linear SVMs on
Nyström features, :mod:`illustration_tl.heads.approximate`, and the linear kinds),
cross-validated in the same way on a stratified sample of the training images; the
head is then refitted on every image (:func:`illustration_tl.heads.head.fit`). Each
:class:`Result` carries the :class:`~illustration_tl.heads.budget.Regime`, which the
leaderboard states. In the approximate regime the out-of-fold scores of the images
outside the sample are NaN.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.evaluation.metrics import top_k_accuracy, top_k_applicable
from illustration_tl.features import multilayer as feats
from illustration_tl.heads import budget as budget_lib
from illustration_tl.heads import classifiers
from illustration_tl.heads import ridge as ridge_lib
from illustration_tl.heads.approximate import NystroemMap
from illustration_tl.heads.budget import FEATURE_SET_CACHE, KERNEL_CACHE, Regime
from illustration_tl.heads.config import (
    FOLD_FITTED_NORMS,
    MODES,
    Config,
    Normalizer,
    resolve_gamma,
)
from illustration_tl.heads.grids import (
    FAST_FEATURE_SETS,
    THOROUGH_FEATURE_SETS,
    candidates,
    is_approx_probe,
    is_fast_probe,
    is_probe,
)
from illustration_tl.heads.svm_params import decision_scores

__all__ = ["MODES", "Config", "Result", "Regime", "FeatureSet", "candidates", "feature_set",
           "make_classifier", "fit_quietly", "run", "leaderboard_markdown",
           "FEATURE_SET_CACHE", "KERNEL_CACHE"]


# --- Data of one feature set -----------------------------------------------------------

@dataclasses.dataclass
class FeatureSet:
    """Rows of one (resize, blocks, flips, norm): originals, then mirrors if used."""

    x: np.ndarray        # (n or 2n, d) normalized
    n: int               # images
    flipped: bool        # rows n..2n are the mirrors
    normalizer: Normalizer
    unit_rows: bool = False   # l2-normalized rows
    precompute: bool = True   # kernel SVMs on slices of one kernel matrix (else on the rows)
    _dot: np.ndarray | None = None
    _sq: np.ndarray | None = None
    _kernels: dict = dataclasses.field(default_factory=dict)
    _lock: Any = dataclasses.field(default_factory=threading.RLock)

    def dot(self) -> np.ndarray:
        if self._dot is None:
            if self.unit_rows:  # float32 product: twice as fast, enough for unit rows
                x32 = self.x.astype(np.float32)
                self._dot = (x32 @ x32.T).astype(np.float64)
            else:
                self._dot = self.x @ self.x.T
            # squared norms row by row (as sklearn's euclidean_distances); unit rows
            # from the product itself, so that a row's distance to itself is 0
            self._sq = (np.diag(self._dot).copy() if self.unit_rows
                        else np.einsum("ij,ij->i", self.x, self.x))
        return self._dot

    def kernel(self, kernel: str, gamma: float, coef0: float = 0.0, degree: int = 3
               ) -> np.ndarray:
        """The kernel matrix of every row (computed once per kernel and gamma, shared by
        every C, strategy and fold; the last :data:`KERNEL_CACHE` are kept)."""
        with self._lock:
            dot = self.dot()
            if kernel == "linear":
                return dot
            k = (kernel, float(gamma), coef0, degree)
            if k in self._kernels:
                self._kernels[k] = self._kernels.pop(k)  # most recently used last
                return self._kernels[k]
            if kernel == "rbf":
                m = self._sq[:, None] + self._sq[None, :] - 2.0 * dot
                np.maximum(m, 0.0, out=m)
                m *= -gamma
                np.exp(m, out=m)
            elif kernel == "poly":
                m = (gamma * dot + coef0) ** degree
            else:
                m = np.tanh(gamma * dot + coef0)
            while len(self._kernels) >= KERNEL_CACHE:
                self._kernels.pop(next(iter(self._kernels)))
            self._kernels[k] = m
            return m

    def nystroem(self, gamma: float, components: int, train: np.ndarray, y: np.ndarray,
                 key: Any) -> np.ndarray:
        """Nyström features (rows, m) of every row, the map fitted on a stratified sample
        of the images ``train`` (labels ``y`` of every image); cached like the kernels,
        under ``("nystroem", γ, m, key)`` (``key``: the fold)."""
        with self._lock:
            k = ("nystroem", float(gamma), components, key)
            if k in self._kernels:
                self._kernels[k] = self._kernels.pop(k)
                return self._kernels[k]
            ny = NystroemMap.fit(self.x[train], y[train], gamma, components)
            z = ny.transform(self.x, np.float32)   # half the memory; fits sum in float64
            while len(self._kernels) >= KERNEL_CACHE:
                self._kernels.pop(next(iter(self._kernels)))
            self._kernels[k] = z
            return z


def feature_set(store: feats.FeatureStore, splits: Sequence[str], cfg: Config,
                fit_rows: np.ndarray | None = None, images: np.ndarray | None = None,
                precompute: bool = True) -> FeatureSet:
    """The rows of ``cfg``'s features, normalized by a normalizer fitted on the images
    ``fit_rows`` (a CV fold's training images; all images when None). With ``images``
    (a CV sample), only those images, in that order (``fit_rows`` index them)."""
    orig = store.assemble(splits, cfg.resize, "orig", cfg.blocks, images)
    n = len(orig)
    use_flip = cfg.flip_train or cfg.flip_test
    rows = [orig] + ([store.assemble(splits, cfg.resize, "flip", cfg.blocks, images)]
                     if use_flip else [])
    normalizer = Normalizer.fit(cfg.norm, orig if fit_rows is None else orig[fit_rows])
    return FeatureSet(normalizer(np.concatenate(rows)), n, use_flip, normalizer,
                      unit_rows=cfg.norm in ("l2", "power_l2"), precompute=precompute)


# --- Cross-validation ------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    config: Config
    fold_top1: dict[int, float]
    fold_top5: dict[int, float | None]
    seconds: float
    oof: np.ndarray | None = None   # out-of-fold scores (n, C) once every fold is done
    regime: Regime | None = None     # the size rule that applied (None: not recorded)

    @property
    def top1(self) -> float:
        return float(np.mean(list(self.fold_top1.values())))

    @property
    def top5(self) -> float | None:
        v = list(self.fold_top5.values())
        return None if not v or any(x is None for x in v) else float(np.mean(v))

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.config.label(), "config": self.config.as_dict(),
                "cv_top1": self.top1, "cv_top5": self.top5, "folds": len(self.fold_top1),
                "seconds": round(self.seconds, 3),
                "regime": None if self.regime is None else self.regime.as_dict()}


def make_classifier(cfg: Config, gamma: float, kernel: str | None = None) -> Any:
    """The sklearn estimator of ``cfg`` (``kernel="precomputed"`` for the Gram slices),
    from the classifier registry (:mod:`illustration_tl.heads.classifiers`)."""
    return classifiers.get(cfg.classifier).build(cfg, gamma, kernel)


def fit_quietly(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """``model.fit`` without sklearn's ConvergenceWarning (the probe stops early on
    purpose)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _fit_rows(model: Any, z: np.ndarray, rows: np.ndarray, y: np.ndarray) -> Any:
    """``model`` fitted on ``z[rows]``: a model that sums its rows (ridge,
    :mod:`illustration_tl.heads.ridge`) takes them a chunk at a time, never the copy."""
    if not hasattr(model, "fit_chunks"):
        return fit_quietly(model, z[rows], y)
    step = ridge_lib.CHUNK_ROWS
    return model.fit_chunks(((z[rows[i:i + step]], y[i:i + step])
                             for i in range(0, len(rows), step)), y, z.shape[1])


def _on_kernel_matrix(fs: FeatureSet, cfg: Config) -> bool:
    """Whether ``cfg`` is fitted on slices of ``fs``'s kernel matrix (an exact kernel
    SVM, kernel matrices allowed); else on the feature rows."""
    return (fs.precompute and not cfg.components
            and classifiers.get(cfg.classifier).family == "kernel")


def _fit_fold(fs: FeatureSet, y: np.ndarray, cfg: Config, gamma: float, train: np.ndarray,
              val: np.ndarray, num_classes: int, fold: Any = None) -> np.ndarray:
    """Scores (len(val), C) of ``cfg`` trained on images ``train``: on slices of the
    shared kernel matrix (:func:`_on_kernel_matrix`), on the Nyström features (family
    ``nystroem``), or on the feature rows (the estimator computes its own kernel)."""
    n = fs.n
    tr_rows = np.concatenate([train, train + n]) if cfg.flip_train else train
    y_tr = y[tr_rows % n]
    val_rows = [val] + ([val + n] if cfg.flip_test else [])
    family = classifiers.get(cfg.classifier).family
    if family == "nystroem":
        z = fs.nystroem(gamma, cfg.components, train, y, fold)
        model = _fit_rows(make_classifier(cfg, gamma), z, tr_rows, y_tr)
        outs = [decision_scores(model, z[r], num_classes) for r in val_rows]
    elif not _on_kernel_matrix(fs, cfg):
        model = fit_quietly(make_classifier(cfg, gamma), fs.x[tr_rows], y_tr)
        outs = [decision_scores(model, fs.x[r], num_classes) for r in val_rows]
    else:
        k = fs.kernel(cfg.kernel, gamma, cfg.coef0, cfg.degree)
        model = make_classifier(cfg, gamma, kernel="precomputed").fit(
            k[np.ix_(tr_rows, tr_rows)], y_tr)
        outs = [decision_scores(model, k[np.ix_(r, tr_rows)], num_classes) for r in val_rows]
    return np.mean(outs, axis=0)


def _top5(s: np.ndarray, y: np.ndarray) -> float | None:
    return top_k_accuracy(s, y, 5) if top_k_applicable(5, s.shape[1]) else None


def _dims(store: feats.FeatureStore, cands: Sequence[Config]) -> int:
    """The widest feature set of ``cands`` (feature dimensions)."""
    split = next(iter(store.arrays))
    return max((sum(store.block(split, c.resize, "orig", b).shape[1] for b in c.blocks)
                for c in cands), default=0)


def choose_regime(store: feats.FeatureStore, mode: str, cands: Sequence[Config],
                  images: int, max_memory_bytes: int | None = None) -> Regime:
    """The size rule (:func:`illustration_tl.heads.budget.choose`) for ``cands``."""
    budget = (budget_lib.default_max_memory_bytes() if max_memory_bytes is None
              else int(max_memory_bytes))
    rows_per_image = 2 if any(c.flip_train or c.flip_test for c in cands) else 1
    return budget_lib.choose(images, rows_per_image, budget, _dims(store, cands))


def run(store: feats.FeatureStore, mode: str = "fast", *, splits: Sequence[str] = ("train",
        "validation"), folds: int = 3, seed: int = 0, n_jobs: int = 2,
        configs: Sequence[Config] | None = None,
        log: Callable[[str], None] | None = None,
        max_memory_bytes: int | None = None, precompute: bool = True) -> list[Result]:
    """Cross-validates the candidates of ``mode`` on ``splits``; results best first.

    ``paper`` evaluates every point on every fold; ``fast`` keeps the best third
    after the first fold, ``thorough`` the best half. ``max_memory_bytes`` is the
    budget of the size rule (module doc; default
    :func:`illustration_tl.heads.budget.default_max_memory_bytes`). Without
    ``precompute``, kernel SVMs are fitted on the feature rows (libsvm computes the
    kernel) instead of slices of a shared kernel matrix: same scores, n² less memory.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    splits = [s for s in splits if s in store.labels]
    y_all = np.concatenate([store.labels[s] for s in splits])
    counts = np.bincount(y_all)
    if (counts[counts > 0] < folds).any():
        raise UserError(f"{folds}-fold cross-validation needs at least {folds} training images "
                        f"per class; one class has {int(counts[counts > 0].min())}")
    num_classes = len(store.class_names)
    cands = list(configs) if configs is not None else candidates(mode, store)
    regime = choose_regime(store, mode, cands, len(y_all), max_memory_bytes)
    sample: np.ndarray | None = None
    if not regime.exact:
        if mode == "paper" and configs is None:
            raise UserError(
                f"--search=paper fits exact kernel SVMs: {regime.rows:,} rows need "
                f"{regime.exact_bytes / 1e9:.1f} GB of kernel matrices, over the "
                f"{regime.budget_bytes / 1e9:.1f} GB memory budget; use --search=fast")
        if configs is None:
            cands = candidates(mode, store, approximate_components=regime.components)
        elif any(classifiers.get(c.classifier).family == "kernel" for c in cands):
            # explicit exact kernel SVMs: a sample whose kernel matrices fit the budget
            fit = budget_lib.max_exact_images(regime.budget_bytes, regime.rows // regime.images)
            regime = dataclasses.replace(regime, cv_images=max(min(regime.cv_images, fit),
                                                                 folds * num_classes))
        sample = budget_lib.stratified_sample(y_all, regime.cv_images, seed, folds)
        regime = dataclasses.replace(regime, cv_images=len(sample))
        if log:
            log(f"search: {regime.describe()}")
    y = y_all if sample is None else y_all[sample]
    cands = list(dict.fromkeys(cands))
    fold_idx = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y))
    results = {c: Result(c, {}, {}, 0.0) for c in cands}
    oof: dict[Config, np.ndarray] = {}
    cache: dict[tuple, FeatureSet] = {}
    start = time.perf_counter()

    total = len(cands) * folds  # fits if no candidate were dropped by halving

    def fs_of(c: Config, fold: int) -> FeatureSet:
        """The feature set of ``c``; a normalization with fitted statistics is fitted on
        the fold's training images only, so no statistic sees the fold's held-out rows."""
        k = _set_key(c, fold)
        if k not in cache:
            while len(cache) >= FEATURE_SET_CACHE:  # Gram and kernel matrices are big
                cache.pop(next(iter(cache)))
            fit_rows = fold_idx[fold][0] if c.norm in FOLD_FITTED_NORMS else None
            cache[k] = feature_set(store, splits, c, fit_rows, sample, precompute)
            store.release_pages()   # the sample's rows are copied: no file pages kept
        cache[k] = cache.pop(k)  # most recently used last
        return cache[k]

    def evaluate(configs_: Sequence[Config], fold_ids: Sequence[int]) -> None:
        groups: dict[tuple, list[tuple[Config, int]]] = {}
        # grouped by feature set, then fold-major and by kernel and gamma, so that
        # consecutive fits share a cached kernel matrix (γ is resolved per fold)
        for c in sorted(configs_, key=lambda c: (c.classifier, c.kernel, str(c.gamma))):
            for f in fold_ids:
                if f not in results[c].fold_top1:
                    groups.setdefault(_set_key(c, f), []).append((c, f))
        for tasks in groups.values():
            tasks.sort(key=lambda t: t[1])  # stable: the kernel order within each fold
            fs = fs_of(*tasks[0])
            if any(_on_kernel_matrix(fs, c) for c, _ in tasks):
                fs.dot()   # the Gram matrix, once, before the threads share it

            def task(c: Config, f: int, fs: FeatureSet = fs) -> tuple:
                t0 = time.perf_counter()
                tr, va = fold_idx[f]
                gamma = resolve_gamma(c.gamma, fs.x[tr])  # the fold's training images
                s = _fit_fold(fs, y, c, gamma, tr, va, num_classes, f)
                return c, f, s, time.perf_counter() - t0

            for c, f, s, sec in Parallel(n_jobs=n_jobs, backend="threading")(
                    delayed(task)(c, f) for c, f in tasks):
                va = fold_idx[f][1]
                r = results[c]
                r.fold_top1[f] = top_k_accuracy(s, y[va], 1)
                r.fold_top5[f] = _top5(s, y[va])
                r.seconds += sec
                oof.setdefault(c, np.zeros((len(y), num_classes)))[va] = s
            if log:
                done = sum(len(r.fold_top1) for r in results.values())
                elapsed = time.perf_counter() - start
                left = max(0, total - done)
                log(f"search: {done} fits done, at most {left} left (successive halving "
                    f"drops most), {elapsed:.0f}s elapsed, at most "
                    f"{elapsed / max(done, 1) * left:.0f}s left")

    def halve(stage: Sequence[Config], keep: float) -> None:
        """Successive halving: ``stage`` on the first fold, the best ``keep`` on all."""
        evaluate(stage, [0])
        ranked = sorted(stage, key=lambda c: (-results[c].fold_top1[0],
                                              -(results[c].fold_top5[0] or 0.0),
                                              cands.index(c)))
        evaluate(ranked[:max(2, math.ceil(len(stage) * keep))], range(folds))

    def probe_then_halve(pool: Sequence[Config], is_probe: Callable[[Config], bool],
                         feature_sets: int, keep: float) -> None:
        """Ranks the feature sets of ``pool`` by their best probe fit on the first fold,
        then halves every candidate of the best ``feature_sets`` of them."""
        evaluate([c for c in pool if is_probe(c)], [0])
        best: dict[tuple, float] = {}
        for c in pool:
            if results[c].fold_top1:
                k = c.feature_key()
                best[k] = max(best.get(k, -1.0), results[c].fold_top1[0])
        kept = set(sorted(best, key=lambda k: -best[k])[:feature_sets])
        halve([c for c in pool if c.feature_key() in kept], keep)

    if configs is not None or mode == "paper" or len(cands) <= 3:
        evaluate(cands, range(folds))
    elif not regime.exact:
        fast_ = mode == "fast"
        probe_then_halve(cands, is_approx_probe,
                         FAST_FEATURE_SETS if fast_ else THOROUGH_FEATURE_SETS,
                         1 / 3 if fast_ else 1 / 2)
    elif mode == "fast":
        probe_then_halve(cands, is_fast_probe, FAST_FEATURE_SETS, 1 / 3)
    else:
        # thorough = fast's search (so its best is never below fast's), then the wider
        # grid on the best THOROUGH_FEATURE_SETS feature sets of the wider list
        fast = set(candidates("fast", store))
        probe_then_halve([c for c in cands if c in fast], is_fast_probe,
                         FAST_FEATURE_SETS, 1 / 3)
        probe_then_halve(cands, is_probe, THOROUGH_FEATURE_SETS, 1 / 2)
    done = [r for r in results.values() if len(r.fold_top1) == folds]
    for r in done:
        if sample is None:
            r.oof = oof[r.config]
        else:   # one row per training image: NaN outside the CV sample
            r.oof = np.full((len(y_all), num_classes), np.nan)
            r.oof[sample] = oof[r.config]
    for r in results.values():
        r.regime = regime
    ordered = sorted(done, key=lambda r: rank_key(r, cands))
    rest = sorted((r for r in results.values() if 0 < len(r.fold_top1) < folds),
                  key=lambda r: rank_key(r, cands))
    return ordered + rest


def _set_key(c: Config, fold: int) -> tuple:
    """Which cached feature set serves ``c`` on ``fold``: one per fold when the
    normalization has fitted statistics, else one for every fold."""
    return c.feature_key() + ((fold,) if c.norm in FOLD_FITTED_NORMS else ())


def rank_key(r: Result, order: Sequence[Config]) -> tuple:
    """The one ranking: highest mean CV top-1, then top-5, then the earliest in
    ``order``."""
    return (-round(r.top1, 12), -round(r.top5 or 0.0, 12), order.index(r.config))


def leaderboard_markdown(results: Sequence[Result], chosen: Config, mode: str,
                         seconds: float) -> str:
    regime = next((r.regime for r in results if r.regime is not None), None)
    lines = [f"# Search leaderboard (`--search={mode}`, {seconds:.1f} s)", "",
             "CV on the training images (train + validation splits); rows with fewer folds "
             "were dropped after the first fold (successive halving). **chosen** marks the "
             "model that was fitted.", ""]
    if regime is not None:
        lines += [f"Size rule: {regime.describe()}.", ""]
    lines += ["| # | configuration | folds | CV top-1 | CV top-5 | seconds |",
              "|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        mark = " **chosen**" if r.config == chosen else ""
        t5 = "n/a" if r.top5 is None else f"{100 * r.top5:.2f}%"
        lines.append(f"| {i} | {r.config.label()}{mark} | {len(r.fold_top1)} | "
                     f"{100 * r.top1:.2f}% | {t5} | {r.seconds:.2f} |")
    return "\n".join(lines) + "\n"
