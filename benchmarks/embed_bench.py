"""Embedding extraction throughput against a bare ``model.predict`` (paper §6.1 stage).

    python benchmarks/embed_bench.py --image_size=112 --num_images=256 --batch_size=32

Both run the same embedding model (VGG16 conv base + global average pool, or
``--backbone``/``--weights``/``--layer``) on the same preprocessed float
tensors, in one process, alternating ``--repeats`` times after a warm-up:

* bare: ``model.predict(x, batch_size=B)``, output discarded;
* embed: ``embeddings.write`` over a ``tf.data`` dataset of the same tensors
  (with labels and file names), writing sharded ``.npz`` files to a temporary
  folder, as ``illustration-tl embed`` does.

Prints images/s of each and the ratio embed/bare (goal: >= 0.95).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_BACKBONE = flags.DEFINE_string("backbone", "vgg16", "keras.applications backbone.")
_WEIGHTS = flags.DEFINE_string("weights", "none", "'none', 'imagenet' or a weights file "
                               "(throughput does not depend on the values).")
_LAYER = flags.DEFINE_string("layer", None, "Embedding layer (default as `embed`).")
_SIZE = flags.DEFINE_integer("image_size", 112, "Input side in pixels.")
_N = flags.DEFINE_integer("num_images", 256, "Images per timed pass.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size of both paths.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes of each path (alternating).")
_SHARD = flags.DEFINE_integer("shard_size", 4096, "Embeddings per shard file.")
_OUT = flags.DEFINE_string("output", None, "Optional JSON file for the numbers.")


def main(argv) -> None:
    del argv
    import tensorflow as tf

    from illustration_tl.features import embeddings

    source = embeddings.embedding_source(backbone=_BACKBONE.value, weights=_WEIGHTS.value,
                                         image_size=_SIZE.value, layer=_LAYER.value)
    model = source.model
    rng = np.random.default_rng(0)
    x = rng.uniform(-120, 130, (_N.value, _SIZE.value, _SIZE.value, 3)).astype(np.float32)
    labels = (np.arange(_N.value) % 10).astype(np.int32)
    names = np.array([f"class{i % 10}/image{i:06d}.png" for i in range(_N.value)])
    ds = tf.data.Dataset.from_tensor_slices((x, labels, names)).batch(_BATCH.value).prefetch(2)
    meta = dict(source.metadata(), class_names=[f"class{i}" for i in range(10)],
                model_fingerprint="benchmark")

    def bare() -> float:
        start = time.perf_counter()
        model.predict(x, batch_size=_BATCH.value, verbose=0)
        return time.perf_counter() - start

    def embed(tmp: str) -> float:
        start = time.perf_counter()
        embeddings.write(model, ds, os.path.join(tmp, "split"), meta, shard_size=_SHARD.value,
                         total=_N.value, overwrite=True, progress_interval=1e9)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        bare()  # warm-up: traces and compiles both paths
        embed(tmp)
        times: dict[str, list[float]] = {"bare": [], "embed": []}
        for _ in range(_REPEATS.value):
            times["bare"].append(bare())
            times["embed"].append(embed(tmp))
    rate = {k: _N.value / float(np.median(v)) for k, v in times.items()}
    ratio = rate["embed"] / rate["bare"]
    print(f"model: {source.backbone} {source.layer} at {_SIZE.value}px, batch {_BATCH.value}, "
          f"{_N.value} images x {_REPEATS.value} passes")
    print(f"bare model.predict: {rate['bare']:.1f} images/s  (passes {times['bare']})")
    print(f"embeddings.write:   {rate['embed']:.1f} images/s  (passes {times['embed']})")
    print(f"ratio embed/bare: {ratio:.3f} (goal >= 0.95)")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"bare_images_per_s": rate["bare"], "embed_images_per_s": rate["embed"],
                       "ratio": ratio, "times": times}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
