"""Subprocess helper for the training tests: tiny models, synthetic data, one run per call.

Several checks need a fresh process: two logical CPU devices must be set up
before TensorFlow starts, multi-worker training needs one process per worker,
a run is killed with SIGKILL, and the JAX backend is chosen at import. Usage:

  python tests/train_helpers.py train --out=DIR [--replicas=N] [--strategy=S] ...
  python tests/train_helpers.py mirrored-multipliers
  KERAS_BACKEND=jax python tests/train_helpers.py jax-check
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NUM_CLASSES = 3
IMAGE_SIZE = 32
# Tiny VGG-like network: weighted layers 1-3 convolutions, 4-6 fc1, fc2, predictions.
TINY_REINIT = "1-2,4-6"
TINY_MULTIPLIERS = "3=0.1"


def tiny_vgg(num_classes: int, seed: int, dropout: float = 0.5, size: int = IMAGE_SIZE):
    """A VGG-shaped model small enough for CPU tests (same layer names as VGG)."""
    import keras

    from illustration_tl.models import layer_surgery

    L = keras.layers
    inputs = keras.Input((size, size, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv1")(inputs)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv2")(x)
    x = L.MaxPooling2D(name="block1_pool")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv1")(x)
    x = L.MaxPooling2D(4, name="block2_pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dropout(dropout, seed=layer_surgery.derive_seed(seed, "fc1_dropout"),
                  name="fc1_dropout")(x)
    x = L.Dense(32, activation="relu", name="fc2")(x)
    x = L.Dropout(dropout, seed=layer_surgery.derive_seed(seed, "fc2_dropout"),
                  name="fc2_dropout")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions",
                      dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="tiny_vgg")
    names = [layer.name for layer in layer_surgery.weighted_layers(model)]
    layer_surgery.reinitialize(model, names, seed)
    return layer_surgery.Rebuilt(model, "none", [], names)


def synthetic_arrays(num_examples: int, seed: int = 0, size: int = IMAGE_SIZE):
    """Images whose mean colour depends on the class (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, num_examples).astype("int32")
    images = rng.normal(0, 20, (num_examples, size, size, 3)).astype("float32")
    images[..., 0] += 30.0 * labels[:, None, None]
    images[..., 1] -= 30.0 * (labels[:, None, None] == 1)
    return images, labels


def synthetic_data(num_train: int, batch_size: int, seed: int = 0):
    import tensorflow as tf

    from illustration_tl.training.data import TrainData, batched_input, steps_per_epoch

    images, labels = synthetic_arrays(num_train, seed)
    examples = tf.data.Dataset.from_tensor_slices((images, labels))
    val_images, val_labels = synthetic_arrays(40, seed + 1)
    val = tf.data.Dataset.from_tensor_slices((val_images, val_labels))
    return TrainData(
        class_names=["a", "b", "c"],
        train=batched_input(examples, batch_size, seed=seed, shuffle_buffer=num_train),
        steps_per_epoch=steps_per_epoch(num_train, batch_size),
        validation=lambda: val.batch(16))


def tiny_config(out, **overrides):
    """A :class:`TrainConfig` for :func:`tiny_vgg` on 32-px synthetic data, 2 epochs."""
    from illustration_tl.training.config import TrainConfig

    settings = dict(output_dir=str(out), backbone="vgg16", weights=None, image_size=IMAGE_SIZE,
                    reinit_layers=TINY_REINIT, lr_multipliers=TINY_MULTIPLIERS,
                    learning_rate=0.01, batch_size=16, epochs=2, strategy="default",
                    checkpoint_every=0, log_every=2, dataset="synthetic")
    settings.update(overrides)
    return TrainConfig(**settings)


def tiny_model(dropout: float = 0.5):
    """A ``model_fn`` building :func:`tiny_vgg`."""
    return lambda n, seed: tiny_vgg(n, seed, dropout)


def event_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard event files directly in ``folder``: tag -> [(step,
    value), ...] in the order written."""
    import tensorflow as tf

    found: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith("events.out.tfevents"):
            continue
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                          else value.simple_value)
                found.setdefault(value.tag, []).append((int(event.step), number))
    return found


def logical_cpus(n: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(max(n, 1))])


def cmd_train(args: argparse.Namespace) -> None:
    """Training runs; each writes its final weights (npz) and step log (json).

    ``--replicas=1,2`` trains once per replica count in one process (two
    logical CPUs), into ``OUT/r1``, ``OUT/r2``.
    """
    import tensorflow as tf

    from illustration_tl.training import distribute

    if args.strategy == "multi_worker":
        _train_once(args, args.out, distribute.make_strategy("multi_worker"))
    elif args.replicas:
        counts = [int(n) for n in args.replicas.split(",")]
        logical_cpus(max(counts))
        for n in counts:
            strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
            _train_once(args, os.path.join(args.out, f"r{n}"), strategy)
    else:
        _train_once(args, args.out, distribute.make_strategy("default"))


def _train_once(args: argparse.Namespace, out: str, strategy) -> None:
    from illustration_tl.training import distribute
    from illustration_tl.training.config import TrainConfig
    from illustration_tl.training.loop import optimize

    config = TrainConfig(
        output_dir=out, backbone="vgg16", weights=None, image_size=IMAGE_SIZE,
        dropout=args.dropout, reinit_layers=TINY_REINIT, lr_multipliers=TINY_MULTIPLIERS,
        learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        max_steps=args.max_steps, strategy="default", deterministic=args.deterministic,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        steps_per_execution=args.steps_per_execution, mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile, seed=args.seed, dataset="synthetic",
        save_model=bool(args.save_model))
    data = synthetic_data(args.num_train, args.batch_size, seed=args.seed)
    result = optimize(config, data, strategy=strategy,
                      model_fn=lambda n, s: tiny_vgg(n, s, args.dropout))
    model = result.prepared.model
    task_type, task_id = distribute.task(strategy)
    suffix = f"-{task_type}{task_id}" if task_type else ""
    np.savez(os.path.join(out, f"weights{suffix}.npz"),
             **{v.path: v.numpy() for v in model.weights})
    with open(os.path.join(out, f"log{suffix}.json"), "w") as f:
        json.dump({"log": result.log, "history": result.history, "steps": result.steps,
                   "replicas": strategy.num_replicas_in_sync}, f)
    print(f"done steps={result.steps} replicas={strategy.num_replicas_in_sync}", flush=True)


def cmd_mirrored_multipliers(args: argparse.Namespace) -> None:
    """SGD+momentum multipliers inside MirroredStrategy replicas (tf.Variable in update_step)."""
    logical_cpus(2)
    import keras
    import tensorflow as tf

    from illustration_tl.training import lr_multipliers

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        a = keras.Variable(np.ones((3, 2), "float32"), name="a")
        b = keras.Variable(np.ones((3, 2), "float32"), name="b")
        opt = lr_multipliers.create("sgd", 0.1, {"a": 1.0, "b": 0.2}, momentum=0.9,
                                    weight_decay=1e-4)
        opt.build([a, b])
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(8))

    @tf.function
    def step(batch):
        def replica(xb):
            with tf.GradientTape() as tape:
                y = tf.matmul(xb, a.value) + tf.matmul(xb, b.value)
                loss = tf.nn.compute_average_loss(tf.reduce_sum(y ** 2, axis=1),
                                                  global_batch_size=8)
            grads = tape.gradient(loss, [a.value, b.value])
            opt.apply(grads, [a, b])
        strategy.run(replica, args=(batch,))

    for _ in range(3):
        for batch in dataset:
            step(batch)
    da, db = a.numpy() - 1.0, b.numpy() - 1.0
    assert np.abs(da).min() > 1e-4, da
    np.testing.assert_allclose(db * 5, da, rtol=1e-3)
    print(f"replicas={strategy.num_replicas_in_sync} ratio ok", flush=True)


def cmd_jax_check(args: argparse.Namespace) -> None:
    """Layer surgery and multipliers on the JAX backend (no TensorFlow ops involved)."""
    import keras

    from illustration_tl.models import layer_surgery
    from illustration_tl.training import lr_multipliers

    backend = keras.backend.backend()
    assert backend == "jax", backend
    print(f"backend={backend}", flush=True)
    rebuilt = layer_surgery.rebuild("vgg16", 4, weights=None, image_size=32, seed=0)
    model = rebuilt.model
    before = {v.path: np.array(v.numpy()) for v in model.weights}
    chosen = layer_surgery.parse_layer_spec("1-2,fc2", model)
    assert chosen == ["block1_conv1", "block1_conv2", "fc2"], chosen
    layer_surgery.reinitialize(model, chosen, seed=7)
    for v in model.weights:
        same = np.array_equal(v.numpy(), before[v.path])
        layer = v.path.split("/")[0]
        if layer in chosen and v.path.endswith("kernel"):
            assert not same, v.path
        elif layer not in chosen:
            assert same, v.path

    # Twin variables with equal gradients: the update ratio is the multiplier ratio.
    a = keras.Variable(np.zeros((3, 2), "float32"), name="a")
    b = keras.Variable(np.zeros((3, 2), "float32"), name="b")
    twin = lr_multipliers.create("adam", 1e-3, {"a": 1.0, "b": 0.1})
    g = keras.ops.convert_to_tensor(np.linspace(0.5, 2, 6).reshape(3, 2).astype("float32"))
    twin.apply([g, g], [a, b])
    assert np.abs(a.numpy()).min() > 1e-4
    np.testing.assert_allclose(b.numpy() * 10, a.numpy(), rtol=1e-5)

    # The optimize recipe through model.fit (JAX's stateless optimizer path).
    import tempfile

    from illustration_tl.training.config import TrainConfig
    from illustration_tl.training.fit_loop import fit

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            output_dir=out, backbone="vgg16", weights=None, image_size=IMAGE_SIZE,
            reinit_layers=TINY_REINIT, lr_multipliers=TINY_MULTIPLIERS, learning_rate=0.01,
            batch_size=16, epochs=2, dataset="synthetic")
        start = {v.path: v.numpy().copy()
                 for v in tiny_vgg(NUM_CLASSES, 0, 0.5).model.trainable_variables}
        result = fit(config, synthetic_data(48, 16),
                     model_fn=lambda n, seed: tiny_vgg(n, seed, 0.5))
        model = result.prepared.model
        optimizer = model.optimizer
        assert type(optimizer).__name__ == "LRMultipliedSGD", type(optimizer)
        paths = [v.path for v in model.trainable_variables]
        assert optimizer._var_multipliers[paths.index("block2_conv1/kernel")] == 0.1
        assert optimizer._var_multipliers[paths.index("fc1/kernel")] == 1.0
        assert [h["epoch"] for h in result.history] == [1, 2], result.history
        for v in model.trainable_variables:
            assert not np.array_equal(v.numpy(), start[v.path]), v.path
        loaded, config_json = layer_surgery.load_trained(out)
        assert config_json["num_classes"] == NUM_CLASSES
        # Keras's TensorBoard callback logged the epochs on JAX too.
        events = os.listdir(os.path.join(out, "logs", "train"))
        assert any(name.startswith("events.out.tfevents") for name in events), events
    print("jax ok", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--replicas", default="", help="e.g. 1,2: MirroredStrategy runs")
    t.add_argument("--strategy", default="")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--max_steps", type=int, default=0)
    t.add_argument("--num_train", type=int, default=96)
    t.add_argument("--batch_size", type=int, default=16)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--deterministic", action="store_true")
    t.add_argument("--checkpoint_every", type=int, default=0)
    t.add_argument("--log_every", type=int, default=1)
    t.add_argument("--steps_per_execution", type=int, default=1)
    t.add_argument("--mixed_precision", default="none")
    t.add_argument("--jit_compile", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save_model", type=int, default=1)
    sub.add_parser("mirrored-multipliers")
    sub.add_parser("jax-check")
    args = parser.parse_args(argv)
    {"train": cmd_train, "mirrored-multipliers": cmd_mirrored_multipliers,
     "jax-check": cmd_jax_check}[args.command](args)


if __name__ == "__main__":
    main()
