"""What a training run reports: one record per epoch, ``history.json`` and :class:`Result`.

Both loops write the same per-epoch record (``epoch``, ``step``,
``train_loss``, ``train_accuracy``, ``learning_rate``, ``seconds``, then
``val_*`` and ``<set>_*`` evaluation entries and, after a reduce-on-plateau
step, ``reduced_learning_rate_to``) and keep the list of records in
``<output_dir>/history.json``, rewritten atomically after every epoch so a
resumed run continues it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, Callable

from illustration_tl.core import files

if TYPE_CHECKING:
    from illustration_tl.training.data import TrainData
    from illustration_tl.training.model import Prepared

HISTORY_FILE = "history.json"

Evaluate = Callable[[Callable[[], Any]], dict[str, float]]


@dataclasses.dataclass
class Result:
    """What a training run did (:func:`~illustration_tl.training.loop.optimize`,
    :func:`~illustration_tl.training.fit_loop.fit`)."""

    history: list[dict[str, Any]]
    steps: int
    model_dir: str | None
    log: list[dict[str, float]]         # one entry per progress line (step, loss, ...)
    prepared: Prepared | None = None


def history_path(output_dir: str) -> str:
    return os.path.join(output_dir, HISTORY_FILE)


def read(path: str, through_epoch: int) -> list[dict[str, Any]]:
    """The records of ``path`` up to epoch ``through_epoch`` (those a checkpoint covers);
    none when the file does not exist."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [h for h in json.load(f) if h["epoch"] <= through_epoch]


def write(path: str, history: list[dict[str, Any]]) -> None:
    """Rewrites ``path`` atomically (indented JSON)."""
    files.atomic_write_json(path, history)


def with_record(history: list[dict[str, Any]], record: dict[str, Any]
                ) -> list[dict[str, Any]]:
    """``history`` with ``record`` last, replacing an earlier record of the same epoch."""
    return [h for h in history if h["epoch"] != record["epoch"]] + [record]


def evaluations(data: TrainData, evaluate: Evaluate) -> dict[str, Any]:
    """The epoch record's evaluation entries: ``val_<metric>`` for the validation set and
    ``<name>_<metric>`` for each extra set, from ``evaluate(make_dataset)``."""
    entries: dict[str, Any] = {}
    if data.validation is not None:
        entries.update({f"val_{k}": v for k, v in evaluate(data.validation).items()})
    for name, make in data.extra_eval.items():
        entries.update({f"{name}_{k}": v for k, v in evaluate(make).items()})
    return entries
