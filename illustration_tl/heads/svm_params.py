"""The paper's SVMs as scikit-learn estimators (paper §6.1): parameters, grid, pipeline.

:class:`SvmParams` is one point of the grid (kernel, γ, C, one-vs-rest or
one-vs-one, feature scaling, optional Nyström approximation); :func:`paper_grid` is
the paper's 64 points; :func:`make_pipeline` builds the unfitted estimator and
:func:`decision_scores` reads one score per class from any fitted one. See
:mod:`illustration_tl.heads.svm` for the stage and the multi-class strategies.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.evaluation.metrics import scores_2d
from illustration_tl.heads import svm_graph

KERNELS = ("rbf", "poly", "sigmoid", "linear")
MULTICLASS = ("ovr", "ovo")
SCALINGS = ("none", "standard", "l2")
APPROXIMATIONS = ("none", "nystroem")

# The paper's grid (§6.1): 4 kernels x 2 gammas x 4 Cs x 2 strategies = 64.
PAPER_KERNELS = KERNELS
PAPER_GAMMAS = (1e-3, 1e-4)
PAPER_CS = (1.0, 10.0, 100.0, 1000.0)
PAPER_MULTICLASS = MULTICLASS

# Classes absent from the training rows get this score, so they rank last.
MISSING_CLASS_SCORE = svm_graph.MISSING_CLASS_SCORE


@dataclasses.dataclass(frozen=True)
class SvmParams:
    """One SVM configuration (one point of the grid)."""

    kernel: str = "rbf"
    C: float = 1.0
    gamma: float = 1e-4
    multiclass: str = "ovo"
    scaling: str = "none"
    degree: int = 3                  # poly kernel (sklearn default)
    coef0: float = 0.0               # poly and sigmoid kernels (sklearn default)
    approximation: str = "none"      # "nystroem": kernel approximation + linear SVM
    nystroem_components: int = 1024
    max_iter: int = -1               # libsvm iteration cap; -1 = until converged (sklearn)

    def __post_init__(self) -> None:
        for name, value, allowed in [("kernel", self.kernel, KERNELS),
                                     ("multiclass", self.multiclass, MULTICLASS),
                                     ("scaling", self.scaling, SCALINGS),
                                     ("approximation", self.approximation, APPROXIMATIONS)]:
            if value not in allowed:
                raise UserError(f"--{name}={value!r} is not one of {', '.join(allowed)}")
        if self.C <= 0 or self.gamma <= 0:
            raise UserError(f"C and gamma must be positive (got C={self.C}, "
                            f"gamma={self.gamma})")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """Short text such as ``rbf C=1 γ=0.0001 ovo``."""
        text = f"{self.kernel} C={self.C:g}"
        if self.kernel != "linear":
            text += f" gamma={self.gamma:g}"
        text += f" {self.multiclass}"
        if self.scaling != "none":
            text += f" scale={self.scaling}"
        if self.approximation != "none":
            text += f" nystroem({self.nystroem_components})"
        return text

    def kernel_key(self) -> tuple:
        """What determines the kernel matrix (a linear kernel ignores gamma)."""
        gamma = None if self.kernel == "linear" else self.gamma
        return (self.scaling, self.kernel, gamma, self.degree, self.coef0)


def grid(kernels: Sequence[str] = PAPER_KERNELS, gammas: Sequence[float] = PAPER_GAMMAS,
         Cs: Sequence[float] = PAPER_CS, multiclass: Sequence[str] = PAPER_MULTICLASS,
         scalings: Sequence[str] = ("none",), **common: Any) -> list[SvmParams]:
    """Every combination of the given values (the Cartesian product, in this order)."""
    return [SvmParams(kernel=k, gamma=float(g), C=float(c), multiclass=m, scaling=s, **common)
            for s, k, g, c, m in itertools.product(scalings, kernels, gammas, Cs, multiclass)]


def paper_grid(scalings: Sequence[str] = ("none",), **common: Any) -> list[SvmParams]:
    """The paper's 64-point grid (§6.1), optionally crossed with feature scalings."""
    return grid(PAPER_KERNELS, PAPER_GAMMAS, PAPER_CS, PAPER_MULTICLASS, scalings, **common)


# --- Building the sklearn pipeline ----------------------------------------------------

def make_scaler(scaling: str) -> Any:
    from sklearn.preprocessing import Normalizer, StandardScaler

    return {"none": None, "standard": StandardScaler(), "l2": Normalizer(norm="l2")}[scaling]


def make_classifier(params: SvmParams, kernel: str | None = None, cache_size: float = 500
                    ) -> Any:
    """``SVC`` (one-vs-one) or ``OneVsRestClassifier(SVC)`` (true one-vs-rest)."""
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    svc = SVC(kernel=kernel or params.kernel, C=params.C, gamma=params.gamma,
              degree=params.degree, coef0=params.coef0, cache_size=cache_size,
              max_iter=params.max_iter, decision_function_shape="ovr")
    return OneVsRestClassifier(svc) if params.multiclass == "ovr" else svc


def _linear_classifier(params: SvmParams) -> Any:
    from sklearn.multiclass import OneVsOneClassifier
    from sklearn.svm import LinearSVC

    svc = LinearSVC(C=params.C, dual="auto",
                    max_iter=params.max_iter if params.max_iter > 0 else 10000)
    return svc if params.multiclass == "ovr" else OneVsOneClassifier(svc)


def make_pipeline(params: SvmParams, seed: int = 0) -> Any:
    """The unfitted pipeline: optional ``scale``, optional ``features`` (Nystroem), ``svm``."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import Pipeline

    steps: list[tuple[str, Any]] = []
    scaler = make_scaler(params.scaling)
    if scaler is not None:
        steps.append(("scale", scaler))
    if params.approximation == "nystroem":
        steps.append(("features", Nystroem(kernel=params.kernel, gamma=params.gamma,
                                           degree=params.degree, coef0=params.coef0,
                                           n_components=params.nystroem_components,
                                           random_state=seed)))
        steps.append(("svm", _linear_classifier(params)))
    else:
        steps.append(("svm", make_classifier(params)))
    return Pipeline(steps)


def decision_scores(model: Any, x: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """One score per class from ``decision_function``, as (n, num_classes).

    Columns follow the integer labels the model was trained on; a class that
    had no training rows gets :data:`MISSING_CLASS_SCORE`.
    """
    scores = scores_2d(model.decision_function(x))
    classes = np.asarray(model.classes_, dtype=np.int64)
    num_classes = num_classes or int(classes.max()) + 1
    if len(classes) == num_classes and np.array_equal(classes, np.arange(num_classes)):
        return scores
    full = np.full((len(scores), num_classes), MISSING_CLASS_SCORE)
    full[:, classes] = scores
    return full
