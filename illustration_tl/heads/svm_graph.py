"""A fitted scikit-learn SVM stage as TensorFlow operations (paper §6.1, §7.2).

The paper's best classifier is "optimized VGG19 fc2 + SVM". To serve it as one
SavedModel, the SVM's decision function is rebuilt here from what the fitted
estimator holds (:func:`from_sklearn`, stored without pickle by
:meth:`SvmTensors.to_arrays`): the feature scaling, the support vectors, the dual
coefficients, the intercepts and the kernel. Every multi-class layout the SVM
stage produces reduces to one form,

    scores = aggregate(K(scale(x), S) @ W + b),

where ``S`` stacks the support vectors, ``W`` places each dual coefficient in
the column of the binary problem it belongs to, and ``aggregate`` is the
identity for true one-vs-rest (``OneVsRestClassifier(SVC)``) and sklearn's
vote-plus-confidence rule for one-vs-one ``SVC``. The kernel is evaluated in
float64 so the exported scores match ``decision_function`` to ~1e-6.

Any number of classes from 2 up: a binary model has one decision value ``d``
per image, which both the numpy and the TensorFlow decision function turn into
the two class scores ``[-d, d]``, so scores are always (n, num_classes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

KERNELS = ("linear", "rbf", "poly", "sigmoid")


MISSING_CLASS_SCORE = float(np.finfo(np.float32).min)
"""Score of a class that had no training rows, so it ranks last (float32's lowest)."""

ARRAYS_FORMAT = "illustration-tl svm arrays v1"

# Arrays stored for every model and those stored only with a StandardScaler.
_REQUIRED = ("format", "kernel", "gamma", "coef0", "degree", "support_vectors", "weights",
             "intercepts", "ovo_classes", "classes", "num_classes", "l2_normalize")
_OPTIONAL = ("scale_mean", "scale_std")


@dataclasses.dataclass
class SvmTensors:
    """Everything needed to evaluate a fitted SVM pipeline, as numpy arrays.

    This is the one format of a fitted SVM outside scikit-learn: ``svm.npz``
    stores it (:meth:`to_arrays` / :meth:`from_arrays`, no pickle), the Python
    pipeline scores with :meth:`scores` (numpy) and the export with
    :func:`decision_function` (TensorFlow), both through the same steps:

    1. ``x`` scaled (``scale_mean``/``scale_std`` or unit l2 rows);
    2. ``dec = K(x, support_vectors) @ weights + intercepts``, one column per
       binary problem;
    3. one-vs-one (``ovo_classes`` > 0): sklearn's votes plus confidences;
       with exactly 2 classes sklearn keeps only the second column;
    4. a single column ``d`` (every binary model) becomes ``[-d, d]``;
    5. columns follow ``classes`` (the integer labels trained on); classes
       ``0..num_classes-1`` without training rows get :data:`MISSING_CLASS_SCORE`.

    So scores are always ``(n, num_classes)`` and equal
    ``svm.decision_scores(pipeline, x, num_classes)`` of the sklearn pipeline.
    """

    kernel: str
    gamma: float
    coef0: float
    degree: int
    support_vectors: np.ndarray  # (n_sv, d)
    weights: np.ndarray          # (n_sv, n_problems)
    intercepts: np.ndarray       # (n_problems,)
    ovo_classes: int             # 0 for one-vs-rest (or one binary problem), else n classes
    scale_mean: np.ndarray | None = None   # StandardScaler
    scale_std: np.ndarray | None = None
    l2_normalize: bool = False             # Normalizer(norm="l2")
    classes: np.ndarray | None = None      # labels of the score columns (default 0..C-1)
    num_classes: int = 0                   # width of the scores (default len(classes))

    def __post_init__(self) -> None:
        if self.classes is None:
            self.classes = np.arange(self.raw_width, dtype=np.int64)
        self.classes = np.asarray(self.classes, dtype=np.int64)
        self.num_classes = int(self.num_classes or int(self.classes.max()) + 1)

    @property
    def raw_width(self) -> int:
        """Columns before the classes are placed: one per trained class (>= 2)."""
        if self.ovo_classes:
            return self.ovo_classes
        return max(2, self.weights.shape[1])

    @property
    def input_dim(self) -> int:
        return int(self.support_vectors.shape[1])

    def params(self) -> dict[str, Any]:
        """The JSON-friendly parameters, for export metadata."""
        return {"kernel": self.kernel, "gamma": self.gamma, "coef0": self.coef0,
                "degree": self.degree, "num_support_vectors": int(len(self.support_vectors)),
                "multiclass": "ovo" if self.ovo_classes else "ovr",
                "num_classes": self.num_classes,
                "scaling": "standard" if self.scale_mean is not None
                else "l2" if self.l2_normalize else "none"}

    # --- The stored form --------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numeric/string arrays for ``np.savez`` (loadable with allow_pickle=False)."""
        out = {"format": np.array(ARRAYS_FORMAT), "kernel": np.array(self.kernel),
               "gamma": np.array(self.gamma, np.float64),
               "coef0": np.array(self.coef0, np.float64),
               "degree": np.array(self.degree, np.int64),
               "support_vectors": np.asarray(self.support_vectors, np.float64),
               "weights": np.asarray(self.weights, np.float64),
               "intercepts": np.asarray(self.intercepts, np.float64),
               "ovo_classes": np.array(self.ovo_classes, np.int64),
               "classes": np.asarray(self.classes, np.int64),
               "num_classes": np.array(self.num_classes, np.int64),
               "l2_normalize": np.array(bool(self.l2_normalize))}
        if self.scale_mean is not None:
            out["scale_mean"] = np.asarray(self.scale_mean, np.float64)
            out["scale_std"] = np.asarray(self.scale_std, np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> SvmTensors:
        """Rebuilds from :meth:`to_arrays` output (a dict or an ``NpzFile``), checking
        every name, type and shape; a ValueError says what is wrong."""
        names = set(arrays.keys()) if hasattr(arrays, "keys") else set(arrays.files)
        missing = [k for k in _REQUIRED if k not in names]
        if missing:
            raise ValueError(f"missing arrays {missing}")
        unknown = sorted(names - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise ValueError(f"unexpected arrays {unknown}")
        a = {k: np.asarray(arrays[k]) for k in names}
        for k, v in a.items():
            if v.dtype.kind not in ("U", "f", "i", "u", "b"):
                raise ValueError(f"array {k!r} has dtype {v.dtype}")
        if str(a["format"]) != ARRAYS_FORMAT:
            raise ValueError(f"format {str(a['format'])!r}, expected {ARRAYS_FORMAT!r}")
        kernel = str(a["kernel"])
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} is not one of {KERNELS}")

        def scalar(k: str, kind: str) -> Any:
            v = a[k]
            if v.shape != () or v.dtype.kind not in kind:
                raise ValueError(f"{k!r} must be a scalar")
            return v.item()

        sv, w, b = a["support_vectors"], a["weights"], a["intercepts"]
        classes = a["classes"]
        for k, v, ndim in [("support_vectors", sv, 2), ("weights", w, 2), ("intercepts", b, 1),
                           ("classes", classes, 1)]:
            if v.ndim != ndim or v.dtype.kind not in "fiu":
                raise ValueError(f"{k!r} must be a {ndim}-d numeric array, got {v.shape}")
        if w.shape[0] != sv.shape[0] or b.shape[0] != w.shape[1] or w.shape[1] < 1:
            raise ValueError(f"weights {w.shape} do not fit support_vectors {sv.shape} and "
                             f"intercepts {b.shape}")
        ovo = int(scalar("ovo_classes", "iu"))
        if ovo and (ovo < 2 or w.shape[1] != ovo * (ovo - 1) // 2):
            raise ValueError(f"{w.shape[1]} one-vs-one problems do not fit {ovo} classes")
        if not ovo and w.shape[1] == 2:
            raise ValueError("a one-vs-rest model has 1 or at least 3 problems")
        num_classes = int(scalar("num_classes", "iu"))
        width = ovo or max(2, w.shape[1])
        if (len(classes) != width or len(np.unique(classes)) != width
                or classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"classes {classes.tolist()[:10]} do not fit {width} score columns "
                             f"and {num_classes} classes")
        mean = std = None
        if "scale_mean" in a or "scale_std" in a:
            mean, std = a.get("scale_mean"), a.get("scale_std")
            if mean is None or std is None or mean.shape != (sv.shape[1],) \
                    or std.shape != (sv.shape[1],) or not (std > 0).all():
                raise ValueError("scale_mean/scale_std must both be positive vectors of the "
                                 "feature width")
        floats = [sv, w, b] + ([mean, std] if mean is not None else [])
        if not all(np.isfinite(v.astype(np.float64)).all() for v in floats):
            raise ValueError("arrays hold NaN or infinite values")
        degree = int(scalar("degree", "iu"))
        if not 0 <= degree <= 32:
            raise ValueError(f"degree {degree} is out of range")
        return cls(kernel, float(scalar("gamma", "fiu")), float(scalar("coef0", "fiu")), degree,
                   sv.astype(np.float64), w.astype(np.float64), b.astype(np.float64), ovo,
                   None if mean is None else mean.astype(np.float64),
                   None if std is None else std.astype(np.float64),
                   bool(scalar("l2_normalize", "b")), classes.astype(np.int64), num_classes)

    # --- The decision function in numpy -------------------------------------------

    def scores(self, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class scores (n, num_classes), float64: the Python pipeline's decision function
        (``batch_size`` rows at a time, so the kernel matrix stays small)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"features must be (n, {self.input_dim}), got {x.shape}")
        if len(x) > batch_size:
            return np.concatenate([self._scores(x[i:i + batch_size])
                                   for i in range(0, len(x), batch_size)])
        return self._scores(x)

    def decisions(self, x: np.ndarray) -> np.ndarray:
        """The binary SVMs' raw decision values (n, classifiers), before one-vs-one
        voting: a value within rounding of 0 is a tie that libsvm may break either way."""
        x = np.asarray(x, dtype=np.float64)
        if self.scale_mean is not None:
            x = (x - self.scale_mean) / self.scale_std
        if self.l2_normalize:
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norm > 0, norm, 1.0)
        s = self.support_vectors
        dot = x @ s.T
        if self.kernel == "linear":
            k = dot
        elif self.kernel == "rbf":
            sq = (x * x).sum(1)[:, None] - 2.0 * dot + (s * s).sum(1)[None, :]
            k = np.exp(-self.gamma * np.maximum(sq, 0.0))
        elif self.kernel == "poly":
            k = (self.gamma * dot + self.coef0) ** self.degree
        else:
            k = np.tanh(self.gamma * dot + self.coef0)
        return k @ self.weights + self.intercepts

    def _scores(self, x: np.ndarray) -> np.ndarray:
        dec = self.decisions(x)
        if self.ovo_classes:
            i, j = _pairs(self.ovo_classes)
            wins = (dec >= 0).astype(np.float64)   # sklearn: dec < 0 is a vote for class j
            votes = np.zeros((len(x), self.ovo_classes))
            confidence = np.zeros((len(x), self.ovo_classes))
            np.add.at(votes.T, i, wins.T)
            np.add.at(votes.T, j, 1.0 - wins.T)
            np.add.at(confidence.T, i, dec.T)
            np.add.at(confidence.T, j, -dec.T)
            dec = votes + confidence / (3.0 * (np.abs(confidence) + 1.0))
            if self.ovo_classes == 2:
                dec = dec[:, 1:]
        if dec.shape[1] == 1:
            dec = np.concatenate([-dec, dec], axis=1)
        if len(self.classes) == self.num_classes and (
                self.classes == np.arange(self.num_classes)).all():
            return dec
        full = np.full((len(x), self.num_classes), MISSING_CLASS_SCORE)
        full[:, self.classes] = dec
        return full


def _pairs(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """libsvm's order of one-vs-one problems: (0,1), (0,2), ..., (1,2), ..."""
    i, j = np.triu_indices(n_classes, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def _svc_kernel(svc: Any, kernel: tuple | None = None) -> tuple[str, float, float, int]:
    """(name, gamma, coef0, degree) of an SVC's kernel (``kernel``: of one fitted on a
    precomputed kernel matrix)."""
    if svc.kernel == "precomputed" and kernel is not None:
        svc_kernel = (kernel[0], float(kernel[1]), float(kernel[2]), int(kernel[3]))
    else:
        svc_kernel = (svc.kernel, float(svc._gamma), float(svc.coef0), int(svc.degree))
    if svc_kernel[0] not in KERNELS:
        raise ValueError(f"cannot export SVC kernel {svc_kernel[0]!r}; supported: {KERNELS} "
                         "(a precomputed one with its training rows and kernel)")
    return svc_kernel


def _vectors(svc: Any, rows: np.ndarray | None) -> np.ndarray:
    """An SVC's support vectors; fitted on a precomputed kernel matrix, its support rows
    of ``rows`` (the rows the matrix was computed on)."""
    return svc.support_vectors_ if svc.kernel != "precomputed" else rows[svc.support_]


def _binary_problem(svc: Any, rows: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Support vectors, coefficients and intercept of a binary SVC's decision function."""
    return _vectors(svc, rows), svc.dual_coef_[0], float(svc.intercept_[0])


def _ovo_problems(svc: Any, rows: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """libsvm's one-vs-one layout as one weight column per class pair (i < j)."""
    n_classes = len(svc.classes_)
    starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
    weights = np.zeros((len(svc.support_), n_classes * (n_classes - 1) // 2))
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            weights[si, p] = svc.dual_coef_[j - 1, si]
            weights[sj, p] = svc.dual_coef_[i, sj]
            p += 1
    return _vectors(svc, rows), weights, np.asarray(svc.intercept_, dtype=np.float64)


def from_sklearn(model: Any, num_classes: int | None = None, rows: np.ndarray | None = None,
                 kernel: tuple | None = None) -> SvmTensors:
    """Extracts :class:`SvmTensors` from a fitted SVC, OneVsRestClassifier(SVC) or a
    Pipeline of an optional scaler (StandardScaler or Normalizer), optional Nystroem
    features and one of those (LinearSVC or OneVsOneClassifier(LinearSVC) after Nystroem).

    ``num_classes``: the width of the scores when some classes had no training rows
    (default: the largest trained label + 1). An SVM fitted on a precomputed kernel
    matrix takes the ``rows`` it was computed on and its ``kernel`` (name, gamma, coef0,
    degree): its support vectors are its support rows."""
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
        kernel = _svc_kernel(estimators[0], kernel)
        problems = [_binary_problem(e, rows) for e in estimators]
        sv = np.concatenate([p[0] for p in problems])
        weights = np.zeros((len(sv), len(problems)))
        row = 0
        for k, (vectors, coef, _) in enumerate(problems):
            weights[row:row + len(vectors), k] = coef
            row += len(vectors)
        intercepts = np.array([p[2] for p in problems])
        ovo = 0
    elif isinstance(model, SVC):
        kernel = _svc_kernel(model, kernel)
        if len(model.classes_) == 2:
            sv, coef, b = _binary_problem(model, rows)
            weights, intercepts, ovo = coef[:, None], np.array([b]), 0
        else:
            sv, weights, intercepts = _ovo_problems(model, rows)
            ovo = len(model.classes_)
    else:
        raise ValueError(f"cannot export {type(model).__name__}; expected SVC or "
                         "OneVsRestClassifier(SVC), optionally in a Pipeline")
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iu" and not (
            classes.dtype.kind == "f" and (classes == np.round(classes)).all()):
        raise ValueError("the SVM must be trained on integer class labels")
    if mean is not None:
        mean = np.asarray(mean, np.float64)
        std = np.asarray(std, np.float64)
    return SvmTensors(*kernel, np.asarray(sv, np.float64), weights.astype(np.float64),
                      intercepts.astype(np.float64), ovo, mean, std, l2,
                      classes.astype(np.int64), int(num_classes or 0))


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


def decision_function(features: Any, svm: SvmTensors, arrays: Any = None,
                      dtype: Any = "float32") -> Any:
    """``decision_function`` of the fitted SVM, in TensorFlow (float64 inside).

    ``arrays`` is the module of :func:`variables` (default: graph constants).
    Returns scores of shape (batch, num_classes) in ``dtype`` (rank in float64
    to get exactly the Python pipeline's top-k: float32 rounding can swap two
    one-vs-one scores that differ by less than ~1e-5), the same steps as
    :meth:`SvmTensors.scores` (a binary model's ``d`` becomes ``[-d, d]``).
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
        if svm.ovo_classes == 2:
            dec = dec[:, 1:]
    if svm.raw_width == 2:  # one column d: a binary model
        dec = tf.concat([-dec, dec], axis=1)
    if not (len(svm.classes) == svm.num_classes
            and (svm.classes == np.arange(svm.num_classes)).all()):
        # Scores of the trained classes, then one column of MISSING_CLASS_SCORE for the rest.
        column = np.full(svm.num_classes, len(svm.classes), np.int64)
        column[svm.classes] = np.arange(len(svm.classes))
        missing = tf.fill([tf.shape(dec)[0], 1], tf.constant(MISSING_CLASS_SCORE, tf.float64))
        dec = tf.gather(tf.concat([dec, missing], axis=1), column, axis=1)
    return tf.cast(dec, dtype)


def _ovo_to_ovr(dec: Any, n_classes: int) -> Any:
    """sklearn's ``_ovr_decision_function``: votes plus squashed summed confidences.

    Sums over the class pairs with segment sums (index vectors of length
    n(n-1)/2), so a 200-class model adds no (pairs x classes) constant."""
    import tensorflow as tf

    i, j = _pairs(n_classes)
    wins_i = tf.transpose(tf.cast(dec >= 0, tf.float64))  # dec < 0 is a vote for class j
    dec_t = tf.transpose(dec)
    votes = (tf.math.unsorted_segment_sum(wins_i, i, n_classes)
             + tf.math.unsorted_segment_sum(1.0 - wins_i, j, n_classes))
    confidence = (tf.math.unsorted_segment_sum(dec_t, i, n_classes)
                  - tf.math.unsorted_segment_sum(dec_t, j, n_classes))
    votes, confidence = tf.transpose(votes), tf.transpose(confidence)
    return votes + confidence / (3.0 * (tf.abs(confidence) + 1.0))
