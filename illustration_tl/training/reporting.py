"""Progress of a training run: console lines and TensorBoard scalars under ``logs/``.

The custom loop prints a progress line every ``--log_every`` steps
(:func:`progress_line`: loss, accuracy, images/s, ETA) and both loops print
an :func:`epoch_line` per epoch. With ``--summaries`` both write the epoch
record as ``epoch/<key>`` scalars (:func:`write_epoch`) into
``<output_dir>/logs``; the custom loop adds ``train/*`` and per-group
``learning_rate/*`` scalars (:func:`write_progress`), the ``model.fit`` loop
Keras's TensorBoard callback (``logs/train``, ``logs/validation``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable

from illustration_tl.training import lr_multipliers

LOG_DIR = "logs"


def log_dir(output_dir: str) -> str:
    return os.path.join(output_dir, LOG_DIR)


def progress_line(epoch: int, epochs: int, step_in_epoch: int, spe: int, loss: float,
                  acc: float, ips: float, eta_s: float, prefix: str) -> str:
    """``epoch 2/55  step 10/300  loss 1.2345  acc 0.678  12.3 img/s  ETA 1:02:03``."""
    seconds = int(max(0.0, eta_s)) if math.isfinite(eta_s) else -1
    eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 0 else "?"
    return (f"{prefix}epoch {epoch}/{epochs}  step {step_in_epoch}/{spe}  loss {loss:.4f}  "
            f"acc {acc:.3f}  {ips:.1f} img/s  ETA {eta}")


def epoch_line(record: dict[str, Any]) -> str:
    """One line summing up an epoch's record (train, each evaluation set, learning rate)."""
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


def summary_writer(output_dir: str, enabled: bool) -> Any:
    """A ``tf.summary`` writer into ``<output_dir>/logs``, or a no-op one."""
    import tensorflow as tf

    if enabled:
        return tf.summary.create_file_writer(log_dir(output_dir))
    return tf.summary.create_noop_writer()


def scalar(tag: str, value: float) -> None:
    """``tf.summary.scalar`` without importing TensorBoard (not a TensorFlow dependency)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


def write_progress(writer: Any, step: int, loss: float, accuracy: float, ips: float,
                   learning_rate: float, groups: Iterable[float]) -> None:
    """``train/loss``, ``train/accuracy``, ``train/images_per_second`` and the effective
    learning rate of each multiplier group (``learning_rate/<group>``) at ``step``."""
    with writer.as_default(step=step):
        scalar("train/loss", loss)
        scalar("train/accuracy", accuracy)
        scalar("train/images_per_second", ips)
        for m in groups:
            scalar(f"learning_rate/{lr_multipliers.group_name(m)}", learning_rate * m)


def write_epoch(writer: Any, record: dict[str, Any]) -> None:
    """The numeric entries of an epoch's record as ``epoch/<key>`` at the record's step."""
    with writer.as_default(step=record["step"]):
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                scalar(f"epoch/{key}", value)
    writer.flush()


def epoch_scalars_callback(output_dir: str) -> Any:
    """A Keras callback writing ``model.fit``'s epoch metrics as Keras's TensorBoard
    callback names them (``logs/train`` and ``logs/validation``, ``epoch_<metric>`` at
    step = epoch index, ``epoch_learning_rate`` included) with :func:`scalar`, so no
    TensorBoard package is needed."""
    import keras
    import tensorflow as tf

    class EpochScalars(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._writers: dict[str, Any] = {}

        def _writer(self, split: str) -> Any:
            if split not in self._writers:
                self._writers[split] = tf.summary.create_file_writer(
                    os.path.join(log_dir(output_dir), split))
            return self._writers[split]

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
            logs.setdefault("learning_rate",
                            float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            for key, value in logs.items():
                split, name = ("validation", key[4:]) if key.startswith("val_") else (
                    "train", key)
                with self._writer(split).as_default(step=epoch):
                    scalar(f"epoch_{name}", float(value))
            for writer in self._writers.values():
                writer.flush()

        def on_train_end(self, logs: dict | None = None) -> None:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()

    return EpochScalars()
