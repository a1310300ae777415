"""Exact and near duplicates among a run's images (``fit``'s report).

* exact: equal :func:`illustration_tl.datasets.ingestion.pixel_hash` of the decoded
  images (a byte-identical file decodes to identical pixels, so pixels cover bytes);
* near: cosine similarity of the images' stored CNN features (the middle transfer
  layer's pools, :func:`illustration_tl.evaluation.fit_run.duplicate_blocks`) at or above
  :data:`NEAR_THRESHOLD`, calibrated on 600 openclipart images at 64 px with 89 planted
  resized, recompressed (JPEG) and re-padded copies and checked on another 1,200 with
  120 (``benchmarks/duplicates_bench.py``): 98.9% and 99.2% of the copies found, 0.3%
  of the pairs of two different pictures flagged.
  Look-alike drawings of one series (playing cards, flags, a set of star shapes) pass
  it too: a near pair is a candidate to look at, not a proof.

Each pair is classed by what it does to the run: ``leakage`` (one image in the
training splits, the other in the test split: it inflates the test score),
``conflict`` (same picture, two classes: one label is wrong), ``within class``
(a redundant copy). A pair can be both leakage and conflict; ``kind`` names the
worse, the columns keep both facts.

The dataset builder already puts pixel-identical files in one split, so exact
leakage only shows up across classes or between different builds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Iterator, Sequence

import numpy as np

NEAR_THRESHOLD = 0.92
CSV_FIELDS = ("kind", "exact", "similarity", "file_a", "split_a", "class_a", "file_b",
              "split_b", "class_b")
TEST_SPLIT = "test"
_CHUNK = 2048
_CHUNK_VALUES = 32 * 1024 * 1024   # similarities held at once (256 MB of float64)
# Near pairs kept per image: its most similar ones. A folder of look-alike drawings (one
# icon set's glyphs at 64 px) passes the threshold for hundreds of pairs per image
# (4.7 million pairs, a 713 MB duplicates.csv, at 30k Iconify icons); each image's
# closest copies are what a user acts on, and the pairs stay linear in the images.
NEAR_PER_IMAGE = 10


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two images ``a < b`` (row indices) that look the same."""

    a: int
    b: int
    similarity: float
    exact: bool


@dataclasses.dataclass
class Images:
    """The rows the pairs index: one per image of every split."""

    file_names: list[str]
    splits: list[str]
    labels: np.ndarray
    class_names: list[str]

    def kind(self, p: Pair) -> str:
        """``leakage``, ``conflict`` or ``within class`` (see the module docstring)."""
        if self.is_leakage(p):
            return "leakage"
        if self.labels[p.a] != self.labels[p.b]:
            return "conflict"
        return "within class"

    def is_leakage(self, p: Pair) -> bool:
        return (self.splits[p.a] == TEST_SPLIT) != (self.splits[p.b] == TEST_SPLIT)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit l2 length (a zero row stays zero), float32."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def near_pairs(features: np.ndarray, threshold: float = NEAR_THRESHOLD,
               per_image: int = NEAR_PER_IMAGE) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` and cosine >= ``threshold``, at most the
    ``per_image`` most similar of each image (a pair is kept when it is among either
    image's), computed in row chunks so memory stays at ``chunk x n`` floats (at most
    :data:`_CHUNK_VALUES`); sorted by ``(i, j)``."""
    x = unit_rows(features)
    n = len(x)
    found: dict[tuple[int, int], float] = {}
    chunk = max(1, min(_CHUNK, _CHUNK_VALUES // max(1, n)))
    for start in range(0, n, chunk):
        sims = x[start:start + chunk] @ x.T
        own = np.arange(len(sims))
        sims[own, start + own] = -np.inf   # not the image itself
        for r, cols in _top_above(sims, threshold, per_image):
            i = start + r
            for c in cols.tolist():
                found[(min(i, c), max(i, c))] = float(sims[r, c])
    return [(i, j, s) for (i, j), s in sorted(found.items())]


def _top_above(sims: np.ndarray, threshold: float, k: int
               ) -> Iterator[tuple[int, np.ndarray]]:
    """For each row of ``sims`` with a value >= ``threshold``: the row and the columns
    of its (at most ``k``) largest such values."""
    mask = sims >= threshold
    counts = mask.sum(axis=1)
    for r in np.flatnonzero(counts):
        cols = np.flatnonzero(mask[r])
        if len(cols) > k:
            cols = cols[np.argpartition(-sims[r, cols], k - 1)[:k]]
        yield int(r), cols


def exact_groups(hashes: Sequence[str]) -> list[list[int]]:
    """Groups (two or more rows) of equal pixel hashes."""
    by: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        by.setdefault(h, []).append(i)
    return [g for g in by.values() if len(g) > 1]


def find(features: np.ndarray, hashes: Sequence[str] | None = None,
         threshold: float = NEAR_THRESHOLD) -> list[Pair]:
    """Every exact pair (equal ``hashes``) and near pair (feature cosine >= ``threshold``),
    most similar first; exact pairs have similarity 1 whatever their features say."""
    pairs: dict[tuple[int, int], Pair] = {}
    for g in exact_groups(hashes or []):
        for x, i in enumerate(g):
            for j in g[x + 1:]:
                pairs[(i, j)] = Pair(i, j, 1.0, True)
    for i, j, s in near_pairs(features, threshold):
        if (i, j) not in pairs:
            pairs[(i, j)] = Pair(i, j, min(s, 1.0), False)
    return sorted(pairs.values(), key=lambda p: (-p.similarity, p.a, p.b))


def count_leakage(pairs: Sequence[Pair], images: Images) -> int:
    """The number of train/test pairs (what ``fit`` warns about in one line)."""
    return sum(images.is_leakage(p) for p in pairs)


def leaked_test_images(pairs: Sequence[Pair], images: Images) -> set[int]:
    """Rows of test images with a duplicate in the training splits."""
    return {p.a if images.splits[p.a] == TEST_SPLIT else p.b
            for p in pairs if images.is_leakage(p)}


def components(n: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """The connected component of each of ``n`` rows joined by ``edges`` (union-find):
    one representative row per component."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[root(a)] = root(b)
    return [root(i) for i in range(n)]


def grouped_splits(pairs: Sequence[Pair], images: Images) -> list[str]:
    """The split of every row once each group of duplicates (connected by ``pairs``) that
    spans the training splits and the test split sits on one side (``fit --dedupe``): the
    side holding most of the group, the test split on a tie; rows moved to training go to
    ``train``. Groups within one side keep their splits, so the test score is no longer
    inflated by pictures the model trained on (leakage), and few images move."""
    groups: dict[int, list[int]] = {}
    for i, root in enumerate(components(len(images.splits), [(p.a, p.b) for p in pairs])):
        groups.setdefault(root, []).append(i)
    out = list(images.splits)
    for members in groups.values():
        tested = sum(images.splits[i] == TEST_SPLIT for i in members)
        if 0 < tested < len(members):
            to_test = 2 * tested >= len(members)
            for i in members:
                if to_test:
                    out[i] = TEST_SPLIT
                elif out[i] == TEST_SPLIT:
                    out[i] = "train"
    return out


def to_csv(pairs: Sequence[Pair], images: Images) -> str:
    """``duplicates.csv``: one row per pair, most similar first."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for p in pairs:
        w.writerow([images.kind(p), int(p.exact), f"{p.similarity:.4f}",
                    images.file_names[p.a], images.splits[p.a],
                    images.class_names[images.labels[p.a]], images.file_names[p.b],
                    images.splits[p.b], images.class_names[images.labels[p.b]]])
    return out.getvalue()
