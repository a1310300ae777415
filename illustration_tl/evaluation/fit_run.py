"""What a finished ``fit`` run folder holds, read back for its report and data findings.

``OUT/evaluate/`` (the test split's :class:`EvalResult`), ``OUT/search/leaderboard.json``
and ``oof_scores.npy`` (the chosen configuration's out-of-fold scores: one row per
image of the training splits, train then validation, mirrors averaged into it; see
:func:`illustration_tl.heads.search.run`), ``OUT/final/head.json`` (the calibration
temperature), ``OUT/features/`` (:class:`FeatureStore`, memory-mapped),
``OUT/dataset/dataset.json``, the images in ``OUT/dataset/tfds``, in runs since the
reject option ``OUT/reject/reject.json`` (:mod:`illustration_tl.evaluation.reject`) and,
with ``--scales``, :data:`SCALES_OOF` (the probabilities the served model averages).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.evaluation import duplicates, label_issues, reject
from illustration_tl.evaluation.metrics import EvalResult
from illustration_tl.features import multilayer as features

TRAIN_SPLITS = ("train", "validation")   # fit's cross-validation splits (pipelines.fit)
TEST_SPLIT = duplicates.TEST_SPLIT
THUMB_SIDE = 96
# fit --scales: the kept scales' averaged out-of-fold probabilities, the served model's
# (pipelines/fit_scales.py writes them: OOF_PROBABILITIES in its stage folder)
SCALES_OOF = os.path.join("scales", "oof_probabilities.npy")


@dataclasses.dataclass
class FitRun:
    """The parts of a ``fit`` output folder the report reads."""

    root: str
    result: EvalResult
    board: dict[str, Any]
    head: dict[str, Any]
    dataset: dict[str, Any]
    store: features.FeatureStore
    oof: np.ndarray | None
    reject: reject.RejectThreshold | None = None
    averaged: np.ndarray | None = None   # SCALES_OOF, when the run has it

    @property
    def temperature(self) -> float:
        return float(self.head.get("temperature", 1.0))

    @property
    def chosen(self) -> dict[str, Any]:
        return self.board["chosen"]["config"]

    def train_splits(self) -> list[str]:
        return [s for s in TRAIN_SPLITS if s in self.store.labels]

    def train_rows(self) -> tuple[np.ndarray, list[str], list[str]]:
        """Labels, file names and split names of the training rows, in the order of the
        out-of-fold scores."""
        splits = self.train_splits()
        labels = np.concatenate([self.store.labels[s] for s in splits])
        names = [f for s in splits for f in self.store.file_names[s]]
        split_of = [s for s in splits for _ in self.store.file_names[s]]
        return labels, names, split_of

    def oof_probabilities(self) -> np.ndarray | None:
        """The out-of-fold probabilities of the served model: the out-of-fold scores
        through the head's calibrated softmax, or (``--scales``) the kept scales'
        average, which the reject threshold was chosen on."""
        if self.averaged is not None:
            return self.averaged
        return None if self.oof is None else label_issues.softmax(self.oof, self.temperature)


def _json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load(root: str) -> FitRun:
    """Reads a finished run; one clear error naming what is missing."""
    need = [os.path.join(root, p) for p in (
        "fit.json", "evaluate/eval.json", "search/leaderboard.json", "final/head.json",
        "dataset/dataset.json")]
    missing = [p for p in need if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{root!r} is not a finished `fit` run: {missing[0]} is missing; "
                        "run `illustration-tl fit` to the end first")
    oof_path = os.path.join(root, "search", "oof_scores.npy")
    oof = np.load(oof_path, allow_pickle=False) if os.path.isfile(oof_path) else None
    store = features.FeatureStore.load(os.path.join(root, "features"))
    from illustration_tl.evaluation import dedupe

    if (dedupe_dir := dedupe.applied(root)) is not None:   # the splits the run scored
        store = dedupe.apply(store, dedupe_dir)
    run = FitRun(root, EvalResult.load(os.path.join(root, "evaluate")),
                 _json(need[2]), _json(need[3]), _json(need[4]), store, oof)
    if oof is not None and len(oof) != len(run.train_rows()[0]):
        run.oof = None   # not this store's rows: leave label issues out rather than misalign
    if run.oof is not None and os.path.isfile(os.path.join(root, SCALES_OOF)):
        run.averaged = np.load(os.path.join(root, SCALES_OOF), allow_pickle=False)
    run.reject = read_reject(root)
    return run


def read_reject(root: str) -> reject.RejectThreshold | None:
    """``OUT/reject/reject.json`` of a run, or None (a run from before the reject option)."""
    path = os.path.join(root, "reject", reject.REJECT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return reject.RejectThreshold.from_dict(_json(path))
    except ValueError as e:
        raise UserError(f"{path}: {e}; rerun `illustration-tl fit` on this output") from None


# --- Images --------------------------------------------------------------------------

@dataclasses.dataclass
class Thumbs:
    """Per image (file name): its pixel hash and a small JPEG for the page."""

    hashes: dict[str, str]
    jpegs: dict[str, bytes]


def thumbnail_jpeg(image: np.ndarray, side: int = THUMB_SIDE, quality: int = 85) -> bytes:
    """A JPEG of ``image`` no larger than ``side`` on its longer side."""
    from PIL import Image

    pil = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    pil.thumbnail((side, side))
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def read_thumbs(root: str, splits: Sequence[str], side: int = THUMB_SIDE) -> Thumbs:
    """Decodes every image of ``splits`` once from ``OUT/dataset/tfds``: the pixel hash
    and a small JPEG of each (a few KB: thousands fit in memory)."""
    from illustration_tl.datasets import ingestion, input_pipeline

    dataset = _json(os.path.join(root, "dataset", "dataset.json"))["dataset"]
    hashes, jpegs = {}, {}
    for split in splits:
        ds, _ = input_pipeline.load_split(dataset, split, os.path.join(root, "dataset", "tfds"))
        for ex in ds.as_numpy_iterator():
            name = ex["file_name"].decode("utf-8")
            image = np.asarray(ex["image"])
            hashes[name] = ingestion.pixel_hash(image)
            jpegs[name] = thumbnail_jpeg(image, side)
    return Thumbs(hashes, jpegs)


# --- Data findings -------------------------------------------------------------------

def duplicate_features(store: features.FeatureStore, splits: Sequence[str],
                       resize: str, blocks: Sequence[str]) -> np.ndarray:
    """The features near duplicates are judged on: ``blocks`` at ``resize`` of the
    original views, each block power-l2-normalized (as the search sees them), joined."""
    return np.concatenate([store.assemble([s], resize, "orig", blocks) for s in splits])


DUPLICATE_RESIZE = "pad"


def duplicate_blocks(store: features.FeatureStore) -> list[str]:
    """The blocks near duplicates are judged on: the pools of the middle transfer layer
    (VGG16: ``block4_pool``), read at the ``pad`` resize mode. Calibrated in
    ``benchmarks/duplicates_bench.py`` on openclipart with planted resized, JPEG and
    re-padded copies: the last layer is blind to re-padding, the first sees every
    line drawing as alike."""
    layers = features.layers_of(store.blocks)
    if not layers:
        return [features.PAPER_BLOCK]
    middle = layers[len(layers) // 2]
    return [b for b in store.blocks if b.rpartition(":")[0] == middle]


@dataclasses.dataclass
class Findings:
    """Label issues (training rows) and duplicate pairs (all rows) of one run."""

    images: duplicates.Images
    pairs: list[duplicates.Pair]
    train_labels: np.ndarray
    train_names: list[str]
    train_splits: list[str]
    issues: label_issues.LabelIssues | None
    threshold: float


def all_rows(store: features.FeatureStore, splits: Sequence[str]) -> duplicates.Images:
    return duplicates.Images([f for s in splits for f in store.file_names[s]],
                             [s for s in splits for _ in store.file_names[s]],
                             np.concatenate([store.labels[s] for s in splits]),
                             list(store.class_names))


def near_threshold(store: features.FeatureStore,
                   threshold: float = duplicates.NEAR_THRESHOLD) -> float:
    """The cosine at which ``store``'s images count as near duplicates: ``threshold``, or
    infinity (exact duplicates only) when the backbone had random weights
    (``--weights=none``), whose features make every drawing alike (the threshold is
    calibrated on ImageNet features)."""
    recipe = store.meta.get("recipe") or store.meta.get("source") or {}
    trained = recipe.get("weights", "imagenet") not in (None, "", "none")
    return threshold if trained else float("inf")


def find_duplicates(store: features.FeatureStore, hashes: dict[str, str] | None,
                    threshold: float = duplicates.NEAR_THRESHOLD
                    ) -> tuple[duplicates.Images, list[duplicates.Pair]]:
    """Exact (pixel hash) and near (feature cosine >= :func:`near_threshold`) pairs over
    every split of ``store``."""
    splits = [s for s in (*TRAIN_SPLITS, TEST_SPLIT) if s in store.labels]
    images = all_rows(store, splits)
    resize = DUPLICATE_RESIZE if DUPLICATE_RESIZE in store.resize_modes else \
        store.resize_modes[0]
    x = duplicate_features(store, splits, resize, duplicate_blocks(store))
    row_hashes = [hashes.get(f, f"missing:{i}") for i, f in enumerate(images.file_names)] \
        if hashes else None
    return images, duplicates.find(x, row_hashes, near_threshold(store, threshold))


def findings(run: FitRun, hashes: dict[str, str] | None,
             threshold: float = duplicates.NEAR_THRESHOLD) -> Findings:
    images, pairs = find_duplicates(run.store, hashes, threshold)
    threshold = near_threshold(run.store, threshold)
    labels, names, split_of = run.train_rows()
    probs = run.oof_probabilities()
    issues = label_issues.find(probs, labels) if probs is not None else None
    return Findings(images, pairs, labels, names, split_of, issues, threshold)


def count_train_test_duplicates(root: str, threshold: float = duplicates.NEAR_THRESHOLD
                                ) -> int:
    """The number of near-duplicate pairs between the training splits and the test split
    of a finished run (features only: no image is decoded, exact copies of one another
    have equal features); for ``fit``'s one-line warning."""
    store = features.FeatureStore.load(os.path.join(root, "features"))
    images, pairs = find_duplicates(store, None, threshold)
    return duplicates.count_leakage(pairs, images)
