"""The memory budget of the ``fit`` search and the size rule that picks its regime (issue 21).

The exact search (:mod:`illustration_tl.heads.search`) keeps, for each of the
:data:`FEATURE_SET_CACHE` cached feature sets, the float64 Gram matrix of every
training row and up to :data:`KERNEL_CACHE` kernel matrices: rows² x 8 bytes each, rows
= images x 2 when the mirrors are used. **Size rule**:

* ``exact``: while ``FEATURE_SET_CACHE x (1 + KERNEL_CACHE) x rows² x 8`` bytes fit the
  budget, the search cross-validates exact kernel SVMs (the paper's classifier, §6.1),
  as it always did.
* ``approximate``: beyond it, heads that scale linearly in the rows: linear classifiers
  (ridge first) on Nyström features of the RBF kernel (:data:`NYSTROEM_COMPONENTS`
  components) and the registry's linear kinds on the normalized features. The CV runs
  on a stratified sample of the training images, as large as the budget allows (per
  row, ``8 x FEATURE_SET_CACHE x dims`` bytes for the cached feature sets, ``4 x
  FEATURE_SET_CACHE x KERNEL_CACHE x components`` for their float32 Nyström features,
  and ``8 x 3 x components`` for the training slice and liblinear's copy, which only
  the thorough grid's non-ridge kinds make) and at most :data:`MAX_CV_IMAGES`; the
  chosen head is refitted on every image, its rows streamed in chunks
  (:func:`illustration_tl.heads.head.fit`), so the final fit's memory does not grow
  with the folder either.

The default budget is :data:`DEFAULT_MEMORY_FRACTION` of the machine's physical memory
(4.9 GB of 24: with the TensorFlow runtime and the store's pages, a 100k-image ``fit``
peaks under 6 GB, ``benchmarks/results/fit_scale.json``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

FEATURE_SET_CACHE = 2   # feature sets kept in memory by the exact search
KERNEL_CACHE = 2        # kernel matrices kept per feature set (one per γ)
DEFAULT_MEMORY_FRACTION = 0.2
NYSTROEM_COMPONENTS = 4096
MAX_CV_IMAGES = 20_000   # CV sample cap in the approximate regime (time, not memory)
MIN_CV_IMAGES = 500      # CV sample floor, whatever the budget


def default_max_memory_bytes() -> int:
    """:data:`DEFAULT_MEMORY_FRACTION` of the physical memory (``os.sysconf``); 4 GB if
    the system does not say."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024 ** 3
    return int(total * DEFAULT_MEMORY_FRACTION)


def exact_bytes(rows: int) -> int:
    """Bytes of the exact search's cached matrices for ``rows`` training rows."""
    return FEATURE_SET_CACHE * (1 + KERNEL_CACHE) * rows * rows * 8


def max_exact_images(budget: int, rows_per_image: int) -> int:
    """The most images whose exact kernel matrices fit ``budget``."""
    per = FEATURE_SET_CACHE * (1 + KERNEL_CACHE) * 8
    return int((budget / per) ** 0.5) // rows_per_image


def approx_row_bytes(components: int, dims: int) -> int:
    """Bytes the approximate CV holds per sampled row (module doc)."""
    return (8 * FEATURE_SET_CACHE * dims + 4 * FEATURE_SET_CACHE * KERNEL_CACHE * components
            + 8 * 3 * components)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


@dataclasses.dataclass(frozen=True)
class Regime:
    """Which rule applied: exact kernel SVMs, or approximate heads on a CV sample."""

    kind: str                 # "exact" or "approximate"
    images: int               # training images
    rows: int                 # training rows (images x 2 with mirrors)
    budget_bytes: int
    exact_bytes: int          # what the exact search would hold
    cv_images: int            # images the CV runs on (all of them when exact)
    components: int = 0       # Nyström components (approximate)

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    def describe(self) -> str:
        """One line for the leaderboard."""
        if self.exact:
            return (f"exact kernel SVMs: {self.rows:,} rows fit the {_gb(self.budget_bytes)} "
                    f"budget (kernel matrices {_gb(self.exact_bytes)})")
        return (f"approximate: {self.rows:,} rows (exact kernel matrices would take "
                f"{_gb(self.exact_bytes)}, over the {_gb(self.budget_bytes)} budget); CV on "
                f"a stratified sample of {self.cv_images:,} images; Nyström "
                f"{self.components:,} components; final head refitted on all "
                f"{self.images:,} images")

    def as_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), rule=self.describe())


def choose(images: int, rows_per_image: int, budget: int, dims: int) -> Regime:
    """The size rule (module doc) for ``images`` training images of ``dims`` features."""
    rows = images * rows_per_image
    need = exact_bytes(rows)
    if need <= budget:
        return Regime("exact", images, rows, budget, need, images)
    components = min(NYSTROEM_COMPONENTS, images)
    per_row = approx_row_bytes(components, dims)
    fit = int(budget // (per_row * rows_per_image))
    cv_images = min(images, MAX_CV_IMAGES, max(MIN_CV_IMAGES, fit))
    return Regime("approximate", images, rows, budget, need, cv_images, components)


def stratified_sample(y: np.ndarray, size: int, seed: int = 0, min_per_class: int = 1
                      ) -> np.ndarray:
    """About ``size`` indices of ``y`` (sorted) with every class in proportion, each at
    least ``min_per_class`` times (or all of its rows)."""
    y = np.asarray(y)
    if size >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        quota = max(min_per_class, int(round(size * len(idx) / len(y))))
        out.append(rng.permutation(idx)[:min(quota, len(idx))])
    return np.sort(np.concatenate(out))
