"""A build refuses a set no classifier can learn from, in one line that names the fix:
no usable image, a single class, an empty split, or a class with test images only."""

from __future__ import annotations

import collections
from typing import Sequence

from illustration_tl.datasets import splits
from illustration_tl.datasets.illustrations import build_report, example_encoding

Examples = Sequence[tuple[str, example_encoding.Example]]  # (split, example)


def check_classes(class_names: Sequence[str], manual_dir: str,
                  skipped: Sequence[tuple[str, str]], what: str, instructions: str) -> None:
    """At least two classes with usable images; ``what`` names one more class to add
    ("class folder"), ``instructions`` how to lay out the folder."""
    if not class_names:
        raise ValueError(f"no usable images under {manual_dir!r}: {len(skipped)} files "
                         f"skipped{build_report.first_skips(skipped)}. "
                         f"{instructions}")
    if len(class_names) < 2:
        raise ValueError(f"only one class ({class_names[0]!r}) has usable images under "
                         f"{manual_dir!r}: a classifier needs at least 2 classes; add "
                         f"images of another {what}")


def by_split(examples: Examples, split_fractions: Sequence[float]
             ) -> dict[str, list[example_encoding.Example]]:
    """The examples of each split, in order; ValueError when a split would be empty."""
    grouped = collections.defaultdict(list)
    for split, example in examples:
        grouped[split].append(example)
    empty = [s for s in splits.SPLITS if not grouped[s]]
    if empty:
        raise ValueError(f"split(s) {', '.join(empty)} would be empty: {len(examples)} "
                         f"examples are too few for split fractions "
                         f"{split_fractions}; add images")
    return grouped


def check_trained(examples: Examples, manual_dir: str) -> None:
    """Every class with test images (the authors' val/) has training images too."""
    untrained = sorted({e.label for sp, e in examples if sp == "test"}
                       - {e.label for sp, e in examples if sp != "test"})
    if untrained:
        raise ValueError(f"class {untrained[0]!r} has test images (val/) but no training "
                         f"images (train/) under {manual_dir!r}"
                         + (f" ({len(untrained)} such classes)" if len(untrained) > 1
                            else "")
                         + f"; add its images under train/{untrained[0]}/ or remove "
                         f"val/{untrained[0]}/")
