"""The classifier ``fit`` chooses, on top of the frozen features: numpy and TensorFlow.

A :class:`Head` holds the chosen :class:`illustration_tl.heads.config.Config`, the
fitted normalization, the classifier (an SVM as
:class:`illustration_tl.heads.svm_graph.SvmTensors`, a linear classifier's weights, or
a Nyström kernel map (:class:`illustration_tl.heads.approximate.NystroemMap`) then a
linear classifier's weights: see :mod:`illustration_tl.heads.classifiers`) and the
calibration temperature. It
turns the raw feature blocks of an image (and of its mirror, with flip test-time averaging)
into class probabilities, with the same steps in numpy (:meth:`Head.probabilities`,
used for the test split) and in TensorFlow (:meth:`Head.tf_probabilities`, inside the
exported SavedModel). Stored as ``head.npz`` (plain arrays, no pickle) + ``head.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import files
from illustration_tl.core.progress import Progress
from illustration_tl.features import multilayer as features
from illustration_tl.heads import calibration, classifiers, svm_graph
from illustration_tl.heads.approximate import NystroemMap
from illustration_tl.heads.budget import stratified_sample
from illustration_tl.heads.config import (
    Config,
    Normalizer,
    gamma_from_variance,
    gamma_needs_rows,
    resolve_gamma,
)
from illustration_tl.heads.search import fit_quietly, make_classifier
from illustration_tl.heads.svm_params import MISSING_CLASS_SCORE, decision_scores

NPZ = "head.npz"
JSON = "head.json"
# A kernel head's stored arrays must reproduce sklearn's decision_function this closely.
PARITY_RTOL = 1e-6
FIT_CHUNK_IMAGES = 2048   # images a Nyström head's final fit streams at once


@dataclasses.dataclass
class Head:
    config: Config
    class_names: list[str]
    normalizer: Normalizer
    temperature: float = 1.0
    svm: svm_graph.SvmTensors | None = None
    weights: np.ndarray | None = None      # a linear classifier (d, C)
    bias: np.ndarray | None = None         # (C,)
    gamma: float | None = None
    nystroem: NystroemMap | None = None    # family nystroem: the map before the weights

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- numpy ------------------------------------------------------------------
    def row_features(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        parts = [np.asarray(blocks[b], np.float64) if b == features.PAPER_BLOCK
                 else features.power_l2(blocks[b]) for b in self.config.blocks]
        return self.normalizer(np.concatenate(parts, axis=1))

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        if self.svm is not None:
            return self.svm.scores(x)
        if self.nystroem is not None:   # a chunk at a time: never (rows, components)
            return np.concatenate([self.nystroem.transform(x[i:i + FIT_CHUNK_IMAGES])
                                   @ self.weights + self.bias
                                   for i in range(0, len(x), FIT_CHUNK_IMAGES)]
                                  or [np.zeros((0, self.num_classes))])
        return x @ self.weights + self.bias

    def scores(self, orig: dict[str, np.ndarray], flip: dict[str, np.ndarray] | None = None
               ) -> np.ndarray:
        """Uncalibrated scores, averaged with the mirrors' when the config says so."""
        s = self.raw_scores(self.row_features(orig))
        if self.config.flip_test:
            s = (s + self.raw_scores(self.row_features(flip))) / 2.0
        return s

    def probabilities(self, orig: dict[str, np.ndarray],
                      flip: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return calibration.softmax(self.scores(orig, flip), self.temperature)

    # --- TensorFlow ---------------------------------------------------------------
    def tf_variables(self) -> Any:
        import tensorflow as tf

        module = tf.Module(name="fit_head")
        if self.svm is not None:
            module.svm = svm_graph.variables(self.svm)
        else:
            module.weights = tf.Variable(self.weights, trainable=False)
            module.bias = tf.Variable(self.bias, trainable=False)
        if self.nystroem is not None:
            module.nystroem = self.nystroem.tf_variables()
        if self.normalizer.mean is not None:
            module.mean = tf.Variable(self.normalizer.mean, trainable=False)
            module.std = tf.Variable(self.normalizer.std, trainable=False)
        return module

    def _tf_scores(self, blocks: dict[str, Any], module: Any) -> Any:
        import tensorflow as tf

        parts = [tf.cast(blocks[b], tf.float64) if b == features.PAPER_BLOCK
                 else features.tf_power_l2(blocks[b]) for b in self.config.blocks]
        x = tf.concat(parts, axis=1)
        norm = self.normalizer.norm
        if norm == "standard":
            x = (x - module.mean) / module.std
        elif norm == "l2":
            n = tf.norm(x, axis=1, keepdims=True)
            x = x / tf.where(n > 0, n, tf.ones_like(n))
        elif norm == "power_l2":
            x = features.tf_power_l2(x)
        if self.svm is not None:
            return svm_graph.decision_function(x, self.svm, module.svm, tf.float64)
        if self.nystroem is not None:
            x = NystroemMap.tf_transform(x, module.nystroem)
        return tf.matmul(x, module.weights) + module.bias

    def tf_logits(self, orig: dict[str, Any], flip: dict[str, Any] | None,
                  module: Any) -> Any:
        """The calibrated scores ``scores / temperature`` (float64): their softmax is
        :meth:`tf_probabilities`, and they rank the classes as the probabilities do,
        without the ties a softmax makes where it underflows to 0."""
        s = self._tf_scores(orig, module)
        if self.config.flip_test:
            s = (s + self._tf_scores(flip, module)) / 2.0
        return s / self.temperature

    def tf_probabilities(self, orig: dict[str, Any], flip: dict[str, Any] | None,
                         module: Any) -> Any:
        import tensorflow as tf

        return tf.nn.softmax(self.tf_logits(orig, flip, module), axis=1)

    # --- storage -------------------------------------------------------------------
    def save(self, directory: str) -> None:
        arrays: dict[str, np.ndarray] = {}
        if self.svm is not None:
            arrays.update({f"svm_{k}": v for k, v in self.svm.to_arrays().items()})
        else:
            arrays["weights"], arrays["bias"] = self.weights, self.bias
        if self.nystroem is not None:
            arrays.update(self.nystroem.to_arrays())
        if self.normalizer.mean is not None:
            arrays["norm_mean"], arrays["norm_std"] = self.normalizer.mean, self.normalizer.std
        files.atomic_savez(os.path.join(directory, NPZ), arrays)
        doc = {"config": self.config.as_dict(), "label": self.config.label(),
               "class_names": self.class_names, "temperature": self.temperature,
               "gamma": self.gamma, "svm": self.svm.params() if self.svm else None}
        files.atomic_write_json(os.path.join(directory, JSON), doc)

    @classmethod
    def from_svm(cls, svm: svm_graph.SvmTensors, class_names: Sequence[str],
                 config: Config) -> Head:
        """The head of an SVM held as arrays alone (an ``svm.npz`` of an earlier version,
        whose arrays carry their own scaling): the scaling becomes the head's
        normalization, the rest its SVM; ``config`` (a
        :func:`~illustration_tl.heads.config.paper_point`) names what it is."""
        if svm.scale_mean is not None:
            normalizer = Normalizer("standard", svm.scale_mean, svm.scale_std)
        else:
            normalizer = Normalizer("l2" if svm.l2_normalize else "none")
        config = dataclasses.replace(config, norm=normalizer.norm)
        bare = dataclasses.replace(svm, scale_mean=None, scale_std=None, l2_normalize=False)
        return cls(config, list(class_names), normalizer, svm=bare, gamma=svm.gamma)

    @classmethod
    def load(cls, directory: str) -> Head:
        with open(os.path.join(directory, JSON), encoding="utf-8") as f:
            doc = json.load(f)
        with np.load(os.path.join(directory, NPZ), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        cfg = Config.from_dict(doc["config"])
        svm = None
        if any(k.startswith("svm_") for k in a):
            svm = svm_graph.SvmTensors.from_arrays(
                {k[4:]: v for k, v in a.items() if k.startswith("svm_")})
        return cls(cfg, list(doc["class_names"]),
                   Normalizer(cfg.norm, a.get("norm_mean"), a.get("norm_std")),
                   float(doc["temperature"]), svm, a.get("weights"), a.get("bias"),
                   doc.get("gamma"),
                   NystroemMap.from_arrays(a) if "nystroem_components" in a else None)


def split_probabilities(store: features.FeatureStore, h: Head, split: str) -> np.ndarray:
    """``h``'s calibrated probabilities of every image of ``split`` (mirrors averaged
    when its configuration says so), :data:`FIT_CHUNK_IMAGES` images at a time: memory
    does not grow with the split."""
    c, n = h.config, len(store.labels[split])
    out = [np.zeros((0, h.num_classes))]
    for i in range(0, n, FIT_CHUNK_IMAGES):
        idx = np.arange(i, min(n, i + FIT_CHUNK_IMAGES))
        orig = {b: store.rows([split], c.resize, "orig", b, idx) for b in c.blocks}
        flip = ({b: store.rows([split], c.resize, "flip", b, idx) for b in c.blocks}
                if c.flip_test else None)
        out.append(h.probabilities(orig, flip))
        store.release_pages()
    return np.concatenate(out)


def store_blocks(store: features.FeatureStore, splits: Sequence[str], mode: str, view: str,
                 blocks: Sequence[str]) -> dict[str, np.ndarray]:
    return {b: np.concatenate([store.block(s, mode, view, b) for s in splits]) for b in blocks}


def fit(store: features.FeatureStore, cfg: Config, splits: Sequence[str],
        oof_scores: np.ndarray | None, log: Callable[[str], None] | None = None,
        kernel_matrix: bool = True) -> Head:
    """Fits ``cfg`` on every training image (and mirror) with the real kernel (or, family
    ``nystroem``, its Nyström map fitted on a stratified sample of the images, the rows
    streamed: :func:`_fit_nystroem`), and the temperature on the CV out-of-fold scores
    (rows that are NaN, the images outside an approximate search's CV sample, are left
    out). ``log``: progress lines of a streamed fit (counts, rate, ETA).
    ``kernel_matrix``: an exact kernel SVM on its kernel matrix when it fits the budget
    (:func:`_fit_exact`: the same SVM as on the rows to libsvm's stopping tolerance),
    else on the rows."""
    from illustration_tl.heads.search import feature_set

    splits = [s for s in splits if s in store.labels]
    y = np.concatenate([store.labels[s] for s in splits])
    family = classifiers.get(cfg.classifier).family
    ny, fs = None, None
    if family == "nystroem":
        normalizer, gamma, ny, model = _fit_nystroem(store, cfg, splits, y, log)
    else:
        images = sum(len(store.labels[s]) for s in splits)
        fs = feature_set(store, splits, cfg,
                         precompute=kernel_matrix and _kernel_fits(images, cfg))
        normalizer = fs.normalizer
        gamma = resolve_gamma(cfg.gamma, fs.x[:fs.n])
        rows = np.arange(len(fs.x)) if cfg.flip_train else np.arange(fs.n)
        model, kernel = _fit_exact(fs, cfg, gamma, len(rows), y[rows % fs.n])
    num_classes = len(store.class_names)
    temperature = 1.0
    if oof_scores is not None:
        ok = np.isfinite(oof_scores).all(axis=1)
        temperature = calibration.fit_temperature(oof_scores[ok], y[ok])
    if family in ("linear", "nystroem"):
        w = np.atleast_2d(model.coef_).T.astype(np.float64)  # (d, C), or (d, 1) if binary
        b = np.atleast_1d(model.intercept_).astype(np.float64)
        if w.shape[1] == 1:  # binary: decision d -> scores [-d, d]
            w, b = np.concatenate([-w, w], axis=1), np.concatenate([-b, b])
        full_w = np.zeros((w.shape[0], num_classes))
        full_b = np.full(num_classes, svm_graph.MISSING_CLASS_SCORE / 2)
        cls_ = np.asarray(model.classes_, np.int64)
        full_w[:, cls_], full_b[cls_] = w, b
        return Head(cfg, list(store.class_names), normalizer, temperature,
                    weights=full_w, bias=full_b, gamma=None if ny is None else gamma,
                    nystroem=ny)
    arrays = arrays_from_pipeline(model, fs.x[rows], num_classes, kernel)
    return Head(cfg, list(store.class_names), normalizer, temperature, svm=arrays,
                gamma=gamma)


def _kernel_fits(images: int, cfg: Config) -> bool:
    """Whether the final fit's kernel matrix fits the memory budget: the search's own
    size rule for exact kernel SVMs (:func:`illustration_tl.heads.budget.max_exact_images`)."""
    from illustration_tl.heads import budget

    rows_per_image = 2 if cfg.flip_train or cfg.flip_test else 1
    return images <= budget.max_exact_images(budget.default_max_memory_bytes(),
                                             rows_per_image)


def _fit_exact(fs: Any, cfg: Config, gamma: float, m: int, y: np.ndarray
               ) -> tuple[Any, tuple | None]:
    """``cfg`` fitted on the first ``m`` rows of ``fs``; returns the model and, when it
    was fitted on the kernel matrix, that kernel (name, gamma, coef0, degree). An exact
    kernel SVM is fitted on its kernel matrix, computed once by float64 matrix products
    (scikit-learn's kernels: the values libsvm computes itself, so the same SVM), when it
    fits the budget: libsvm computing kernel rows one by one took 193 s for a 45-class
    one-vs-rest RBF SVM on 6,528 rows of 2,560 features (issue 21's 4k benchmark)."""
    from illustration_tl.heads.search import _on_kernel_matrix

    if not _on_kernel_matrix(fs, cfg):
        return fit_quietly(make_classifier(cfg, gamma), fs.x[:m], y), None
    kernel = (cfg.kernel, gamma, cfg.coef0, cfg.degree)
    x = np.asarray(fs.x[:m], np.float64)
    model = fit_quietly(make_classifier(cfg, gamma, kernel="precomputed"),
                        _kernel_rows(x, x, kernel), y)
    return model, kernel


def _image_chunks(n: int) -> list[np.ndarray]:
    return [np.arange(i, min(n, i + FIT_CHUNK_IMAGES)) for i in range(0, n, FIT_CHUNK_IMAGES)]


def _streamed_statistics(store: features.FeatureStore, cfg: Config, splits: Sequence[str],
                         n: int) -> tuple[Normalizer, float]:
    """The normalization (``standard``: the column mean and std of the raw rows) and γ
    (``scale``: from the variance of the normalized rows) of the ``n`` images, computed
    a chunk at a time from sums (the in-memory fit's two-pass statistics, to rounding)."""
    def raw(idx: np.ndarray) -> np.ndarray:
        return store.assemble(splits, cfg.resize, "orig", cfg.blocks, idx)

    normalizer = Normalizer(cfg.norm)
    if cfg.norm == "standard":
        s = sq = 0.0
        for idx in _image_chunks(n):
            x = raw(idx)
            s, sq = s + x.sum(axis=0), sq + (x * x).sum(axis=0)
            store.release_pages()
        mean = s / n
        std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
        normalizer = Normalizer("standard", mean, np.where(std > 0, std, 1.0))
    if not gamma_needs_rows(cfg.gamma):
        return normalizer, resolve_gamma(cfg.gamma, None)
    s = sq = 0.0
    dims = 0
    for idx in _image_chunks(n):
        x = normalizer(raw(idx))
        s, sq, dims = s + float(x.sum()), sq + float((x * x).sum()), x.shape[1]
        store.release_pages()
    count = n * dims
    return normalizer, gamma_from_variance(cfg.gamma, dims, sq / count - (s / count) ** 2)


def _fit_nystroem(store: features.FeatureStore, cfg: Config, splits: Sequence[str],
                  y: np.ndarray, log: Callable[[str], None] | None = None
                  ) -> tuple[Normalizer, float, NystroemMap, Any]:
    """A Nyström head's final fit on every training image in flat memory (issue 21):
    statistics by streamed sums, the map's components a stratified sample of the images,
    then the rows :data:`FIT_CHUNK_IMAGES` images at a time through the map into the
    classifier's sums (a ridge head: :mod:`illustration_tl.heads.ridge`); a classifier
    without them (logistic regression, linear SVM) gets the mapped rows in memory."""
    n = len(y)
    normalizer, gamma = _streamed_statistics(store, cfg, splits, n)

    def mapped(view: str, idx: np.ndarray) -> np.ndarray:
        return ny.transform(normalizer(store.assemble(splits, cfg.resize, view,
                                                      cfg.blocks, idx)))

    comps = stratified_sample(y, cfg.components, 0)
    ny = NystroemMap.from_components(
        normalizer(store.assemble(splits, cfg.resize, "orig", cfg.blocks, comps)), gamma)
    views = ["orig"] + (["flip"] if cfg.flip_train else [])
    y_rows = np.tile(y, len(views))
    model = make_classifier(cfg, gamma)
    if hasattr(model, "fit_chunks"):   # ridge: the rows streamed into its sums
        progress = Progress(f"final: {cfg.classifier} on every training image",
                            len(y_rows), interval=10.0, unit="rows", log=log) if log else None

        def chunks() -> Any:
            for idx in _image_chunks(n):
                for view in views:
                    yield mapped(view, idx), y[idx]
                store.release_pages()
                if progress:
                    progress.update(len(idx) * len(views))
            if progress:
                progress.update(0, force=True)   # the last line: every row, the rate

        return normalizer, gamma, ny, model.fit_chunks(chunks(), y_rows, ny.size)
    z = np.empty((len(y_rows), ny.size))
    for i, view in enumerate(views):
        for idx in _image_chunks(n):
            z[i * n + idx] = mapped(view, idx)
    return normalizer, gamma, ny, fit_quietly(model, z, y_rows)


def arrays_from_pipeline(pipeline: Any, x: np.ndarray, num_classes: int,
                         kernel: tuple | None = None, max_rows: int = 256
                         ) -> svm_graph.SvmTensors:
    """The fitted ``pipeline`` as arrays, checked: their numpy decision function must
    equal sklearn's :func:`decision_scores` on (up to ``max_rows`` of) ``x``. ``kernel``:
    the (name, gamma, coef0, degree) of an SVM fitted on the kernel matrix of ``x``."""
    arrays = svm_graph.from_sklearn(pipeline, num_classes, x if kernel else None, kernel)
    # float64 on both sides: sklearn keeps float32 through some steps (Nystroem).
    rows = np.asarray(x[:: max(1, len(x) // max_rows)][:max_rows], dtype=np.float64)
    expected = decision_scores(pipeline, rows if kernel is None else _kernel_rows(
        rows, np.asarray(x, np.float64), kernel), num_classes)
    got = arrays.scores(rows)
    scale = max(1.0, float(np.abs(expected[expected > MISSING_CLASS_SCORE]).max(initial=0.0)))
    close = (np.isclose(got, expected, rtol=PARITY_RTOL, atol=PARITY_RTOL * scale).all(1)
             if got.shape == expected.shape else np.zeros(len(rows), bool))
    if got.shape == expected.shape and not close.all() and arrays.ovo_classes:
        # One-vs-one votes: a pairwise decision within rounding of 0 is a tie that libsvm
        # and numpy may break differently (a one-vote difference); such rows are not bugs.
        raw = arrays.decisions(rows[~close])
        tie = np.abs(raw).min(axis=1) <= PARITY_RTOL * max(1.0, float(np.abs(raw).max()))
        close[~close] = tie
    if not close.all():
        raise RuntimeError("the SVM's arrays do not reproduce sklearn's decision_function "
                           f"(max difference {np.abs(got - expected).max():.3g}); "
                           "this is a bug, please report it")
    return arrays


def _kernel_rows(a: np.ndarray, b: np.ndarray, kernel: tuple) -> np.ndarray:
    """scikit-learn's kernel (name, gamma, coef0, degree) between the rows of a and b."""
    from sklearn.metrics.pairwise import pairwise_kernels

    name, gamma, coef0, degree = kernel
    params = {"linear": {}, "rbf": {"gamma": gamma}, "sigmoid": {"gamma": gamma,
              "coef0": coef0}, "poly": {"gamma": gamma, "coef0": coef0, "degree": degree}}
    return pairwise_kernels(a, b, metric=name, **params[name])
