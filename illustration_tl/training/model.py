"""The network and optimizer of a training run (paper §7).

:func:`prepare` rebuilds the backbone with a new classifier, re-initializes
the chosen layers (paper: 1-10 and 17-19 of VGG19) and creates the optimizer
with per-layer learning-rate multipliers (paper: layers 11-16 at 1e-4 against
1e-2). :func:`describe` is the ``--dry_run`` table; :func:`save` writes the
trained model and the ``model_config.json`` the later stages read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

from illustration_tl.models import layer_surgery
from illustration_tl.training import lr_multipliers
from illustration_tl.training.config import TrainConfig


@dataclasses.dataclass
class Prepared:
    """The model and optimizer of a run, built inside the strategy's scope."""

    strategy: Any
    model: Any
    rebuilt: layer_surgery.Rebuilt
    reinit_layers: list[str]
    layer_multipliers: dict[str, float]
    multipliers: dict[str, float]       # variable path -> multiplier
    optimizer: Any                      # possibly a LossScaleOptimizer


ModelFn = Callable[[int, int], layer_surgery.Rebuilt]


def prepare(config: TrainConfig, num_classes: int, strategy: Any,
            model_fn: ModelFn | None = None) -> Prepared:
    """Rebuilds the model, re-initializes the chosen layers and creates the optimizer.

    ``model_fn(num_classes, seed)`` replaces :func:`layer_surgery.rebuild` for
    custom architectures (and tiny test models); it runs in the strategy's scope.
    """
    import keras

    top_weights = needs_top_weights(config) if model_fn is None else False
    with strategy.scope():
        if model_fn is None:
            rebuilt = layer_surgery.rebuild(
                config.backbone, num_classes, weights=config.weights,
                image_size=config.image_size, dropout=config.dropout, seed=config.seed,
                top_weights=top_weights, fc_units=config.fc_units)
        else:
            rebuilt = model_fn(num_classes, config.seed)
        model = rebuilt.model
        reinit = layer_surgery.parse_layer_spec(config.reinit_layers, model,
                                                flag="--reinit_layers")
        layer_surgery.reinitialize(model, [n for n in reinit if n not in rebuilt.fresh_layers],
                                   config.seed)
        rules = lr_multipliers.parse_rules(config.lr_multipliers)
        by_layer = lr_multipliers.layer_multipliers(model, rules)
        multipliers = lr_multipliers.resolve(model, rules)
        optimizer = lr_multipliers.create(
            config.optimizer, config.learning_rate, multipliers, momentum=config.momentum,
            nesterov=config.nesterov, weight_decay=config.weight_decay, decay=config.decay,
            no_decay=config.no_decay)
        if config.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    return Prepared(strategy, model, rebuilt, reinit, by_layer, multipliers, optimizer)


def needs_top_weights(config: TrainConfig) -> bool:
    """Whether to load ImageNet fc1/fc2: not when the recipe re-initializes both anyway
    (saves VGG's 0.5 GB with-top download)."""
    spec = layer_surgery.backbones.get(config.backbone)
    if not spec.has_fc_top or config.image_size != spec.image_size or not config.weights:
        return True
    names = layer_surgery.weighted_layer_names(config.backbone, config.image_size)
    reinit = layer_surgery.parse_layer_spec(config.reinit_layers, names, flag="--reinit_layers")
    return not {"fc1", "fc2"} <= set(reinit)


def describe(prepared: Prepared, config: TrainConfig) -> str:
    """The ``--dry_run`` table: per layer, its weights, re-initialized?, effective LR."""
    model = prepared.model
    numbers = layer_surgery.layer_number(model)
    reinit = set(prepared.reinit_layers)
    loaded = set(prepared.rebuilt.loaded_layers)
    rows = [("#", "layer", "type", "output shape", "params", "weights", "re-init", "lr")]
    for layer in model.layers:
        n = numbers.get(layer.name)
        params = sum(math.prod(v.shape) for v in layer.weights)
        shape = getattr(layer, "output", None)
        shape = str(tuple(shape.shape)) if shape is not None else ""
        if n is None:
            rows.append(("", layer.name, type(layer).__name__, shape, "", "", "", ""))
            continue
        source = prepared.rebuilt.weights_source if layer.name in loaded else "new"
        source = os.path.basename(source) if os.sep in source else source
        lr = config.learning_rate * prepared.layer_multipliers[layer.name]
        rows.append((str(n), layer.name, type(layer).__name__, shape, f"{params:,}", source,
                     "yes" if layer.name in reinit else "no",
                     "frozen" if lr == 0 else f"{lr:.3g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    total = sum(math.prod(v.shape) for v in model.trainable_variables)
    groups = lr_multipliers.groups(prepared.multipliers)
    lines += ["", f"trainable parameters: {total:,}",
              f"optimizer: {config.optimizer} (momentum {config.momentum:g}), base learning rate "
              f"{config.learning_rate:g}, weight decay {config.weight_decay:g} ({config.decay})",
              "learning-rate groups: " + ", ".join(
                  f"{config.learning_rate * m:.3g} ({len(p)} variables)"
                  for m, p in groups.items())]
    if prepared.rebuilt.unfit_layers:
        lines.append("not loaded (shape differs at this image size): "
                     + ", ".join(prepared.rebuilt.unfit_layers))
    return "\n".join(lines)


def model_config(config: TrainConfig, class_names: list[str], prepared: Prepared
                 ) -> dict[str, Any]:
    """The ``model_config.json`` contents (see interfaces: trained-model directory)."""
    return {
        "backbone": layer_surgery.backbones.get(config.backbone).name,
        "image_size": config.image_size,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "dropout": config.dropout, "fc_units": config.fc_units,
        "resize_mode": config.resize_mode,
        "weights_source": prepared.rebuilt.weights_source,
        "reinit_layers": prepared.reinit_layers,
        "dataset": config.dataset,
        "reinit_spec": config.reinit_layers,
        "lr_multipliers": config.lr_multipliers,
        "learning_rate": config.learning_rate,
        "optimizer": config.optimizer,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
    }


def save(prepared: Prepared, config: TrainConfig, class_names: list[str]) -> str:
    """Writes ``prepared.model`` as ``model.keras`` and ``model_config.json`` into
    ``config.output_dir`` (read back by :func:`layer_surgery.load_trained`); returns the
    folder."""
    layer_surgery.save_trained(prepared.model, config.output_dir,
                               model_config(config, class_names, prepared))
    return config.output_dir
