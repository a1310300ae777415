"""``fit --dedupe``: no group of near duplicates spans training and test.

A test image with a near copy in training (the same drawing resized, recompressed or
re-padded, or one emoji in another vendor's style) is scored on a picture the model
trained on, which inflates the test score. The dataset builder already keeps
pixel-identical files in one split (:mod:`illustration_tl.datasets.splits`); this
stage does the same for near duplicates, which only the CNN features reveal, so it
runs on the feature store: pairs are found as the report finds them
(``fit_run.find_duplicates``), grouped, and each group
that spans training and test moves to the side holding most of it
(:func:`illustration_tl.evaluation.duplicates.grouped_splits`). The new split of every
image is kept in ``OUT/dedupe/splits.json``; the search, the final head, the
evaluation and the report read the store through it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from illustration_tl.core import files
from illustration_tl.errors import UserError
from illustration_tl.evaluation import duplicates
from illustration_tl.features.store import FeatureStore

SPLITS_FILE = "splits.json"
ORDER = ("train", "validation", duplicates.TEST_SPLIT)   # the rows' order (fit_run's)


def _rows(store: FeatureStore) -> list[str]:
    return [s for s in ORDER if s in store.labels]


def regroup(store: FeatureStore, images: duplicates.Images, pairs: list[duplicates.Pair],
            out: str) -> int:
    """Writes ``out/splits.json``: the split of every row of ``store`` (``images``, as
    :func:`illustration_tl.evaluation.fit_run.find_duplicates` gives them with ``pairs``)
    once grouped; returns the number of images moved."""
    new = duplicates.grouped_splits(pairs, images)
    if duplicates.TEST_SPLIT in images.splits and duplicates.TEST_SPLIT not in new:
        raise UserError(f"--dedupe would leave no test image: {len(pairs)} near-duplicate "
                        "pairs join the test images to larger groups in training; look at "
                        "duplicates.csv of a run without --dedupe")
    moved = sum(a != b for a, b in zip(images.splits, new))
    files.atomic_write_json(os.path.join(out, SPLITS_FILE), {
        "order": _rows(store), "file_names": images.file_names, "splits": new,
        "moved": moved, "leakage_pairs_before": duplicates.count_leakage(pairs, images)})
    return moved


def apply(store: FeatureStore, dedupe_dir: str) -> FeatureStore:
    """The store with the splits of ``dedupe_dir/splits.json`` (checked against its rows)."""
    doc = json.loads(files.read_regular_file(os.path.join(dedupe_dir, SPLITS_FILE),
                                             max_bytes=256 << 20))
    order = _rows(store)
    names = [n for s in order for n in store.file_names[s]]
    if doc.get("order") != order or doc.get("file_names") != names:
        raise ValueError(f"{dedupe_dir}/{SPLITS_FILE} does not describe this feature store")
    return store.regrouped(order, doc["splits"])


def applied(root: str) -> str | None:
    """``OUT/dedupe`` when the run's search read the store through it, else None."""
    try:
        stage = json.loads(files.read_regular_file(os.path.join(root, "search", "stage.json"),
                                                   max_bytes=1 << 20))
    except (files.UnreadableFile, ValueError):
        return None
    found = isinstance(stage, dict) and "dedupe" in (stage.get("upstream") or [])
    return os.path.join(root, "dedupe") if found else None


def summary(dedupe_dir: str) -> dict[str, Any]:
    """What the stage did: images moved, train/test pairs before."""
    doc = json.loads(files.read_regular_file(os.path.join(dedupe_dir, SPLITS_FILE),
                                             max_bytes=256 << 20))
    return {"moved": int(doc["moved"]), "leakage_pairs_before": int(doc["leakage_pairs_before"])}
