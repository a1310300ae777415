"""Training speed of the paper §7 custom step (LR multipliers) against plain ``model.fit``.

Both train the same rebuilt model on the same synthetic batches, in one
process, alternating measured rounds so machine load hits both alike:

* ``custom``: :mod:`illustration_tl.training.steps`' ``tf.distribute`` step with the
  paper's recipe (per-variable LR multipliers, L2 added to the gradient,
  SGD momentum 0.9);
* ``fit``: Keras ``model.fit`` with one learning rate (SGD momentum 0.9);
* ``fit_wd``: the same with Keras's own (decoupled) ``weight_decay=5e-4``.

Reports images/s and ``ratio = fit images/s / custom images/s`` (time per
image of the custom step relative to ``fit``; acceptance: <= 1.05, goal
<= 1.02). ``fit`` is timed from its first step to its last (a callback), so
the set-up of each ``fit`` call (iterator creation; intermittently ~10 s on
2 CPU cores, measured) is not counted against it. Small defaults for a 2-core CPU; on a GPU try e.g.
``--backbone=vgg19 --image_size=224 --batch_size=64 --steps=50 --jit_compile``.

  python benchmarks/train_step_bench.py [--image_size=64 --batch_size=16 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_classes", type=int, default=20)
    p.add_argument("--steps", type=int, default=8, help="measured steps per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per method")
    p.add_argument("--warmup", type=int, default=2, help="steps before measuring")
    p.add_argument("--steps_per_execution", type=int, default=1)
    p.add_argument("--jit_compile", action="store_true", help="XLA for both")
    p.add_argument("--mixed_precision", default="none", choices=["none", "bfloat16"])
    p.add_argument("--reinit_layers", default="1-10,14-16")
    p.add_argument("--lr_multipliers", default="11-13=0.01")
    p.add_argument("--skip_fit_wd", action="store_true")
    p.add_argument("--output", default="", help="also write the JSON result here")
    return p.parse_args(argv)


def synthetic(args: argparse.Namespace):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    n = 4 * args.batch_size
    images = rng.uniform(-120, 130, (n, args.image_size, args.image_size, 3)).astype("float32")
    labels = rng.integers(0, args.num_classes, n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch_size,
                                                                     drop_remainder=True)
    return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)


def custom_runner(args: argparse.Namespace, dataset):
    """A function running ``n`` steps of the custom step; returns seconds."""
    import tensorflow as tf

    from illustration_tl.training import distribute
    from illustration_tl.training.config import TrainConfig
    from illustration_tl.training.model import prepare
    from illustration_tl.training.steps import TrainSteps

    config = TrainConfig(
        output_dir="", backbone=args.backbone, weights=None, image_size=args.image_size,
        reinit_layers=args.reinit_layers, lr_multipliers=args.lr_multipliers,
        batch_size=args.batch_size, strategy="default", jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution, mixed_precision=args.mixed_precision)
    strategy = distribute.make_strategy("default")
    prepared = prepare(config, args.num_classes, strategy)
    steps = TrainSteps(prepared, config, args.num_classes)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    k = args.steps_per_execution

    def run(n: int) -> float:
        start = time.perf_counter()
        done = 0
        while done < n:
            chunk = min(k, n - done)
            totals = steps.train(iterator, tf.constant(chunk, tf.int32))
            done += chunk
        totals.numpy()  # wait for the last call
        return time.perf_counter() - start

    return run


def fit_runner(args: argparse.Namespace, dataset, weight_decay: float | None):
    import keras

    from illustration_tl.models import layer_surgery

    model = layer_surgery.build_classifier(args.backbone, args.num_classes, weights=None,
                                           image_size=args.image_size)
    optimizer = keras.optimizers.SGD(1e-2, momentum=0.9, weight_decay=weight_decay)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()],
                  jit_compile=args.jit_compile, steps_per_execution=args.steps_per_execution)

    class Clock(keras.callbacks.Callback):
        """Times from the first step's start to the last step's end, as the custom loop."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    def run(n: int) -> float:
        clock = Clock()
        model.fit(dataset, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False,
                  callbacks=[clock])
        return clock.seconds

    return run


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if args.mixed_precision == "bfloat16":
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    dataset = synthetic(args)
    runners = {"custom": custom_runner(args, dataset),
               "fit": fit_runner(args, dataset, None)}
    if not args.skip_fit_wd:
        runners["fit_wd"] = fit_runner(args, dataset, 5e-4)
    for run in runners.values():  # trace/compile, warm caches
        run(max(args.warmup, args.steps_per_execution))
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            seconds[name].append(runners[name](args.steps))
            print(f"round {r + 1} {name}: {args.steps * args.batch_size / seconds[name][-1]:.2f}"
                  " img/s", flush=True)
    ips = {name: args.steps * args.batch_size / statistics.median(s)
           for name, s in seconds.items()}
    result = {
        "backbone": args.backbone, "image_size": args.image_size,
        "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
        "jit_compile": args.jit_compile, "steps_per_execution": args.steps_per_execution,
        "mixed_precision": args.mixed_precision, "backend": keras.backend.backend(),
        "images_per_second": ips,
        "ratio_fit_over_custom": ips["fit"] / ips["custom"],
    }
    if "fit_wd" in ips:
        result["ratio_fit_wd_over_custom"] = ips["fit_wd"] / ips["custom"]
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
