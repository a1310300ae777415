"""The classifiers a head can use, one registry row each (paper §6.1 and beyond).

A :class:`ClassifierKind` says how to build the scikit-learn estimator of a search
point and which *family* it belongs to; the family decides how the fitted model is
stored and served, so a new classifier needs no other code:

* ``kernel``: SVMs (``SVC`` one-vs-one or true one-vs-rest; the paper's classifier).
  The search fits them on precomputed kernel matrices (one per feature set, fold and
  γ), the head stores them as :class:`illustration_tl.heads.svm_graph.SvmTensors`.
  With ``Config.components`` (the ``svm`` stage's ``--approximation=nystroem``) the
  SVM is linear SVMs on an sklearn ``Nystroem`` map, fitted on the feature rows.
* ``linear``: anything with ``coef_`` and ``intercept_`` whose scores are
  ``x @ coef_.T + intercept_`` (logistic regression, ridge). Fitted on the feature
  rows; the head stores ``weights`` (d, C) and ``bias`` (C,).
* ``nystroem``: a linear classifier (as ``linear``) on Nyström features of the RBF
  kernel (:mod:`illustration_tl.heads.approximate`): the approximate kernel SVM of
  large folders, linear in the rows. The head stores the kernel map (components,
  projection, γ) and the linear classifier's ``weights`` and ``bias``.

Every kind takes ``Config.class_weight`` (None or ``"balanced"``, issue 22).

``fast_cs`` and ``thorough_cs`` are the values of ``C`` (the inverse regularization
strength, the search's one scalar knob) that ``--search=fast`` and
``--search=thorough`` try for a linear or Nyström kind; the SVM grids live in
:mod:`illustration_tl.heads.search`. To add a classifier, append a row to
:data:`KINDS` (see ``docs/architecture.md``, "Add a classifier head").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from illustration_tl.errors import UserError

# A search point (:class:`illustration_tl.heads.config.Config`, which validates its
# classifier against this registry, so it is not imported here).
Config = Any

FAMILIES = ("kernel", "linear", "nystroem")
LOGREG_MAX_ITER = 100
NYSTROEM_LOGREG_MAX_ITER = 300


@dataclasses.dataclass(frozen=True)
class ClassifierKind:
    """One classifier a search point can name (``Config.classifier``)."""

    name: str
    family: str
    # (config, resolved γ, "precomputed" or None) -> an unfitted sklearn estimator
    build: Callable[[Config, float, str | None], Any]
    fast_cs: tuple[float, ...] = ()
    thorough_cs: tuple[float, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"classifier {self.name}: family {self.family!r} is not one of "
                             f"{FAMILIES}")


def class_weight(cfg: Config) -> str | None:
    """The config's class weighting (``None`` in configs written before it existed)."""
    return getattr(cfg, "class_weight", None)


def _svm(cfg: Config, gamma: float, kernel: str | None) -> Any:
    from illustration_tl.heads import svm_params as svm

    params = svm.SvmParams(kernel=cfg.kernel, C=cfg.C, gamma=gamma,
                           multiclass=cfg.multiclass, degree=getattr(cfg, "degree", 3),
                           coef0=getattr(cfg, "coef0", 0.0),
                           max_iter=getattr(cfg, "max_iter", -1),
                           approximation="nystroem" if cfg.components else "none",
                           nystroem_components=cfg.components or 1024)
    if cfg.components:  # the svm stage's approximation: a Nyström map, linear SVMs
        return svm.make_pipeline(params, getattr(cfg, "seed", 0))
    model = svm.make_classifier(params, kernel=kernel)
    if class_weight(cfg):
        # one-vs-rest: balanced within each binary problem
        inner = model.estimator if hasattr(model, "estimator") else model
        inner.set_params(class_weight=class_weight(cfg))
    return model


def _logreg(cfg: Config, gamma: float, kernel: str | None) -> Any:
    from sklearn.linear_model import LogisticRegression

    # a probe: lbfgs to a loose tolerance (weakly regularized multinomial fits on
    # unit-norm features otherwise run for thousands of iterations)
    return LogisticRegression(C=cfg.C, max_iter=LOGREG_MAX_ITER, tol=1e-3,
                              class_weight=class_weight(cfg))


def _ridge(cfg: Config, gamma: float, kernel: str | None) -> Any:
    from illustration_tl.heads.ridge import RidgeClassifier

    # one least-squares solve for every class, its normal equations summed chunk by
    # chunk (scikit-learn's RidgeClassifier to rounding, without its centred copy):
    # linear time in the rows, flat memory (α = 1 / C, so that C reads as for the
    # other kinds); heads.head streams a large folder's rows through it
    return RidgeClassifier(alpha=1.0 / cfg.C, class_weight=class_weight(cfg))


def _linear_svm(cfg: Config, gamma: float, kernel: str | None) -> Any:
    from sklearn.svm import LinearSVC

    # liblinear's dual solver: measured 6x faster than the primal one on 4,000 x 2,048
    # Nyström features of 30 classes (and liblinear copies the rows: twice Z's memory)
    return LinearSVC(C=cfg.C, dual=True, max_iter=1000, class_weight=class_weight(cfg))


def _nystroem_logreg(cfg: Config, gamma: float, kernel: str | None) -> Any:
    from sklearn.linear_model import LogisticRegression

    # lbfgs on the mapped rows in place (no copy); weakly regularized, as a kernel
    # logistic regression: the approximate regime's default, fast and linear in the rows
    return LogisticRegression(C=cfg.C, max_iter=NYSTROEM_LOGREG_MAX_ITER, tol=1e-4,
                              class_weight=class_weight(cfg))


KINDS: dict[str, ClassifierKind] = {k.name: k for k in [
    ClassifierKind("svm", "kernel", _svm, description="SVM (rbf, linear, poly, sigmoid; "
                   "one-vs-one or true one-vs-rest)"),
    ClassifierKind("logreg", "linear", _logreg, fast_cs=(30.0,),
                   thorough_cs=(3.0, 30.0, 300.0),
                   description="multinomial logistic regression (a linear probe)"),
    ClassifierKind("ridge", "linear", _ridge, thorough_cs=(0.3, 3.0, 30.0),
                   description="ridge regression on one-hot targets (normal equations)"),
    # the approximate regime's fast head: one regularized least-squares solve on the
    # Nyström features (seconds where the others take minutes), and on real icons the
    # closest to the exact RBF SVM (benchmarks/results/search_scale.md); the first
    # Nyström kind is the one that ranks the feature sets (grids.is_approx_probe)
    ClassifierKind("nystroem_ridge", "nystroem", _ridge, fast_cs=(1000.0,),
                   thorough_cs=(100.0, 1000.0),
                   description="ridge regression on Nyström features of the RBF kernel: "
                   "the approximate kernel classifier of large folders, one solve"),
    ClassifierKind("nystroem_logreg", "nystroem", _nystroem_logreg,
                   thorough_cs=(30.0, 300.0),
                   description="logistic regression on Nyström features of the RBF "
                   "kernel: an approximate kernel classifier for large folders"),
    ClassifierKind("nystroem_svm", "nystroem", _linear_svm, thorough_cs=(1.0, 10.0),
                   description="linear SVM (LinearSVC) on Nyström features of the RBF "
                   "kernel: the approximate kernel SVM of large folders"),
]}


def get(name: str) -> ClassifierKind:
    """The registry row of ``name``; a one-line :class:`UserError` for an unknown one."""
    if name not in KINDS:
        raise UserError(f"classifier {name!r} is not one of {', '.join(KINDS)}")
    return KINDS[name]
