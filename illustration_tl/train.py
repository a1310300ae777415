"""Compatibility module: the training API now lives in :mod:`illustration_tl.training`.

``from illustration_tl import train`` keeps working for existing scripts;
``train.X`` is the same object as in its new module:

* :mod:`illustration_tl.training.config`: ``TrainConfig``, ``TrainDataConfig``,
  ``OPTIMIZERS``, ``PLATEAU_MONITORS``;
* :mod:`illustration_tl.training.data`: ``TrainData``, ``tfds_data``,
  ``batched_input``, ``steps_per_epoch``, ``label_map``;
* :mod:`illustration_tl.training.model`: ``Prepared``, ``ModelFn``, ``prepare``,
  ``describe``, ``model_config``;
* :mod:`illustration_tl.training.history`: ``Result``, ``HISTORY_FILE``;
* :mod:`illustration_tl.training.reporting`: ``LOG_DIR``;
* :mod:`illustration_tl.training.checkpoints`: ``CHECKPOINT_DIR``, ``prune_checkpoints``;
* :mod:`illustration_tl.training.loop`: ``optimize`` (custom ``tf.distribute`` loop);
* :mod:`illustration_tl.training.fit_loop`: ``fit`` (``model.fit`` on any backend).

New code should import from those modules. Nothing inside the package imports
this one.
"""

from illustration_tl.training.checkpoints import CHECKPOINT_DIR, prune_checkpoints
from illustration_tl.training.config import (
    OPTIMIZERS,
    PLATEAU_MONITORS,
    TrainConfig,
    TrainDataConfig,
)
from illustration_tl.training.data import (
    TrainData,
    batched_input,
    label_map,
    steps_per_epoch,
    tfds_data,
)
from illustration_tl.training.fit_loop import fit
from illustration_tl.training.history import HISTORY_FILE, Result
from illustration_tl.training.loop import optimize
from illustration_tl.training.model import ModelFn, Prepared, describe, model_config, prepare
from illustration_tl.training.reporting import LOG_DIR

__all__ = [
    "CHECKPOINT_DIR", "HISTORY_FILE", "LOG_DIR", "OPTIMIZERS", "PLATEAU_MONITORS", "ModelFn",
    "Prepared", "Result", "TrainConfig", "TrainData", "TrainDataConfig", "batched_input",
    "describe", "fit", "label_map", "model_config", "optimize", "prepare", "prune_checkpoints",
    "steps_per_epoch", "tfds_data",
]
