"""The TFDS writer's memory bound for one build (how much of a split it sorts in RAM)."""

from __future__ import annotations

import contextlib
from typing import Iterator

DEFAULT_SHUFFLE_MEMORY_MB = 64
"""How much of a split's serialized examples TFDS's writer may hold in memory before it
spills them to its 1,000 sorted bucket files (TFDS's own bound is 1 GB per split, which
made a build's peak memory grow with the set up to that size). The examples and their
order are the same either way."""


@contextlib.contextmanager
def bounded_shuffle_memory(megabytes: int) -> Iterator[None]:
    """Lowers ``tensorflow_datasets.core.shuffle.MAX_MEM_BUFFER_SIZE`` for one build."""
    from tensorflow_datasets.core import shuffle

    previous = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = int(megabytes) << 20
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = previous
