"""The data of a training run (paper §7: trained on the noisy set, scored on the curated one).

:class:`TrainData` is what both training loops consume: per epoch a batched,
shuffled ``tf.data`` dataset of ``(images, labels)``, plus evaluation
datasets. :func:`tfds_data` builds it from TFDS splits through
:mod:`input_pipeline`; :func:`batched_input` from any unbatched dataset
(tests, benchmarks). The paper trains on the noisy set and reports the
curated test set; :func:`label_map` lets a model trained on the noisy classes
be scored on the curated classes it knows.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable

from illustration_tl.errors import UserError
from illustration_tl.training.config import TrainDataConfig


@dataclasses.dataclass
class TrainData:
    """The data of one training run.

    ``train(epoch, input_context)`` returns that epoch's batched, shuffled
    ``(images, labels)`` dataset: global batch ``batch_size`` when
    ``input_context`` is ``None``, else ``input_context``'s per-replica batch of
    the shard ``input_context`` names (multi-worker). Seeding the shuffle with
    the epoch keeps the data order reproducible across resumes.
    ``validation()`` and ``extra_eval[name]()`` return batched ``(images,
    labels)`` datasets; labels < 0 (classes the model does not know) are left
    out of the metrics.
    """

    class_names: list[str]
    train: Callable[[int, Any], Any]
    steps_per_epoch: int
    validation: Callable[[], Any] | None = None
    extra_eval: dict[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)


def batched_input(examples: Any, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                  shuffle_buffer: int = 1024) -> Callable[[int, Any], Any]:
    """A :attr:`TrainData.train` factory over unbatched ``(image, label)`` examples.

    Epoch ``e`` is shuffled with seed ``seed + e`` (fixed order per epoch) and
    batched with ``drop_remainder``; under multi-worker training each input
    pipeline reads its shard at its per-replica batch size.
    """
    import tensorflow as tf

    def make(epoch: int, input_context: Any = None) -> Any:
        ds = examples
        per_batch = batch_size
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            per_batch = input_context.get_per_replica_batch_size(batch_size)
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed + epoch, reshuffle_each_iteration=False)
        return ds.batch(per_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return make


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped)."""
    steps = num_examples // batch_size
    if steps < 1:
        raise UserError(f"--batch_size={batch_size} is larger than the {num_examples} "
                        "training examples")
    return steps


def label_map(train_names: list[str], train_imagenet: list[int], eval_names: list[str],
              eval_imagenet: list[int]) -> list[int]:
    """For each label of an evaluation set, the training label of the same class, or -1.

    Classes match by name (wnid or folder name) or, failing that, by ImageNet
    index (e.g. the curated set's ``airplane`` folder and the noisy set's wnid
    ``n02690373``), so a model trained on the noisy set can be scored on the
    curated test set's classes it knows.
    """
    by_name = {n: i for i, n in enumerate(train_names)}
    by_index = {x: i for i, x in enumerate(train_imagenet) if x >= 0}
    out = []
    for name, index in zip(eval_names, eval_imagenet):
        out.append(by_name.get(name, by_index.get(index, -1) if index >= 0 else -1))
    return out


def tfds_data(dataset: str, data_dir: str | None, *, backbone: str, image_size: int,
              batch_size: int, seed: int = 0, train_split: str = "train",
              validation_split: str | None = "validation", eval_dataset: str | None = None,
              eval_split: str = "test", eval_data_dir: str | None = None,
              augment: bool = False,
              shuffle_buffer: int = TrainDataConfig.shuffle_buffer, cache: bool = False,
              deterministic: bool = False, resize_mode: str = "squash",
              out: Any = None) -> TrainData:
    """:class:`TrainData` over built TFDS splits, through :mod:`input_pipeline`.

    Epoch ``e`` shuffles (and augments) with seed ``seed + e``. ``cache`` keeps
    the encoded training images in memory after the first epoch (decoding
    still happens every epoch). The extra evaluation set, if any, is scored on
    the classes it shares with the training set (see :func:`label_map`).
    """
    import tensorflow as tf

    from illustration_tl.datasets import input_pipeline

    out = out or sys.stdout
    raw_train, info = input_pipeline.load_split(dataset, train_split, data_dir,
                                                decode_images=False)
    names = input_pipeline.class_names(info)
    num_train = int(info.splits[train_split].num_examples)
    if cache:
        raw_train = raw_train.cache()

    def common(training: bool) -> dict[str, Any]:
        return dict(backbone=backbone, image_size=image_size, batch_size=batch_size,
                    training=training, deterministic=deterministic, resize_mode=resize_mode)

    def train_fn(epoch: int, input_context: Any = None) -> Any:
        return input_pipeline.make_dataset(
            raw_train, **common(True), augment=augment, seed=seed + epoch,
            shuffle_buffer=shuffle_buffer, drop_remainder=True, input_context=input_context)

    validation = None
    if validation_split:
        raw_val, _ = input_pipeline.load_split(dataset, validation_split, data_dir,
                                               decode_images=False)
        validation = lambda: input_pipeline.make_dataset(raw_val, **common(False))  # noqa: E731
    extra: dict[str, Callable[[], Any]] = {}
    if eval_dataset:
        raw_eval, eval_info = input_pipeline.load_split(
            eval_dataset, eval_split, eval_data_dir or data_dir, decode_images=False)
        eval_names = input_pipeline.class_names(eval_info)
        mapping = label_map(names, input_pipeline.imagenet_indices(info), eval_names,
                            input_pipeline.imagenet_indices(eval_info))
        known = [n for n, m in zip(eval_names, mapping) if m >= 0]
        if not known:
            raise UserError(f"--eval_dataset={eval_dataset}: none of its {len(eval_names)} "
                            f"classes is among the {len(names)} classes of {dataset}")
        print(f"{eval_dataset} {eval_split}: scoring the {len(known)} of {len(eval_names)} "
              f"classes known to the model ({', '.join(known[:8])}"
              f"{', ...' if len(known) > 8 else ''})", file=out, flush=True)
        table = tf.constant(mapping, tf.int32)

        def eval_fn() -> Any:
            ds = input_pipeline.make_dataset(raw_eval, **common(False))
            return ds.map(lambda x, y: (x, tf.gather(table, y)))

        extra[_summary_name(eval_dataset, eval_split)] = eval_fn
    return TrainData(class_names=names, train=train_fn,
                     steps_per_epoch=steps_per_epoch(num_train, batch_size),
                     validation=validation, extra_eval=extra)


def _summary_name(dataset: str, split: str) -> str:
    """``illustrations/curated`` + ``test`` -> ``curated_test``."""
    return f"{dataset.split('/')[-1]}_{split}".replace("[", "_").replace("]", "").replace(
        ":", "_").replace("%", "pct")
