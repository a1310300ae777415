"""bfloat16 against float32 feature extraction, same real images, one run (issue 21).

    flock /tmp/tf.lock python benchmarks/bf16_bench.py \\
        --images=/tmp/sets/emoji --dataset_dir=/tmp/fr/emoji/tfds

Two measurements, both with VGG16's ImageNet conv base (``--weights``) and the
extractor ``fit`` runs (:func:`illustration_tl.features.multilayer.extractor`: every
transfer block pooled twice, plus the ``paper`` block):

* **throughput**: ``--num_images`` real images from ``--images`` (decoded, resized and
  preprocessed once, in float32), at each ``--sizes``: the float32 and the bfloat16
  extractor run over the same tensors in batches of ``--batch_size``, interleaved
  (A, B, A, B, ... ``--repeats`` times each after a warm-up); images/s is the median.
* **top-1**: the built dataset in ``--dataset_dir`` (a ``fit`` run's ``tfds`` folder)
  is embedded once per precision at ``--fit_size`` (``fit``'s resize modes and mirrors)
  by :func:`~illustration_tl.features.multilayer.extract`; each store then goes
  through ``fit``'s search (``--search``), final head and test scoring as
  ``pipelines/fit.py`` runs them. Reported: each precision's test top-1 with its own
  chosen head, float32's chosen configuration refitted on the bfloat16 features (the
  features' effect alone), the test images whose prediction differs, and the per-row
  cosine between the two stores' blocks.

Writes ``--output`` (JSON) and ``--markdown`` (a short table).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRECISIONS = ("float32", "bfloat16")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg")
TRAIN_SPLITS = ("train", "validation")
TEST_SPLIT = "test"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

_IMAGES = flags.DEFINE_string("images", "/tmp/sets/emoji", "Class folders of real images "
                              "(the throughput images).")
_DATASET_DIR = flags.DEFINE_string("dataset_dir", "/tmp/fr/emoji/tfds", "A built dataset's "
                                   "TFDS folder (a finished `fit` run's tfds/); empty: skip "
                                   "the top-1 part.")
_DATASET = flags.DEFINE_string("dataset", "illustrations/curated", "TFDS name in it.")
_WEIGHTS = flags.DEFINE_string("weights", os.environ.get(
    "ILLUSTRATION_TL_VGG16_WEIGHTS", "/work/shared/weights/vgg16_imagenet_notop.weights.h5"),
    "VGG16 ImageNet conv base (no top).")
_N = flags.DEFINE_integer("num_images", 400, "Images per timed pass at 64 px and below.")
_N_LARGE = flags.DEFINE_integer("num_images_large", 96, "Images per timed pass above 64 px "
                                "(a 224-px VGG16 pass costs 12x a 64-px one).")
_SIZES = flags.DEFINE_list("sizes", ["224", "64"], "Input sides of the throughput part.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size (fit's default).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes of each precision, interleaved.")
_FIT_SIZE = flags.DEFINE_integer("fit_size", 64, "Input side of the top-1 part.")
_RESIZE_MODES = flags.DEFINE_list("resize_modes", ["squash", "pad"], "fit's resize modes.")
_SEARCH = flags.DEFINE_string("search", "fast", "fit's --search.")
_OUT = flags.DEFINE_string("output", os.path.join(RESULTS, "bf16.json"), "JSON results.")
_MD = flags.DEFINE_string("markdown", os.path.join(RESULTS, "bf16.md"), "Markdown table.")


def _image_paths(root: str, n: int) -> list[str]:
    """``n`` images spread evenly over the class folders of ``root`` (sorted, so every run
    takes the same ones)."""
    folders = sorted(d for d in glob.glob(os.path.join(root, "*")) if os.path.isdir(d))
    per = [sorted(p for p in glob.glob(os.path.join(f, "*"))
                  if p.lower().endswith(IMAGE_EXTENSIONS)) for f in folders]
    paths: list[str] = []
    while len(paths) < n and any(per):
        for files in per:
            if files and len(paths) < n:
                paths.append(files.pop(0))
    if len(paths) < n:
        raise SystemExit(f"--images={root}: {len(paths)} images, --num_images={n}")
    return paths


def _tensors(paths: list[str], size: int) -> np.ndarray:
    """The images decoded as ``fit`` decodes them, squashed to ``size`` and preprocessed
    for VGG16, in float32."""
    import tensorflow as tf

    from illustration_tl.datasets import ingestion
    from illustration_tl.models import backbones

    pixels = [tf.image.resize(ingestion.load_image(p), (size, size), antialias=True)
              for p in paths]
    x = backbones.get("vgg16").preprocess_input(np.stack([np.asarray(p) for p in pixels]))
    return np.asarray(x, np.float32)


def _predictor(size: int, precision: str) -> Callable[[np.ndarray], float]:
    """A timed pass of ``precision``'s extractor over a whole array, batch by batch."""
    import tensorflow as tf

    from illustration_tl.features import multilayer

    model, _, _ = multilayer.extractor("vgg16", _WEIGHTS.value, size, include_top="no",
                                       precision=precision)
    predict = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def run(x: np.ndarray) -> float:
        start = time.perf_counter()
        for i in range(0, len(x), _BATCH.value):
            outs = predict(tf.constant(x[i:i + _BATCH.value]))
            [np.asarray(o) for o in outs]
        return time.perf_counter() - start

    return run


def throughput(size: int) -> dict[str, Any]:
    """images/s of each precision at ``size``, interleaved, and the ratio of medians."""
    n = _N.value if size <= 64 else _N_LARGE.value
    x = _tensors(_image_paths(_IMAGES.value, n), size)
    runs = {p: _predictor(size, p) for p in PRECISIONS}
    tail = len(x) - len(x) % _BATCH.value
    for p in PRECISIONS:   # warm-up: traces the graphs of a full and of the last batch
        runs[p](x[:_BATCH.value])
        runs[p](x[tail:])
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(_REPEATS.value):
        for p in PRECISIONS:
            seconds[p].append(runs[p](x))
    rate = {p: n / float(np.median(s)) for p, s in seconds.items()}
    out = {"image_size": size, "num_images": n, "batch_size": _BATCH.value,
           "seconds": seconds, "images_per_second": {p: round(r, 2) for p, r in rate.items()},
           "ratio_bf16_over_f32": round(rate["bfloat16"] / rate["float32"], 3)}
    print(json.dumps(out), flush=True)
    return out


def _test_top1(store: Any, config: Any, oof: np.ndarray | None) -> tuple[float, np.ndarray]:
    """``fit``'s final head for ``config`` on the training splits, scored on the test split
    as ``pipelines/fit.py``'s evaluate stage scores it; (top-1, predictions)."""
    from illustration_tl.heads import head as head_lib

    h = head_lib.fit(store, config, TRAIN_SPLITS, oof)
    orig = head_lib.store_blocks(store, [TEST_SPLIT], config.resize, "orig", config.blocks)
    flip = (head_lib.store_blocks(store, [TEST_SPLIT], config.resize, "flip", config.blocks)
            if config.flip_test else None)
    pred = np.argmax(h.probabilities(orig, flip), axis=1)
    return float(np.mean(pred == store.labels[TEST_SPLIT])), pred


def _cosines(a: Any, b: Any) -> dict[str, float]:
    """Per-row cosine of every array of two stores: min and mean over all rows."""
    lows, means = [], []
    for split, arrays in a.arrays.items():
        for name, x in arrays.items():
            x, y = np.asarray(x, np.float64), np.asarray(b.arrays[split][name], np.float64)
            norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
            cos = (x * y).sum(axis=1) / np.where(norms > 0, norms, 1.0)
            lows.append(cos.min())
            means.append(cos.mean())
    return {"min": round(float(min(lows)), 5), "mean": round(float(np.mean(means)), 5)}


def top1() -> dict[str, Any]:
    """Extraction time, search, final head and test top-1 per precision on one dataset."""
    from illustration_tl.features import multilayer
    from illustration_tl.heads import search

    stores, out = {}, {"dataset_dir": _DATASET_DIR.value, "image_size": _FIT_SIZE.value,
                       "resize_modes": list(_RESIZE_MODES.value), "search": _SEARCH.value}
    with tempfile.TemporaryDirectory() as tmp:
        for p in PRECISIONS:
            start = time.perf_counter()
            stores[p] = multilayer.extract(
                _DATASET.value, _DATASET_DIR.value, list(TRAIN_SPLITS) + [TEST_SPLIT],
                backbone="vgg16", weights=_WEIGHTS.value, out=os.path.join(tmp, p),
                work=os.path.join(tmp, f"work-{p}"), image_size=_FIT_SIZE.value,
                resize_modes=tuple(_RESIZE_MODES.value), flip=True,
                batch_size=_BATCH.value, precision=p, log=print)
            out[f"extract_seconds_{p}"] = round(time.perf_counter() - start, 1)
            stores[p].arrays = {s: {k: np.asarray(v) for k, v in a.items()}
                                for s, a in stores[p].arrays.items()}   # off the temp dir
    out["extract_ratio_f32_over_bf16_seconds"] = round(
        out["extract_seconds_float32"] / out["extract_seconds_bfloat16"], 3)
    out["feature_cosine"] = _cosines(stores["float32"], stores["bfloat16"])
    best, preds = {}, {}
    for p in PRECISIONS:
        start = time.perf_counter()
        results = search.run(stores[p], _SEARCH.value, splits=TRAIN_SPLITS, seed=0, n_jobs=2)
        best[p] = results[0]
        out[f"search_seconds_{p}"] = round(time.perf_counter() - start, 1)
        out[f"cv_top1_{p}"] = round(best[p].top1, 5)
        out[f"chosen_{p}"] = best[p].config.label()
        acc, preds[p] = _test_top1(stores[p], best[p].config, best[p].oof)
        out[f"test_top1_{p}"] = round(acc, 5)
        print(p, out[f"chosen_{p}"], out[f"test_top1_{p}"], flush=True)
    same = search.run(stores["bfloat16"], _SEARCH.value, splits=TRAIN_SPLITS, seed=0,
                      n_jobs=2, configs=[best["float32"].config])[0]
    acc, refit = _test_top1(stores["bfloat16"], best["float32"].config, same.oof)
    out["test_top1_bfloat16_with_float32_config"] = round(acc, 5)
    out["num_test"] = int(len(stores["float32"].labels[TEST_SPLIT]))
    out["test_predictions_differ"] = int(np.sum(preds["float32"] != preds["bfloat16"]))
    out["test_predictions_differ_same_config"] = int(np.sum(preds["float32"] != refit))
    out["top1_difference_points"] = round(
        100 * (out["test_top1_bfloat16"] - out["test_top1_float32"]), 2)
    out["top1_difference_points_same_config"] = round(
        100 * (out["test_top1_bfloat16_with_float32_config"] - out["test_top1_float32"]), 2)
    return out


def _markdown(doc: dict[str, Any]) -> str:
    lines = ["# bfloat16 vs float32 feature extraction (`benchmarks/bf16_bench.py`)", "",
             f"{doc['machine']}; VGG16 ImageNet conv base, `fit`'s extractor (3 transfer "
             f"blocks x avg/max + paper block), batch {_BATCH.value}; one run, precisions "
             "interleaved.", "",
             "| input | images | float32 img/s | bfloat16 img/s | bf16 / f32 |",
             "|---|---|---|---|---|"]
    for t in doc["throughput"]:
        r = t["images_per_second"]
        lines.append(f"| {t['image_size']} px | {t['num_images']} x {_REPEATS.value} | "
                     f"{r['float32']} | {r['bfloat16']} | **{t['ratio_bf16_over_f32']}** |")
    f = doc.get("top1")
    if f:
        lines += ["", f"Top-1 on `{f['dataset_dir']}` ({f['num_test']} test images, "
                  f"{f['image_size']} px, resize {', '.join(f['resize_modes'])}, mirrors, "
                  f"`--search={f['search']}`):", "",
                  "| | float32 | bfloat16 |", "|---|---|---|",
                  f"| extraction (s, whole set) | {f['extract_seconds_float32']} | "
                  f"{f['extract_seconds_bfloat16']} |",
                  f"| CV top-1 | {100 * f['cv_top1_float32']:.2f} | "
                  f"{100 * f['cv_top1_bfloat16']:.2f} |",
                  f"| test top-1, own search | {100 * f['test_top1_float32']:.2f} | "
                  f"{100 * f['test_top1_bfloat16']:.2f} |",
                  f"| test top-1, float32's chosen config | {100 * f['test_top1_float32']:.2f}"
                  f" | {100 * f['test_top1_bfloat16_with_float32_config']:.2f} |", "",
                  f"Chosen: float32 `{f['chosen_float32']}`; bfloat16 "
                  f"`{f['chosen_bfloat16']}`. Test predictions that differ: "
                  f"{f['test_predictions_differ']} (own search), "
                  f"{f['test_predictions_differ_same_config']} (same config). Per-row cosine "
                  f"of the raw blocks, bf16 vs f32: min {f['feature_cosine']['min']}, mean "
                  f"{f['feature_cosine']['mean']}."]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    from illustration_tl.models import precision

    flags_ = precision.cpu_flags()
    bf16 = sorted(flags_ & precision.CPU_BF16_FLAGS)
    return (f"{os.cpu_count()} CPU cores, no GPU" if not precision.gpu_capabilities()
            else "GPU") + f" (CPU bf16 flags: {', '.join(bf16) or 'none'})"


def main(argv: list[str]) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    doc: dict[str, Any] = {"machine": _machine(), "weights": _WEIGHTS.value,
                           "repeats": _REPEATS.value, "throughput": []}
    for size in (int(s) for s in _SIZES.value):
        doc["throughput"].append(throughput(size))
    if _DATASET_DIR.value:
        doc["top1"] = top1()
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    with open(_MD.value, "w", encoding="utf-8") as fh:
        fh.write(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    app.run(main)
