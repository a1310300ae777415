"""The training settings: the paper §7 recipe and the data it trains on.

:class:`TrainConfig` holds the recipe (model, learning rates, schedule,
execution, outputs) and :class:`TrainDataConfig` the TFDS splits. Each field
is one ``illustration-tl optimize`` flag, declared with
:func:`config_flags.setting` (default and help text in one place); the
defaults are the paper's: VGG19 from ImageNet with layers 1-10 and 17-19
re-initialized at learning rate 1e-2, layers 11-16 at 1e-4, SGD momentum 0.9,
weight decay 5e-4, dropout 0.5, 55 epochs, learning rate reduced on plateau.

This module imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import dataclasses

from illustration_tl.core.config_flags import setting
from illustration_tl.errors import UserError

PLATEAU_MONITORS = ("val_loss", "val_top1", "val_top5", "train_loss")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "nadam", "adamax", "adagrad", "lion")


@dataclasses.dataclass
class TrainConfig:
    """Everything training needs besides the data (defaults: the paper's recipe, §7).

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
    """Which built TFDS splits :func:`.data.tfds_data` feeds to training
    (``optimize``'s data flags)."""

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
