"""Evaluation results: top-1/top-5 accuracy, globally and per class (paper §7, Tables 2-4).

Every classifier in the pipeline (the ImageNet baseline, the SVM on embeddings,
the optimized CNN) is scored the same way: it produces one score per class for
every test image, and an image counts as a top-k hit when its true class is
among the k highest scores. :class:`EvalResult` keeps those scores with the
labels and file names, so tables, confusion matrices and figures can be made
later from the saved result without re-running the model.

Top-k with k at least the number of classes is always 100% and says nothing:
:meth:`EvalResult.summary` and :meth:`EvalResult.per_class` report it as
``None`` (not applicable), e.g. top-5 with 5 classes or fewer.

Ties are counted pessimistically: the true class must beat every other class
with the same score, so a collapsed classifier that gives all classes the same
score scores 0, never 100 (paper §7 does not say how ties were counted).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.core.files import atomic_savez, atomic_write_json
from illustration_tl.errors import UserError

EVAL_JSON = "eval.json"
SCORES_NPZ = "scores.npz"


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of each example's true class among its scores, ties counted against it.

    ``rank = #(other classes with score >= the true class's score)``; an image is
    a top-k hit when ``rank < k``.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be (n, classes) matching {len(labels)} labels, "
                         f"got shape {scores.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in 0..{scores.shape[1] - 1}")
    true = scores[np.arange(len(labels)), labels][:, None]
    return (scores >= true).sum(axis=1) - 1


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of examples whose true class is among the ``k`` highest scores (§7)."""
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(true_class_rank(scores, labels) < k))


def top_k_applicable(k: int, num_classes: int) -> bool:
    """Whether top-``k`` accuracy means anything: only if some class can fall outside the
    top ``k`` (with ``k >= num_classes`` every example is a hit)."""
    return k < num_classes


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first (stable for ties)."""
    k = min(k, scores.shape[1])
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


def scores_2d(scores: np.ndarray) -> np.ndarray:
    """Decision scores as (n, classes): a binary ``decision_function`` (n,) becomes [-s, s]."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return np.stack([-scores, scores], axis=1)
    return scores


@dataclasses.dataclass
class EvalResult:
    """One model's scores on one test set (the common result of every stage, §7).

    ``scores[i, j]`` is the score of class ``class_names[j]`` for example ``i``;
    ``labels[i]`` indexes ``class_names``. ``extra`` holds JSON-friendly details
    (parameters, the dataset, numbers the stage measured itself).
    """

    model_name: str
    class_names: list[str]
    labels: np.ndarray
    scores: np.ndarray
    file_names: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.scores = scores_2d(self.scores)
        if self.scores.shape != (len(self.labels), len(self.class_names)):
            raise ValueError(f"{self.model_name}: scores have shape {self.scores.shape}, "
                             f"expected ({len(self.labels)}, {len(self.class_names)})")
        if self.file_names is not None:
            self.file_names = [str(f) for f in self.file_names]
            if len(self.file_names) != len(self.labels):
                raise ValueError(f"{self.model_name}: {len(self.file_names)} file names "
                                 f"for {len(self.labels)} examples")

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def top_k(self, k: int) -> float:
        """Top-k accuracy over all examples (Table 3)."""
        return top_k_accuracy(self.scores, self.labels, k)

    def top_k_or_none(self, k: int) -> float | None:
        """:meth:`top_k`, or None when it is not applicable (``k >= num_classes``)."""
        if not top_k_applicable(k, len(self.class_names)):
            return None
        return self.top_k(k)

    def top_k_text(self, k: int) -> str:
        """``top-5 87.50%``, or ``top-5 n/a (5 classes)`` when not applicable."""
        value = self.top_k_or_none(k)
        if value is None:
            return f"top-{k} n/a ({len(self.class_names)} classes)"
        return f"top-{k} {100 * value:.2f}%"

    def predictions(self) -> np.ndarray:
        """The top-1 class index per example."""
        return top_k_indices(self.scores, 1)[:, 0]

    def per_class(self, ks: Sequence[int] = (1, 5)) -> list[dict[str, Any]]:
        """Top-k accuracy per true class (Table 4), for every class with test examples
        (None for a ``k`` that is not applicable)."""
        ranks = true_class_rank(self.scores, self.labels)
        rows = []
        for c in np.unique(self.labels):
            mask = self.labels == c
            row: dict[str, Any] = {"class": self.class_names[c], "index": int(c),
                                   "n": int(mask.sum())}
            for k in ks:
                row[f"top{k}"] = (float(np.mean(ranks[mask] < k))
                                  if top_k_applicable(k, len(self.class_names)) else None)
            rows.append(row)
        return rows

    def confusion(self) -> tuple[list[str], np.ndarray]:
        """Confusion counts over the classes present in ``labels``.

        Returns ``(names, matrix)``: rows are true classes, columns the same
        classes plus a last column ``"other"`` for predictions outside them
        (e.g. the 1000-way baseline predicting a class the dataset lacks).
        """
        present = np.unique(self.labels)
        col = {int(c): i for i, c in enumerate(present)}
        matrix = np.zeros((len(present), len(present) + 1), dtype=np.int64)
        for t, p in zip(self.labels, self.predictions()):
            matrix[col[int(t)], col.get(int(p), len(present))] += 1
        return [self.class_names[c] for c in present], matrix

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly headline numbers (``top5`` None with 5 classes or fewer)."""
        return {"model_name": self.model_name, "num_examples": self.num_examples,
                "num_classes": len(self.class_names), "top1": self.top_k(1),
                "top5": self.top_k_or_none(5)}

    def save(self, directory: str) -> None:
        """Writes ``eval.json`` (summary, per-class table, metadata) and ``scores.npz``."""
        os.makedirs(directory, exist_ok=True)
        arrays = {"labels": self.labels, "scores": self.scores.astype(np.float32)}
        if self.file_names is not None:
            arrays["file_names"] = np.asarray(self.file_names, dtype=str)
        atomic_savez(os.path.join(directory, SCORES_NPZ), arrays)
        doc = dict(self.summary(), class_names=self.class_names,
                   has_file_names=self.file_names is not None,
                   per_class=self.per_class(), extra=self.extra)
        atomic_write_json(os.path.join(directory, EVAL_JSON), doc)

    @classmethod
    def load(cls, directory: str) -> EvalResult:
        """Reads a result written by :meth:`save`; a clear error if it is not one."""
        json_path = os.path.join(directory, EVAL_JSON)
        npz_path = os.path.join(directory, SCORES_NPZ)
        if not (os.path.isfile(json_path) and os.path.isfile(npz_path)):
            raise UserError(f"{directory!r} is not an evaluation result: it needs {EVAL_JSON} "
                            f"and {SCORES_NPZ} (written by baseline, svm or optimize)")
        with open(json_path, encoding="utf-8") as f:
            doc = json.load(f)
        with np.load(npz_path, allow_pickle=False) as z:
            file_names = list(z["file_names"]) if "file_names" in z.files else None
            return cls(doc["model_name"], doc["class_names"], z["labels"], z["scores"],
                       file_names, _resolved(doc.get("extra", {}), directory))


def _resolved(extra: dict[str, Any], directory: str) -> dict[str, Any]:
    """``extra`` with a relative ``embeddings_dir`` (as the ``svm`` stage records it,
    relative to the result's folder) made absolute; an absolute one is kept."""
    d = extra.get("embeddings_dir")
    if d and not os.path.isabs(d):
        return dict(extra, embeddings_dir=os.path.normpath(os.path.join(directory, d)))
    return extra


# --- Intervals, per-class precision/recall and calibration (fit's report.html) ---------

def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (95% for the default ``z``).

    Wilson (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22; recommended over the normal (Wald) interval for small ``n``
    and proportions near 0 or 1 by Brown, Cai & DasGupta (2001), Statistical Science 16.
    ``(nan, nan)`` when ``n`` is 0.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                        ) -> list[dict[str, Any]]:
    """Per class: support (true images), predicted count, precision, recall and F1 of the
    top-1 predictions (None where undefined: nothing predicted, or no support)."""
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    rows = []
    for c in range(num_classes):
        tp = int(np.sum((labels == c) & (predictions == c)))
        support, predicted = int(np.sum(labels == c)), int(np.sum(predictions == c))
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision and recall else (0.0 if support and predicted else None))
        rows.append({"index": c, "support": support, "predicted": predicted,
                     "precision": precision, "recall": recall, "f1": f1})
    return rows


@dataclasses.dataclass
class Reliability:
    """A reliability diagram's bins (Guo et al. 2017, "On calibration of modern neural
    networks", ICML, §2): equal-width confidence bins of the top-1 probability, each
    with its count, mean confidence and accuracy; ``ece`` is the expected calibration
    error, the count-weighted mean of |accuracy - confidence| (Naeini et al. 2015)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray   # nan in empty bins
    accuracy: np.ndarray
    ece: float


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
                ) -> Reliability:
    """:class:`Reliability` of top-1 predictions (probabilities: rows summing to 1)."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    conf = probabilities.max(axis=1)
    hit = (top_k_indices(probabilities, 1)[:, 0] == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, bins) / counts
        acc = np.bincount(which, hit, bins) / counts
    gaps = np.where(counts > 0, np.abs(np.nan_to_num(acc) - np.nan_to_num(mean_conf)), 0.0)
    ece = float(np.sum(counts * gaps) / max(len(labels), 1)) if len(labels) else float("nan")
    return Reliability(edges, counts, mean_conf, acc, ece)


# --- The ImageNet baseline (paper §6, Table 2) -------------------------------------------

def imagenet_baseline(model_name: str, scores_1000: np.ndarray, labels: np.ndarray,
                      class_names: Sequence[str], class_imagenet_indices: Sequence[int],
                      file_names: Sequence[str] | None = None,
                      extra: dict[str, Any] | None = None) -> tuple[EvalResult, EvalResult]:
    """Scores an ImageNet classifier on a dataset whose classes are ImageNet classes.

    ``scores_1000`` are the network's 1000-way outputs; ``labels`` index the
    dataset's ``class_names``, whose ImageNet indices are ``class_imagenet_indices``
    (-1 for a class that is not an ImageNet class; its examples are left out and
    counted in ``extra["skipped_examples"]``).

    Returns two results over the same examples:

    * 1000-way (paper Table 2): every ImageNet class competes; columns are the
      1000 ImageNet classes, those the dataset has named by the dataset's names;
    * restricted: only the dataset's own classes compete (the fair comparison
      with a classifier trained on the dataset's classes).
    """
    from illustration_tl.datasets import imagenet

    scores_1000 = np.asarray(scores_1000)
    labels = np.asarray(labels, dtype=np.int64)
    if scores_1000.ndim != 2 or scores_1000.shape[1] != imagenet.NUM_CLASSES:
        raise UserError(f"the baseline needs a {imagenet.NUM_CLASSES}-way ImageNet classifier; "
                        f"the model outputs shape {scores_1000.shape[1:]}")
    idx = np.asarray(class_imagenet_indices, dtype=np.int64)
    if len(idx) != len(class_names):
        raise ValueError("one ImageNet index per class is needed")
    usable = [c for c in range(len(class_names)) if idx[c] >= 0]
    if not usable:
        raise UserError("no class of the dataset carries an ImageNet index; the ImageNet "
                        "baseline needs classes that are ImageNet classes")
    if len(set(idx[usable].tolist())) != len(usable):
        raise UserError("two dataset classes map to the same ImageNet class; "
                        "the baseline cannot tell them apart")
    keep = idx[labels] >= 0
    names_1000 = [c.name for c in imagenet.classes()]
    for c in usable:
        names_1000[idx[c]] = str(class_names[c])
    files = None if file_names is None else [f for f, k in zip(file_names, keep) if k]
    extra = dict(extra or {}, skipped_examples=int((~keep).sum()),
                 dataset_classes=[str(class_names[c]) for c in usable])
    full = EvalResult(f"{model_name} (1000-way)", names_1000, idx[labels[keep]],
                      scores_1000[keep], files, dict(extra, label_space="imagenet1000"))
    remap = np.full(len(class_names), -1)
    remap[usable] = np.arange(len(usable))
    restricted = EvalResult(f"{model_name} (restricted)", [str(class_names[c]) for c in usable],
                            remap[labels[keep]], scores_1000[keep][:, idx[usable]], files,
                            dict(extra, label_space="dataset"))
    return full, restricted


def evaluate_imagenet_classifier(model: Any, batches: Any, class_names: Sequence[str],
                                 class_imagenet_indices: Sequence[int], model_name: str,
                                 extra: dict[str, Any] | None = None,
                                 num_examples: int | None = None
                                 ) -> tuple[EvalResult, EvalResult]:
    """Runs a 1000-way ImageNet classifier over ``batches`` ((images, labels, file_names)
    from ``input_pipeline.make_dataset``) and scores it with :func:`imagenet_baseline`.
    ``num_examples``: the exact split size, if known (progress, and no idle wait at the
    end of the pipeline)."""
    from illustration_tl.core.progress import Progress
    from illustration_tl.features import embeddings

    scores, labels, files = embeddings.compute(
        model, batches, Progress("baseline", num_examples, interval=10.0),
        limit=num_examples)
    return imagenet_baseline(model_name, scores, labels, class_names, class_imagenet_indices,
                             files, extra)


@dataclasses.dataclass
class BaselineConfig:
    """The ``baseline`` stage's settings, one ``illustration-tl baseline`` flag each
    (:mod:`config_flags`); the arguments of :func:`run_baseline`. The weights must
    include the classifier top."""

    dataset: str = common_settings.dataset("illustrations/curated")
    data_dir: str | None = common_settings.data_dir()
    split: str = setting("test", "Split to score.")
    backbone: str = common_settings.backbone("vgg19")
    weights: str = common_settings.weights()
    image_size: int | None = common_settings.image_size()
    resize_mode: str = common_settings.resize_mode()
    batch_size: int = common_settings.batch_size()
    output: str | None = optional("Folder for the two evaluation results.")
    name: str | None = common_settings.model_name()


def run_baseline(*, backbone: str, weights: str | None, dataset: str, split: str, output: str,
                 data_dir: str | None = None, image_size: int | None = None,
                 batch_size: int = 32, resize_mode: str = "squash",
                 model_name: str | None = None) -> tuple[EvalResult, EvalResult]:
    """The paper's baseline (§6, Table 2): an unmodified ImageNet classifier on a dataset
    whose classes are ImageNet classes. Writes ``output/imagenet1000`` (all 1000 classes
    compete) and ``output/restricted`` (only the dataset's classes compete)."""
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.models import backbones, layer_surgery

    spec = backbones.get(backbone)
    ds, info = input_pipeline.load_split(dataset, split, data_dir, decode_images=False)
    indices = input_pipeline.imagenet_indices(info)
    names = input_pipeline.class_names(info)
    model = layer_surgery.imagenet_classifier(spec.name, weights, image_size)
    size = int(model.input_shape[1])
    batches = input_pipeline.make_dataset(ds, backbone=spec.name, image_size=size,
                                          batch_size=batch_size, training=False,
                                          resize_mode=resize_mode, with_file_names=True)
    extra = {"stage": "baseline", "backbone": spec.name, "weights": str(weights),
             "image_size": size, "dataset": info.full_name, "dataset_version": str(info.version),
             "data_dir": os.path.abspath(data_dir) if data_dir else None, "test_split": split}
    try:
        total = info.splits[split].num_examples
    except (KeyError, ValueError):
        total = None
    full, restricted = evaluate_imagenet_classifier(
        model, batches, names, indices, model_name or f"{spec.name} ImageNet", extra, total)
    full.save(os.path.join(output, "imagenet1000"))
    restricted.save(os.path.join(output, "restricted"))
    return full, restricted
