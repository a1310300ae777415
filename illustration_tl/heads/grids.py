"""The candidate lists of the ``fit`` search modes (``paper``, ``fast``, ``thorough``).

``paper`` is :func:`illustration_tl.heads.svm.paper_grid` on the paper's embedding;
``fast`` and ``thorough`` are ordered lists over resize modes, transfer-block sets,
mirrors, normalizations and the classifiers of the registry
(:mod:`illustration_tl.heads.classifiers`); :func:`is_fast_probe` and
:func:`is_probe` name the cheap fits that rank feature sets before the others run
(see :mod:`illustration_tl.heads.search`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.features import multilayer as feats
from illustration_tl.heads import classifiers
from illustration_tl.heads.config import MODES, PAPER_RESIZE, Config, paper_point
from illustration_tl.heads.svm_params import paper_grid

FAST_GAMMAS = ("scale", "2*scale", "0.5*scale")
FAST_CS = (1.0, 10.0)
FAST_OVR_CS = (3.0, 10.0)   # true one-vs-rest RBF SVMs, gamma = scale
FAST_FEATURE_SETS = 2       # feature sets (resize x blocks) that get fast's whole list
THOROUGH_FEATURE_SETS = 6   # feature sets that get the full classifier grid
IMBALANCE_RATIO = 3.0       # fast also tries class_weight="balanced" beyond this max/min
APPROX_GAMMAS = ("scale", "2*scale")
APPROX_THOROUGH_GAMMAS = ("scale", "2*scale", "0.5*scale")


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


def imbalanced(store: feats.FeatureStore) -> bool:
    """True when the training classes' largest count is over :data:`IMBALANCE_RATIO`
    times their smallest (train + validation splits)."""
    ys = [store.labels[s] for s in ("train", "validation") if s in store.labels]
    if not ys:
        return False
    counts = np.bincount(np.concatenate(ys))
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() > IMBALANCE_RATIO * counts.min()


def _balanced(configs: Sequence[Config]) -> list[Config]:
    return [dataclasses.replace(c, class_weight="balanced") for c in configs]


def candidates(mode: str, store: feats.FeatureStore, approximate_components: int = 0
               ) -> list[Config]:
    """The ordered candidate list of a search mode on this feature store; with
    ``approximate_components``, the list of the approximate regime
    (:func:`approximate_candidates`)."""
    if approximate_components and mode != "paper":
        return approximate_candidates(mode, store, approximate_components)
    if mode not in MODES:
        raise UserError(f"--search={mode!r}: choose from {', '.join(MODES)}")
    if mode == "paper":  # the svm stage's grid points, as that stage maps them
        mode0 = PAPER_RESIZE if PAPER_RESIZE in store.resize_modes else store.resize_modes[0]
        return [paper_point(p, mode0) for p in paper_grid()]
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
                    out += _linear_configs(base, "fast_cs")
        if imbalanced(store):  # issue 22: also weight the classes (never a probe)
            out += _balanced([c for c in out if c.multiclass == "ovo"
                              or classifiers.get(c.classifier).family == "linear"])
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
                    out += _linear_configs(base, "thorough_cs")
                    # issue 22: class weights for the SVM and the linear kinds
                    out += _balanced([Config(**base, kernel="rbf", C=C, gamma=g)
                                      for g in ("scale", "2*scale") for C in (1.0, 10.0)])
                    out += _balanced(_linear_configs(base, "thorough_cs"))
    return list(dict.fromkeys(out))


def _feature_bases(mode: str, store: feats.FeatureStore) -> list[dict[str, Any]]:
    """The feature sets (resize, blocks, mirrors, norm) of ``mode``'s candidate list."""
    seen = dict.fromkeys((c.resize, c.blocks, c.flip_train, c.flip_test, c.norm)
                         for c in candidates(mode, store))
    return [dict(resize=r, blocks=b, flip_train=ft, flip_test=fe, norm=n)
            for r, b, ft, fe, n in seen]


def approximate_candidates(mode: str, store: feats.FeatureStore, components: int
                           ) -> list[Config]:
    """The approximate regime's list (:mod:`illustration_tl.heads.budget`): on ``mode``'s
    feature sets, the registry's Nyström kinds (a linear classifier on ``components``
    Nyström features; γ relative to the feature scale, as the exact RBF SVMs) and its
    linear kinds, at their ``fast_cs`` / ``thorough_cs``; ``thorough`` also a wider γ
    list and class weights. Every head is linear in the rows."""
    gammas, grid = ((APPROX_GAMMAS, "fast_cs") if mode == "fast" else
                    (APPROX_THOROUGH_GAMMAS, "thorough_cs"))
    nys = [(k.name, C) for k in classifiers.KINDS.values() if k.family == "nystroem"
           for C in getattr(k, grid)]
    out: list[Config] = []
    for base in _feature_bases(mode, store):
        if mode == "thorough" and base["norm"] != "l2":
            continue   # the Nyström γ rule suits unit rows; keep the list linear in time
        here = [Config(**base, classifier=k, C=C, gamma=g, components=components)
                for k, C in nys for g in gammas]
        here += _linear_configs(base, grid)
        if mode == "thorough" or imbalanced(store):
            here += _balanced(here)
        out += here
    return list(dict.fromkeys(out))


def is_approx_probe(c: Config) -> bool:
    """The fits that rank feature sets in the approximate regime: the first Nyström
    kind at its first ``fast_cs``, γ = ``scale``."""
    kind = next(k for k in classifiers.KINDS.values() if k.family == "nystroem")
    return (c.classifier == kind.name and c.gamma == "scale" and c.C == kind.fast_cs[0]
            and not c.class_weight)


def _linear_configs(base: dict[str, Any], grid: str) -> list[Config]:
    """Every registered linear classifier at its ``fast_cs`` or ``thorough_cs``."""
    return [Config(**base, classifier=kind.name, C=C) for kind in classifiers.KINDS.values()
            if kind.family == "linear" for C in getattr(kind, grid)]


def is_fast_probe(c: Config) -> bool:
    """The fits that rank feature sets in ``fast``."""
    return (c.classifier == "svm" and c.kernel == "rbf" and c.multiclass == "ovo"
            and c.gamma in ("scale", "2*scale") and c.C == 10.0 and not c.class_weight)


def is_probe(c: Config) -> bool:
    """The fits that rank feature sets in ``thorough`` (cheap RBF SVMs)."""
    return (c.classifier == "svm" and c.kernel == "rbf" and c.multiclass == "ovo"
            and c.gamma in ("scale", "2*scale") and c.C in (1.0, 10.0) and not c.class_weight)
