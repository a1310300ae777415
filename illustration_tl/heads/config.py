"""One point of the ``fit`` search: features, normalization, classifier (paper §6.1).

A :class:`Config` names which feature blocks at which resize mode, the mirrors, the
normalization of the concatenated features and the classifier with its parameters;
:func:`resolve_gamma` turns its γ rule into a number on the rows a classifier is
fitted on, and :class:`Normalizer` is its fitted normalization. :func:`paper_point` is
the point of one of the ``svm`` stage's grid points
(:class:`illustration_tl.heads.svm_params.SvmParams`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.features import multilayer as feats
from illustration_tl.heads import classifiers
from illustration_tl.heads.svm_params import SvmParams

MODES = ("paper", "fast", "thorough")
PAPER_RESIZE = "squash"   # the resize mode of the svm stage's embeddings (the paper squashes)
NORMS = ("none", "standard", "l2", "power_l2")
FOLD_FITTED_NORMS = ("standard",)  # normalizations with fitted statistics: fitted per fold
CLASS_WEIGHTS = (None, "balanced")


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
    class_weight: str | None = None   # None or "balanced" (issue 22)
    components: int = 0               # Nyström components (family ``nystroem``, or an
    #                                   SVM on a Nyström map: the svm stage's approximation)
    degree: int = 3                   # poly kernel (sklearn's default)
    coef0: float = 0.0                # poly and sigmoid kernels (sklearn's default)
    max_iter: int = -1                # libsvm iteration cap (-1: until converged)
    seed: int = 0                     # sampling of an SVM's Nyström map

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"normalization {self.norm!r} is not one of {', '.join(NORMS)}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise UserError(f"class_weight {self.class_weight!r} is not one of "
                            f"{', '.join(map(str, CLASS_WEIGHTS))}")
        classifiers.get(self.classifier)

    def feature_key(self) -> tuple:
        return (self.resize, self.blocks, self.flip_train, self.flip_test, self.norm)

    def label(self) -> str:
        layers = "+".join(self.blocks)
        flip = ("" if not (self.flip_train or self.flip_test) else
                " flip" + ("-train" if self.flip_train else "") + ("-tta" if self.flip_test
                                                                   else ""))
        family = classifiers.get(self.classifier).family
        if family == "linear":
            head = f"{self.classifier} C={self.C:g}"
        elif family == "nystroem":
            head = (f"{self.classifier} C={self.C:g} gamma={self.gamma} "
                    f"components={self.components}")
        else:
            head = f"svm {self.kernel} C={self.C:g}"
            if self.kernel != "linear":
                head += f" gamma={self.gamma}"
            if self.kernel == "poly" and self.degree != 3:
                head += f" degree={self.degree}"
            if self.kernel in ("poly", "sigmoid") and self.coef0:
                head += f" coef0={self.coef0:g}"
            head += f" {self.multiclass}"
            if self.components:
                head += f" nystroem({self.components})"
        if self.class_weight:
            head += f" class_weight={self.class_weight}"
        return f"[{self.resize} {layers}{flip} norm={self.norm}] {head}"

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """A config from :meth:`as_dict`; fields added later take their defaults."""
        d = dict(d)
        d["blocks"] = tuple(d["blocks"])
        return cls(**d)


def paper_point(params: SvmParams, resize: str = PAPER_RESIZE, seed: int = 0) -> Config:
    """The search point of an ``svm``-stage grid point (paper §6.1): the block ``paper``
    (the embedding, raw), no mirrors, the scaling as the normalization, γ absolute
    (``repr``: the same float back); ``seed`` samples the Nyström map of an
    approximate point."""
    nystroem = params.approximation == "nystroem"
    return Config(resize, (feats.PAPER_BLOCK,), False, False, params.scaling, "svm",
                  params.kernel, params.C, repr(float(params.gamma)), params.multiclass,
                  components=params.nystroem_components if nystroem else 0,
                  degree=params.degree, coef0=params.coef0, max_iter=params.max_iter,
                  seed=seed if nystroem else 0)


def resolve_gamma(rule: str, x: np.ndarray | None) -> float:
    """γ from a rule: ``scale`` = sklearn's ``1 / (n_features * X.var())``, ``k*scale``,
    or an absolute number (``x`` unused: may be None)."""
    if not gamma_needs_rows(rule):
        return float(rule)
    x = np.asarray(x)
    return gamma_from_variance(rule, x.shape[1], float(x.var()))


def gamma_needs_rows(rule: str) -> bool:
    """Whether γ's rule depends on the rows (``scale``, ``k*scale``)."""
    return str(rule).endswith("scale")


def gamma_from_variance(rule: str, dims: int, var: float) -> float:
    """:func:`resolve_gamma` from the variance of every value of the rows (``dims``
    features), as a streamed fit computes it."""
    rule = str(rule)
    factor = float(rule[:-len("scale")].rstrip("*") or 1.0)
    return factor / (dims * var) if var > 0 else factor


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
