"""Reduce-on-plateau: the learning-rate schedule of both training loops (paper §7).

The paper lowers the learning rate when training stops improving. After
each epoch :meth:`ReduceOnPlateau.update` looks at one metric of the epoch's
record (``--plateau_monitor``; ``train_loss`` when the record lacks it, e.g.
without a validation split). An improvement is a change beyond
``min_delta`` in the metric's direction (up for ``val_top1``/``val_top5``,
down for the losses); after ``patience`` epochs in a row without one, the
base learning rate is multiplied by ``factor`` (not below
``min_learning_rate``) and the count restarts.

Pure Python: the loops keep :class:`PlateauState` their own way (the custom
loop in checkpointed ``tf.Variable``s, the ``model.fit`` loop in a JSON file)
and apply the returned rate to their optimizer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

FALLBACK_MONITOR = "train_loss"
MAXIMIZED = ("val_top1", "val_top5")


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """The best value seen so far (``None``: no epoch yet) and the epochs since."""

    best: float | None = None
    wait: int = 0

    @classmethod
    def from_stored(cls, best: float, wait: int) -> PlateauState:
        """From the custom loop's checkpoint variables, where an infinite best means none."""
        return cls(float(best) if math.isfinite(best) else None, int(wait))

    def stored_best(self) -> float:
        """``best`` for a float variable: ``inf`` when there is none yet."""
        return math.inf if self.best is None else self.best


@dataclasses.dataclass(frozen=True)
class ReduceOnPlateau:
    """The schedule's settings (``--plateau_*`` and ``--min_learning_rate``)."""

    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 5
    min_delta: float = 1e-4
    min_learning_rate: float = 1e-6

    @classmethod
    def from_config(cls, config: Any) -> ReduceOnPlateau:
        """From a :class:`~illustration_tl.training.config.TrainConfig`."""
        return cls(config.plateau_monitor, config.plateau_factor, config.plateau_patience,
                   config.plateau_min_delta, config.min_learning_rate)

    def watched(self, record: Mapping[str, Any]) -> str:
        """The metric of ``record`` to watch: the monitor, or ``train_loss`` without it."""
        return self.monitor if self.monitor in record else FALLBACK_MONITOR

    def improved(self, metric: str, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``."""
        if best is None:
            return True
        if metric in MAXIMIZED:
            return value > best + self.min_delta
        return value < best - self.min_delta

    def update(self, state: PlateauState, record: Mapping[str, Any], learning_rate: float
               ) -> tuple[PlateauState, float | None]:
        """The state after an epoch with metrics ``record`` and, when the rate drops, the
        new learning rate (``None``: keep ``learning_rate``)."""
        metric = self.watched(record)
        value = float(record[metric])
        if self.improved(metric, value, state.best):
            return PlateauState(value, 0), None
        wait = state.wait + 1
        if wait < self.patience:
            return PlateauState(state.best, wait), None
        new_rate = max(learning_rate * self.factor, self.min_learning_rate)
        return PlateauState(state.best, 0), (new_rate if new_rate < learning_rate else None)
