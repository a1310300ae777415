"""Example encoding: one decoded file as the ``(key, features)`` pair TFDS writes.

The plain build yields the pairs from ``Builder._generate_examples``; TFDS's Beam mode
maps the same function over the examples (:mod:`.beam_mode`), so both builds write
identical datasets.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Example:
    """One example of a split: a decoded file (its cached PNG) and its class."""

    key: str
    file_name: str
    png_path: str
    label: str
    imagenet_index: int
    matched_words: str = ""


def key_features(e: Example, noisy: bool) -> tuple[str, dict[str, Any]]:
    """One example's key and features (the plain and the Beam build share it)."""
    features = {"image": e.png_path, "label": e.label,
                "imagenet_index": e.imagenet_index, "file_name": e.file_name}
    if noisy:
        features["matched_words"] = e.matched_words
    return e.key, features

