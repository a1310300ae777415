"""Leakage-free, deterministic train/validation/test splits (paper §4: 64/16/20).

The paper splits each dataset 64% train, 16% validation, 20% test. Here the
split of an image is a function of its *decoded pixels* alone: a keyed
SHA-256 of the pixel hash, read as a number in [0, 1), is cut at the
cumulative fractions. Hence

- byte-identical or pixel-identical copies (the same clip art saved twice,
  or copied into several classes by the §4.1 name rule) always share a split,
  so no test image is also a training image;
- a rebuild gives the same splits, and adding or removing files never moves
  the other files between splits;
- proportions are 64/16/20 in expectation, per class only approximately; a class of
  at least :data:`MIN_IMAGES_FOR_TEST` images that the hashes leave without a test
  image gets one (``illustrations/split_assignment.ensure_test_image``).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Iterable, Sequence

SPLITS = ("train", "validation", "test")
PAPER_FRACTIONS = (0.64, 0.16, 0.20)
# A class this large is always scored: its test split holds at least one image.
MIN_IMAGES_FOR_TEST = 5


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validated (train, validation, test) fractions: three, non-negative, sum 1."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1 "
                         f"(train, validation, test), got {tuple(fractions)}")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def unit_interval(content_hash: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) determined by ``content_hash`` and ``seed``."""
    digest = hashlib.sha256(f"illustrations-split/{seed}/{content_hash}".encode()).hexdigest()
    return int(digest[:15], 16) / float(16 ** 15)


def assign(content_hash: str, fractions: Sequence[float] = PAPER_FRACTIONS,
           seed: int = 0) -> str:
    """The split (``train``/``validation``/``test``) of an image with this pixel hash."""
    train, validation, _ = check_fractions(fractions)
    u = unit_interval(content_hash, seed)
    if u < train:
        return "train"
    if u < train + validation:
        return "validation"
    return "test"


def carve_validation(content_hash: str, fraction: float = 0.2, seed: int = 0) -> str:
    """``validation`` for a deterministic ``fraction`` of a training folder, else ``train``.

    Used for the authors' ``train/`` + ``val/`` layout: their val is the paper's
    20% test split, and 20% of train becomes validation, giving 64/16/20.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"validation fraction must be in [0, 1], got {fraction}")
    return "validation" if unit_interval(content_hash, seed) < fraction else "train"


@dataclasses.dataclass
class DuplicateReport:
    """How many files repeat another file's bytes or pixels."""

    files: int = 0
    unique_bytes: int = 0
    unique_pixels: int = 0
    # pixel hash -> file names, for groups with more than one file
    groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def byte_duplicates(self) -> int:
        """Files whose bytes equal an earlier file's."""
        return self.files - self.unique_bytes

    @property
    def pixel_duplicates(self) -> int:
        """Files with different bytes but the same decoded pixels as another file."""
        return self.unique_bytes - self.unique_pixels

    def as_dict(self) -> dict:
        return {"files": self.files, "byte_identical_duplicates": self.byte_duplicates,
                "pixel_identical_duplicates": self.pixel_duplicates,
                "duplicate_groups": len(self.groups)}

    def format(self) -> str:
        return (f"{self.byte_duplicates} byte-identical and {self.pixel_duplicates} more "
                f"pixel-identical duplicate files in {len(self.groups)} groups "
                f"(of {self.files} decoded files); each group shares one split")


def duplicate_report(items: Iterable[tuple[str, str, str]]) -> DuplicateReport:
    """Counts duplicates among ``(file_name, byte_hash, pixel_hash)`` triples."""
    by_pixels: dict[str, list[str]] = collections.defaultdict(list)
    byte_hashes, report = set(), DuplicateReport()
    for name, b, p in items:
        report.files += 1
        byte_hashes.add(b)
        by_pixels[p].append(name)
    report.unique_bytes = len(byte_hashes)
    report.unique_pixels = len(by_pixels)
    report.groups = {p: sorted(names) for p, names in by_pixels.items() if len(names) > 1}
    return report
