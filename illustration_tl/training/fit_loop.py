"""The paper §7 recipe trained through ``model.fit`` on any Keras backend (:func:`fit`).

The same model, optimizer and layer specs as the custom loop
(:mod:`.loop`), for Keras backends without ``tf.distribute`` (JAX): several
local devices train data-parallel through ``keras.distribution.DataParallel``.
Each epoch is one ``model.fit`` call; after it the loop evaluates, reduces
the learning rate on plateau (:mod:`.plateau`, as the custom loop), appends to
``history.json`` and checkpoints under ``checkpoints_fit/`` (the ``.keras``
model with its optimizer state, and ``state.json``); rerunning resumes from
the last finished epoch. With ``--summaries`` Keras's TensorBoard callback
writes the fit metrics to ``logs/train`` and the epoch records go to ``logs/``
as ``epoch/<key>`` scalars, as in the custom loop.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Callable

from illustration_tl.core import files
from illustration_tl.errors import UserError
from illustration_tl.models import layer_surgery
from illustration_tl.training import history, lr_multipliers, reporting
from illustration_tl.training.config import TrainConfig
from illustration_tl.training.data import TrainData
from illustration_tl.training.history import Result
from illustration_tl.training.model import ModelFn, Prepared, describe, prepare, save
from illustration_tl.training.plateau import PlateauState, ReduceOnPlateau

FIT_CHECKPOINT_DIR = "checkpoints_fit"
POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class NoStrategy:
    """Stands in for a tf.distribute strategy where there is none (JAX backend)."""

    num_replicas_in_sync = 1

    def scope(self) -> Any:
        return contextlib.nullcontext()


def fit(config: TrainConfig, data: TrainData, *, dry_run: bool = False, out: Any = None,
        model_fn: ModelFn | None = None) -> Result:
    """The same model, optimizer and layer specs trained through ``model.fit`` (any backend).

    ``data`` yields ``tf.data`` datasets as for
    :func:`~illustration_tl.training.loop.optimize`; ``dry_run`` and ``model_fn``
    as there.
    """
    import keras

    out = out or sys.stdout
    config.validate(require_output_dir=not dry_run)
    if config.mixed_precision not in POLICIES:
        raise UserError(f"--mixed_precision={config.mixed_precision!r}: choose from "
                        f"{', '.join(POLICIES)}")
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(POLICIES[config.mixed_precision])
    distributed = _distribute_over_local_devices(config.batch_size)
    try:
        prepared = prepare(config, len(data.class_names), NoStrategy(), model_fn)
        if dry_run:
            print(describe(prepared, config), file=out, flush=True)
            return Result([], 0, None, [], prepared)
        return _train(config, data, prepared, out)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        if distributed:
            keras.distribution.set_distribution(None)


def _distribute_over_local_devices(batch_size: int) -> bool:
    """On JAX with several devices, sets ``DataParallel`` over them; whether it did."""
    import keras

    if keras.backend.backend() != "jax":
        return False
    devices = keras.distribution.list_devices()
    if len(devices) <= 1:
        return False
    if batch_size % len(devices):
        raise UserError(f"--batch_size={batch_size} must be a multiple of the "
                        f"{len(devices)} devices")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return True


class FitCheckpoint:
    """``<output_dir>/checkpoints_fit``: the model after the last finished epoch
    (``last.keras``, optimizer state included) and ``state.json`` (epoch, step and
    reduce-on-plateau state)."""

    def __init__(self, output_dir: str) -> None:
        self.directory = os.path.join(output_dir, FIT_CHECKPOINT_DIR)
        self.model_path = os.path.join(self.directory, "last.keras")
        self.state_path = os.path.join(self.directory, "state.json")

    def exists(self) -> bool:
        return os.path.isfile(self.state_path) and os.path.isfile(self.model_path)

    def load(self) -> tuple[Any, dict[str, Any]]:
        import keras

        with open(self.state_path, encoding="utf-8") as f:
            state = json.load(f)
        return keras.saving.load_model(self.model_path), state

    def save(self, model: Any, state: dict[str, Any]) -> None:
        os.makedirs(self.directory, exist_ok=True)
        layer_surgery.write_atomic(self.model_path, model.save)
        files.atomic_write_json(self.state_path, state)

    def remove(self) -> None:
        """Deletes both files, and the folder when that leaves it empty."""
        for path in (self.model_path, self.state_path):
            if os.path.isfile(path):
                os.remove(path)
        if os.path.isdir(self.directory) and not os.listdir(self.directory):
            os.rmdir(self.directory)


def compile_model(model: Any, optimizer: Any, config: TrainConfig, num_classes: int) -> None:
    """Cross-entropy, accuracy and top-5 (``top5``), with ``--jit_compile`` on TensorFlow."""
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseTopKCategoricalAccuracy(
                               k=min(5, num_classes), name="top5")],
                  jit_compile=(config.jit_compile if keras.backend.backend() == "tensorflow"
                               else "auto"),
                  steps_per_execution=config.steps_per_execution)


def callbacks(config: TrainConfig) -> list[Any]:
    """The Keras callbacks of every ``model.fit`` call: TensorBoard scalars into ``logs/``
    with ``--summaries`` (epoch-level metrics and learning rate, under ``logs/train`` and
    ``logs/validation``), written without the TensorBoard package."""
    if not config.summaries:
        return []
    return [reporting.epoch_scalars_callback(config.output_dir)]


def evaluate(model: Any, make: Callable[[], Any], batch_size: int) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``make()``'s set, leaving out labels < 0."""
    ds = make().unbatch().filter(lambda x, y: y >= 0).batch(batch_size)
    with warnings.catch_warnings():  # the filtered dataset's length is unknown
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        result = model.evaluate(ds, verbose=0, return_dict=True)
    return {"loss": float(result["loss"]), "top1": float(result["accuracy"]),
            "top5": float(result["top5"])}


def _train(config: TrainConfig, data: TrainData, prepared: Prepared, out: Any) -> Result:
    """Fits the remaining epochs, one ``model.fit`` call each, then saves the model."""
    spe = data.steps_per_epoch
    os.makedirs(config.output_dir, exist_ok=True)
    checkpoint = FitCheckpoint(config.output_dir)  # its folder is made by its first save
    state = _restore_or_compile(checkpoint, prepared, config, len(data.class_names), out)
    model = prepared.model
    history_path = history.history_path(config.output_dir)
    records = history.read(history_path, state["epoch"])
    inner = lr_multipliers.inner_optimizer(model.optimizer)
    plateau = ReduceOnPlateau.from_config(config)
    fit_callbacks = callbacks(config)
    writer = reporting.summary_writer(config.output_dir, config.summaries)
    max_steps = config.max_steps or math.inf
    step = state["step"]
    log: list[dict[str, float]] = []

    for epoch in range(state["epoch"], config.epochs):
        if step >= max_steps:
            break
        steps = int(min(spe, max_steps - step))
        record = _fit_epoch(model, data, config, epoch, steps, fit_callbacks)
        step += steps
        record["step"] = step
        log.append({"step": step, "loss": record["train_loss"],
                    "images_per_second": record["images_per_second"]})
        if steps < spe:  # stopped by max_steps mid-epoch: no record, no checkpoint
            break
        record.update(history.evaluations(
            data, lambda make: evaluate(model, make, config.batch_size)))
        reduced, new_rate = plateau.update(PlateauState(state["plateau_best"],
                                                        state["plateau_wait"]),
                                           record, record["learning_rate"])
        state["plateau_best"], state["plateau_wait"] = reduced.best, reduced.wait
        if new_rate is not None:
            inner.learning_rate = new_rate
            record["reduced_learning_rate_to"] = new_rate
        records = history.with_record(records, record)
        history.write(history_path, records)
        state.update(epoch=epoch + 1, step=step)
        checkpoint.save(model, state)
        print(reporting.epoch_line(record), file=out, flush=True)
        reporting.write_epoch(writer, record)

    model_dir = None
    if config.save_model:
        model_dir = save(prepared, config, data.class_names)
        print(f"saved the model to {config.output_dir}/{layer_surgery.MODEL_FILE}", file=out,
              flush=True)
        if config.keep_checkpoints == 0:  # the fit path keeps one checkpoint (the last epoch)
            checkpoint.remove()
    writer.close()
    return Result(records, step, model_dir, log, prepared)


def _restore_or_compile(checkpoint: FitCheckpoint, prepared: Prepared, config: TrainConfig,
                        num_classes: int, out: Any) -> dict[str, Any]:
    """Loads the last finished epoch's model into ``prepared`` and returns its state, or
    compiles the new model and returns the state of a fresh run."""
    if checkpoint.exists():
        prepared.model, state = checkpoint.load()
        print(f"resuming from {checkpoint.model_path} (epoch {state['epoch']})", file=out,
              flush=True)
        return state
    compile_model(prepared.model, prepared.optimizer, config, num_classes)
    return {"epoch": 0, "step": 0, "plateau_best": None, "plateau_wait": 0}


def _fit_epoch(model: Any, data: TrainData, config: TrainConfig, epoch: int, steps: int,
               fit_callbacks: list[Any]) -> dict[str, Any]:
    """One ``model.fit`` call over ``steps`` batches of ``epoch``; the start of its record
    (``step`` is filled in by the caller)."""
    import keras

    start = time.time()
    fitted = model.fit(data.train(epoch, None).repeat(), initial_epoch=epoch,
                       epochs=epoch + 1, steps_per_epoch=steps, shuffle=False, verbose=2,
                       callbacks=fit_callbacks)
    seconds = time.time() - start
    inner = lr_multipliers.inner_optimizer(model.optimizer)
    return {"epoch": epoch + 1, "step": None,
            "train_loss": float(fitted.history["loss"][-1]),
            "train_accuracy": float(fitted.history["accuracy"][-1]),
            "learning_rate": float(keras.ops.convert_to_numpy(inner.learning_rate)),
            "seconds": round(seconds, 3),
            "images_per_second": steps * config.batch_size / max(seconds, 1e-9)}
