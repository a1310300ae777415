"""Split assignment across duplicates: pixel-identical files share one split (§4).

:mod:`illustration_tl.datasets.splits` gives each decoded image its split from its
pixel hash; a folder's own split (the authors' ``train/`` and ``val/``) can still put
two copies of one image on both sides. Every such group goes to its most held-out
split, so no test image is also a training image. A small class whose hashes all fell
outside the test split gets one image group moved into it
(:func:`ensure_test_image`), so every class is scored.
"""

from __future__ import annotations

import collections
from typing import Sequence

from illustration_tl.datasets import batch_ingestion, splits

HELD_OUT_ORDER = {"train": 0, "validation": 1, "test": 2}


def group_split(members: Sequence[str], split_of: dict[str, str]) -> str:
    """The most held-out split among duplicates: test > validation > train."""
    return max((split_of[m] for m in members), key=HELD_OUT_ORDER.__getitem__)


def unify_duplicate_splits(good: dict[str, batch_ingestion.Ingested], split_of: dict[str, str]
                           ) -> tuple[dict[str, str], int]:
    """Puts every group of pixel-identical files in its most held-out split."""
    groups = collections.defaultdict(list)
    for name, result in good.items():
        groups[result.pixel_hash].append(name)
    final, moved = {}, 0
    for members in groups.values():
        split = group_split(members, split_of)
        for m in members:
            final[m] = split
            moved += split != split_of[m]
    return final, moved


def ensure_test_image(final: dict[str, str], class_of: dict[str, str],
                      hash_of: dict[str, str], seed: int = 0,
                      min_images: int = splits.MIN_IMAGES_FOR_TEST) -> int:
    """Moves one image group into ``test`` for each class of at least ``min_images``
    distinct images that the hash split left without a test image: the group whose split
    number (:func:`splits.unit_interval`) lies closest to the test range, with every copy
    of it (a move towards held-out never leaks). Returns the number of files moved."""
    by_class: dict[str, set[str]] = collections.defaultdict(set)
    for name, class_name in class_of.items():
        by_class[class_name].add(name)
    moved = 0
    for class_name in sorted(by_class):
        names = by_class[class_name]
        hashes = sorted({hash_of[n] for n in names})
        if len(hashes) < min_images or any(final[n] == "test" for n in names):
            continue
        pick = max(hashes, key=lambda h: splits.unit_interval(h, seed))
        for name, h in hash_of.items():
            if h == pick and final[name] != "test":
                final[name] = "test"
                moved += 1
    return moved
