"""The extraction loop of ``fit``'s features: every resize mode of a split in one pass.

Each image is decoded once for all resize modes and views
(:func:`illustration_tl.datasets.input_pipeline.make_modes_dataset`). A square image
has nothing to pad, so its ``pad`` pixels are its ``squash`` pixels
(:data:`~illustration_tl.datasets.input_pipeline.SAME_WHEN_SQUARE`): its ``pad`` rows
are copied from its ``squash`` rows instead of running the CNN again. Icon and emoji
folders are nearly all square, so this halves their forward passes at no cost: the
rows are the very numbers a second pass would compute.

Rows go to one :class:`~illustration_tl.features.store.ShardedRows` per mode; after a
kill each mode resumes after its own finished shards (the pass starts at the mode
furthest behind and feeds each mode only the rows it lacks).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from illustration_tl.features import store as store_lib

__all__ = ["extract_split", "ordered_modes"]


def ordered_modes(modes: Sequence[str], same_when_square: Mapping[str, str]) -> list[str]:
    """``modes`` with every mode after the twin it copies from (stable otherwise)."""
    return sorted(modes, key=lambda m: same_when_square.get(m) in modes)


def _forward(predict: Callable[[Any], Any], images: Any, blocks: Sequence[str],
             views: Sequence[str]) -> dict[str, np.ndarray]:
    """``{view/block: float32 rows}`` of one batch of preprocessed images."""
    import tensorflow as tf

    out: dict[str, np.ndarray] = {}
    for view in views:
        x = tf.image.flip_left_right(images) if view == "flip" else images
        for b, o in zip(blocks, predict(x)):
            out[store_lib.key_in_mode(view, b)] = np.asarray(o, np.float32)
    return out


def _mode_rows(predict: Callable[[Any], Any], images: Any, blocks: Sequence[str],
               views: Sequence[str], twin_rows: dict[str, np.ndarray] | None,
               square: np.ndarray) -> dict[str, np.ndarray]:
    """One mode's rows of a batch: with
    ``twin_rows`` (the rows of the mode it equals on square images), only the
    non-square images run and the square ones take their twin's rows."""
    if twin_rows is None:
        return _forward(predict, images, blocks, views)
    run = np.flatnonzero(~square)
    rows = {k: v.copy() for k, v in twin_rows.items()}
    if len(run):
        computed = _forward(predict, images.numpy()[run], blocks, views)
        for k, v in computed.items():
            rows[k][run] = v
    return rows


def extract_split(model: Any, blocks: Sequence[str], views: Sequence[str], ds: Any,
                  source: Any, total: int, rows: Mapping[str, store_lib.ShardedRows],
                  batch_size: int, label: str, log: Callable[[str], None] | None) -> None:
    """Embeds the images of ``ds`` (one split, stored order) in every mode of ``rows``
    after the rows each mode already holds in finished shards."""
    import tensorflow as tf

    from illustration_tl.core.progress import Progress
    from illustration_tl.datasets import input_pipeline

    twins = input_pipeline.SAME_WHEN_SQUARE
    modes = ordered_modes(list(rows), twins)
    resumed = {m: rows[m].done for m in modes}
    start = min(resumed.values())
    if start >= total:
        if log:
            for m in modes:
                log(f"{label} ({m}): {total} images already in finished shards")
        return
    batches = input_pipeline.make_modes_dataset(
        ds.skip(start), backbone=source.backbone, image_size=source.image_size,
        batch_size=batch_size, resize_modes=modes)
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    # rows: images x modes x views (a square image's twin rows count, copied)
    progress = Progress(f"{label} ({'+'.join(modes)} x {'+'.join(views)})",
                        sum(total - r for r in resumed.values()) * len(views), interval=10.0,
                        unit="rows", log=log)
    copied = dict.fromkeys(modes, 0)   # images whose rows came from their square twin
    position, t0 = start, time.perf_counter()
    for images, square, y, n in batches:
        square, names = np.asarray(square, bool), [v.decode("utf-8") for v in np.asarray(n)]
        labels, done = np.asarray(y, np.int64), {}
        for m in modes:
            skip = max(0, resumed[m] - position)   # rows this mode already has
            if skip >= len(labels):
                continue
            twin = done.get(twins.get(m, ""))
            done[m] = _mode_rows(predict, images[m], blocks, views, twin, square)
            if twin is not None:
                copied[m] += int(square[skip:].sum())
            rows[m].add({k: v[skip:] for k, v in done[m].items()}, labels[skip:],
                        names[skip:])
            progress.update((len(labels) - skip) * len(views))
        position += len(labels)
    for m in modes:
        rows[m].close()
    if log:
        _log_modes(log, label, modes, rows, resumed, copied, len(views), time.perf_counter() - t0)


def _log_modes(log: Callable[[str], None], label: str, modes: Sequence[str],
               rows: Mapping[str, store_lib.ShardedRows], resumed: Mapping[str, int],
               copied: Mapping[str, int], views: int, seconds: float) -> None:
    """One line per mode: images embedded, resumed, and copied from a square twin."""
    for m in modes:
        new = rows[m].done - resumed[m]
        twin = f", {copied[m]} square images copied from their squash rows" \
            if copied[m] else ""
        log(f"{label} ({m}): {new} images x {views} views embedded in {seconds:.0f}s"
            + (f", {resumed[m]} resumed from finished shards" if resumed[m] else "") + twin)
