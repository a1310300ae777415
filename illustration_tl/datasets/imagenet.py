"""The ImageNet-1k vocabulary, offline.

The paper (§4.1, §6) labels clip art with ImageNet-1k classes and scores the
baseline VGG19 on them. Keras's ``decode_predictions`` downloads its class
index at run time; this module reads a vendored copy of ``synset_words.txt``
(wnid, then the comma-separated WordNet synonyms, in Keras's index order)
shipped as package data, so everything works without a network.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Sequence

import numpy as np

NUM_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its index in the 1000-way output, wnid, synonyms."""

    index: int
    wnid: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        """The first (canonical) synonym, as ``decode_predictions`` reports it."""
        return self.names[0]


def parse_synset_words(text: str) -> tuple[ImageNetClass, ...]:
    """Parses ``synset_words.txt`` lines (``n01440764 tench, Tinca tinca``)."""
    classes = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        wnid, _, names = line.partition(" ")
        synonyms = tuple(n.strip() for n in names.split(",") if n.strip())
        classes.append(ImageNetClass(len(classes), wnid, synonyms))
    return tuple(classes)


@functools.lru_cache(maxsize=1)
def classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet classes in index order."""
    text = resources.files("illustration_tl").joinpath("data/synset_words.txt").read_text("utf-8")
    parsed = parse_synset_words(text)
    if len(parsed) != NUM_CLASSES:
        raise RuntimeError(f"synset_words.txt holds {len(parsed)} classes, expected {NUM_CLASSES}")
    return parsed


@functools.lru_cache(maxsize=1)
def _by_wnid() -> dict[str, ImageNetClass]:
    return {c.wnid: c for c in classes()}


def by_index(index: int) -> ImageNetClass:
    """The class at ``index`` (0..999)."""
    if not 0 <= index < NUM_CLASSES:
        raise IndexError(f"ImageNet index {index} is outside 0..{NUM_CLASSES - 1}")
    return classes()[index]


def by_wnid(wnid: str) -> ImageNetClass:
    """The class with WordNet id ``wnid`` (``n02701002``)."""
    try:
        return _by_wnid()[wnid]
    except KeyError:
        raise KeyError(f"{wnid!r} is not an ImageNet-1k wnid") from None


def find(name: str) -> ImageNetClass | None:
    """The class with ``name`` as one of its synonyms (case-insensitive), if any.

    A wnid is accepted too. When a name is the synonym of several classes
    (``crane`` is both a bird and a machine) a canonical name beats a later
    synonym and then the lowest index wins; use
    :func:`search` to see them all.
    """
    if name in _by_wnid():
        return _by_wnid()[name]
    wanted = name.strip().lower().replace("_", " ")
    for c in classes():  # canonical names first: `harp` is harp, not harmonica
        if c.name.lower() == wanted:
            return c
    for c in classes():
        if wanted in (n.lower() for n in c.names):
            return c
    return None


def search(query: str) -> list[ImageNetClass]:
    """Classes whose wnid or any synonym contains ``query`` (case-insensitive)."""
    q = query.strip().lower()
    return [c for c in classes() if q == c.wnid or any(q in n.lower() for n in c.names)]


def decode_top_k(scores: np.ndarray | Sequence[Sequence[float]], k: int = 5
                 ) -> list[list[tuple[str, str, float]]]:
    """Offline ``decode_predictions``: the top-``k`` (wnid, name, score) per row.

    ``scores`` is a ``(batch, 1000)`` array of probabilities or logits; ties
    keep the lower index first, as a stable sort does.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        raise ValueError(f"decode_top_k expects scores of shape (batch, {NUM_CLASSES}), "
                         f"got {scores.shape}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    table = classes()
    return [[(table[i].wnid, table[i].name, float(row[i])) for i in top]
            for row, top in zip(scores, order)]
