"""Split assignment across duplicates: pixel-identical files share one split (§4).

:mod:`illustration_tl.datasets.splits` gives each decoded image its split from its
pixel hash; a folder's own split (the authors' ``train/`` and ``val/``) can still put
two copies of one image on both sides. Every such group goes to its most held-out
split, so no test image is also a training image.
"""

from __future__ import annotations

import collections
from typing import Sequence

from illustration_tl.datasets import batch_ingestion

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
