"""The noisy source (paper §4.1): any folder tree of illustrations, labelled by name.

A file (or Iconify icon, :mod:`.iconify_icons`) is copied into every ImageNet class its
name maps to (:mod:`illustration_tl.datasets.name_mapping`); classes with fewer than
``min_images_per_class`` decoded images are dropped. Copies of one image share a split,
as every split comes from the decoded pixels.
"""

from __future__ import annotations

import collections
import os
import re
from typing import Sequence

from illustration_tl.datasets import batch_ingestion, iconify, name_mapping, splits
from illustration_tl.datasets.illustrations import example_encoding, file_plan, iconify_icons

_ESCAPED_BYTE = re.compile(r"\\x[0-9a-f]{2}")


def match_text(name: str) -> str:
    """The text the name rule reads: escapes of non-UTF-8 bytes become spaces."""
    return _ESCAPED_BYTE.sub(" ", name)


def plan_noisy(manual_dir: str, mapping: name_mapping.MappingOptions, *, scan_json: bool,
               iconify_paths: Sequence[str], iconify_filter: iconify.IconifyFilter
               ) -> file_plan.Plan:
    """Image files and Iconify icons whose names map to at least one ImageNet class.

    ``iconify_paths`` are read besides the ``*.json`` collections found in
    ``manual_dir`` (those only when ``scan_json``); relative ones are under it.
    """
    plan = file_plan.Plan(layout="noisy")
    mapper = name_mapping.NameMapper(mapping)
    json_files = []
    for rel, path in file_plan.walk(manual_dir, plan):
        if rel.lower().endswith(".json"):
            if scan_json:
                json_files.append(path)
            continue
        plan.files_seen += 1
        matches = mapper.match(match_text(rel))
        if not matches:
            plan.unmapped += 1
            continue
        plan.noisy[rel] = matches
        plan.tasks.append((rel, path))
    extra = [p if os.path.isabs(p) else os.path.join(manual_dir, p) for p in iconify_paths]
    missing = [p for p in extra if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"iconify path(s) not found: {', '.join(missing)}")
    iconify_icons.add_icons(plan, manual_dir, json_files + extra, iconify_filter, mapper)
    return plan


def noisy_examples(plan: file_plan.Plan, good: dict[str, batch_ingestion.Ingested], *,
                   min_images_per_class: int, split_fractions: Sequence[float],
                   split_seed: int) -> tuple[list[tuple[str, example_encoding.Example]], int]:
    """``(split, example)`` per decoded file and matched class kept; the classes with
    fewer than ``min_images_per_class`` images are counted in ``plan.dropped_classes``.
    No file moves split (the second value is 0): copies share their pixels' split."""
    counts = collections.Counter(m.wnid for name in good for m in plan.noisy[name])
    kept = {w for w, n in counts.items() if n >= min_images_per_class}
    plan.dropped_classes = len(counts) - len(kept)
    examples = []
    for name in sorted(good):
        result = good[name]
        split = splits.assign(result.pixel_hash, split_fractions, split_seed)
        for m in plan.noisy[name]:
            if m.wnid in kept:
                examples.append((split, example_encoding.Example(
                    f"{name}|{m.wnid}", name, result.png_path, m.wnid, m.index,
                    " ".join(m.matched_words))))
    return examples, 0
