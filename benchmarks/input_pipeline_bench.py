"""Images/s the tf.data input pipeline delivers, next to VGG19's forward images/s.

    python benchmarks/input_pipeline_bench.py --dataset=illustrations/noisy --data_dir=D

Both at 224 px, in one process on the same machine, one after the other:

1. the training pipeline (:func:`input_pipeline.make_dataset` with augmentation:
   PNG decode, resize to 256, random 224 crop, mirror, VGG caffe preprocessing,
   batching, prefetch) reading a built `illustrations` split, repeated;
2. VGG19 (``weights=None``: same compute as ImageNet weights) forward passes on
   one fixed batch, compiled with ``tf.function``.

The ratio pipeline/forward says whether input feeding can keep the network
busy (> 1: it can). Without ``--data_dir`` the curated dummy fixture is built
into a temporary folder first (tiny: the pipeline loops over 27 images).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_DATASET = flags.DEFINE_string("dataset", "illustrations/curated", "Built TFDS dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder; none = build the "
                                "curated dummy fixture into a temporary folder.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to read.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Input side in pixels.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Batch size for both measurements.")
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 40, "Timed pipeline batches.")
_MODEL_BATCHES = flags.DEFINE_integer("model_batches", 4, "Timed VGG19 forward batches.")
_OUT = flags.DEFINE_string("output", None, "Optional JSON file for the numbers.")


def pipeline_images_per_second(dataset: str, data_dir: str, split: str, image_size: int,
                               batch_size: int, batches: int) -> float:
    """Training-pipeline throughput after one warm-up batch."""
    from illustration_tl.datasets import input_pipeline

    ds, _ = input_pipeline.load_split(dataset, split, data_dir, decode_images=False)
    ds = input_pipeline.make_dataset(ds.repeat(), backbone="vgg19", image_size=image_size,
                                     batch_size=batch_size, training=True, augment=True,
                                     shuffle_buffer=256)
    it = iter(ds)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(it)
    images.numpy()
    return batches * batch_size / (time.perf_counter() - start)


def vgg19_images_per_second(image_size: int, batch_size: int, batches: int) -> float:
    """VGG19 (random weights) inference throughput after one warm-up batch."""
    import keras
    import tensorflow as tf

    model = keras.applications.VGG19(weights=None, input_shape=(image_size, image_size, 3))
    forward = tf.function(lambda x: model(x, training=False), jit_compile=False)
    x = tf.random.uniform((batch_size, image_size, image_size, 3), -120, 150)
    forward(x).numpy()
    start = time.perf_counter()
    for _ in range(batches):
        out = forward(x)
    out.numpy()
    return batches * batch_size / (time.perf_counter() - start)


def main(argv) -> None:
    data_dir = _DATA_DIR.value
    if data_dir is None:
        from illustration_tl.datasets.illustrations import (
            illustrations_dataset_builder as builder_lib,
        )

        data_dir = tempfile.mkdtemp(prefix="input-pipeline-bench-")
        fixture = os.path.join(os.path.dirname(builder_lib.__file__), "dummy_data",
                               "curated_flat")
        builder_lib.build("curated", fixture, data_dir)
    pipe = pipeline_images_per_second(_DATASET.value, data_dir, _SPLIT.value, _SIZE.value,
                                      _BATCH.value, _PIPELINE_BATCHES.value)
    vgg = vgg19_images_per_second(_SIZE.value, _BATCH.value, _MODEL_BATCHES.value)
    numbers = {"dataset": _DATASET.value, "split": _SPLIT.value, "image_size": _SIZE.value,
               "batch_size": _BATCH.value, "pipeline_images_per_s": round(pipe, 1),
               "vgg19_forward_images_per_s": round(vgg, 1),
               "pipeline_over_forward": round(pipe / vgg, 2), "cpus": os.cpu_count()}
    print(f"tf.data pipeline (decode, resize 256, crop 224, flip, caffe): {pipe:8.1f} images/s")
    print(f"VGG19 forward at {_SIZE.value} (weights=None):                    "
          f"{vgg:8.1f} images/s")
    print(f"ratio pipeline / forward: {pipe / vgg:.2f}")
    if _OUT.value:
        with open(_OUT.value + ".tmp", "w", encoding="utf-8") as f:
            json.dump(numbers, f, indent=2)
        os.replace(_OUT.value + ".tmp", _OUT.value)


if __name__ == "__main__":
    app.run(main)
