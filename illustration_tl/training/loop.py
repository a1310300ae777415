"""The custom ``tf.distribute`` training loop of the paper §7 recipe (:func:`optimize`).

The paper fine-tunes VGG19 on the noisy clip-art set with Caffe: layers 1-10
and 17-19 re-initialized at learning rate 1e-2, layers 11-16 kept from
ImageNet at 1e-4, SGD momentum 0.9, weight decay 5e-4, dropout 0.5, 55 epochs.
:func:`optimize` runs that recipe (or any other given by
:class:`~illustration_tl.training.config.TrainConfig`) with the custom step of
:mod:`.steps` under a ``tf.distribute`` strategy:

* per epoch: train loss/accuracy, validation top-1/top-5 and optional extra
  evaluation sets, learning rate reduced on plateau (:mod:`.plateau`);
* checkpoints (:mod:`.checkpoints`) every ``--checkpoint_every`` steps and at
  each epoch end; calling again with the same output directory resumes. With
  ``deterministic=True`` a resumed run ends bit-identical to an uninterrupted
  one (op determinism + per-epoch seeded data order + skipping the batches
  already trained on);
* TensorBoard summaries and console progress with images/s and ETA
  (:mod:`.reporting`), ``history.json`` (:mod:`.history`);
* the final model in ``<output_dir>`` (``model.keras``, ``model_config.json``;
  see :func:`layer_surgery.load_trained`).

Needs the TensorFlow backend; :func:`~illustration_tl.training.fit_loop.fit`
trains the same recipe on the others.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

from illustration_tl.errors import UserError
from illustration_tl.models import layer_surgery
from illustration_tl.training import distribute, history, lr_multipliers, reporting
from illustration_tl.training.checkpoints import RunCheckpoints, RunState
from illustration_tl.training.config import TrainConfig
from illustration_tl.training.data import TrainData
from illustration_tl.training.history import Result
from illustration_tl.training.model import ModelFn, Prepared, describe, prepare, save
from illustration_tl.training.plateau import ReduceOnPlateau
from illustration_tl.training.steps import TrainSteps


def optimize(config: TrainConfig, data: TrainData, *, strategy: Any = None,
             dry_run: bool = False, out: Any = None, model_fn: ModelFn | None = None
             ) -> Result:
    """Trains (or resumes training of) the paper §7 model; returns the epoch history.

    ``strategy`` defaults to ``distribute.make_strategy(config.strategy)``;
    create it yourself first when other TensorFlow work precedes this call
    (multi-worker strategies must exist before any TF op). ``dry_run`` builds
    the model, prints :func:`~illustration_tl.training.model.describe` and returns
    without training. ``model_fn``: see :func:`~illustration_tl.training.model.prepare`.
    """
    import keras

    out = out or sys.stdout
    config.validate(require_output_dir=not dry_run)
    if keras.backend.backend() != "tensorflow":
        raise UserError("the custom training step needs KERAS_BACKEND=tensorflow; "
                        "training.fit_loop.fit() trains through model.fit on other backends")
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
        return _Run(config, data, prepared, out).train()
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


class _Run:
    """One call of the loop: restores the last checkpoint, trains the remaining steps."""

    def __init__(self, config: TrainConfig, data: TrainData, prepared: Prepared,
                 out: Any) -> None:
        strategy = prepared.strategy
        self.config, self.data, self.prepared, self.out = config, data, prepared, out
        self.chief = distribute.is_chief(strategy)
        task_type, task_id = distribute.task(strategy)
        self.prefix = f"[{task_type} {task_id}] " if task_type is not None else ""
        self.multi_worker = task_type is not None
        self.spe = data.steps_per_epoch
        os.makedirs(config.output_dir, exist_ok=True)

        with strategy.scope():
            self.state = RunState(self.spe)
        self.checkpoints = RunCheckpoints(config.output_dir, prepared.model, prepared.optimizer,
                                          self.state, strategy, config.keep_checkpoints)
        latest = self.checkpoints.restore()
        if latest:
            self.print(f"resuming from {latest} (epoch {int(self.state.epoch.numpy())}, step "
                       f"{int(self.state.step.numpy())})")
        self.steps = TrainSteps(prepared, config, len(data.class_names))
        self.writer = reporting.summary_writer(config.output_dir,
                                               self.chief and config.summaries)
        self.history_path = history.history_path(config.output_dir)
        self.history = history.read(self.history_path, int(self.state.epoch.numpy()))
        self.inner = lr_multipliers.inner_optimizer(prepared.optimizer)
        self.groups = sorted(set(prepared.multipliers.values()), reverse=True)
        self.plateau = ReduceOnPlateau.from_config(config)
        self.max_steps = config.max_steps or math.inf
        self.total_steps = min(config.epochs * self.spe, self.max_steps)
        self.log: list[dict[str, float]] = []
        self.step = int(self.state.step.numpy())
        self.session_start = 0.0
        self.session_steps = 0

    def print(self, text: str) -> None:
        print(self.prefix + text, file=self.out, flush=True)

    def train(self) -> Result:
        """Trains up to ``epochs`` (or ``max_steps``), then saves the model."""
        self.session_start = time.time()
        while int(self.state.epoch.numpy()) < self.config.epochs and self.step < self.max_steps:
            epoch = int(self.state.epoch.numpy())
            epoch_start = time.time()
            if not self.train_epoch(epoch):  # stopped by max_steps mid-epoch
                self.checkpoints.save()
                break
            self.end_epoch(epoch, time.time() - epoch_start)
        return self.finish()

    def train_epoch(self, epoch: int) -> bool:
        """Trains the rest of ``epoch``; whether it got to the epoch's end."""
        import tensorflow as tf

        config, spe = self.config, self.spe
        in_epoch = self.step - epoch * spe
        iterator = iter(self.distribute_train(epoch, in_epoch))
        mark_time, mark_step = time.time(), self.step
        while in_epoch < spe and self.step < self.max_steps:
            chunk = self.chunk(in_epoch)
            totals = self.steps.train(iterator, tf.constant(chunk, tf.int32)).numpy()
            self.check_finite(float(totals[0]), self.step + chunk)
            self.state.epoch_totals.assign_add(tf.constant(totals, tf.float64))
            self.step += chunk
            in_epoch += chunk
            self.session_steps += chunk
            self.state.step.assign(self.step)
            if (config.checkpoint_every and self.step % config.checkpoint_every == 0
                    and in_epoch < spe):  # the epoch end saves one anyway
                self.checkpoints.save()
            if self.step % config.log_every == 0 or in_epoch == spe:
                now = time.time()
                ips = (self.step - mark_step) * config.batch_size / max(now - mark_time, 1e-9)
                self.report(epoch, in_epoch, ips, float(totals[0] / totals[2]), now)
                mark_time, mark_step = now, self.step
        return in_epoch >= spe

    def chunk(self, in_epoch: int) -> int:
        """Steps of the next ``tf.function`` call: up to ``steps_per_execution``, ending at
        the epoch's end, ``max_steps``, the next progress line or checkpoint."""
        config, step = self.config, self.step
        chunk = min(config.steps_per_execution, self.spe - in_epoch, self.max_steps - step,
                    config.log_every - step % config.log_every)
        if config.checkpoint_every:
            chunk = min(chunk, config.checkpoint_every - step % config.checkpoint_every)
        return int(chunk)

    def check_finite(self, loss_sum: float, step: int) -> None:
        if not math.isfinite(loss_sum):
            latest_saved = self.checkpoints.latest() or "none yet"
            raise UserError(
                f"the training loss is {loss_sum} at step {step}: training "
                f"diverged; lower --learning_rate (now {self.config.learning_rate:g}), or "
                f"delete {self.checkpoints.directory} to restart (last checkpoint: "
                f"{latest_saved})")

    def report(self, epoch: int, in_epoch: int, ips: float, batch_loss: float,
               now: float) -> None:
        """A progress line, a log entry and the progress summaries."""
        loss, acc = self.state.train_means()
        eta = (self.total_steps - self.step) * (now - self.session_start) / max(
            self.session_steps, 1)
        print(reporting.progress_line(epoch + 1, self.config.epochs, in_epoch, self.spe, loss,
                                      acc, ips, eta, self.prefix), file=self.out, flush=True)
        lr = float(self.inner.learning_rate.numpy())
        self.log.append({"step": self.step, "loss": loss, "accuracy": acc,
                         "images_per_second": ips, "batch_loss": batch_loss})
        reporting.write_progress(self.writer, self.step, loss, acc, ips, lr, self.groups)

    def end_epoch(self, epoch: int, seconds: float) -> None:
        """Evaluates, reduces the learning rate on plateau, records and checkpoints."""
        import tensorflow as tf

        loss, acc = self.state.train_means()
        record: dict[str, Any] = {
            "epoch": epoch + 1, "step": self.step, "train_loss": loss, "train_accuracy": acc,
            "learning_rate": float(self.inner.learning_rate.numpy()),
            "seconds": round(seconds, 3),
        }
        record.update(history.evaluations(self.data, self.evaluate))
        plateau, new_rate = self.plateau.update(self.state.plateau(), record,
                                                record["learning_rate"])
        self.state.set_plateau(plateau)
        if new_rate is not None:
            self.inner.learning_rate.assign(new_rate)
            record["reduced_learning_rate_to"] = new_rate
        self.history = history.with_record(self.history, record)
        if self.chief:
            history.write(self.history_path, self.history)
        self.state.epoch.assign(epoch + 1)
        self.state.epoch_totals.assign(tf.zeros([3], tf.float64))
        self.checkpoints.save()
        self.print(reporting.epoch_line(record))
        reporting.write_epoch(self.writer, record)

    def finish(self) -> Result:
        model_dir = None
        if self.config.save_model and self.chief:
            model_dir = save(self.prepared, self.config, self.data.class_names)
            self.print(f"saved the model to {self.config.output_dir}/{layer_surgery.MODEL_FILE}")
            self.checkpoints.prune(self.config.keep_checkpoints)
        self.writer.close()
        return Result(self.history, self.step, model_dir, self.log, self.prepared)

    def distribute_train(self, epoch: int, skip: int) -> Any:
        """Epoch ``epoch``'s training batches after the first ``skip``, repeated."""
        strategy, data = self.prepared.strategy, self.data
        if self.multi_worker:
            return strategy.distribute_datasets_from_function(
                lambda ctx: data.train(epoch, ctx).skip(skip).repeat())
        return strategy.experimental_distribute_dataset(data.train(epoch, None).skip(skip)
                                                        .repeat())

    def evaluate(self, make: Callable[[], Any]) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy and the number of examples of ``make()``'s set."""
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        dataset = self.prepared.strategy.experimental_distribute_dataset(
            make().with_options(options))
        loss, top1, topk, n = (float(x) for x in self.steps.evaluate(dataset).numpy())
        if n == 0:
            return {"examples": 0}
        return {"loss": loss / n, "top1": top1 / n, "top5": topk / n, "examples": int(n)}
