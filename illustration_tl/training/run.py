"""One entry to the adaptive layer-based optimization (paper §7) on any Keras backend.

:func:`train` runs the recipe of a :class:`~illustration_tl.training.config.TrainConfig`
with the custom ``tf.distribute`` loop (:mod:`.loop`) on the TensorFlow backend and
with ``model.fit`` (:mod:`.fit_loop`) on the others (JAX); :func:`make_strategy`
makes the strategy the TensorFlow loop needs, before any other TensorFlow op. The
``optimize`` command and ``reproduce``'s §7 stage both go through here, so the
backend is chosen in one place.
"""

from __future__ import annotations

from typing import Any

from illustration_tl.errors import UserError
from illustration_tl.training.config import TrainConfig
from illustration_tl.training.data import TrainData


def backend() -> str:
    """The Keras backend in use (``tensorflow``, ``jax``, ...)."""
    import keras

    return keras.backend.backend()


def make_strategy(strategy: str = "auto", tpu: str | None = None) -> Any:
    """The ``tf.distribute`` strategy on TensorFlow (call it before any other TensorFlow
    op: a multi-worker strategy cannot be created later); None on other backends, which
    accept only ``auto``/``default`` (``model.fit`` uses keras.distribution instead)."""
    if backend() == "tensorflow":
        from illustration_tl.training import distribute

        return distribute.make_strategy(strategy, tpu=tpu)
    if strategy not in ("auto", "default"):
        raise UserError(f"--strategy={strategy} needs KERAS_BACKEND=tensorflow; on "
                        f"{backend()} use --strategy=auto")
    return None


def train(config: TrainConfig, data: TrainData, *, strategy: Any = None,
          dry_run: bool = False) -> Any:
    """Trains (or resumes) ``config`` on ``data``; returns the loop's result."""
    if backend() == "tensorflow":
        from illustration_tl.training import loop

        return loop.optimize(config, data, strategy=strategy, dry_run=dry_run)
    from illustration_tl.training import fit_loop

    if config.strategy not in ("auto", "default"):
        raise UserError(f"--strategy={config.strategy} needs KERAS_BACKEND=tensorflow; on "
                        f"{backend()} use --strategy=auto")
    return fit_loop.fit(config, data, dry_run=dry_run)
