"""GPU check on Keras 3's JAX backend: the paper's recipe at 224 px, fast.

Runs where TensorFlow is not available (a JAX + CUDA host): the layer surgery
and the learning-rate-multiplier optimizer are pure Keras, so the paper's
adaptive layer-based optimization (§7: re-initialized layers 1-10 and 17-19 at
lr 1e-2, layers 11-16 at 1e-4, SGD momentum 0.9, L2 5e-4, dropout 0.5) trains
through ``model.fit`` here. Measures, in one process:

1. VGG19 training images/s at 224 px in float32 and bfloat16, and the MFU
   (VGG19 is about 19.6 GFLOP per 224-px image forward; training ~3x that);
2. fc2 embedding throughput (``predict`` on the embedding model);
3. a few hundred training steps on the bundled demo clip art at 224 px,
   showing the training loss fall.

Usage (see benchmarks/README.md): ``KERAS_BACKEND=jax python benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VGG19_GFLOP_FORWARD_224 = 19.6
# Dense peak of one H200 (SXM): bf16 tensor cores 989 TFLOP/s, tf32 495 TFLOP/s.
PEAK_TFLOPS = {"bfloat16": 989.0, "float32": 495.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vgg19")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--num_classes", type=int, default=826, help="paper's noisy set: 826")
    p.add_argument("--bench_steps", type=int, default=30)
    p.add_argument("--warmup_steps", type=int, default=5)
    p.add_argument("--loss_steps", type=int, default=300)
    p.add_argument("--precisions", default="float32,bfloat16")
    p.add_argument("--demo_dir", default="illustration_tl/demo/curated")
    p.add_argument("--output", default=os.environ.get("OUT", "gpu_check_out"))
    return p.parse_args(argv)


def paper_model(args: argparse.Namespace, num_classes: int):
    """VGG19 rebuilt with the paper's recipe and its multiplier optimizer."""
    import keras

    from illustration_tl.models import layer_surgery
    from illustration_tl.training import lr_multipliers

    rebuilt = layer_surgery.rebuild(args.backbone, num_classes, weights=None,
                                    image_size=args.image_size, dropout=0.5, seed=0)
    model = rebuilt.model
    rules = lr_multipliers.parse_rules("1-10,17-19=1;11-16=0.01")
    multipliers = lr_multipliers.resolve(model, rules)
    optimizer = lr_multipliers.create("sgd", 1e-2, multipliers, momentum=0.9,
                                      weight_decay=5e-4)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"], jit_compile=True)
    return model


def train_throughput(args: argparse.Namespace, precision: str) -> dict:
    """Images/s of ``train_on_batch`` on device-resident synthetic batches."""
    import jax
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16"
                                            else "float32")
    model = paper_model(args, args.num_classes)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.uniform(-120, 130, (args.batch_size, args.image_size,
                                               args.image_size, 3)).astype(np.float32))
    y = jax.device_put(rng.integers(0, args.num_classes, args.batch_size).astype(np.int32))
    for _ in range(args.warmup_steps):
        loss = model.train_on_batch(x, y, return_dict=True)
    jax.block_until_ready(model.trainable_variables[0].value)
    start = time.perf_counter()
    for _ in range(args.bench_steps):
        loss = model.train_on_batch(x, y, return_dict=True)
    jax.block_until_ready(model.trainable_variables[0].value)
    seconds = time.perf_counter() - start
    images_s = args.bench_steps * args.batch_size / seconds
    flops = 3 * VGG19_GFLOP_FORWARD_224 * 1e9 * (args.image_size / 224) ** 2
    result = {"precision": precision, "images_per_s": images_s,
              "step_ms": 1000 * seconds / args.bench_steps,
              "achieved_tflops": images_s * flops / 1e12,
              "mfu_vs_bf16_peak": images_s * flops / (PEAK_TFLOPS["bfloat16"] * 1e12),
              "mfu_vs_own_peak": images_s * flops / (PEAK_TFLOPS[precision] * 1e12),
              "last_loss": float(loss["loss"])}
    embed = embedding_throughput(args, model)
    result.update(embed)
    keras.mixed_precision.set_global_policy("float32")
    return result


def embedding_throughput(args: argparse.Namespace, model) -> dict:
    """fc2 embeddings per second (paper §6.1's SVM features)."""
    import jax

    from illustration_tl.models import layer_surgery

    embedder = layer_surgery.embedding_model(model, "fc2")
    batch = 4 * args.batch_size
    x = np.random.default_rng(1).uniform(-120, 130, (batch, args.image_size, args.image_size,
                                                     3)).astype(np.float32)
    embedder.predict_on_batch(x)
    start = time.perf_counter()
    n = 5
    for _ in range(n):
        out = embedder.predict_on_batch(x)
    jax.block_until_ready(out)
    return {"embed_images_per_s": n * batch / (time.perf_counter() - start),
            "embed_dim": int(out.shape[-1])}


def load_demo(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The bundled demo clip art, decoded like the datasets (alpha on white)."""
    from PIL import Image

    from illustration_tl.models import backbones

    classes = sorted(d for d in os.listdir(args.demo_dir)
                     if os.path.isdir(os.path.join(args.demo_dir, d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted(glob.glob(os.path.join(args.demo_dir, name, "*"))):
            im = Image.open(path)
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im).convert("RGB")
            im = im.resize((args.image_size, args.image_size), Image.BILINEAR)
            images.append(np.asarray(im, np.float32))
            labels.append(label)
    x = backbones.get(args.backbone).preprocess_input(np.stack(images))
    return np.asarray(x, np.float32), np.asarray(labels, np.int32), classes


def loss_curve(args: argparse.Namespace) -> dict:
    """A few hundred bfloat16 steps on the demo clip art: the loss must fall."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x, y, classes = load_demo(args)
    model = paper_model(args, len(classes))
    rng = np.random.default_rng(0)
    curve = []
    batch = min(args.batch_size, len(x))
    for step in range(args.loss_steps):
        idx = rng.choice(len(x), batch, replace=False)
        xb = x[idx]
        if rng.random() < 0.5:
            xb = xb[:, :, ::-1]
        out = model.train_on_batch(xb, y[idx], return_dict=True)
        if step % 25 == 0 or step == args.loss_steps - 1:
            curve.append((step, float(out["loss"]), float(out["accuracy"])))
            print(f"  step {step:4d}  loss {out['loss']:.4f}  acc {out['accuracy']:.3f}",
                  flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return {"demo_images": int(len(x)), "demo_classes": len(classes), "curve": curve,
            "loss_first": curve[0][1], "loss_last": curve[-1][1]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import jax
    import keras

    assert keras.backend.backend() == "jax", "set KERAS_BACKEND=jax"
    os.makedirs(args.output, exist_ok=True)
    report = {"devices": [str(d) for d in jax.devices()], "keras": keras.__version__,
              "jax": jax.__version__, "args": vars(args), "throughput": []}
    print(f"devices: {report['devices']}", flush=True)
    for precision in args.precisions.split(","):
        r = train_throughput(args, precision)
        report["throughput"].append(r)
        print(f"{precision:9s} train {r['images_per_s']:8.1f} img/s  step {r['step_ms']:.1f} ms "
              f"{r['achieved_tflops']:.1f} TFLOP/s  MFU {100 * r['mfu_vs_bf16_peak']:.1f}% of "
              f"bf16 peak ({100 * r['mfu_vs_own_peak']:.1f}% of {precision} peak)  "
              f"embed {r['embed_images_per_s']:.0f} img/s", flush=True)
    if args.loss_steps:
        print("loss on the demo clip art:", flush=True)
        report["loss"] = loss_curve(args)
    with open(os.path.join(args.output, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2)
    ok = not args.loss_steps or report["loss"]["loss_last"] < report["loss"]["loss_first"]
    print("loss fell" if ok else "LOSS DID NOT FALL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
