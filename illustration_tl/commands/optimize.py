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
parallelism (epoch-level checkpoints; TensorBoard logs under ``logs/`` too).
"""

from __future__ import annotations

import dataclasses

from absl import flags

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.training.config import TrainConfig, TrainDataConfig

# One flag per field of the stage's configs: names, defaults and help live there.
DATA_FLAGS = config_flags.define(TrainDataConfig)
TRAIN_FLAGS = config_flags.define(TrainConfig, exclude=("dataset",))
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the layers with their origin, "
                             "re-initialization and learning rate, then stop.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 0, "With --dry_run: the number of classes, "
                                    "to check a recipe before the dataset is built.")


def data_config() -> TrainDataConfig:
    """The :class:`training.config.TrainDataConfig` the flags describe."""
    return TrainDataConfig(**config_flags.values(DATA_FLAGS, TrainDataConfig))


def train_config() -> TrainConfig:
    """The :class:`training.config.TrainConfig` the flags describe."""
    return TrainConfig(**config_flags.values(TRAIN_FLAGS, TrainConfig),
                       dataset=DATA_FLAGS["dataset"].value)


def main(argv) -> int:
    from illustration_tl.training import run
    from illustration_tl.training.data import TrainData

    config = train_config()
    config.validate(require_output_dir=not _DRY_RUN.value)
    # Multi-worker strategies must exist before any other TensorFlow op.
    strategy = run.make_strategy(config.strategy, tpu=config.tpu)
    if _DRY_RUN.value and _NUM_CLASSES.value:
        data = TrainData(class_names=[f"class_{i}" for i in range(_NUM_CLASSES.value)],
                         train=lambda epoch, context: None, steps_per_epoch=1)
    else:
        data = _data(config)
    run.train(config, data, strategy=strategy, dry_run=_DRY_RUN.value)
    return 0


def _data(config: TrainConfig):
    """The training, validation and extra evaluation data the flags name."""
    from illustration_tl.training.data import tfds_data

    data = dataclasses.asdict(data_config())
    return tfds_data(
        data.pop("dataset"), data.pop("data_dir"), backbone=config.backbone,
        image_size=config.image_size, batch_size=config.batch_size, seed=config.seed,
        deterministic=config.deterministic, resize_mode=config.resize_mode, **data)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
