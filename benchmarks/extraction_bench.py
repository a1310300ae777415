"""``fit``'s feature extraction: both resize modes in one pass (one decode, square images'
pad rows copied) against one pass per mode (every image decoded and run per mode), on
real sets, side by side in one process (issue 21's pass-saving plan).

For each built dataset (a ``fit`` run's TFDS folder), the same extractor (VGG16 conv
base, ImageNet weights from ``$ILLUSTRATION_TL_VGG16_WEIGHTS``, ``fit``'s precision
``auto``) embeds the training split into fresh shards both ways, A B A B ...; the
ratio is taken pair by pair. The rows must agree: for every block and view, the largest
absolute difference between the two ways is reported (0 for the copied square rows
when the backbone is deterministic; bfloat16 batches of another size may differ in the
last bits).

    python benchmarks/extraction_bench.py --set=emoji:/tmp/fr/emoji/tfds \\
        --set=openclipart80:/tmp/fr/openclipart80/tfds --image_size=64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(__file__), "results", "extraction.json")
MODES = ("squash", "pad")


def _rows(parts) -> dict[str, np.ndarray]:
    got = list(parts.read())
    return {k: np.concatenate([p[0][k] for p in got]) for k in got[0][0]}


def _once(model, blocks, ds, source, total, joint: bool, batch_size: int
          ) -> tuple[float, dict[str, dict[str, np.ndarray]]]:
    from illustration_tl.features import extraction
    from illustration_tl.features import store as store_lib

    work = tempfile.mkdtemp(prefix="xbench-")
    try:
        rows = {m: store_lib.ShardedRows(os.path.join(work, m), 1024) for m in MODES}
        t0 = time.perf_counter()
        groups = [list(MODES)] if joint else [[m] for m in MODES]
        for group in groups:
            extraction.extract_split(model, blocks, ["orig", "flip"], ds, source, total,
                                     {m: rows[m] for m in group}, batch_size, "x", None)
        seconds = time.perf_counter() - t0
        return seconds, {m: _rows(rows[m]) for m in MODES}
    finally:
        shutil.rmtree(work)


def bench(name: str, data_dir: str, image_size: int, repeats: int, batch_size: int) -> dict:
    import tensorflow as tf

    from illustration_tl.datasets import input_pipeline
    from illustration_tl.features import multilayer
    from illustration_tl.models import precision

    weights = os.environ["ILLUSTRATION_TL_VGG16_WEIGHTS"]
    resolved = precision.resolve("auto")
    model, blocks, source = multilayer.extractor("vgg16", weights, image_size,
                                                 include_top="no", precision=resolved)
    ds, info = input_pipeline.load_split("illustrations/curated", "train", data_dir,
                                         decode_images=False)
    total = info.splits["train"].num_examples
    square = sum(int(tf.equal(*tf.shape(tf.io.decode_image(e["image"], channels=3,
                                                           expand_animations=False))[:2]))
                 for e in ds)
    _once(model, blocks, ds.take(2 * batch_size), source, 2 * batch_size, True, batch_size)
    pairs, diff = [], 0.0
    for _ in range(repeats):
        ta, ra = _once(model, blocks, ds, source, total, True, batch_size)
        tb, rb = _once(model, blocks, ds, source, total, False, batch_size)
        pairs.append((ta, tb))
        diff = max(diff, max(float(np.abs(ra[m][k] - rb[m][k]).max())
                             for m in MODES for k in ra[m]))
    ratio = float(np.median([tb / ta for ta, tb in pairs]))
    return {"set": name, "images": total, "square_images": square, "image_size": image_size,
            "precision": resolved, "one_pass_seconds": [round(a, 1) for a, _ in pairs],
            "per_mode_seconds": [round(b, 1) for _, b in pairs],
            "speedup_median": round(ratio, 2), "max_abs_row_difference": diff}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--set", action="append", required=True, help="NAME:TFDS_DATA_DIR")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    a = p.parse_args()
    rows = []
    for spec in a.set:
        name, data_dir = spec.split(":", 1)
        rows.append(bench(name, data_dir, a.image_size, a.repeats, a.batch_size))
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump({"setup": __doc__.strip(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
