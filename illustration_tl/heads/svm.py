"""The SVM stage: an SVM on CNN embeddings, with the paper's grid search (paper §6.1, §7.2).

The paper trains scikit-learn SVMs on fc2 embeddings and picks kernel, γ and
C by 3-fold grid search over kernels {rbf, poly, sigmoid, linear}, γ ∈ {1e-3,
1e-4}, C ∈ {1, 10, 100, 1000} and the multi-class strategy {one-vs-rest,
one-vs-one}: 4 × 2 × 4 × 2 = 64 combinations (:func:`paper_grid`). Its best
settings were RBF C=1 γ=1e-4 on the baseline fc2 and sigmoid C=10 γ=1e-4 on
the optimized fc2 (``--preset=svm_baseline``, ``--preset=svm_optimized``).

Multi-class strategy. scikit-learn's ``SVC`` always trains one-vs-one;
``decision_function_shape='ovr'`` only turns the pairwise votes into one score
per class. Here ``multiclass="ovo"`` is exactly that (``SVC``, per-class scores
from votes plus confidences), and ``multiclass="ovr"`` is true one-vs-rest:
``OneVsRestClassifier(SVC)``, one binary SVM per class against all others.

Feature scaling (``none``, ``standard``, ``l2``) is a parameter like any other
and a grid dimension: γ must be searched together with it, since γ=1e-4 suits
raw fc2 activations (squared distances in the thousands) but makes an RBF on
l2-normalized features nearly constant.

One CV engine. The grid is cross-validated by ``fit``'s search
(:mod:`illustration_tl.heads.svm_cv` maps each grid point to a search
:class:`~illustration_tl.heads.config.Config` and calls
:func:`illustration_tl.heads.search.run`): every scaling with statistics is fitted
inside each fold, and for exact kernels the kernel matrix is computed once per
(scaling, kernel, γ) with one BLAS matrix product and every C and strategy is
fitted on its slices (``SVC(kernel="precomputed")``); the decision scores equal
those of the same SVM on the raw features. The winner is refit on all training
rows with the real kernel by ``fit``'s own refit (:func:`illustration_tl.heads.head.fit`
of its :func:`~illustration_tl.heads.config.paper_point`), so the stage's model is a
:class:`illustration_tl.heads.head.Head` like ``fit``'s, its temperature fitted on the
winner's out-of-fold scores (the test scores are the uncalibrated decision scores).
For sets too large for a kernel SVM (the noisy set), ``approximation="nystroem"``
maps the features with a Nystroem kernel approximation and trains linear SVMs.

Any number of classes from 2 up: scores are always (n, num_classes); a binary
SVM's single decision value ``d`` becomes ``[-d, d]``; top-5 is reported as
not applicable (``None``) with 5 classes or fewer, where it is always 100%.

Saved model, no pickle: the head as ``fit`` stores it, ``head.npz`` (plain arrays:
the normalization's statistics and the SVM as
:class:`illustration_tl.heads.svm_graph.SvmTensors`, read back with
``np.load(allow_pickle=False)``) + ``head.json``; ``svm.json`` holds the grid point,
CV scores, classes and the embeddings' record. Every refit checks the SVM's arrays
against sklearn's ``decision_function`` before anything is saved; the numpy head
scores the test split and :meth:`~illustration_tl.heads.head.Head.tf_probabilities`
serves the export. A folder of an earlier version (``svm.npz``: the SVM's arrays with
their scaling) is read through the same head; a ``svm.joblib`` (a pickle, written by
older versions) is never read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from illustration_tl.core import common_settings, outputs
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.errors import UserError
from illustration_tl.evaluation.metrics import (
    EvalResult,
    atomic_write_json,
    top_k_accuracy,
)
from illustration_tl.features.multilayer import PAPER_BLOCK
from illustration_tl.heads import head as head_lib
from illustration_tl.heads import svm_graph
from illustration_tl.heads.config import paper_point
from illustration_tl.heads.search import Result
from illustration_tl.heads.svm_cv import (
    SPLIT,
    cross_validate,
    cv_row,
    feature_store,
    select_best,
)
from illustration_tl.heads.svm_params import (
    APPROXIMATIONS,
    KERNELS,
    MISSING_CLASS_SCORE,
    MULTICLASS,
    PAPER_CS,
    PAPER_GAMMAS,
    PAPER_KERNELS,
    PAPER_MULTICLASS,
    SCALINGS,
    SvmParams,
    decision_scores,
    grid,
    make_classifier,
    make_pipeline,
    make_scaler,
    paper_grid,
)

MODEL_FILES = (head_lib.NPZ, head_lib.JSON)   # the head, as fit's final stage writes it
INFO_FILE = "svm.json"
LEGACY_MODEL_FILE = "svm.npz"  # an earlier version's SVM arrays: still read, as a Head
LEGACY_PICKLE = "svm.joblib"  # written by earlier versions; never loaded (a pickle runs code)
OUTPUT_MARKER = "svm"         # the svm command's outputs.prepare_output marker

# The SVM stage's API; the estimators live in svm_params, the grid search's mapping
# onto the search engine in svm_cv.
__all__ = ["SvmConfig", "SvmParams", "SvmFit", "Result", "paper_grid", "grid",
           "make_pipeline", "make_classifier", "make_scaler", "fit", "cross_validate",
           "select_best", "decision_scores", "evaluate", "save", "load", "head_scores",
           "PAPER_BLOCK",
           "top_k_accuracy",
           "APPROXIMATIONS", "KERNELS", "MISSING_CLASS_SCORE", "MULTICLASS", "PAPER_CS",
           "PAPER_GAMMAS", "PAPER_KERNELS", "PAPER_MULTICLASS", "SCALINGS"]


@dataclasses.dataclass
class SvmConfig:
    """The ``svm`` stage's settings, one ``illustration-tl svm`` flag each
    (:mod:`config_flags`). Every sequence of SVM parameters is a grid dimension."""

    embeddings: str | None = optional("Output folder of `illustration-tl embed` (one "
                                      "subfolder per split).")
    output: str | None = optional("Folder for the fitted SVM and its test scores.")
    train_splits: tuple[str, ...] = setting(("train", "validation"), "Embedding splits to "
                                            "train on (concatenated).")
    test_split: str = setting("test", "Embedding split to evaluate on.")
    kernel: tuple[str, ...] = setting(PAPER_KERNELS, "SVM kernels to try (paper grid: all "
                                      "four).")
    gamma: tuple[str, ...] = setting(("1e-3", "1e-4"), "Kernel coefficients to try.")
    C: tuple[str, ...] = setting(("1", "10", "100", "1000"), "Penalties to try.")
    multiclass: tuple[str, ...] = setting(PAPER_MULTICLASS, "Multi-class strategies to try: "
                                          "ovr (true one-vs-rest) and/or ovo (sklearn SVC).")
    scaling: tuple[str, ...] = setting(("none",), "Feature scalings to try: none, standard "
                                       "(zero mean, unit variance), l2 (unit-length rows).")
    degree: int = setting(3, "Degree of the poly kernel.")
    coef0: float = setting(0.0, "Independent term of the poly and sigmoid kernels.")
    approximation: str = setting(
        "none", "nystroem: approximate the kernel with Nystroem features and train linear "
        "SVMs (for sets too large for a kernel SVM).", choices=APPROXIMATIONS)
    nystroem_components: int = setting(1024, "Nystroem features.")
    max_iter: int = setting(-1, "libsvm iteration cap per SVM (-1: until converged, as "
                            "sklearn).")
    cv_folds: int = common_settings.cv_folds(3)
    n_jobs: int = setting(-1, "Grid-search worker processes (-1: all cores).")
    precompute_kernels: str = setting(
        "auto", "Compute each fold's kernel matrix once and share it between C values and "
        "strategies (auto: up to 12,000 training rows).", choices=("auto", "yes", "no"))
    seed: int = setting(0, "Seed of the CV folds and Nystroem sampling.")
    overwrite: bool = setting(False, "Replace --output if it holds an earlier `svm` output "
                              "(and nothing else), once the new one is complete.")
    name: str | None = common_settings.model_name()

    def candidates(self) -> list[SvmParams]:
        """The grid's points (one point: fixed parameters, no search)."""
        return grid(kernels=self.kernel, gammas=parse_floats(self.gamma, "gamma"),
                    Cs=parse_floats(self.C, "C"), multiclass=self.multiclass,
                    scalings=self.scaling, degree=self.degree, coef0=self.coef0,
                    approximation=self.approximation,
                    nystroem_components=self.nystroem_components, max_iter=self.max_iter)

    def precompute(self) -> bool | None:
        """``precompute_kernels`` for :func:`train_and_evaluate` (None: auto)."""
        return {"auto": None, "yes": True, "no": False}[self.precompute_kernels]


@dataclasses.dataclass
class SvmFit:
    """The refitted winner with how it was chosen.

    ``head`` is the winner refitted on every training row as ``fit``'s
    :class:`~illustration_tl.heads.head.Head` (what ``head.npz`` + ``head.json``
    store; :meth:`scores` evaluates it, as a loaded SVM and the export do).
    ``cv_results[i]`` is the search engine's result of ``candidates[i]`` (empty
    without a grid search).
    """

    head: head_lib.Head
    params: SvmParams
    cv_results: list[Result]
    fit_seconds: float
    grid_seconds: float
    candidates: list[SvmParams] = dataclasses.field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def arrays(self) -> svm_graph.SvmTensors:
        """The SVM of the head, on the head's normalized rows."""
        return self.head.svm

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores (n, num_classes) of embeddings ``x``: the head's decision
        scores, uncalibrated (numpy)."""
        return head_scores(self.head, x)

    def cv_of(self, params: SvmParams) -> Result | None:
        """The CV result of grid point ``params`` (None: not cross-validated)."""
        return next((r for p, r in zip(self.candidates, self.cv_results) if p == params),
                    None)

    def cv_rows(self) -> list[dict[str, Any]]:
        """``svm.json``'s ``cv_results``: one row per grid point, best first."""
        rows = [cv_row(p, r) for p, r in zip(self.candidates, self.cv_results)]
        return sorted(rows, key=lambda r: -r["mean_top1"])

    def steps(self) -> list[str]:
        """What the head applies to an embedding, in order (``svm.json``'s ``steps``)."""
        return ((["scale"] if self.params.scaling != "none" else [])
                + (["features"] if self.params.approximation == "nystroem" else [])
                + ["svm"])


def fit(x: np.ndarray, y: np.ndarray, candidates: SvmParams | Sequence[SvmParams], *,
        num_classes: int | None = None, class_names: Sequence[str] | None = None,
        folds: int = 3, n_jobs: int = -1, seed: int = 0, precompute: bool | None = None,
        log: Any = None) -> SvmFit:
    """Picks the best candidate by ``folds``-fold CV (skipped for a single candidate) and
    refits it on all of ``x`` with the real kernel, as ``fit``'s final stage refits
    (:func:`illustration_tl.heads.head.fit` of the point's
    :func:`~illustration_tl.heads.config.paper_point`): a
    :class:`~illustration_tl.heads.head.Head`."""
    if isinstance(candidates, SvmParams):
        candidates = [candidates]
    if not candidates:
        raise UserError("no SVM parameters to try")
    y = np.asarray(y, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise UserError("the SVM needs training examples of at least two classes")
    cv: list[Result] = []
    grid_start = time.perf_counter()
    if len(candidates) > 1:
        cv = cross_validate(x, y, candidates, folds=folds, n_jobs=n_jobs, seed=seed,
                            precompute=precompute, log=log)
        best = candidates[select_best(cv)]
    else:
        best = candidates[0]
    grid_seconds = time.perf_counter() - grid_start
    start = time.perf_counter()
    if log:
        log(f"svm: fitting {best.label()} on {len(x):,} x {x.shape[1]:,} embeddings")
    num_classes = num_classes or int(y.max()) + 1
    names = list(class_names) if class_names is not None else [str(c) for c in
                                                               range(num_classes)]
    # fit's final refit (heads.head.fit): the same Config the CV ran, every training
    # row, the temperature on the winner's out-of-fold scores; libsvm's own kernel on the
    # rows, so the paper's SVM is scikit-learn's to the bit (svm_class_counts_test)
    oof = cv[candidates.index(best)].oof if cv else None
    head = head_lib.fit(feature_store(x, y, names), paper_point(best, seed=seed), (SPLIT,),
                        oof, kernel_matrix=False)
    return SvmFit(head, best, cv, time.perf_counter() - start, grid_seconds,
                  list(candidates) if cv else [])


def evaluate(fitted: SvmFit, x: np.ndarray, y: np.ndarray, class_names: Sequence[str],
             model_name: str, file_names: Sequence[str] | None = None,
             extra: dict[str, Any] | None = None) -> EvalResult:
    """Top-k scores of the fitted SVM on held-out embeddings (§7.2)."""
    extra = dict(extra or {}, svm_params=fitted.params.as_dict())
    return EvalResult(model_name, list(class_names), y, fitted.scores(x), file_names, extra)


# --- The whole stage: embeddings in, fitted SVM and test scores out --------------------

def train_and_evaluate(embeddings_dir: str, output: str,
                       candidates: SvmParams | Sequence[SvmParams], *,
                       train_splits: Sequence[str] = ("train", "validation"),
                       test_split: str = "test", model_name: str | None = None,
                       folds: int = 3, n_jobs: int = -1, seed: int = 0,
                       precompute: bool | None = None, log: Any = None,
                       overwrite: bool = False) -> EvalResult:
    """Trains on ``train_splits`` of an embeddings folder, evaluates on ``test_split``,
    and writes ``svm.npz``, ``svm.json`` and the evaluation result to ``output`` (§7.2).

    ``output`` must not exist or be empty; with ``overwrite`` it may also be an
    earlier output of this function, which is replaced only once the new one is
    complete (:func:`illustration_tl.core.outputs.writing`). Folders holding anything
    else are refused.
    """
    outputs.prepare_output(output, overwrite=overwrite, marker=OUTPUT_MARKER)
    from illustration_tl.features import embeddings

    train = embeddings.load_splits(embeddings_dir, list(train_splits))
    test = embeddings.load(embeddings_dir, test_split)
    embeddings.check_compatible(train.metadata, test.metadata,
                                f"--train_splits and --test_split={test_split}")
    meta = {k: v for k, v in train.metadata.items()
            if k not in ("num_examples", "num_shards", "split", "images_per_second")}
    if log:
        log(f"svm: {len(train.y):,} training and {len(test.y):,} test embeddings of width "
            f"{train.x.shape[1]:,} ({meta.get('layer')}), {len(train.class_names)} classes")
    fitted = fit(train.x, train.y, candidates, num_classes=len(train.class_names),
                 class_names=train.class_names, folds=folds, n_jobs=n_jobs, seed=seed,
                 precompute=precompute, log=log)
    name = model_name or f"{meta.get('backbone', 'cnn')} {meta.get('layer', '')} + SVM".replace(
        "  ", " ")
    best_cv = fitted.cv_of(fitted.params)
    # relative to the folder the result is saved in, so a stage written beside its final
    # folder and swapped in (pipelines/stages.py) still finds them
    rel = os.path.relpath(os.path.abspath(embeddings_dir), os.path.abspath(output))
    extra = {"stage": "svm", "embeddings_dir": rel, "train_splits": list(train_splits),
             "test_split": test_split, "embeddings": meta,
             "cv_top1": best_cv.top1 if best_cv else None,
             "num_train": int(len(train.y))}
    result = evaluate(fitted, test.x, test.y, train.class_names, name, test.file_names, extra)
    with outputs.writing(output, overwrite=overwrite, marker=OUTPUT_MARKER) as tmp:
        save(tmp, fitted, train.class_names, {"embeddings": meta, "embeddings_dir": rel,
                                              "train_splits": list(train_splits),
                                              "test_split": test_split,
                                              "test_top1": result.top_k(1),
                                              "test_top5": result.top_k_or_none(5)})
        result.save(tmp)
    return result


# --- Saving and loading ---------------------------------------------------------------

def save(directory: str, fitted: SvmFit, class_names: Sequence[str],
         info: dict[str, Any] | None = None) -> None:
    """Writes the head (``head.npz``: plain arrays, no pickle; ``head.json``) and
    ``svm.json`` (the grid point, the CV table, ``info``), each atomically."""
    import sklearn

    if len(class_names) != fitted.num_classes:
        raise ValueError(f"{len(class_names)} class names for {fitted.num_classes} classes")
    os.makedirs(directory, exist_ok=True)
    dataclasses.replace(fitted.head, class_names=list(class_names)).save(directory)
    doc = dict(info or {}, params=fitted.params.as_dict(), label=fitted.params.label(),
               class_names=list(class_names), num_classes=fitted.num_classes,
               steps=fitted.steps(), model_files=list(MODEL_FILES),
               arrays=fitted.arrays.params(), temperature=fitted.head.temperature,
               fit_seconds=round(fitted.fit_seconds, 3),
               grid_seconds=round(fitted.grid_seconds, 3), cv_results=fitted.cv_rows(),
               sklearn_version=sklearn.__version__)
    atomic_write_json(os.path.join(directory, INFO_FILE), doc)


def load(directory: str) -> tuple[head_lib.Head, dict[str, Any]]:
    """The saved SVM as a :class:`~illustration_tl.heads.head.Head` (score embeddings
    with :func:`head_scores`) and its ``svm.json``.

    Reads only ``head.npz`` (``allow_pickle=False``), ``head.json`` and ``svm.json``;
    a folder of an earlier version (``svm.npz``, :data:`svm_graph.ARRAYS_FORMAT`) is
    read through the same head (:meth:`Head.from_svm`). Anything else in the folder,
    such as a ``svm.joblib`` pickle, is never opened. A missing, truncated or
    inconsistent file is a :class:`UserError` naming it.
    """
    info_path = os.path.join(directory, INFO_FILE)
    legacy_path = os.path.join(directory, LEGACY_MODEL_FILE)
    has_head = all(os.path.isfile(os.path.join(directory, f)) for f in MODEL_FILES)
    if not (os.path.isfile(info_path) and (has_head or os.path.isfile(legacy_path))):
        legacy = os.path.isfile(os.path.join(directory, LEGACY_PICKLE))
        raise UserError(f"{directory!r} holds no fitted SVM ({', '.join(MODEL_FILES)} and "
                        f"{INFO_FILE}); "
                        + (f"its {LEGACY_PICKLE} is a pickle from an earlier version and is "
                           "not loaded (it could run code); retrain " if legacy else "train ")
                        + "one with `illustration-tl svm`")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if not isinstance(info, dict) or not isinstance(info.get("class_names"), list):
            raise ValueError("no class_names list")
        params = SvmParams(**info["params"]) if not has_head else None
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, UserError) as e:
        raise UserError(f"{info_path}: not a readable SVM description ({_one_line(e)}); "
                        "retrain with `illustration-tl svm`") from None
    model_path = os.path.join(directory, head_lib.NPZ) if has_head else legacy_path
    try:
        if has_head:
            head = head_lib.Head.load(directory)
        else:
            with np.load(legacy_path, allow_pickle=False) as z:
                arrays = svm_graph.SvmTensors.from_arrays({k: z[k] for k in z.files})
            head = head_lib.Head.from_svm(arrays, info["class_names"], paper_point(params))
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error
        raise UserError(f"{model_path}: not a readable SVM array file ({_one_line(e)}); "
                        "retrain with `illustration-tl svm`") from None
    scored = head.svm.num_classes if head.svm is not None else len(head.bias)
    if len(info["class_names"]) != scored or head.class_names != info["class_names"]:
        raise UserError(f"{info_path} names {len(info['class_names'])} classes but "
                        f"{model_path} scores {scored}; retrain with "
                        "`illustration-tl svm`")
    return head, info


def head_scores(head: head_lib.Head, x: np.ndarray) -> np.ndarray:
    """The decision scores (n, num_classes) of a loaded SVM's head on embeddings ``x``
    (uncalibrated, as the svm stage scores its test split)."""
    return head.scores({PAPER_BLOCK: x})


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_floats(values: Iterable[str], flag: str) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise UserError(f"--{flag} takes numbers, got {list(values)}") from None
