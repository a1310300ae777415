"""``fit``'s feature extraction as an Apache Beam pipeline (the ``tfds-cli`` extra), so a
Dataflow, Spark or Flink runner embeds a large folder on many machines.

The pipeline writes exactly the shards the local extraction writes
(:class:`illustration_tl.features.store.ShardedRows`: ``<work>/<split>/<mode>/shard-NNNNN.npz``
of ``shard_size`` images each, in the split's dataset order, the same arrays, labels and
file names), so ``fit`` pointed at that work folder finds every shard finished and only
consolidates them (:func:`illustration_tl.features.store.consolidate`):

1. **Read**: the TFRecord files of the built TFDS split, one element per file
   instruction, each record keyed by its position in the order
   :func:`illustration_tl.datasets.input_pipeline.load_split` reads the split. TFDS
   interleaves a split's files (16 at a time, 16 records each, unless the dataset
   disables shuffling); :func:`dataset_positions` replays that interleave on the files'
   record counts with ``tf.data`` itself, so position *i* is the *i*-th image locally.
2. **Decode**: the builder's own ``info.features`` parse each record (the image left
   encoded, as the local extraction reads it), after a reshuffle that spreads the images
   over the workers.
3. **Embed**: ``RunInference`` with :class:`.beam_inference.ExtractorHandler`, once per
   image and resize mode: the same ``make_dataset`` decoding, resizing and preprocessing,
   the same extractor, the image and its mirror image.
4. **Write**: rows grouped by shard (``position // shard_size``), each shard written by
   :func:`illustration_tl.features.store.write_shard` (temporary name, then renamed).

A rerun skips the images of the finished shards already in the work folder (a killed
local or Beam extraction). The work folder (and the dataset, and ``--weights``) must be on
a filesystem every worker reads and writes (a shared mount on a cluster).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from illustration_tl.errors import UserError
from illustration_tl.features import store as store_lib

__all__ = ["FileRead", "Target", "dataset_positions", "file_reads", "write_shards"]


@dataclasses.dataclass(frozen=True)
class FileRead:
    """One TFRecord file instruction of a split and the dataset position of each record
    it reads (``positions[r]``: the record ``skip + r`` of the file)."""

    split: str
    filename: str
    skip: int
    positions: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the rows of one (split, resize mode) go: its shard folder, the rows already in
    finished shards there (``done``, skipped) and how many shards hold them (``first``:
    the number of the next shard)."""

    directory: str
    total: int
    done: int
    first: int
    shard_size: int

    def shard_of(self, position: int) -> int:
        return self.first + (position - self.done) // self.shard_size

    def rows_of(self, shard: int) -> range:
        start = self.done + (shard - self.first) * self.shard_size
        return range(start, min(start + self.shard_size, self.total))


def _interleave(disable_shuffling: bool) -> tuple[int, int]:
    """TFDS's default interleave of a split's files when read in order (``ReadConfig()``;
    ``tensorflow_datasets.core.reader``): cycle length 1 when the dataset disables
    shuffling, else 16; the config's block length."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import read_config

    config = tfds.ReadConfig()
    cycle = config.interleave_cycle_length
    if cycle is read_config.MISSING:
        cycle = 1 if disable_shuffling else 16
    return cycle, config.interleave_block_length


def dataset_positions(takes: Sequence[int], disable_shuffling: bool) -> list[list[int]]:
    """For files read in turn (``takes[f]`` records each), the position in the split's
    dataset order of every record of every file: TFDS's interleave replayed by
    ``tf.data`` on record numbers."""
    import tensorflow as tf

    cycle, block = _interleave(disable_shuffling)
    counts = tf.constant(list(takes) or [0], tf.int64)
    files = tf.data.Dataset.range(len(takes))
    order = files.interleave(
        lambda f: tf.data.Dataset.range(counts[f]).map(lambda r: tf.stack([f, r])),
        cycle_length=cycle, block_length=block)
    positions = [[-1] * int(t) for t in takes]
    at = 0
    for chunk in order.batch(1 << 16).as_numpy_iterator():
        for f, r in chunk:
            positions[int(f)][int(r)] = at
            at += 1
    if at != sum(takes) or any(p < 0 for ps in positions for p in ps):
        raise RuntimeError(f"the interleave gave {at} positions for {sum(takes)} records")
    return positions


def file_reads(builder: Any, split: str) -> list[FileRead]:
    """The file instructions of ``split`` with each record's dataset position."""
    instructions = list(builder.info.splits[split].file_instructions)
    takes = [int(i.take) for i in instructions]
    positions = dataset_positions(takes, bool(builder.info.disable_shuffling))
    return [FileRead(split, os.fspath(i.filename), int(i.skip), tuple(p))
            for i, p in zip(instructions, positions)]


def _read_records(read: FileRead) -> Iterator[tuple[tuple[str, int], bytes]]:
    """``((split, position), serialized example)`` for every record of ``read``."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(read.filename).skip(read.skip).take(len(read.positions))
    count = 0
    for position, record in zip(read.positions, records.as_numpy_iterator()):
        count += 1
        yield (read.split, position), record
    if count != len(read.positions):
        raise RuntimeError(f"{read.filename}: read {count} records, expected "
                           f"{len(read.positions)}")


def _decoder(builder_dir: str) -> Callable[[tuple[tuple[str, int], bytes]], Any]:
    """The builder's feature parser (``info.features``), the image left encoded."""
    cache: dict[str, Any] = {}

    def decode(element: tuple[tuple[str, int], bytes]) -> tuple[tuple[str, int], Any]:
        import tensorflow as tf
        import tensorflow_datasets as tfds

        if "features" not in cache:
            cache["features"] = tfds.builder_from_directory(builder_dir).info.features
        key, record = element
        ex = cache["features"].deserialize_example(
            tf.constant(record), decoders={"image": tfds.decode.SkipDecoding()})
        return key, (bytes(ex["image"].numpy()), int(ex["label"].numpy()),
                     ex["file_name"].numpy().decode("utf-8"))

    return decode


def _per_mode(element: tuple[tuple[str, int], Any], targets: dict[tuple[str, str], Target]
              ) -> Iterator[tuple[tuple[str, str, int], tuple[str, bytes, int, str]]]:
    """One element per resize mode whose shard is not finished yet."""
    (split, position), (image, label, name) = element
    for (s, mode), target in targets.items():
        if s == split and position >= target.done:
            yield (split, mode, position), (mode, image, label, name)


def _by_shard(element: Any, targets: dict[tuple[str, str], Target]) -> Any:
    (split, mode, position), result = element
    _, _, label, name = result.example
    shard = targets[(split, mode)].shard_of(position)
    return (split, mode, shard), (position, label, name, result.inference)


def _write(element: Any, targets: dict[tuple[str, str], Target]) -> tuple[str, str, int]:
    """Writes one shard (its rows sorted by position, checked to be exactly the shard's)."""
    (split, mode, shard), rows = element
    rows = sorted(rows, key=lambda r: r[0])
    target = targets[(split, mode)]
    if [r[0] for r in rows] != list(target.rows_of(shard)):
        raise RuntimeError(f"shard {shard} of {split} ({mode}) got rows "
                           f"{[r[0] for r in rows][:5]}..., not {target.rows_of(shard)}")
    keys = list(rows[0][3])
    arrays = {k: np.stack([r[3][k] for r in rows]) for k in keys}
    store_lib.write_shard(target.directory, shard, arrays,
                          np.asarray([r[1] for r in rows], np.int64), [r[2] for r in rows])
    return split, mode, len(rows)


def _targets(builder: Any, splits: Sequence[str], modes: Sequence[str], work: str,
             shard_size: int) -> dict[tuple[str, str], Target]:
    targets = {}
    for split in splits:
        total = int(builder.info.splits[split].num_examples)
        for mode in modes:
            rows = store_lib.ShardedRows(os.path.join(work, split, mode), shard_size)
            targets[(split, mode)] = Target(rows.directory, total, min(rows.done, total),
                                            len(rows.shards), shard_size)
    return targets


def write_shards(dataset: str, data_dir: str | None, splits: Sequence[str], *,
                 recipe: Any, work: str, resize_modes: Sequence[str], batch_size: int,
                 shard_size: int, pipeline_options: Any = None,
                 log: Callable[[str], None] | None = None) -> dict[tuple[str, str], int]:
    """Runs the Beam pipeline over ``splits`` of a built dataset: every image of every
    split, resize mode and view of ``recipe`` (:class:`.beam_inference.ExtractorRecipe`),
    into shards under ``work`` that :class:`ShardedRows` reads as finished (the images of
    shards already finished there are skipped). ``pipeline_options``: Beam
    ``PipelineOptions`` (None: the DirectRunner). Returns the images embedded per
    (split, mode); refuses, in one line, a run that left a shard unwritten."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from illustration_tl.datasets import input_pipeline
    from illustration_tl.features import beam_inference

    if shard_size < 1:
        raise UserError(f"--shard_size={shard_size} must be at least 1")
    builder = input_pipeline.open_builder(dataset, data_dir)
    targets = _targets(builder, splits, resize_modes, work, shard_size)
    todo = {k: t.total - t.done for k, t in targets.items()}
    reads = [r for s in splits if any(todo[(s, m)] for m in resize_modes)
             for r in file_reads(builder, s)]
    if log:
        log(f"features (beam): {sum(todo.values())} images x {len(recipe.views)} views to "
            f"embed, {sum(t.done for t in targets.values())} already in finished shards")
    start = time.perf_counter()
    if reads:
        handler = KeyedModelHandler(beam_inference.ExtractorHandler(recipe, batch_size))
        with beam.Pipeline(options=pipeline_options) as p:
            _ = (p
                 | "Files" >> beam.Create(reads)
                 | "Read" >> beam.FlatMap(_read_records)
                 | "Spread" >> beam.Reshuffle()
                 | "Decode" >> beam.Map(_decoder(os.fspath(builder.data_dir)))
                 | "PerMode" >> beam.FlatMap(_per_mode, targets)
                 | "Embed" >> RunInference(handler)
                 | "ByShard" >> beam.Map(_by_shard, targets)
                 | "Group" >> beam.GroupByKey()
                 | "Write" >> beam.Map(_write, targets))
    for (split, mode), target in targets.items():
        found = store_lib.ShardedRows(target.directory, shard_size).done
        if found != target.total:
            raise UserError(f"features (beam): {split} ({mode}) holds {found} of "
                            f"{target.total} images in {target.directory} after the "
                            "pipeline; rerun to embed the rest")
    if log:
        log(f"features (beam): {sum(todo.values())} images embedded in "
            f"{time.perf_counter() - start:.0f}s")
    return todo
