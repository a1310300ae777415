"""A fitted scikit-learn SVM stage as TensorFlow operations (paper §6.1, §7.2).

The paper's best classifier is "optimized VGG19 fc2 + SVM". To serve it as one
SavedModel, the SVM's decision function is rebuilt here from what the fitted
estimator holds: the feature scaling, the support vectors, the dual
coefficients, the intercepts and the kernel. Every multi-class layout the SVM
stage produces reduces to one form,

    scores = aggregate(K(scale(x), S) @ W + b),

where ``S`` stacks the support vectors, ``W`` places each dual coefficient in
the column of the binary problem it belongs to, and ``aggregate`` is the
identity for true one-vs-rest (``OneVsRestClassifier(SVC)``) and sklearn's
vote-plus-confidence rule for one-vs-one ``SVC``. The kernel is evaluated in
float64 so the exported scores match ``decision_function`` to ~1e-6.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

KERNELS = ("linear", "rbf", "poly", "sigmoid")


@dataclasses.dataclass
class SvmTensors:
    """Everything needed to evaluate a fitted SVM pipeline, as numpy arrays."""

    kernel: str
    gamma: float
    coef0: float
    degree: int
    support_vectors: np.ndarray  # (n_sv, d)
    weights: np.ndarray          # (n_sv, n_problems)
    intercepts: np.ndarray       # (n_problems,)
    ovo_classes: int             # 0 for one-vs-rest, else the number of classes
    scale_mean: np.ndarray | None = None   # StandardScaler
    scale_std: np.ndarray | None = None
    l2_normalize: bool = False             # Normalizer(norm="l2")

    def params(self) -> dict[str, Any]:
        """The JSON-friendly parameters, for export metadata."""
        return {"kernel": self.kernel, "gamma": self.gamma, "coef0": self.coef0,
                "degree": self.degree, "num_support_vectors": int(len(self.support_vectors)),
                "multiclass": "ovo" if self.ovo_classes else "ovr",
                "scaling": "standard" if self.scale_mean is not None
                else "l2" if self.l2_normalize else "none"}


def _svc_kernel(svc: Any) -> tuple[str, float, float, int]:
    if svc.kernel not in KERNELS:
        raise ValueError(f"cannot export SVC kernel {svc.kernel!r}; supported: {KERNELS}")
    return svc.kernel, float(svc._gamma), float(svc.coef0), int(svc.degree)


def _binary_problem(svc: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Support vectors, coefficients and intercept of a binary SVC's decision function."""
    return svc.support_vectors_, svc.dual_coef_[0], float(svc.intercept_[0])


def _ovo_problems(svc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """libsvm's one-vs-one layout as one weight column per class pair (i < j)."""
    n_classes = len(svc.classes_)
    starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
    weights = np.zeros((len(svc.support_vectors_), n_classes * (n_classes - 1) // 2))
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            weights[si, p] = svc.dual_coef_[j - 1, si]
            weights[sj, p] = svc.dual_coef_[i, sj]
            p += 1
    return svc.support_vectors_, weights, np.asarray(svc.intercept_, dtype=np.float64)


def from_sklearn(model: Any) -> SvmTensors:
    """Extracts :class:`SvmTensors` from a fitted SVC, OneVsRestClassifier(SVC) or a
    Pipeline of an optional scaler (StandardScaler or Normalizer) and one of those."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import SVC

    mean = std = None
    l2 = False
    nystroem = None
    if isinstance(model, Pipeline):
        *scalers, (_, model) = model.steps
        for _, step in scalers:
            if isinstance(step, Nystroem):
                nystroem = step
            elif isinstance(step, StandardScaler):
                mean = step.mean_ if step.with_mean else np.zeros_like(step.scale_)
                std = step.scale_ if step.with_std else np.ones_like(step.mean_)
            elif isinstance(step, Normalizer) and step.norm == "l2":
                l2 = True
            elif step is not None and step != "passthrough":
                raise ValueError(f"cannot export scaling step {step!r}")
    if nystroem is not None:
        kernel, sv, weights, intercepts, ovo = _nystroem_linear(nystroem, model,
                                                                OneVsOneClassifier)
    elif isinstance(model, OneVsRestClassifier):
        estimators = model.estimators_
        if not all(isinstance(e, SVC) for e in estimators):
            raise ValueError("OneVsRestClassifier must wrap SVC estimators to be exported")
        kernel = _svc_kernel(estimators[0])
        problems = [_binary_problem(e) for e in estimators]
        sv = np.concatenate([p[0] for p in problems])
        weights = np.zeros((len(sv), len(problems)))
        row = 0
        for k, (vectors, coef, _) in enumerate(problems):
            weights[row:row + len(vectors), k] = coef
            row += len(vectors)
        intercepts = np.array([p[2] for p in problems])
        ovo = 0
    elif isinstance(model, SVC):
        kernel = _svc_kernel(model)
        if len(model.classes_) == 2:
            sv, coef, b = _binary_problem(model)
            weights, intercepts, ovo = coef[:, None], np.array([b]), 0
        else:
            sv, weights, intercepts = _ovo_problems(model)
            ovo = len(model.classes_)
    else:
        raise ValueError(f"cannot export {type(model).__name__}; expected SVC or "
                         "OneVsRestClassifier(SVC), optionally in a Pipeline")
    return SvmTensors(*kernel, np.asarray(sv, np.float64), weights.astype(np.float64),
                      intercepts.astype(np.float64), ovo, mean, std, l2)


def variables(svm: SvmTensors) -> Any:
    """The arrays of ``svm`` as ``tf.Variable``s on a ``tf.Module``, so that an
    export stores them as checkpointed variables instead of graph constants."""
    import tensorflow as tf

    module = tf.Module(name="svm")
    module.support_vectors = tf.Variable(svm.support_vectors, trainable=False)
    module.weights = tf.Variable(svm.weights, trainable=False)
    module.intercepts = tf.Variable(svm.intercepts, trainable=False)
    if svm.scale_mean is not None:
        module.scale_mean = tf.Variable(svm.scale_mean.astype(np.float64), trainable=False)
        module.scale_std = tf.Variable(svm.scale_std.astype(np.float64), trainable=False)
    return module


def _nystroem_linear(nystroem: Any, model: Any, ovo_type: type) -> tuple:
    """Nystroem features + a linear SVM: ``K(x, C) @ N.T @ W + b`` is the same form with
    the components ``C`` as support vectors and ``N.T @ W`` as weights."""
    from sklearn.svm import LinearSVC

    if nystroem.kernel not in KERNELS:
        raise ValueError(f"cannot export Nystroem kernel {nystroem.kernel!r}")
    gamma = nystroem.gamma if nystroem.gamma is not None else 1.0 / nystroem.components_.shape[1]
    coef0 = 1.0 if nystroem.coef0 is None else nystroem.coef0  # sklearn kernels' default
    kernel = (nystroem.kernel, float(gamma), float(coef0),
              3 if nystroem.degree is None else int(nystroem.degree))
    if isinstance(model, LinearSVC):
        linear, bias, ovo = model.coef_.T, np.asarray(model.intercept_, np.float64), 0
    elif isinstance(model, ovo_type) and all(isinstance(e, LinearSVC) for e in model.estimators_):
        # A pair's LinearSVC scores its second class positive; SVC's layout the first.
        linear = -np.stack([e.coef_[0] for e in model.estimators_], axis=1)
        bias = -np.array([e.intercept_[0] for e in model.estimators_], np.float64)
        ovo = len(model.classes_)
    else:
        raise ValueError(f"cannot export {type(model).__name__} after Nystroem features; "
                         "expected LinearSVC or OneVsOneClassifier(LinearSVC)")
    weights = nystroem.normalization_.T @ linear
    return kernel, nystroem.components_, weights, bias, ovo


def decision_function(features: Any, svm: SvmTensors, arrays: Any = None) -> Any:
    """``decision_function`` of the fitted SVM, in TensorFlow (float64 inside).

    ``arrays`` is the module of :func:`variables` (default: graph constants).
    Returns float32 scores of shape (batch, n_classes) (or (batch, 1) for a binary SVC).
    """
    import tensorflow as tf

    a = arrays if arrays is not None else svm
    x = tf.cast(features, tf.float64)
    if svm.scale_mean is not None:
        x = (x - a.scale_mean) / a.scale_std
    if svm.l2_normalize:
        norm = tf.norm(x, axis=1, keepdims=True)
        x = x / tf.where(norm > 0, norm, tf.ones_like(norm))
    s = tf.convert_to_tensor(a.support_vectors)
    dot = tf.matmul(x, s, transpose_b=True)
    if svm.kernel == "linear":
        k = dot
    elif svm.kernel == "rbf":
        sq = (tf.reduce_sum(x * x, axis=1, keepdims=True) - 2.0 * dot
              + tf.reduce_sum(s * s, axis=1)[None, :])
        k = tf.exp(-svm.gamma * tf.maximum(sq, 0.0))
    elif svm.kernel == "poly":
        k = tf.pow(svm.gamma * dot + svm.coef0, float(svm.degree))
    else:
        k = tf.tanh(svm.gamma * dot + svm.coef0)
    dec = tf.matmul(k, tf.convert_to_tensor(a.weights)) + a.intercepts
    if svm.ovo_classes:
        dec = _ovo_to_ovr(dec, svm.ovo_classes)
    return tf.cast(dec, tf.float32)


def _ovo_to_ovr(dec: Any, n_classes: int) -> Any:
    """sklearn's ``_ovr_decision_function``: votes plus squashed summed confidences."""
    import tensorflow as tf

    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    to_i = np.zeros((len(pairs), n_classes))
    to_j = np.zeros((len(pairs), n_classes))
    for p, (i, j) in enumerate(pairs):
        to_i[p, i] = 1.0
        to_j[p, j] = 1.0
    wins_i = tf.cast(dec >= 0, tf.float64)  # sklearn: dec < 0 is a vote for class j
    votes = tf.matmul(wins_i, to_i) + tf.matmul(1.0 - wins_i, to_j)
    confidence = tf.matmul(dec, to_i) - tf.matmul(dec, to_j)
    return votes + confidence / (3.0 * (tf.abs(confidence) + 1.0))
