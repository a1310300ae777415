"""The search behind ``fit``: features x normalization x classifier, by cross-validation.

Each :class:`Config` is one point: which feature blocks (layers x pools, see
:mod:`illustration_tl.features.multilayer`) at which resize mode, whether to train on the
mirror images too and average each image's scores with its mirror's, the
normalization of the concatenated features (``none``, ``standard``, ``l2``,
``power_l2`` = signed square root then l2), and the classifier: an SVM
(rbf, linear, poly, sigmoid; ``ovo`` = sklearn ``SVC``, ``ovr`` = true
one-vs-rest, as :mod:`illustration_tl.heads.svm`) whose γ is either relative to the
feature scale (``scale`` = sklearn's ``1 / (d * X.var())``, and multiples such as
``4*scale``) or absolute (the paper's ``1e-3``, ``1e-4``), or a multinomial
logistic-regression linear probe (``logreg``).

Only the training split (train + validation) is used: stratified folds over
*images*, so an image and its mirror are always in the same fold. For every
feature set (resize, blocks, flips, normalization) the Gram matrix of all rows
is computed once (one matrix product) and every kernel, γ, C and strategy of
every fold is fitted on slices of it (``SVC(kernel="precomputed")``).

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

MODES = ("paper", "fast", "thorough")
NORMS = ("none", "standard", "l2", "power_l2")
CLASSIFIERS = ("svm", "logreg")
FAST_GAMMAS = ("scale", "2*scale", "0.5*scale")
FAST_CS = (1.0, 10.0)
FAST_OVR_CS = (3.0, 10.0)   # true one-vs-rest RBF SVMs, gamma = scale
FAST_LOGREG_CS = (30.0,)
FAST_FEATURE_SETS = 2       # feature sets (resize x blocks) that get fast's whole list
THOROUGH_FEATURE_SETS = 6   # feature sets that get the full classifier grid
LOGREG_MAX_ITER = 100
FEATURE_SET_CACHE = 2  # feature sets kept in memory (each: Gram + kernels)
KERNEL_CACHE = 2     # kernel matrices kept per feature set (one per gamma)


@dataclasses.dataclass(frozen=True)
class Config:
    """One point of the search."""

    resize: str = "squash"
    blocks: tuple[str, ...] = (feats.PAPER_BLOCK,)
    flip_train: bool = False
    flip_test: bool = False
    norm: str = "none"
    classifier: str = "svm"
    kernel: str = "rbf"
    C: float = 1.0
    gamma: str = "scale"        # "scale", "<k>*scale" or an absolute number
    multiclass: str = "ovo"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"normalization {self.norm!r} is not one of {', '.join(NORMS)}")
        if self.classifier not in CLASSIFIERS:
            raise UserError(f"classifier {self.classifier!r} is not one of "
                            f"{', '.join(CLASSIFIERS)}")

    def feature_key(self) -> tuple:
        return (self.resize, self.blocks, self.flip_train, self.flip_test, self.norm)

    def label(self) -> str:
        layers = "+".join(self.blocks)
        flip = ("" if not (self.flip_train or self.flip_test) else
                " flip" + ("-train" if self.flip_train else "") + ("-tta" if self.flip_test
                                                                   else ""))
        if self.classifier == "logreg":
            head = f"logreg C={self.C:g}"
        else:
            head = f"svm {self.kernel} C={self.C:g}"
            if self.kernel != "linear":
                head += f" gamma={self.gamma}"
            head += f" {self.multiclass}"
        return f"[{self.resize} {layers}{flip} norm={self.norm}] {head}"

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        d = dict(d)
        d["blocks"] = tuple(d["blocks"])
        return cls(**d)


def resolve_gamma(rule: str, x: np.ndarray) -> float:
    """γ from a rule: ``scale`` = sklearn's ``1 / (n_features * X.var())``, ``k*scale``,
    or an absolute number."""
    rule = str(rule)
    if rule.endswith("scale"):
        factor = float(rule[:-len("scale")].rstrip("*") or 1.0)
        var = float(np.asarray(x).var())
        return factor / (x.shape[1] * var) if var > 0 else factor
    return float(rule)


# --- Normalization -------------------------------------------------------------------

@dataclasses.dataclass
class Normalizer:
    """The normalization of a config, fitted (``standard``: mean and std)."""

    norm: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @classmethod
    def fit(cls, norm: str, x: np.ndarray) -> Normalizer:
        if norm == "standard":
            std = x.std(axis=0)
            return cls(norm, x.mean(axis=0), np.where(std > 0, std, 1.0))
        return cls(norm)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.norm == "standard":
            return (x - self.mean) / self.std
        if self.norm == "l2":
            n = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(n > 0, n, 1.0)
        if self.norm == "power_l2":
            return feats.power_l2(x)
        return x


# --- Candidate lists -------------------------------------------------------------------

def _block_sets(store_blocks: Sequence[str], layers: Sequence[str], wide: bool
                ) -> list[tuple[str, ...]]:
    # a transformer's blocks also have a class-token pool (hub_backbones)
    cls = any(b.endswith(":cls") for b in store_blocks)
    pools = feats.TOKEN_POOLS if cls else feats.POOLS

    def both(ls):
        return tuple(feats.block_name(layer, p) for layer in ls for p in pools)

    # the recipe first (the last two blocks), then every transfer layer
    sets = [both(layers[-2:])] if len(layers) > 2 else []
    sets.append(both(layers))
    if wide:
        sets.append(both(layers[-1:]))
        sets.append(tuple(feats.block_name(layer, "avg") for layer in layers))
        if cls:  # the class tokens of every transfer block (DINOv2's linear probes)
            sets.append(tuple(feats.block_name(layer, "cls") for layer in layers))
    return [s for s in dict.fromkeys(sets) if all(b in store_blocks for b in s)]


def distinct_resize_modes(store: feats.FeatureStore) -> list[str]:
    """The store's resize modes less those whose features equal an earlier mode's (pad is
    squash when every image is square, e.g. an icon set): searching both would only
    double the work."""
    out: list[str] = []
    block = next((b for b in store.blocks if b != feats.PAPER_BLOCK), store.blocks[0])
    for mode in store.resize_modes:
        mine = [store.arrays[s].get(feats.key(mode, "orig", block)) for s in store.arrays]
        if not any(all(a is not None and b is not None and np.array_equal(a, b)
                       for a, b in zip(mine, [store.arrays[s].get(feats.key(o, "orig", block))
                                              for s in store.arrays]))
                   for o in out):
            out.append(mode)
    return out


def candidates(mode: str, store: feats.FeatureStore) -> list[Config]:
    """The ordered candidate list of a search mode on this feature store."""
    if mode not in MODES:
        raise UserError(f"--search={mode!r}: choose from {', '.join(MODES)}")
    if mode == "paper":
        from illustration_tl.heads import svm

        mode0 = "squash" if "squash" in store.resize_modes else store.resize_modes[0]
        return [Config(mode0, (feats.PAPER_BLOCK,), False, False, "none", "svm", p.kernel,
                       p.C, f"{p.gamma:g}", p.multiclass) for p in svm.paper_grid()]
    layers = list(store.meta.get("layers") or [])
    flips = [(True, True)] if "flip" in store.views else [(False, False)]
    out: list[Config] = []
    if mode == "fast":
        # Features: each resize mode x (last two blocks, every block), global avg + max
        # pooled, each block power-l2-normalized (FeatureStore.assemble), the
        # concatenation l2-normalized; mirrors in training + flip test-time averaging.
        # Classifiers: RBF SVMs with gamma relative to the feature scale, and a
        # logistic-regression probe. run() decides the order (see the module doc).
        for resize in distinct_resize_modes(store):
            for blocks in _block_sets(store.blocks, layers, wide=False):
                for f_train, f_test in flips:
                    base = dict(resize=resize, blocks=blocks, flip_train=f_train,
                                flip_test=f_test, norm="l2")
                    for g in FAST_GAMMAS:
                        for C in FAST_CS:
                            out.append(Config(**base, kernel="rbf", C=C, gamma=g,
                                              multiclass="ovo"))
                    for C in FAST_OVR_CS:
                        out.append(Config(**base, kernel="rbf", C=C, gamma="scale",
                                          multiclass="ovr"))
                    for C in FAST_LOGREG_CS:
                        out.append(Config(**base, classifier="logreg", C=C))
        return out
    # thorough: every fast candidate, plus more layers, flip variants, normalizations and
    # classifiers. run() first ranks the feature sets with a few probe fits, then grids
    # the classifiers on the best ones.
    out = candidates("fast", store)
    if "flip" in store.views:
        flips = [(True, True), (False, True), (False, False)]
    for resize in distinct_resize_modes(store):
        for blocks in _block_sets(store.blocks, layers, wide=True):
            for f_train, f_test in flips:
                for norm in ("l2", "power_l2", "standard"):
                    base = dict(resize=resize, blocks=blocks, flip_train=f_train,
                                flip_test=f_test, norm=norm)
                    for g in ("scale", "2*scale", "0.5*scale", "4*scale"):
                        for C in (1.0, 10.0, 3.0, 30.0, 100.0):
                            out.append(Config(**base, kernel="rbf", C=C, gamma=g,
                                              multiclass="ovo"))
                    for C in (3.0, 10.0):
                        out.append(Config(**base, kernel="rbf", C=C, gamma="scale",
                                          multiclass="ovr"))
                    for C in (0.1, 1.0):
                        out.append(Config(**base, kernel="linear", C=C, multiclass="ovo"))
                    out.append(Config(**base, kernel="poly", C=10.0, gamma="scale"))
                    out.append(Config(**base, kernel="sigmoid", C=10.0, gamma="scale"))
                    for g in ("1e-3", "1e-4"):
                        out.append(Config(**base, kernel="rbf", C=10.0, gamma=g))
                    for C in (3.0, 30.0, 300.0):
                        out.append(Config(**base, classifier="logreg", C=C))
    return list(dict.fromkeys(out))


def _is_fast_probe(c: Config) -> bool:
    """The fits that rank feature sets in ``fast``."""
    return (c.classifier == "svm" and c.kernel == "rbf" and c.multiclass == "ovo"
            and c.gamma in ("scale", "2*scale") and c.C == 10.0)


def _is_probe(c: Config) -> bool:
    """The fits that rank feature sets in ``thorough`` (cheap RBF SVMs)."""
    return (c.classifier == "svm" and c.kernel == "rbf" and c.multiclass == "ovo"
            and c.gamma in ("scale", "2*scale") and c.C in (1.0, 10.0))


# --- Data of one feature set -----------------------------------------------------------

@dataclasses.dataclass
class FeatureSet:
    """Rows of one (resize, blocks, flips, norm): originals, then mirrors if used."""

    x: np.ndarray        # (n or 2n, d) normalized
    n: int               # images
    flipped: bool        # rows n..2n are the mirrors
    normalizer: Normalizer
    unit_rows: bool = False   # l2-normalized rows
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
            self._sq = np.diag(self._dot).copy()
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


def feature_set(store: feats.FeatureStore, splits: Sequence[str], cfg: Config) -> FeatureSet:
    orig = store.assemble(splits, cfg.resize, "orig", cfg.blocks)
    n = len(orig)
    use_flip = cfg.flip_train or cfg.flip_test
    rows = [orig] + ([store.assemble(splits, cfg.resize, "flip", cfg.blocks)] if use_flip
                     else [])
    normalizer = Normalizer.fit(cfg.norm, orig)
    return FeatureSet(normalizer(np.concatenate(rows)), n, use_flip, normalizer,
                      unit_rows=cfg.norm in ("l2", "power_l2"))


# --- Cross-validation ------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    config: Config
    fold_top1: dict[int, float]
    fold_top5: dict[int, float | None]
    seconds: float
    oof: np.ndarray | None = None   # out-of-fold scores (n, C) once every fold is done

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
                "seconds": round(self.seconds, 3)}


def make_classifier(cfg: Config, gamma: float, kernel: str | None = None) -> Any:
    """The sklearn estimator of ``cfg`` (``kernel="precomputed"`` for the Gram slices)."""
    if cfg.classifier == "logreg":
        from sklearn.linear_model import LogisticRegression

        # a probe: lbfgs to a loose tolerance (weakly regularized multinomial fits on
        # unit-norm features otherwise run for thousands of iterations)
        return LogisticRegression(C=cfg.C, max_iter=LOGREG_MAX_ITER, tol=1e-3)
    from illustration_tl.heads import svm

    return svm.make_classifier(svm.SvmParams(kernel=cfg.kernel, C=cfg.C, gamma=gamma,
                                             multiclass=cfg.multiclass), kernel=kernel)


def fit_quietly(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """``model.fit`` without sklearn's ConvergenceWarning (the probe stops early on
    purpose)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _scores(model: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    from illustration_tl.heads import svm

    return svm.decision_scores(model, x, num_classes)


def _fit_fold(fs: FeatureSet, y: np.ndarray, cfg: Config, gamma: float, train: np.ndarray,
              val: np.ndarray, num_classes: int) -> np.ndarray:
    """Scores (len(val), C) of ``cfg`` trained on images ``train``."""
    n = fs.n
    tr_rows = np.concatenate([train, train + n]) if cfg.flip_train else train
    y_tr = y[tr_rows % n]
    val_rows = [val] + ([val + n] if cfg.flip_test else [])
    if cfg.classifier == "logreg":
        model = fit_quietly(make_classifier(cfg, gamma), fs.x[tr_rows], y_tr)
        outs = [_scores(model, fs.x[r], num_classes) for r in val_rows]
    else:
        k = fs.kernel(cfg.kernel, gamma)
        model = make_classifier(cfg, gamma, kernel="precomputed").fit(
            k[np.ix_(tr_rows, tr_rows)], y_tr)
        outs = [_scores(model, k[np.ix_(r, tr_rows)], num_classes) for r in val_rows]
    return np.mean(outs, axis=0)


def _top5(s: np.ndarray, y: np.ndarray) -> float | None:
    return top_k_accuracy(s, y, 5) if top_k_applicable(5, s.shape[1]) else None


def run(store: feats.FeatureStore, mode: str = "fast", *, splits: Sequence[str] = ("train",
        "validation"), folds: int = 3, seed: int = 0, n_jobs: int = 2,
        configs: Sequence[Config] | None = None,
        log: Callable[[str], None] | None = None) -> list[Result]:
    """Cross-validates the candidates of ``mode`` on ``splits``; results best first.

    ``paper`` evaluates every point on every fold; ``fast`` keeps the best third
    after the first fold, ``thorough`` the best half.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    splits = [s for s in splits if s in store.labels]
    y = np.concatenate([store.labels[s] for s in splits])
    counts = np.bincount(y)
    if (counts[counts > 0] < folds).any():
        raise UserError(f"{folds}-fold cross-validation needs at least {folds} training images "
                        f"per class; one class has {int(counts[counts > 0].min())}")
    num_classes = len(store.class_names)
    cands = list(configs) if configs is not None else candidates(mode, store)
    cands = list(dict.fromkeys(cands))
    fold_idx = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y))
    results = {c: Result(c, {}, {}, 0.0) for c in cands}
    oof: dict[Config, np.ndarray] = {}
    cache: dict[tuple, FeatureSet] = {}
    start = time.perf_counter()

    def fs_of(c: Config) -> FeatureSet:
        k = c.feature_key()
        if k not in cache:
            while len(cache) >= FEATURE_SET_CACHE:  # Gram and kernel matrices are big
                cache.pop(next(iter(cache)))
            cache[k] = feature_set(store, splits, c)
        cache[k] = cache.pop(k)  # most recently used last
        return cache[k]

    def evaluate(configs_: Sequence[Config], fold_ids: Sequence[int]) -> None:
        by_key: dict[tuple, list[Config]] = {}
        # grouped by feature set, then by kernel and gamma so that consecutive fits
        # share a cached kernel matrix
        for c in sorted(configs_, key=lambda c: (c.classifier, c.kernel, str(c.gamma))):
            by_key.setdefault(c.feature_key(), []).append(c)
        for key_configs in by_key.values():
            fs = fs_of(key_configs[0])
            fs.dot()
            base_x = fs.x[:fs.n]

            def task(c: Config, f: int, fs: FeatureSet = fs, base_x: np.ndarray = base_x
                     ) -> tuple:
                t0 = time.perf_counter()
                tr, va = fold_idx[f]
                s = _fit_fold(fs, y, c, resolve_gamma(c.gamma, base_x), tr, va, num_classes)
                return c, f, s, time.perf_counter() - t0

            jobs = [delayed(task)(c, f) for c in key_configs for f in fold_ids
                    if f not in results[c].fold_top1]
            for c, f, s, sec in Parallel(n_jobs=n_jobs, backend="threading")(jobs):
                va = fold_idx[f][1]
                r = results[c]
                r.fold_top1[f] = top_k_accuracy(s, y[va], 1)
                r.fold_top5[f] = _top5(s, y[va])
                r.seconds += sec
                oof.setdefault(c, np.zeros((len(y), num_classes)))[va] = s
            if log:
                log(f"search: {sum(len(r.fold_top1) for r in results.values())} fits, "
                    f"{time.perf_counter() - start:.0f}s elapsed")

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
    elif mode == "fast":
        probe_then_halve(cands, _is_fast_probe, FAST_FEATURE_SETS, 1 / 3)
    else:
        # thorough = fast's search (so its best is never below fast's), then the wider
        # grid on the best THOROUGH_FEATURE_SETS feature sets of the wider list
        fast = set(candidates("fast", store))
        probe_then_halve([c for c in cands if c in fast], _is_fast_probe,
                         FAST_FEATURE_SETS, 1 / 3)
        probe_then_halve(cands, _is_probe, THOROUGH_FEATURE_SETS, 1 / 2)
    done = [r for r in results.values() if len(r.fold_top1) == folds]
    for r in done:
        r.oof = oof[r.config]
    ordered = sorted(done, key=lambda r: _rank_key(r, cands))
    rest = sorted((r for r in results.values() if 0 < len(r.fold_top1) < folds),
                  key=lambda r: _rank_key(r, cands))
    return ordered + rest


def _rank_key(r: Result, order: Sequence[Config]) -> tuple:
    return (-round(r.top1, 12), -round(r.top5 or 0.0, 12), order.index(r.config))


def leaderboard_markdown(results: Sequence[Result], chosen: Config, mode: str,
                         seconds: float) -> str:
    lines = [f"# Search leaderboard (`--search={mode}`, {seconds:.1f} s)", "",
             "CV on the training split only; rows with fewer folds were dropped after the "
             "first fold (successive halving). **chosen** marks the model that was fitted.",
             "", "| # | configuration | folds | CV top-1 | CV top-5 | seconds |",
             "|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        mark = " **chosen**" if r.config == chosen else ""
        t5 = "n/a" if r.top5 is None else f"{100 * r.top5:.2f}%"
        lines.append(f"| {i} | {r.config.label()}{mark} | {len(r.fold_top1)} | "
                     f"{100 * r.top1:.2f}% | {t5} | {r.seconds:.2f} |")
    return "\n".join(lines) + "\n"
