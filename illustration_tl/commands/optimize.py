"""``illustration-tl optimize --output_dir=DIR`` (paper §7, adaptive layer-based optimization).

Fine-tunes an ImageNet CNN on an `illustrations` dataset with the paper's
recipe by default: VGG19, layers 1-10 and 17-19 re-initialized and trained at
learning rate 1e-2, layers 11-16 keeping their ImageNet weights at 1e-4, SGD
momentum 0.9, L2 weight decay 5e-4, dropout 0.5, 55 epochs, learning rate
reduced on plateau. Presets: ``--preset=paper_vgg19`` and
``--preset=paper_vgg16``.

Runs a custom training step under ``--strategy`` (one GPU, all GPUs of the
machine, several machines via TF_CONFIG, or a TPU), checkpoints every
``--checkpoint_every`` steps and at each epoch end, and resumes when rerun
with the same ``--output_dir``. Writes ``model.keras``
and ``model_config.json`` there for ``embed``/``export``, ``history.json``
(one entry per epoch) and TensorBoard logs under ``logs/``.
``--dry_run`` prints every layer with its weights' origin, whether it is
re-initialized and its learning rate, then stops.

On Keras's JAX backend (KERAS_BACKEND=jax) the same model, optimizer and
layer specs train through ``model.fit`` with keras.distribution data
parallelism (epoch-level checkpoints).
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app
from illustration_tl.errors import UserError

# Data.
_DATASET = flags.DEFINE_string("dataset", "illustrations/noisy",
                               "TFDS dataset to train on (paper: the noisy set).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Split to train on.")
_VALIDATION_SPLIT = flags.DEFINE_string("validation_split", "validation",
                                        "Split scored after each epoch ('' for none).")
_EVAL_DATASET = flags.DEFINE_string(
    "eval_dataset", "", "Another dataset scored after each epoch on the classes it shares with "
    "the training set, e.g. illustrations/curated.")
_EVAL_SPLIT = flags.DEFINE_string("eval_split", "test", "Split of --eval_dataset.")
_EVAL_DATA_DIR = flags.DEFINE_string("eval_data_dir", None,
                                     "TFDS data folder of --eval_dataset (default --data_dir).")
_AUGMENT = flags.DEFINE_bool("augment", False, "Random crop (from image_size*256/224) and "
                             "left-right mirror while training.")
_SHUFFLE_BUFFER = flags.DEFINE_integer("shuffle_buffer", 4096, "Examples in the shuffle buffer.")
_CACHE = flags.DEFINE_bool("cache", False, "Keep the encoded training images in memory.")
_RESIZE_MODE = flags.DEFINE_enum("resize_mode", "squash", ["squash", "pad"],
                                 "squash: plain resize as the paper; pad: white square first.")

# Model (paper §7).
_BACKBONE = flags.DEFINE_string("backbone", "vgg19", "keras.applications backbone "
                                "(vgg19, vgg16, resnet50, ...).")
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "'imagenet' (downloaded by Keras), a "
                               "local .h5/.weights.h5 file with or without the top, or 'none'.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input side in pixels.")
_DROPOUT = flags.DEFINE_float("dropout", 0.5, "Dropout after fc1 and fc2 (VGG) or before the "
                              "classifier (others).")
_FC_UNITS = flags.DEFINE_integer("fc_units", 4096, "Width of VGG's fc1 and fc2 (the paper's "
                                 "and ImageNet's 4096; other widths train them from scratch).")
_REINIT = flags.DEFINE_string(
    "reinit_layers", "1-10,17-19", "Layers to re-initialize: weighted-layer numbers (the "
    "paper's numbering: VGG19's 16 convolutions, then fc1, fc2, predictions) and/or name "
    "patterns, comma-separated, e.g. '1-10,17-19' or 'block1_*,fc*'.")

# Optimizer.
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-2, "Base learning rate.")
_LR_MULTIPLIERS = flags.DEFINE_string(
    "lr_multipliers", "11-16=0.01", "Per-layer learning-rate multipliers, 'SPEC=MULT;SPEC=MULT' "
    "with SPEC as in --reinit_layers; later rules win; others get 1. Paper: 11-16 at 1e-4.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "sgd",
                               ["sgd", "adam", "rmsprop", "nadam", "adamax", "adagrad", "lion"],
                               "Optimizer (paper: sgd).")
_MOMENTUM = flags.DEFINE_float("momentum", 0.9, "Momentum (sgd, rmsprop).")
_NESTEROV = flags.DEFINE_bool("nesterov", False, "Nesterov momentum (sgd).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 5e-4, "Weight decay (paper: 5e-4).")
_DECAY = flags.DEFINE_enum("decay", "l2", ["l2", "decoupled"], "l2: added to the gradient, "
                           "follows each layer's learning rate (paper, Caffe); decoupled: "
                           "w -= lr * decay * w (AdamW style).")
_NO_DECAY = flags.DEFINE_list("no_decay", [], "Variable-path patterns without weight decay, "
                              "e.g. '*/bias'.")

# Schedule.
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Global batch size (all replicas).")
_EPOCHS = flags.DEFINE_integer("epochs", 55, "Epochs (paper: 55).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 0, "Stop after this many steps (0: no limit).")
_PLATEAU_MONITOR = flags.DEFINE_enum("plateau_monitor", "val_loss",
                                     ["val_loss", "val_top1", "val_top5", "train_loss"],
                                     "Metric watched by reduce-on-plateau.")
_PLATEAU_FACTOR = flags.DEFINE_float("plateau_factor", 0.1, "LR factor on a plateau.")
_PLATEAU_PATIENCE = flags.DEFINE_integer("plateau_patience", 5,
                                         "Epochs without improvement before reducing the LR.")
_PLATEAU_MIN_DELTA = flags.DEFINE_float("plateau_min_delta", 1e-4,
                                        "Smallest change that counts as an improvement.")
_MIN_LEARNING_RATE = flags.DEFINE_float("min_learning_rate", 1e-6, "Floor of the base LR.")

# Execution.
_STRATEGY = flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored",
                                                   "multi_worker", "tpu"],
                              "tf.distribute strategy; auto: multi_worker with a TF_CONFIG "
                              "cluster, mirrored with several GPUs, else default.")
_TPU = flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
_MIXED_PRECISION = flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                                     "Mixed precision (float16 adds loss scaling).")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
_STEPS_PER_EXECUTION = flags.DEFINE_integer("steps_per_execution", 1,
                                            "Training steps per tf.function call.")
_DETERMINISTIC = flags.DEFINE_bool("deterministic", False, "Op determinism and a fixed data "
                                   "order: a resumed run equals an uninterrupted one (slower).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialization, dropout and data order.")

# Outputs.
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where checkpoints, logs and the trained "
                                  "model go; rerun with the same folder to resume.")
_CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints "
                                         "(0: only at epoch ends).")
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 1, "Checkpoints kept once the final model is saved (0: none; a rerun "
    "then trains from scratch). Training itself keeps max(1, N) to resume from.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Steps between progress lines/summaries.")
_SUMMARIES = flags.DEFINE_bool("summaries", True, "Write TensorBoard summaries to logs/.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the layers with their origin, "
                             "re-initialization and learning rate, then stop.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 0, "With --dry_run: the number of classes, "
                                    "to check a recipe before the dataset is built.")


def train_config():
    """The :class:`train.TrainConfig` the flags describe."""
    from illustration_tl import train

    weights = _WEIGHTS.value
    return train.TrainConfig(
        output_dir=_OUTPUT_DIR.value or "", backbone=_BACKBONE.value,
        weights=None if weights.lower() in ("", "none") else weights,
        image_size=_IMAGE_SIZE.value, dropout=_DROPOUT.value, fc_units=_FC_UNITS.value,
        reinit_layers=_REINIT.value,
        learning_rate=_LEARNING_RATE.value, lr_multipliers=_LR_MULTIPLIERS.value,
        optimizer=_OPTIMIZER.value, momentum=_MOMENTUM.value, nesterov=_NESTEROV.value,
        weight_decay=_WEIGHT_DECAY.value, decay=_DECAY.value, no_decay=tuple(_NO_DECAY.value),
        batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value, max_steps=_MAX_STEPS.value,
        plateau_monitor=_PLATEAU_MONITOR.value, plateau_factor=_PLATEAU_FACTOR.value,
        plateau_patience=_PLATEAU_PATIENCE.value, plateau_min_delta=_PLATEAU_MIN_DELTA.value,
        min_learning_rate=_MIN_LEARNING_RATE.value, strategy=_STRATEGY.value, tpu=_TPU.value,
        mixed_precision=_MIXED_PRECISION.value, jit_compile=_JIT_COMPILE.value,
        steps_per_execution=_STEPS_PER_EXECUTION.value, deterministic=_DETERMINISTIC.value,
        seed=_SEED.value, checkpoint_every=_CHECKPOINT_EVERY.value,
        keep_checkpoints=_KEEP_CHECKPOINTS.value, log_every=_LOG_EVERY.value,
        summaries=_SUMMARIES.value, dataset=_DATASET.value, resize_mode=_RESIZE_MODE.value)


def main(argv) -> int:
    import keras

    from illustration_tl import distribute, train

    config = train_config()
    config.validate(require_output_dir=not _DRY_RUN.value)
    tensorflow = keras.backend.backend() == "tensorflow"
    # Multi-worker strategies must exist before any other TensorFlow op.
    strategy = (distribute.make_strategy(config.strategy, tpu=config.tpu)
                if tensorflow else None)
    if _DRY_RUN.value and _NUM_CLASSES.value:
        data = train.TrainData(class_names=[f"class_{i}" for i in range(_NUM_CLASSES.value)],
                               train=lambda epoch, context: None, steps_per_epoch=1)
    else:
        data = _data(config)
    if tensorflow:
        train.optimize(config, data, strategy=strategy, dry_run=_DRY_RUN.value)
    else:
        if config.strategy not in ("auto", "default"):
            raise UserError(f"--strategy={config.strategy} needs KERAS_BACKEND=tensorflow; on "
                            f"{keras.backend.backend()} use --strategy=auto")
        train.fit(config, data, dry_run=_DRY_RUN.value)
    return 0


def _data(config):
    """The training, validation and extra evaluation data the flags name."""
    from illustration_tl import train

    return train.tfds_data(
        _DATASET.value, _DATA_DIR.value, backbone=config.backbone,
        image_size=config.image_size, batch_size=config.batch_size, seed=config.seed,
        train_split=_TRAIN_SPLIT.value, validation_split=_VALIDATION_SPLIT.value or None,
        eval_dataset=_EVAL_DATASET.value or None, eval_split=_EVAL_SPLIT.value,
        eval_data_dir=_EVAL_DATA_DIR.value, augment=_AUGMENT.value,
        shuffle_buffer=_SHUFFLE_BUFFER.value, cache=_CACHE.value,
        deterministic=config.deterministic, resize_mode=config.resize_mode)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
