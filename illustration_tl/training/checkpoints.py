"""Checkpoints of the custom training loop (``<output_dir>/checkpoints``).

Every checkpoint holds the model, the optimizer (slots, iterations, learning
rate), and :class:`RunState`: step, epoch, steps per epoch, the running train
sums of the current epoch, the reduce-on-plateau state and the non-trainable
variables (dropout seed-generator states), so that a resumed run continues
exactly where the last checkpoint left it. Under multi-worker training only the
chief's files stay (:mod:`distribute`).
"""

from __future__ import annotations

import math
import os
from typing import Any

from illustration_tl.errors import UserError
from illustration_tl.training import distribute
from illustration_tl.training.plateau import PlateauState

CHECKPOINT_DIR = "checkpoints"


class RunState:
    """Run state saved in every checkpoint besides the model and the optimizer.

    Create it in the strategy's scope. ``plateau_best`` is ``inf`` until the first
    epoch ends (see :meth:`PlateauState.from_stored`).
    """

    def __init__(self, steps_per_epoch: int) -> None:
        import tensorflow as tf

        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.steps_per_epoch = tf.Variable(steps_per_epoch, dtype=tf.int64, trainable=False,
                                           name="steps_per_epoch")
        # Sums of loss, correct, examples of the epoch so far (so a resumed epoch reports
        # the same train metrics as an uninterrupted one).
        self.epoch_totals = tf.Variable(tf.zeros([3], tf.float64), trainable=False,
                                        name="epoch_totals")
        self.plateau_best = tf.Variable(math.inf, dtype=tf.float64, trainable=False,
                                        name="plateau_best")
        self.plateau_wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_wait")

    def plateau(self) -> PlateauState:
        return PlateauState.from_stored(float(self.plateau_best.numpy()),
                                        int(self.plateau_wait.numpy()))

    def set_plateau(self, state: PlateauState) -> None:
        self.plateau_best.assign(state.stored_best())
        self.plateau_wait.assign(state.wait)

    def train_means(self) -> tuple[float, float]:
        """The epoch's mean train loss and accuracy so far."""
        sums = self.epoch_totals.numpy()
        return float(sums[0] / max(sums[2], 1)), float(sums[1] / max(sums[2], 1))


class RunCheckpoints:
    """The ``tf.train.Checkpoint`` of a run and its ``CheckpointManager``.

    Training keeps ``max(1, keep)`` checkpoints, so that it can resume;
    :meth:`prune` applies ``keep`` once the final model is saved.
    """

    def __init__(self, output_dir: str, model: Any, optimizer: Any, state: RunState,
                 strategy: Any, keep: int) -> None:
        import tensorflow as tf

        self.directory = os.path.join(output_dir, CHECKPOINT_DIR)
        self.state = state
        self.strategy = strategy
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=state.step, epoch=state.epoch,
            steps_per_epoch=state.steps_per_epoch, epoch_totals=state.epoch_totals,
            plateau_best=state.plateau_best, plateau_wait=state.plateau_wait,
            # Dropout seed-generator states and other non-trainable state.
            model_state=[v.value for v in model.non_trainable_variables])
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(self.directory, strategy),
            max_to_keep=max(1, keep))

    def restore(self) -> str | None:
        """Restores the latest checkpoint, if any; returns its path.

        Raises :class:`UserError` when it was written with another number of steps per
        epoch than the state's (batch size or data changed).
        """
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(self.directory)
        if not latest:
            return None
        expected = int(self.state.steps_per_epoch.numpy())
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        found = int(self.state.steps_per_epoch.numpy())
        if found != expected:
            raise UserError(
                f"{self.directory} was written with {found} steps per epoch, this run has "
                f"{expected} (batch size or data changed); use a new --output_dir or delete "
                "the checkpoints")
        return latest

    def save(self) -> None:
        """Writes a checkpoint numbered by the current step."""
        self.manager.save(checkpoint_number=int(self.state.step.numpy()))
        distribute.cleanup_write_dir(self.directory, self.strategy)

    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def prune(self, keep: int) -> None:
        prune_checkpoints(self.manager, self.directory, keep)


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
