"""The curated source (paper §4.2): one folder per class, labels from folder names.

Two layouts: the authors' ``train/<class>/*`` + ``val/<class>/*`` (val is the 20% test
split; a deterministic 20% of train becomes validation: 64/16/20, unless a
``validation/`` folder is given) or a flat ``<class>/*`` split 64/16/20 by pixel hash.
Each class also carries its ImageNet index (-1 when it is not an ImageNet class).
"""

from __future__ import annotations

import collections
import os
from typing import Any, Sequence

from illustration_tl.datasets import batch_ingestion, imagenet, splits
from illustration_tl.datasets.illustrations import example_encoding, file_plan, split_assignment

# Authors' layout: folder name -> split. "val" is the paper's test split.
LAYOUT_SPLITS = {"train": "train", "validation": "validation", "val": "test", "test": "test"}


def plan_curated(manual_dir: str) -> file_plan.Plan:
    """Class folders in the authors' layout (train/ + val/) or flat (<class>/)."""
    top = sorted(d for d in os.listdir(manual_dir)
                 if os.path.isdir(os.path.join(manual_dir, d)) and not d.startswith("."))
    authors = "train" in top
    if authors and "val" in top and "test" in top:
        raise ValueError(f"{manual_dir!r} has both val/ and test/; the authors' layout "
                         "has train/ and val/ (val = test split), optionally validation/")
    plan = file_plan.Plan(layout="authors" if authors else "flat")
    for rel, path in file_plan.walk(manual_dir, plan):
        parts = rel.split("/")
        plan.files_seen += 1
        if authors:
            split = LAYOUT_SPLITS.get(parts[0])
            if split is None or len(parts) < 3:
                plan.skipped.append((rel, "outside train/<class>/ and val/<class>/"))
                continue
            class_name = parts[1]
        else:
            if len(parts) < 2:
                plan.skipped.append((rel, "not inside a class folder"))
                continue
            split, class_name = "", parts[0]
        plan.curated[rel] = (class_name, split)
        plan.tasks.append((rel, path))
    return plan


def imagenet_index(class_name: str) -> int:
    """The ImageNet index of a class folder's name, or -1 when it is not an ImageNet class."""
    found = imagenet.find(class_name)
    return found.index if found is not None else -1


def curated_examples(plan: file_plan.Plan, good: dict[str, batch_ingestion.Ingested], *,
                     split_fractions: Sequence[float], validation_fraction: float,
                     split_seed: int) -> tuple[list[tuple[str, example_encoding.Example]], int]:
    """``(split, example)`` per decoded file, and how many duplicates moved split."""
    has_validation = any(split == "validation" for _, split in plan.curated.values())
    split_of: dict[str, str] = {}
    for name, result in good.items():
        split = plan.curated[name][1]
        if not split:  # flat layout
            split = splits.assign(result.pixel_hash, split_fractions, split_seed)
        elif split == "train" and not has_validation:
            split = splits.carve_validation(result.pixel_hash, validation_fraction, split_seed)
        split_of[name] = split
    final, moved = split_assignment.unify_duplicate_splits(good, split_of)
    if plan.layout == "flat":   # the authors' val/ is their test split: kept as given
        split_assignment.ensure_test_image(
            final, {n: plan.curated[n][0] for n in good},
            {n: r.pixel_hash for n, r in good.items()}, split_seed)
    indices = {c: imagenet_index(c) for c, _ in plan.curated.values()}
    examples = []
    for name in sorted(good):
        class_name = plan.curated[name][0]
        examples.append((final[name], example_encoding.Example(
            name, name, good[name].png_path, class_name, indices[class_name])))
    return examples, moved


def estimate(plan: file_plan.Plan, split_fractions: Sequence[float],
             validation_fraction: float) -> dict[str, Any]:
    """What a curated build of ``plan`` would hold, without decoding anything: the
    layout, the classes, about how many images fall in each split (the real split
    hashes pixels), the files left out before decoding and the number to decode."""
    per_class: dict[str, int] = collections.Counter(c for c, _ in plan.curated.values())
    fixed = collections.Counter(sp for _, sp in plan.curated.values() if sp)
    loose = sum(1 for _, sp in plan.curated.values() if not sp)
    f_train, f_val, f_test = split_fractions
    examples = {"train": f_train * loose, "validation": f_val * loose, "test": f_test * loose}
    if fixed:
        train = fixed["train"]
        has_val = fixed["validation"] > 0
        examples["train"] += train * (1 if has_val else 1 - validation_fraction)
        examples["validation"] += fixed["validation"] + (
            0 if has_val else train * validation_fraction)
        examples["test"] += fixed["test"]
    return {"layout": plan.layout, "classes": sorted(per_class),
            "images_per_class": dict(sorted(per_class.items())),
            "examples": {k: int(round(v)) for k, v in examples.items()},
            "files": len(plan.tasks), "skipped": list(plan.skipped)}
