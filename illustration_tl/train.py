"""Training for the adaptive layer-based optimization (paper §7).

The paper fine-tunes VGG19 on the noisy clip-art set with Caffe: layers 1-10
and 17-19 re-initialized at learning rate 1e-2, layers 11-16 kept from
ImageNet at 1e-4, SGD momentum 0.9, weight decay 5e-4, dropout 0.5, 55 epochs.
:func:`optimize` runs that recipe (or any other given by :class:`TrainConfig`)
with a custom training step under a ``tf.distribute`` strategy:

* per-example loss averaged over the *global* batch
  (``tf.nn.compute_average_loss``), model regularization losses scaled per
  replica, float32 softmax/loss under mixed precision, loss scaling for
  float16, optional XLA, several steps per ``tf.function`` call;
* per epoch: train loss/accuracy, validation top-1/top-5 and optional extra
  evaluation sets, learning rate reduced on plateau;
* ``tf.train.CheckpointManager`` checkpoints (model, optimizer, step, epoch,
  dropout RNG state, plateau state) every N steps and at each epoch end;
  calling again with the same output directory resumes. With
  ``deterministic=True`` a resumed run ends bit-identical to an uninterrupted
  one (op determinism + per-epoch seeded data order + skipping the batches
  already trained on);
* TensorBoard summaries and console progress with images/s and ETA;
* the final model in ``<output_dir>`` (``model.keras``,
  ``model_config.json``; see :func:`layer_surgery.load_trained`).

:func:`fit` trains the same model and optimizer through ``model.fit`` on any
Keras backend (JAX included), with ``keras.distribution`` data parallelism.

The custom step needs the TensorFlow backend; the data are ``tf.data``
datasets of ``(images, labels)`` so tests can feed synthetic data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Callable

from illustration_tl import distribute, layer_surgery, lr_multipliers
from illustration_tl.config_flags import setting
from illustration_tl.errors import UserError

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
HISTORY_FILE = "history.json"
PLATEAU_MONITORS = ("val_loss", "val_top1", "val_top5", "train_loss")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "nadam", "adamax", "adagrad", "lion")


@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`optimize` needs besides the data (defaults: the paper's recipe).

    Each field is one ``illustration-tl optimize`` flag (:mod:`config_flags`), with
    this default and help text; ``reproduce`` exposes the same fields.
    """

    output_dir: str = setting("", "Where checkpoints, logs and the trained model go; rerun "
                              "with the same folder to resume.")
    # Model (paper §7): VGG19 from ImageNet, layers 1-10 and 17-19 re-initialized.
    backbone: str = setting("vgg19", "keras.applications backbone (vgg19, vgg16, resnet50, "
                            "...).")
    weights: str | None = setting("imagenet", "'imagenet' (downloaded by Keras), a local "
                                  ".h5/.weights.h5 file with or without the top, or 'none'.")
    image_size: int = setting(224, "Input side in pixels.")
    resize_mode: str = setting("squash", "squash: plain resize as the paper; pad: white "
                               "square first.", choices=("squash", "pad"))
    dropout: float = setting(0.5, "Dropout after fc1 and fc2 (VGG) or before the classifier "
                             "(others).")
    fc_units: int = setting(4096, "Width of VGG's fc1 and fc2 (the paper's and ImageNet's "
                            "4096; other widths train them from scratch).")
    reinit_layers: str = setting(
        "1-10,17-19", "Layers to re-initialize: weighted-layer numbers (the paper's "
        "numbering: VGG19's 16 convolutions, then fc1, fc2, predictions) and/or name "
        "patterns, comma-separated, e.g. '1-10,17-19' or 'block1_*,fc*'.")
    # Learning rates: base rate, then "SPEC=MULTIPLIER;..." rules (paper: 11-16 at 1e-4).
    learning_rate: float = setting(1e-2, "Base learning rate.")
    lr_multipliers: str = setting(
        "11-16=0.01", "Per-layer learning-rate multipliers, 'SPEC=MULT;SPEC=MULT' with SPEC "
        "as in --reinit_layers; later rules win; others get 1. Paper: 11-16 at 1e-4.")
    optimizer: str = setting("sgd", "Optimizer (paper: sgd).", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "Momentum (sgd, rmsprop).")
    nesterov: bool = setting(False, "Nesterov momentum (sgd).")
    weight_decay: float = setting(5e-4, "Weight decay (paper: 5e-4).")
    decay: str = setting("l2", "l2: added to the gradient, follows each layer's learning rate "
                         "(paper, Caffe); decoupled: w -= lr * decay * w (AdamW style).",
                         choices=("l2", "decoupled"))
    no_decay: tuple[str, ...] = setting((), "Variable-path patterns without weight decay, "
                                        "e.g. '*/bias'.")
    # Schedule.
    batch_size: int = setting(32, "Global batch size (all replicas).")
    epochs: int = setting(55, "Epochs (paper: 55).")
    max_steps: int = setting(0, "Stop after this many steps (0: no limit).")
    plateau_monitor: str = setting("val_loss", "Metric watched by reduce-on-plateau.",
                                   choices=PLATEAU_MONITORS)
    plateau_factor: float = setting(0.1, "LR factor on a plateau.")
    plateau_patience: int = setting(5, "Epochs without improvement before reducing the LR.")
    plateau_min_delta: float = setting(1e-4, "Smallest change that counts as an improvement.")
    min_learning_rate: float = setting(1e-6, "Floor of the base LR.")
    # Execution.
    strategy: str = setting("auto", "tf.distribute strategy; auto: multi_worker with a "
                            "TF_CONFIG cluster, mirrored with several GPUs, else default.",
                            choices=("auto", "default", "mirrored", "multi_worker", "tpu"))
    tpu: str = setting("", "TPU name or address for --strategy=tpu.")
    mixed_precision: str = setting("none", "Mixed precision (float16 adds loss scaling).",
                                   choices=("none", "bfloat16", "float16"))
    jit_compile: bool = setting(False, "Compile the training step with XLA.")
    steps_per_execution: int = setting(1, "Training steps per tf.function call.")
    deterministic: bool = setting(False, "Op determinism and a fixed data order: a resumed "
                                  "run equals an uninterrupted one (slower).")
    seed: int = setting(0, "Seed of initialization, dropout and data order.")
    # Outputs.
    checkpoint_every: int = setting(1000, "Steps between checkpoints (0: only at epoch ends).")
    keep_checkpoints: int = setting(
        1, "Checkpoints kept once the final model is saved (0: none; a rerun then trains "
        "from scratch). Training itself keeps max(1, N) to resume from.")
    log_every: int = setting(50, "Steps between progress lines/summaries.")
    summaries: bool = setting(True, "Write TensorBoard summaries to logs/.")
    save_model: bool = True
    # Recorded in model_config.json for the later stages (set from TrainDataConfig).
    dataset: str = ""

    def validate(self, require_output_dir: bool = True) -> None:
        """Raises :class:`UserError` naming the first bad setting."""
        checks = [
            (self.batch_size >= 1, "--batch_size must be >= 1"),
            (self.epochs >= 0, "--epochs must be >= 0"),
            (self.max_steps >= 0, "--max_steps must be >= 0"),
            (self.learning_rate > 0, "--learning_rate must be > 0"),
            (self.steps_per_execution >= 1, "--steps_per_execution must be >= 1"),
            (self.checkpoint_every >= 0, "--checkpoint_every must be >= 0"),
            (self.keep_checkpoints >= 0, "--keep_checkpoints must be >= 0"),
            (self.log_every >= 1, "--log_every must be >= 1"),
            (0 < self.plateau_factor < 1, "--plateau_factor must be in (0, 1)"),
            (self.plateau_patience >= 0, "--plateau_patience must be >= 0"),
            (self.plateau_monitor in PLATEAU_MONITORS,
             f"--plateau_monitor must be one of {', '.join(PLATEAU_MONITORS)}"),
            (self.image_size >= 32, "--image_size must be >= 32"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if require_output_dir and not self.output_dir:
            raise UserError("--output_dir is required: where checkpoints and the model go")


@dataclasses.dataclass
class TrainDataConfig:
    """Which built TFDS splits :func:`tfds_data` feeds to training (``optimize``'s data flags)."""

    dataset: str = setting("illustrations/noisy", "TFDS dataset to train on (paper: the "
                           "noisy set).")
    data_dir: str | None = setting(None, "TFDS data folder (default ~/tensorflow_datasets or "
                                   "$TFDS_DATA_DIR).")
    train_split: str = setting("train", "Split to train on.")
    validation_split: str | None = setting("validation", "Split scored after each epoch "
                                           "('none' for none).")
    eval_dataset: str | None = setting(None, "Another dataset scored after each epoch on the "
                                       "classes it shares with the training set, e.g. "
                                       "illustrations/curated.")
    eval_split: str = setting("test", "Split of --eval_dataset.")
    eval_data_dir: str | None = setting(None, "TFDS data folder of --eval_dataset (default "
                                        "--data_dir).")
    augment: bool = setting(False, "Random crop (from image_size*256/224) and left-right "
                            "mirror while training.")
    shuffle_buffer: int = setting(4096, "Examples in the shuffle buffer.")
    cache: bool = setting(False, "Keep the encoded training images in memory.")


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


@dataclasses.dataclass
class Prepared:
    """The model and optimizer of a run, built inside the strategy's scope."""

    strategy: Any
    model: Any
    rebuilt: layer_surgery.Rebuilt
    reinit_layers: list[str]
    layer_multipliers: dict[str, float]
    multipliers: dict[str, float]       # variable path -> multiplier
    optimizer: Any                      # possibly a LossScaleOptimizer


@dataclasses.dataclass
class Result:
    """What :func:`optimize` did."""

    history: list[dict[str, Any]]
    steps: int
    model_dir: str | None
    log: list[dict[str, float]]         # one entry per progress line (step, loss, ...)
    prepared: Prepared | None = None


# --------------------------------------------------------------------------- input helpers


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

    from illustration_tl import input_pipeline

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


# --------------------------------------------------------------------------- model + optimizer


ModelFn = Callable[[int, int], layer_surgery.Rebuilt]


def prepare(config: TrainConfig, num_classes: int, strategy: Any,
            model_fn: ModelFn | None = None) -> Prepared:
    """Rebuilds the model, re-initializes the chosen layers and creates the optimizer.

    ``model_fn(num_classes, seed)`` replaces :func:`layer_surgery.rebuild` for
    custom architectures (and tiny test models); it runs in the strategy's scope.
    """
    import keras

    top_weights = _needs_top_weights(config) if model_fn is None else False
    with strategy.scope():
        if model_fn is None:
            rebuilt = layer_surgery.rebuild(
                config.backbone, num_classes, weights=config.weights,
                image_size=config.image_size, dropout=config.dropout, seed=config.seed,
                top_weights=top_weights, fc_units=config.fc_units)
        else:
            rebuilt = model_fn(num_classes, config.seed)
        model = rebuilt.model
        reinit = layer_surgery.parse_layer_spec(config.reinit_layers, model,
                                                flag="--reinit_layers")
        layer_surgery.reinitialize(model, [n for n in reinit if n not in rebuilt.fresh_layers],
                                   config.seed)
        rules = lr_multipliers.parse_rules(config.lr_multipliers)
        by_layer = lr_multipliers.layer_multipliers(model, rules)
        multipliers = lr_multipliers.resolve(model, rules)
        optimizer = lr_multipliers.create(
            config.optimizer, config.learning_rate, multipliers, momentum=config.momentum,
            nesterov=config.nesterov, weight_decay=config.weight_decay, decay=config.decay,
            no_decay=config.no_decay)
        if config.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    return Prepared(strategy, model, rebuilt, reinit, by_layer, multipliers, optimizer)


def _needs_top_weights(config: TrainConfig) -> bool:
    """Whether to load ImageNet fc1/fc2: not when the recipe re-initializes both anyway
    (saves VGG's 0.5 GB with-top download)."""
    spec = layer_surgery.backbones.get(config.backbone)
    if not spec.has_fc_top or config.image_size != spec.image_size or not config.weights:
        return True
    names = layer_surgery.weighted_layer_names(config.backbone, config.image_size)
    reinit = layer_surgery.parse_layer_spec(config.reinit_layers, names, flag="--reinit_layers")
    return not {"fc1", "fc2"} <= set(reinit)


def describe(prepared: Prepared, config: TrainConfig) -> str:
    """The ``--dry_run`` table: per layer, its weights, re-initialized?, effective LR."""
    model = prepared.model
    numbers = layer_surgery.layer_number(model)
    reinit = set(prepared.reinit_layers)
    loaded = set(prepared.rebuilt.loaded_layers)
    rows = [("#", "layer", "type", "output shape", "params", "weights", "re-init", "lr")]
    for layer in model.layers:
        n = numbers.get(layer.name)
        params = sum(math.prod(v.shape) for v in layer.weights)
        shape = getattr(layer, "output", None)
        shape = str(tuple(shape.shape)) if shape is not None else ""
        if n is None:
            rows.append(("", layer.name, type(layer).__name__, shape, "", "", "", ""))
            continue
        source = prepared.rebuilt.weights_source if layer.name in loaded else "new"
        source = os.path.basename(source) if os.sep in source else source
        lr = config.learning_rate * prepared.layer_multipliers[layer.name]
        rows.append((str(n), layer.name, type(layer).__name__, shape, f"{params:,}", source,
                     "yes" if layer.name in reinit else "no",
                     "frozen" if lr == 0 else f"{lr:.3g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    total = sum(math.prod(v.shape) for v in model.trainable_variables)
    groups = lr_multipliers.groups(prepared.multipliers)
    lines += ["", f"trainable parameters: {total:,}",
              f"optimizer: {config.optimizer} (momentum {config.momentum:g}), base learning rate "
              f"{config.learning_rate:g}, weight decay {config.weight_decay:g} ({config.decay})",
              "learning-rate groups: " + ", ".join(
                  f"{config.learning_rate * m:.3g} ({len(p)} variables)"
                  for m, p in groups.items())]
    if prepared.rebuilt.unfit_layers:
        lines.append("not loaded (shape differs at this image size): "
                     + ", ".join(prepared.rebuilt.unfit_layers))
    return "\n".join(lines)


def model_config(config: TrainConfig, class_names: list[str], prepared: Prepared
                 ) -> dict[str, Any]:
    """The ``model_config.json`` contents (see interfaces: trained-model directory)."""
    return {
        "backbone": layer_surgery.backbones.get(config.backbone).name,
        "image_size": config.image_size,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "dropout": config.dropout, "fc_units": config.fc_units,
        "resize_mode": config.resize_mode,
        "weights_source": prepared.rebuilt.weights_source,
        "reinit_layers": prepared.reinit_layers,
        "dataset": config.dataset,
        "reinit_spec": config.reinit_layers,
        "lr_multipliers": config.lr_multipliers,
        "learning_rate": config.learning_rate,
        "optimizer": config.optimizer,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
    }


# --------------------------------------------------------------------------- the custom step


class _Steps:
    """The ``tf.function``s of one run: a multi-step train call and an evaluation pass."""

    def __init__(self, prepared: Prepared, config: TrainConfig, num_classes: int) -> None:
        import keras
        import tensorflow as tf

        strategy, model, optimizer = prepared.strategy, prepared.model, prepared.optimizer
        global_batch = config.batch_size
        top_k = min(5, num_classes)

        def replica_train(images: Any, labels: Any) -> Any:
            labels = tf.cast(labels, tf.int32)
            with tf.GradientTape() as tape:
                probs = tf.cast(model(images, training=True), tf.float32)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(
                        tf.add_n([tf.cast(x, tf.float32) for x in model.losses]))
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), labels),
                              tf.float32)
            return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(correct),
                             tf.cast(tf.size(labels), tf.float32)])

        def replica_eval(images: Any, labels: Any) -> Any:
            labels = tf.cast(labels, tf.int32)
            probs = tf.cast(model(images, training=False), tf.float32)
            valid = labels >= 0
            safe = tf.where(valid, labels, 0)
            weight = tf.cast(valid, tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(safe, probs)
            hits = tf.equal(tf.math.top_k(probs, top_k).indices, safe[:, None])
            top1 = tf.cast(hits[:, 0], tf.float32)
            topk = tf.cast(tf.reduce_any(hits, axis=1), tf.float32)
            return tf.stack([tf.reduce_sum(per_example * weight), tf.reduce_sum(top1 * weight),
                             tf.reduce_sum(topk * weight), tf.reduce_sum(weight)])

        if config.jit_compile:
            replica_train = tf.function(replica_train, jit_compile=True)
            replica_eval = tf.function(replica_eval, jit_compile=True)

        @tf.function
        def train(iterator: Any, num_steps: Any) -> Any:
            totals = tf.zeros([3], tf.float32)
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                per_replica = strategy.run(replica_train, args=(images, labels))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            return totals

        @tf.function
        def evaluate(dataset: Any) -> Any:
            totals = tf.zeros([4], tf.float32)
            for images, labels in dataset:
                per_replica = strategy.run(replica_eval, args=(images, labels))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            return totals

        self.train = train
        self.evaluate = evaluate


# --------------------------------------------------------------------------- bookkeeping


class _State:
    """Run state saved in every checkpoint besides the model and the optimizer."""

    def __init__(self, steps_per_epoch: int, monitor_max: bool) -> None:
        import tensorflow as tf

        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.steps_per_epoch = tf.Variable(steps_per_epoch, dtype=tf.int64, trainable=False,
                                           name="steps_per_epoch")
        # Sums of loss, correct, examples of the epoch so far (so a resumed epoch reports
        # the same train metrics as an uninterrupted one).
        self.epoch_totals = tf.Variable(tf.zeros([3], tf.float64), trainable=False,
                                        name="epoch_totals")
        self.plateau_best = tf.Variable(-math.inf if monitor_max else math.inf, dtype=tf.float64,
                                        trainable=False, name="plateau_best")
        self.plateau_wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_wait")


def _progress_line(epoch: int, epochs: int, step_in_epoch: int, spe: int, loss: float,
                   acc: float, ips: float, eta_s: float, prefix: str) -> str:
    seconds = int(max(0.0, eta_s)) if math.isfinite(eta_s) else -1
    eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 0 else "?"
    return (f"{prefix}epoch {epoch}/{epochs}  step {step_in_epoch}/{spe}  loss {loss:.4f}  "
            f"acc {acc:.3f}  {ips:.1f} img/s  ETA {eta}")


def _scalar(tag: str, value: float) -> None:
    """``tf.summary.scalar`` without importing TensorBoard (not a TensorFlow dependency)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


def _write_json(path: str, payload: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _read_history(path: str) -> list[dict[str, Any]]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- optimize


def optimize(config: TrainConfig, data: TrainData, *, strategy: Any = None,
             dry_run: bool = False, out: Any = None, model_fn: ModelFn | None = None
             ) -> Result:
    """Trains (or resumes training of) the paper §7 model; returns the epoch history.

    ``strategy`` defaults to ``distribute.make_strategy(config.strategy)``;
    create it yourself first when other TensorFlow work precedes this call
    (multi-worker strategies must exist before any TF op). ``dry_run`` builds
    the model, prints :func:`describe` and returns without training.
    ``model_fn``: see :func:`prepare`.
    """
    import keras

    out = out or sys.stdout
    config.validate(require_output_dir=not dry_run)
    if keras.backend.backend() != "tensorflow":
        raise UserError("the custom training step needs KERAS_BACKEND=tensorflow; "
                        "train.fit() trains through model.fit on other backends")
    if data.steps_per_epoch < 1:
        raise UserError("the training set yields no full batch; lower --batch_size")
    if strategy is None:
        strategy = distribute.make_strategy(config.strategy, tpu=config.tpu)
    previous_policy = keras.mixed_precision.dtype_policy()
    distribute.configure(seed=config.seed, deterministic=config.deterministic,
                         mixed_precision=config.mixed_precision)
    try:
        prepared = prepare(config, len(data.class_names), strategy, model_fn)
        if dry_run:
            print(describe(prepared, config), file=out, flush=True)
            return Result([], 0, None, [], prepared)
        return _train(config, data, prepared, out)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _train(config: TrainConfig, data: TrainData, prepared: Prepared, out: Any) -> Result:
    import tensorflow as tf

    strategy, model, optimizer = prepared.strategy, prepared.model, prepared.optimizer
    chief = distribute.is_chief(strategy)
    task_type, task_id = distribute.task(strategy)
    prefix = f"[{task_type} {task_id}] " if task_type is not None else ""
    multi_worker = task_type is not None
    spe = data.steps_per_epoch
    os.makedirs(config.output_dir, exist_ok=True)

    with strategy.scope():
        state = _State(spe, config.plateau_monitor in ("val_top1", "val_top5"))
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=state.step, epoch=state.epoch,
        steps_per_epoch=state.steps_per_epoch, epoch_totals=state.epoch_totals,
        plateau_best=state.plateau_best, plateau_wait=state.plateau_wait,
        # Dropout seed-generator states and other non-trainable state.
        model_state=[v.value for v in model.non_trainable_variables])
    checkpoint_dir = os.path.join(config.output_dir, CHECKPOINT_DIR)
    manager = tf.train.CheckpointManager(
        checkpoint, distribute.write_dir(checkpoint_dir, strategy),
        max_to_keep=max(1, config.keep_checkpoints))
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        if int(state.steps_per_epoch.numpy()) != spe:
            raise UserError(
                f"{checkpoint_dir} was written with {int(state.steps_per_epoch.numpy())} steps "
                f"per epoch, this run has {spe} (batch size or data changed); use a new "
                "--output_dir or delete the checkpoints")
        print(f"{prefix}resuming from {latest} (epoch {int(state.epoch.numpy())}, step "
              f"{int(state.step.numpy())})", file=out, flush=True)

    steps = _Steps(prepared, config, len(data.class_names))
    writer = (tf.summary.create_file_writer(os.path.join(config.output_dir, LOG_DIR))
              if chief and config.summaries else tf.summary.create_noop_writer())
    history_path = os.path.join(config.output_dir, HISTORY_FILE)
    history = [h for h in _read_history(history_path) if h["epoch"] <= int(state.epoch.numpy())]
    inner = lr_multipliers.inner_optimizer(optimizer)
    groups = sorted(set(prepared.multipliers.values()), reverse=True)
    max_steps = config.max_steps or math.inf
    total_steps = min(config.epochs * spe, max_steps)
    log: list[dict[str, float]] = []

    def save_checkpoint() -> None:
        manager.save(checkpoint_number=int(state.step.numpy()))
        distribute.cleanup_write_dir(checkpoint_dir, strategy)

    def distribute_train(epoch: int, skip: int) -> Any:
        if multi_worker:
            return strategy.distribute_datasets_from_function(
                lambda ctx: data.train(epoch, ctx).skip(skip).repeat())
        return strategy.experimental_distribute_dataset(data.train(epoch, None).skip(skip)
                                                        .repeat())

    def distribute_eval(dataset: Any) -> Any:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return strategy.experimental_distribute_dataset(dataset.with_options(options))

    def run_eval(make: Callable[[], Any]) -> dict[str, float]:
        loss, top1, topk, n = (float(x) for x in steps.evaluate(distribute_eval(make())).numpy())
        if n == 0:
            return {"examples": 0}
        return {"loss": loss / n, "top1": top1 / n, "top5": topk / n, "examples": int(n)}

    session_start = time.time()
    session_steps = 0
    step = int(state.step.numpy())
    while int(state.epoch.numpy()) < config.epochs and step < max_steps:
        epoch = int(state.epoch.numpy())
        epoch_start = time.time()
        in_epoch = step - epoch * spe
        iterator = iter(distribute_train(epoch, in_epoch))
        mark_time, mark_step = time.time(), step
        while in_epoch < spe and step < max_steps:
            chunk = min(config.steps_per_execution, spe - in_epoch, max_steps - step,
                        config.log_every - step % config.log_every)
            if config.checkpoint_every:
                chunk = min(chunk, config.checkpoint_every - step % config.checkpoint_every)
            totals = steps.train(iterator, tf.constant(chunk, tf.int32)).numpy()
            if not math.isfinite(float(totals[0])):
                latest_saved = manager.latest_checkpoint or "none yet"
                raise UserError(
                    f"the training loss is {totals[0]} at step {step + chunk}: training "
                    f"diverged; lower --learning_rate (now {config.learning_rate:g}), or "
                    f"delete {checkpoint_dir} to restart (last checkpoint: {latest_saved})")
            state.epoch_totals.assign_add(tf.constant(totals, tf.float64))
            step += chunk
            in_epoch += chunk
            session_steps += chunk
            state.step.assign(step)
            if (config.checkpoint_every and step % config.checkpoint_every == 0
                    and in_epoch < spe):  # the epoch end saves one anyway
                save_checkpoint()
            if step % config.log_every == 0 or in_epoch == spe:
                now = time.time()
                ips = (step - mark_step) * config.batch_size / max(now - mark_time, 1e-9)
                sums = state.epoch_totals.numpy()
                loss, acc = sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1)
                eta = (total_steps - step) * (now - session_start) / max(session_steps, 1)
                print(_progress_line(epoch + 1, config.epochs, in_epoch, spe, loss, acc, ips,
                                     eta, prefix), file=out, flush=True)
                lr = float(inner.learning_rate.numpy())
                log.append({"step": step, "loss": float(loss), "accuracy": float(acc),
                            "images_per_second": ips, "batch_loss": float(totals[0] / totals[2])})
                with writer.as_default(step=step):
                    _scalar("train/loss", loss)
                    _scalar("train/accuracy", acc)
                    _scalar("train/images_per_second", ips)
                    for m in groups:
                        _scalar(f"learning_rate/{lr_multipliers.group_name(m)}", lr * m)
                mark_time, mark_step = now, step
        if in_epoch < spe:  # stopped by max_steps mid-epoch
            save_checkpoint()
            break
        record = _end_epoch(config, data, state, inner, run_eval, epoch, step,
                            time.time() - epoch_start)
        history = [h for h in history if h["epoch"] != record["epoch"]] + [record]
        if chief:
            _write_json(history_path, history)
        state.epoch.assign(epoch + 1)
        state.epoch_totals.assign(tf.zeros([3], tf.float64))
        save_checkpoint()
        print(prefix + _epoch_line(record), file=out, flush=True)
        with writer.as_default(step=step):
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    _scalar(f"epoch/{key}", value)
        writer.flush()

    model_dir = None
    if config.save_model and chief:
        layer_surgery.save_trained(model, config.output_dir,
                                   model_config(config, data.class_names, prepared))
        model_dir = config.output_dir
        print(f"{prefix}saved the model to {config.output_dir}/{layer_surgery.MODEL_FILE}",
              file=out, flush=True)
        prune_checkpoints(manager, checkpoint_dir, config.keep_checkpoints)
    writer.close()
    return Result(history, step, model_dir, log, prepared)


def prune_checkpoints(manager: Any, checkpoint_dir: str, keep: int) -> None:
    """Once the final model is saved, keeps at most ``keep`` checkpoints.

    Training keeps ``max(1, keep)`` (the manager's ``max_to_keep``) so that it can
    resume; with ``keep=0`` a finished run removes the checkpoint files that the
    manager wrote, its state file, and the folder if that leaves it empty.
    """
    import tensorflow as tf

    if keep > 0:
        return
    for prefix in manager.checkpoints:
        for path in tf.io.gfile.glob(prefix + ".*"):
            tf.io.gfile.remove(path)
    state = os.path.join(checkpoint_dir, "checkpoint")
    if tf.io.gfile.exists(state):
        tf.io.gfile.remove(state)
    if tf.io.gfile.isdir(checkpoint_dir) and not tf.io.gfile.listdir(checkpoint_dir):
        tf.io.gfile.rmtree(checkpoint_dir)


def _end_epoch(config: TrainConfig, data: TrainData, state: _State, inner: Any,
               run_eval: Callable[[Callable[[], Any]], dict[str, float]], epoch: int, step: int,
               seconds: float) -> dict[str, Any]:
    """Evaluates, reduces the learning rate on plateau, and returns the epoch's record."""
    sums = state.epoch_totals.numpy()
    record: dict[str, Any] = {
        "epoch": epoch + 1, "step": step,
        "train_loss": float(sums[0] / max(sums[2], 1)),
        "train_accuracy": float(sums[1] / max(sums[2], 1)),
        "learning_rate": float(inner.learning_rate.numpy()),
        "seconds": round(seconds, 3),
    }
    if data.validation is not None:
        for key, value in run_eval(data.validation).items():
            record[f"val_{key}"] = value
    for name, make in data.extra_eval.items():
        for key, value in run_eval(make).items():
            record[f"{name}_{key}"] = value
    monitor = config.plateau_monitor if config.plateau_monitor in record else "train_loss"
    value = record[monitor]
    maximize = monitor in ("val_top1", "val_top5")
    best = float(state.plateau_best.numpy())
    improved = (value > best + config.plateau_min_delta if maximize
                else value < best - config.plateau_min_delta)
    if improved:
        state.plateau_best.assign(value)
        state.plateau_wait.assign(0)
    else:
        state.plateau_wait.assign_add(1)
        if int(state.plateau_wait.numpy()) >= config.plateau_patience:
            lr = float(inner.learning_rate.numpy())
            new_lr = max(lr * config.plateau_factor, config.min_learning_rate)
            if new_lr < lr:
                inner.learning_rate.assign(new_lr)
                record["reduced_learning_rate_to"] = new_lr
            state.plateau_wait.assign(0)
    return record


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']} done: train loss {record['train_loss']:.4f} "
             f"acc {record['train_accuracy']:.3f}"]
    for key in sorted(k for k in record if k.endswith("_top1")):
        name = key[:-5]
        parts.append(f"{name} top-1 {record[key]:.3f} top-5 {record.get(name + '_top5', 0):.3f}"
                     f" ({record.get(name + '_examples', 0)} ex.)")
    parts.append(f"lr {record['learning_rate']:.3g}  {record['seconds']:.0f}s")
    if "reduced_learning_rate_to" in record:
        parts.append(f"plateau: lr -> {record['reduced_learning_rate_to']:.3g}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- model.fit path


class _NoStrategy:
    """Stands in for a tf.distribute strategy where there is none (JAX backend)."""

    num_replicas_in_sync = 1

    def scope(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def fit(config: TrainConfig, data: TrainData, *, dry_run: bool = False, out: Any = None,
        model_fn: ModelFn | None = None) -> Result:
    """The same model, optimizer and layer specs trained through ``model.fit`` (any backend).

    For Keras backends without ``tf.distribute`` (JAX): several local devices
    train data-parallel through ``keras.distribution.DataParallel``.
    Checkpoints (the ``.keras`` model with its optimizer state) are written at
    each epoch end under ``checkpoints_fit/``; rerunning resumes from the last
    finished epoch. ``data`` yields ``tf.data`` datasets as for :func:`optimize`.
    """
    import keras

    out = out or sys.stdout
    config.validate(require_output_dir=not dry_run)
    if config.mixed_precision not in _POLICIES:
        raise UserError(f"--mixed_precision={config.mixed_precision!r}: choose from "
                        f"{', '.join(_POLICIES)}")
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(_POLICIES[config.mixed_precision])
    distributed = False
    if keras.backend.backend() == "jax":
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            if config.batch_size % len(devices):
                raise UserError(f"--batch_size={config.batch_size} must be a multiple of the "
                                f"{len(devices)} devices")
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            distributed = True
    try:
        prepared = prepare(config, len(data.class_names), _NoStrategy(), model_fn)
        if dry_run:
            print(describe(prepared, config), file=out, flush=True)
            return Result([], 0, None, [], prepared)
        return _fit(config, data, prepared, out)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        if distributed:
            keras.distribution.set_distribution(None)


def _fit(config: TrainConfig, data: TrainData, prepared: Prepared, out: Any) -> Result:
    import keras

    model = prepared.model
    num_classes = len(data.class_names)
    spe = data.steps_per_epoch
    os.makedirs(config.output_dir, exist_ok=True)
    ckpt_dir = os.path.join(config.output_dir, "checkpoints_fit")
    os.makedirs(ckpt_dir, exist_ok=True)
    ckpt_model = os.path.join(ckpt_dir, "last.keras")
    state_path = os.path.join(ckpt_dir, "state.json")
    state = {"epoch": 0, "step": 0, "plateau_best": None, "plateau_wait": 0}
    history_path = os.path.join(config.output_dir, HISTORY_FILE)
    if os.path.isfile(state_path) and os.path.isfile(ckpt_model):
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        model = keras.saving.load_model(ckpt_model)
        print(f"resuming from {ckpt_model} (epoch {state['epoch']})", file=out, flush=True)
    else:
        model.compile(optimizer=prepared.optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                               keras.metrics.SparseTopKCategoricalAccuracy(
                                   k=min(5, num_classes), name="top5")],
                      jit_compile=(config.jit_compile if keras.backend.backend() == "tensorflow"
                                   else "auto"),
                      steps_per_execution=config.steps_per_execution)
    prepared.model = model
    history = [h for h in _read_history(history_path) if h["epoch"] <= state["epoch"]]
    inner = lr_multipliers.inner_optimizer(model.optimizer)
    max_steps = config.max_steps or math.inf
    step = state["step"]
    log: list[dict[str, float]] = []

    def evaluate(make: Callable[[], Any]) -> dict[str, float]:
        ds = make().unbatch().filter(lambda x, y: y >= 0).batch(config.batch_size)
        with warnings.catch_warnings():  # the filtered dataset's length is unknown
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            result = model.evaluate(ds, verbose=0, return_dict=True)
        return {"loss": float(result["loss"]), "top1": float(result["accuracy"]),
                "top5": float(result["top5"])}

    for epoch in range(state["epoch"], config.epochs):
        if step >= max_steps:
            break
        steps = int(min(spe, max_steps - step))
        start = time.time()
        fitted = model.fit(data.train(epoch, None).repeat(), initial_epoch=epoch,
                           epochs=epoch + 1, steps_per_epoch=steps, shuffle=False, verbose=2)
        seconds = time.time() - start
        step += steps
        ips = steps * config.batch_size / max(seconds, 1e-9)
        record: dict[str, Any] = {
            "epoch": epoch + 1, "step": step, "train_loss": float(fitted.history["loss"][-1]),
            "train_accuracy": float(fitted.history["accuracy"][-1]),
            "learning_rate": float(keras.ops.convert_to_numpy(inner.learning_rate)),
            "seconds": round(seconds, 3), "images_per_second": ips}
        log.append({"step": step, "loss": record["train_loss"], "images_per_second": ips})
        if steps < spe:
            break
        if data.validation is not None:
            record.update({f"val_{k}": v for k, v in evaluate(data.validation).items()})
        for name, make in data.extra_eval.items():
            record.update({f"{name}_{k}": v for k, v in evaluate(make).items()})
        monitor = config.plateau_monitor if config.plateau_monitor in record else "train_loss"
        maximize = monitor in ("val_top1", "val_top5")
        value, best = record[monitor], state["plateau_best"]
        if best is None or (value > best + config.plateau_min_delta if maximize
                            else value < best - config.plateau_min_delta):
            state["plateau_best"], state["plateau_wait"] = value, 0
        else:
            state["plateau_wait"] += 1
            if state["plateau_wait"] >= config.plateau_patience:
                lr = record["learning_rate"]
                new_lr = max(lr * config.plateau_factor, config.min_learning_rate)
                if new_lr < lr:
                    inner.learning_rate = new_lr
                    record["reduced_learning_rate_to"] = new_lr
                state["plateau_wait"] = 0
        history = [h for h in history if h["epoch"] != record["epoch"]] + [record]
        _write_json(history_path, history)
        state.update(epoch=epoch + 1, step=step)
        layer_surgery.write_atomic(ckpt_model, model.save)
        _write_json(state_path, state)
        print(_epoch_line(record), file=out, flush=True)

    model_dir = None
    if config.save_model:
        layer_surgery.save_trained(model, config.output_dir,
                                   model_config(config, data.class_names, prepared))
        model_dir = config.output_dir
        print(f"saved the model to {config.output_dir}/{layer_surgery.MODEL_FILE}", file=out,
              flush=True)
        if config.keep_checkpoints == 0:  # the fit path keeps one checkpoint (the last epoch)
            for path in (ckpt_model, state_path):
                if os.path.isfile(path):
                    os.remove(path)
            if not os.listdir(ckpt_dir):
                os.rmdir(ckpt_dir)
    return Result(history, step, model_dir, log, prepared)
