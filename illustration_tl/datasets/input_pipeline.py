"""The tf.data input pipeline for training and evaluation (paper §5, §6).

The paper feeds VGG19 224x224 images: the clip art is resized to the
network's input (no aspect-preserving crop) and, for Caffe-trained VGG,
converted to BGR with the ImageNet channel means subtracted. Training adds
the usual Caffe-era augmentation: resize a little larger (256 for 224), take
a random 224 crop, and mirror left-right at random.

- :func:`load_split` opens a built `illustrations` split (or any TFDS dataset
  with ``image`` and ``label`` features);
- :func:`resize` is the one resize used for training, evaluation and the
  exported model (``squash`` = plain resize as the paper; ``pad`` = pad to a
  white square first, keeping the aspect ratio);
- :func:`make_dataset` decodes, resizes, augments, applies the backbone's own
  ``preprocess_input``, batches and prefetches, with parallel maps, optional
  caching, a deterministic mode, and per-worker sharding under tf.distribute.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import setting
from illustration_tl.datasets import imagenet
from illustration_tl.errors import UserError
from illustration_tl.models import backbones

RESIZE_MODES = common_settings.RESIZE_MODES
# Caffe-era VGG training: resize to 256, random-crop 224 (paper §5, Simonyan & Zisserman).
AUGMENT_SCALE = 256 / 224
PAD_VALUE = 255.0  # white, as the illustrations' background
# A square image has nothing to pad: its ``pad`` pixels are its ``squash`` pixels.
SAME_WHEN_SQUARE = {"pad": "squash"}


def register_builder() -> None:
    """Imports the `illustrations` builder so ``tfds.builder`` can find it."""
    import illustration_tl.datasets.illustrations.illustrations_dataset_builder  # noqa: F401


def open_builder(dataset: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepared TFDS builder for ``dataset`` (``illustrations/curated``), or UserError."""
    register_builder()
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError, unknown config, unreadable info
        custom = _custom_config_builder(dataset, data_dir)
        if custom is not None:  # a config built with non-preset options (build --name)
            return custom
        raise UserError(f"--dataset={dataset!r} not found under --data_dir={data_dir!r}: "
                        f"{str(e).splitlines()[0]}; build it with illustration-tl build") from None
    if not builder.is_prepared():
        raise UserError(f"--dataset={dataset!r} is not built in {builder.data_dir}; build it "
                        "with `illustration-tl build --config=... --manual_dir=...`")
    return builder


def _custom_config_builder(dataset: str, data_dir: str | None
                           ) -> tfds.core.DatasetBuilder | None:
    """A read-only builder for a config that only exists on disk (custom options), from
    its newest version folder ``<data_dir>/<name>/<config>/<version>``."""
    name, _, config = dataset.partition("/")
    root = os.path.join(os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR), name,
                        config)
    if not config or not os.path.isdir(root):
        return None
    versions = sorted((v for v in os.listdir(root) if
                       os.path.isfile(os.path.join(root, v, "dataset_info.json"))),
                      key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
    if not versions:
        return None
    return tfds.builder_from_directory(os.path.join(root, versions[-1]))


def load_split(dataset: str, split: str, data_dir: str | None = None, *,
               decode_images: bool = True, shuffle_files: bool = False,
               read_config: tfds.ReadConfig | None = None
               ) -> tuple[tf.data.Dataset, tfds.core.DatasetInfo]:
    """One split of a built dataset as a ``tf.data.Dataset`` of feature dicts, and its info.

    ``decode_images=False`` leaves ``image`` as encoded PNG bytes, which
    :func:`make_dataset` decodes in its parallel map (less memory in shuffle
    buffers, faster).
    """
    builder = open_builder(dataset, data_dir)
    base = split.split("[")[0].split("+")[0]
    if base not in builder.info.splits:
        raise UserError(f"--split={split!r}: {dataset} has splits "
                        f"{', '.join(sorted(builder.info.splits))}")
    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files, decoders=decoders,
                            read_config=read_config)
    return ds, builder.info


def class_names(info: tfds.core.DatasetInfo) -> list[str]:
    """The label names, in label order."""
    return list(info.features["label"].names)


def imagenet_indices(info: tfds.core.DatasetInfo) -> list[int]:
    """The ImageNet-1k index of each label (-1 when the class is not an ImageNet class)."""
    metadata = info.metadata or {}
    if "imagenet_indices" in metadata:
        return [int(i) for i in metadata["imagenet_indices"]]
    out = []
    for name in class_names(info):  # other datasets: wnid or class-name labels
        found = imagenet.find(name)
        out.append(found.index if found is not None else -1)
    return out


def pad_to_square(images: tf.Tensor, value: float = PAD_VALUE) -> tf.Tensor:
    """Pads an image (H, W, C) or batch (B, H, W, C) to a centred square with ``value``."""
    shape = tf.shape(images)
    height, width = shape[-3], shape[-2]
    side = tf.maximum(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    paddings = [[top, side - height - top], [left, side - width - left], [0, 0]]
    if images.shape.rank == 4:
        paddings = [[0, 0]] + paddings
    return tf.pad(images, paddings, constant_values=tf.cast(value, images.dtype))


def resize(images: Any, image_size: int, mode: str = "squash") -> tf.Tensor:
    """Float32 images of ``image_size`` x ``image_size``, values still in [0, 255].

    ``squash`` resizes to the square directly, as the paper (and Caffe) did;
    ``pad`` first pads to a white square so the aspect ratio is kept. Bilinear
    with antialiasing, so downscaling 512-px clip art does not alias. Accepts
    one image (H, W, 3) or a batch (B, H, W, 3), uint8 or float.
    """
    if mode not in RESIZE_MODES:
        raise UserError(f"--resize_mode={mode!r}: choose from {', '.join(RESIZE_MODES)}")
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if mode == "pad":
        images = pad_to_square(images)
    return tf.image.resize(images, [image_size, image_size], method="bilinear", antialias=True)


def _decode(image: tf.Tensor) -> tf.Tensor:
    """uint8 (H, W, 3) from a decoded image or encoded bytes."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return image


def _augment(image: tf.Tensor, seeds: tf.Tensor, image_size: int) -> tf.Tensor:
    """Random ``image_size`` crop and left-right mirror (seeded, stateless)."""
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[:2])
    return tf.image.stateless_random_flip_left_right(image, seed=seeds[2:])


def make_dataset(ds: tf.data.Dataset, *, backbone: str, image_size: int, batch_size: int,
                 training: bool, augment: bool = False, seed: int = 0,
                 shuffle_buffer: int = 1024, cache: bool = False, deterministic: bool = False,
                 drop_remainder: bool = False, resize_mode: str = "squash",
                 with_file_names: bool = False, input_context: Any = None,
                 augment_scale: float = AUGMENT_SCALE) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` ready for a ``keras.applications`` backbone.

    Args:
      ds: feature dicts with ``image`` (decoded uint8 or encoded bytes) and
        ``label`` (and ``file_name`` if ``with_file_names``).
      backbone: name for :func:`backbones.get`; its ``preprocess_input`` is applied.
      image_size: output side in pixels (224 for VGG).
      batch_size: the global batch size; with ``input_context`` each input
        pipeline gets ``input_context.get_per_replica_batch_size(batch_size)``.
      training: shuffle (seeded) every epoch.
      augment: with ``training``, resize to ``image_size * augment_scale`` then
        random-crop ``image_size`` and mirror at random (stateless, seeded).
      cache: keep decoded, resized (pre-augmentation) images in memory
        (``4 * 3 * side**2`` bytes each) after the first epoch.
      deterministic: same element order on every run when ``training`` (slower
        parallel maps); evaluation datasets (``training=False``) always keep
        the stored order, so scores line up with labels and file names.
      resize_mode: ``squash`` (paper) or ``pad``, see :func:`resize`.
      with_file_names: also yield the ``file_name`` strings.
      input_context: a ``tf.distribute.InputContext``: keep only this input
        pipeline's shard of the examples.

    Returns:
      ``(images float32 (B, S, S, 3), labels int32 (B,))``, or with
      ``(..., file_names string (B,))``.
    """
    preprocess = backbones.get(backbone).preprocess_input
    if resize_mode not in RESIZE_MODES:
        raise UserError(f"--resize_mode={resize_mode!r}: choose from {', '.join(RESIZE_MODES)}")
    if batch_size <= 0 or image_size <= 0:
        raise UserError(f"batch size and image size must be positive, got {batch_size} "
                        f"and {image_size}")
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    augmenting = training and augment
    base_size = round(image_size * augment_scale) if augmenting else image_size
    autotune = tf.data.AUTOTUNE

    def select(example):
        out = (example["image"], tf.cast(example["label"], tf.int32))
        return out + (example["file_name"],) if with_file_names else out

    def decode_resize(image, *rest):
        return (resize(_decode(image), base_size, resize_mode),) + rest

    ds = ds.map(select, num_parallel_calls=autotune)
    if cache:
        ds = ds.map(decode_resize, num_parallel_calls=autotune).cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augmenting:
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
        ds = tf.data.Dataset.zip((ds, randoms))

        def augment_fn(element, seeds):
            image, *rest = element if cache else decode_resize(*element)
            return (_augment(image, seeds, image_size),) + tuple(rest)

        ds = ds.map(augment_fn, num_parallel_calls=autotune)
    elif not cache:
        ds = ds.map(decode_resize, num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    @tf.autograph.experimental.do_not_convert  # plain Keras ops; nothing to convert
    def preprocess_batch(images, *rest):
        return (preprocess(images),) + tuple(rest)

    ds = ds.map(preprocess_batch, num_parallel_calls=autotune)
    options = tf.data.Options()
    options.deterministic = deterministic or not training
    ds = ds.with_options(options)
    return ds.prefetch(autotune)


def make_modes_dataset(ds: tf.data.Dataset, *, backbone: str, image_size: int,
                       batch_size: int, resize_modes: Sequence[str]) -> tf.data.Dataset:
    """Evaluation batches of every resize mode from one decode of each image:
    ``({mode: images float32 (B, S, S, 3)}, square bool (B,), labels int32 (B,),
    file_names string (B,))``, in the stored order. Each mode's images equal
    :func:`make_dataset`'s (``training=False``) for that mode; ``square`` marks the
    images whose modes in :data:`SAME_WHEN_SQUARE` are the same pixels."""
    for mode in resize_modes:
        if mode not in RESIZE_MODES:
            raise UserError(f"--resize_modes={mode!r}: choose from {', '.join(RESIZE_MODES)}")
    preprocess = backbones.get(backbone).preprocess_input
    autotune = tf.data.AUTOTUNE

    def decode_resize(example):
        image = _decode(example["image"])
        shape = tf.shape(image)
        return ({m: resize(image, image_size, m) for m in resize_modes},
                tf.equal(shape[0], shape[1]), tf.cast(example["label"], tf.int32),
                example["file_name"])

    @tf.autograph.experimental.do_not_convert  # plain Keras ops; nothing to convert
    def preprocess_batch(images, square, labels, names):
        return {m: preprocess(v) for m, v in images.items()}, square, labels, names

    ds = ds.map(decode_resize, num_parallel_calls=autotune).batch(batch_size)
    ds = ds.map(preprocess_batch, num_parallel_calls=autotune)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(autotune)


def synthetic_dataset(num_examples: int, num_classes: int, image_size: int = 32, *,
                      seed: int = 0, vary_size: bool = True, encoded: bool = False
                      ) -> tf.data.Dataset:
    """Learnable fake illustrations with the `illustrations` features, for tests.

    Example ``i`` has label ``i % num_classes``; its image is a white canvas
    (sides between ``image_size // 2`` and ``image_size`` when ``vary_size``)
    with a block of that class's colour plus noise, so tiny models can learn it.
    """
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(seed + 1).integers(0, 256, (num_classes, 3))
    images, labels = [], []
    for i in range(num_examples):
        label = i % num_classes
        h, w = (rng.integers(image_size // 2, image_size + 1, 2) if vary_size
                else (image_size, image_size))
        image = np.full((h, w, 3), 255, np.uint8)
        y, x = rng.integers(0, max(1, h // 2)), rng.integers(0, max(1, w // 2))
        block = colours[label] + rng.normal(0, 12, (h // 2, w // 2, 3))
        image[y:y + h // 2, x:x + w // 2] = np.clip(block, 0, 255).astype(np.uint8)
        images.append(image)
        labels.append(label)

    def generate():
        for i, (image, label) in enumerate(zip(images, labels)):
            yield {"image": tf.io.encode_png(image).numpy() if encoded else image,
                   "label": np.int64(label), "imagenet_index": np.int64(-1),
                   "file_name": f"synthetic/{i:05d}.png"}

    image_spec = (tf.TensorSpec((), tf.string) if encoded
                  else tf.TensorSpec((None, None, 3), tf.uint8))
    return tf.data.Dataset.from_generator(generate, output_signature={
        "image": image_spec, "label": tf.TensorSpec((), tf.int64),
        "imagenet_index": tf.TensorSpec((), tf.int64),
        "file_name": tf.TensorSpec((), tf.string)})


@dataclasses.dataclass
class StatsConfig:
    """The ``stats`` command's settings, one ``illustration-tl stats`` flag each
    (:mod:`config_flags`)."""

    dataset: str = common_settings.dataset("illustrations/curated")
    data_dir: str | None = common_settings.data_dir()
    skipped: bool = setting(False, "Also list the files the build skipped.")


def label_counts(dataset: str, data_dir: str | None = None
                 ) -> tuple[tfds.core.DatasetInfo, dict[str, np.ndarray]]:
    """Images per class in every split (the paper's Table 1), reading labels only."""
    builder = open_builder(dataset, data_dir)
    info = builder.info
    num_classes = info.features["label"].num_classes
    counts = {}
    for split in info.splits:
        ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        labels = ds.map(lambda ex: ex["label"]).batch(4096)
        total = np.zeros(num_classes, np.int64)
        for batch in labels.as_numpy_iterator():
            total += np.bincount(batch, minlength=num_classes)
        counts[split] = total
    return info, counts


def format_counts(info: tfds.core.DatasetInfo, counts: dict[str, np.ndarray],
                  splits: Sequence[str] = ("train", "validation", "test")) -> str:
    """A per-class table of image counts per split, with the ImageNet class and totals."""
    names, indices = class_names(info), imagenet_indices(info)
    splits = [s for s in splits if s in counts] + sorted(set(counts) - set(splits))
    linked = [f"{imagenet.by_index(i).wnid} {imagenet.by_index(i).name}"[:32] if i >= 0 else "-"
              for i in indices]
    width = max([len("class")] + [len(n) for n in names])
    lwidth = max([len("ImageNet class")] + [len(n) for n in linked])
    head = f"{'class':<{width}}  {'ImageNet class':<{lwidth}}  " + "  ".join(
        f"{s:>10}" for s in splits) + f"  {'total':>7}"
    rule = "-" * len(head)
    lines = [head, rule]
    for i, name in enumerate(names):
        row = [int(counts[s][i]) for s in splits]
        lines.append(f"{name:<{width}}  {linked[i]:<{lwidth}}  "
                     + "  ".join(f"{n:>10}" for n in row) + f"  {sum(row):>7}")
    totals = [int(counts[s].sum()) for s in splits]
    grand = max(sum(totals), 1)
    lines += [rule, f"{'total':<{width}}  {'':<{lwidth}}  "
              + "  ".join(f"{n:>10}" for n in totals) + f"  {sum(totals):>7}",
              f"{'share':<{width}}  {'':<{lwidth}}  "
              + "  ".join(f"{100 * n / grand:>9.1f}%" for n in totals)]
    return "\n".join(lines)
