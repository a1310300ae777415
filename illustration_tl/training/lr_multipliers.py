"""Per-variable learning-rate multipliers: the "adaptive" in adaptive layer-based optimization.

Paper §7 trains the re-initialized layers (1-10 and 17-19) at a learning rate
of 1e-2 and the kept ImageNet layers (11-16) at 1e-4, SGD with momentum 0.9 and
weight decay 5e-4, as Caffe's per-layer ``lr_mult`` does. Keras has no
per-layer learning rate, so this module adds one to any Keras optimizer:

* :func:`parse_rules` / :func:`resolve`: rules such as ``"11-16=0.01"`` (the
  layer specs of :func:`illustration_tl.models.layer_surgery.parse_layer_spec`) give
  every trainable variable a multiplier; later rules override earlier ones.
* :func:`create` builds an optimizer whose ``update_step`` multiplies the
  learning rate of each variable by its multiplier. Acting on the update
  (not on the gradient) makes it exact for SGD with momentum and correct for
  Adam and friends, where scaling the gradient would cancel out.
* Weight decay is the paper's (Caffe's) L2 term added to the gradient, so it
  follows each variable's learning rate; ``decay="decoupled"`` instead shrinks
  the weights by ``lr * multiplier * weight_decay`` (AdamW style).

The multiplier of each variable is resolved in ``build()`` by the variable's
position (``_get_variable_index``): on the TensorFlow backend, ``update_step``
receives the backing ``tf.Variable``, which has no ``.path``. Everything else
is ``keras.ops``, so it runs on the TensorFlow backend (also inside
``tf.distribute`` replicas) and on the JAX backend.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Iterable

import keras
from keras import ops

from illustration_tl.errors import UserError
from illustration_tl.models import layer_surgery

DECAY_MODES = ("l2", "decoupled")


@dataclasses.dataclass(frozen=True)
class Rule:
    """Variables of the layers selected by ``spec`` train at ``multiplier`` x the base LR."""

    spec: str
    multiplier: float


def parse_rules(text: str | Iterable[str] | None, *, flag: str = "--lr_multipliers"
                ) -> list[Rule]:
    """Parses ``"SPEC=MULT;SPEC=MULT"`` (e.g. ``"11-16=0.01"`` or ``"block5_*=0.1"``).

    Rules are separated by ``;`` (a spec itself contains commas); a list of
    ``SPEC=MULT`` strings is accepted too.
    """
    if text is None:
        return []
    parts = text.split(";") if isinstance(text, str) else list(text)
    rules = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        spec, sep, value = part.rpartition("=")
        if not sep or not spec.strip():
            raise UserError(f"{flag}: {part!r} is not SPEC=MULTIPLIER (e.g. '11-16=0.01')")
        try:
            multiplier = float(value)
        except ValueError:
            raise UserError(f"{flag}: {value!r} in {part!r} is not a number") from None
        if multiplier < 0 or multiplier != multiplier:
            raise UserError(f"{flag}: multiplier {value!r} must be >= 0")
        rules.append(Rule(spec.strip(), multiplier))
    return rules


def format_rules(rules: Iterable[Rule]) -> str:
    """The inverse of :func:`parse_rules`."""
    return ";".join(f"{r.spec}={r.multiplier:g}" for r in rules)


def layer_multipliers(model: Any, rules: Iterable[Rule], default: float = 1.0,
                      *, flag: str = "--lr_multipliers") -> dict[str, float]:
    """Layer name -> multiplier for every weighted layer (last matching rule wins)."""
    out = {layer.name: default for layer in layer_surgery.weighted_layers(model)}
    for rule in rules:
        for name in layer_surgery.parse_layer_spec(rule.spec, model, flag=flag):
            out[name] = rule.multiplier
    return out


def resolve(model: Any, rules: Iterable[Rule], default: float = 1.0,
            *, flag: str = "--lr_multipliers") -> dict[str, float]:
    """Variable path -> multiplier for every trainable variable of ``model``."""
    by_layer = layer_multipliers(model, rules, default, flag=flag)
    out = {}
    for layer in layer_surgery.weighted_layers(model):
        for v in layer.trainable_weights:
            out[v.path] = by_layer[layer.name]
    for v in model.trainable_variables:
        out.setdefault(v.path, default)
    return out


class LRMultiplierMixin:
    """Mixed into a Keras optimizer: per-variable LR multipliers and L2 / decoupled decay.

    Args (besides the optimizer's own):
      lr_multipliers: variable path -> multiplier (see :func:`resolve`);
        variables not listed use 1. A multiplier of 0 freezes the variable.
      l2: the paper's weight decay, ``l2 * w`` added to the gradient.
      decoupled_decay: ``w -= lr * multiplier * decoupled_decay * w`` each step.
      no_decay: variable-path patterns (``*/bias``) exempt from either decay.
    """

    def __init__(self, *args: Any, lr_multipliers: dict[str, float] | None = None,
                 l2: float = 0.0, decoupled_decay: float = 0.0,
                 no_decay: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Plain tuples: the optimizer's attribute tracker would wrap dicts and lists.
        self._lr_multiplier_items = tuple(sorted((str(k), float(v))
                                                 for k, v in (lr_multipliers or {}).items()))
        self._l2 = float(l2)
        self._decoupled_decay = float(decoupled_decay)
        self._no_decay = tuple(no_decay)
        self._var_multipliers: tuple[float, ...] = ()
        self._var_decays: tuple[bool, ...] = ()

    @property
    def lr_multipliers(self) -> dict[str, float]:
        return dict(self._lr_multiplier_items)

    def multiplier(self, path: str) -> float:
        """The multiplier of the variable at ``path`` (1 when no rule names it)."""
        return dict(self._lr_multiplier_items).get(path, 1.0)

    def decays(self, path: str) -> bool:
        """Whether the variable at ``path`` gets weight decay."""
        return not any(fnmatch.fnmatchcase(path, p) for p in self._no_decay)

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        paths = [getattr(v, "path", None) or v.name for v in variables]
        by_path = dict(self._lr_multiplier_items)
        # Indexed like the optimizer's own slots: update_step gets a tf.Variable
        # without .path on the TensorFlow backend.
        self._var_multipliers = tuple(by_path.get(p, 1.0) for p in paths)
        self._var_decays = tuple(self.decays(p) for p in paths)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        index = self._get_variable_index(variable)
        multiplier = self._var_multipliers[index]
        if multiplier == 0.0:
            return
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        if multiplier != 1.0:
            learning_rate = ops.multiply(learning_rate, ops.cast(multiplier, dtype))
        if self._var_decays[index]:
            if self._l2:
                gradient = ops.add(ops.cast(gradient, dtype),
                                   ops.multiply(variable, ops.cast(self._l2, dtype)))
            if self._decoupled_decay:
                self.assign_sub(variable, ops.multiply(
                    variable, ops.multiply(learning_rate, ops.cast(self._decoupled_decay, dtype))))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(lr_multipliers=self.lr_multipliers, l2=self._l2,
                      decoupled_decay=self._decoupled_decay, no_decay=list(self._no_decay))
        return config


_CLASSES: dict[type, type] = {}


def optimizer_class(base: type) -> type:
    """``base`` (a Keras optimizer class) with :class:`LRMultiplierMixin`, registered for saving."""
    if base not in _CLASSES:
        if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
            raise TypeError(f"{base!r} is not a Keras optimizer class")
        name = f"LRMultiplied{base.__name__}"
        cls = type(name, (LRMultiplierMixin, base), {
            "__doc__": f"``keras.optimizers.{base.__name__}`` with per-variable LR multipliers "
                       "(see illustration_tl.training.lr_multipliers).",
            "__module__": __name__})
        _CLASSES[base] = keras.saving.register_keras_serializable(
            package="illustration_tl", name=name)(cls)
    return _CLASSES[base]


OPTIMIZERS: dict[str, type] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "nadam": keras.optimizers.Nadam,
    "adamax": keras.optimizers.Adamax,
    "adagrad": keras.optimizers.Adagrad,
    "lion": keras.optimizers.Lion,
}
for _base in OPTIMIZERS.values():  # registered at import, so saved models load
    optimizer_class(_base)


def create(name: str, learning_rate: float | Any, multipliers: dict[str, float] | None = None,
           *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
           decay: str = "l2", no_decay: Iterable[str] = (), **kwargs: Any) -> Any:
    """An optimizer ``name`` with per-variable multipliers (paper §7: ``sgd``, momentum 0.9,
    L2 5e-4).

    ``learning_rate`` is the base rate (a float or a Keras schedule); each
    variable trains at ``learning_rate * multipliers[path]``. ``decay`` is
    ``"l2"`` (added to the gradient, the paper) or ``"decoupled"``.
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise UserError(f"--optimizer={name!r}: choose from {', '.join(OPTIMIZERS)}")
    if decay not in DECAY_MODES:
        raise UserError(f"--decay={decay!r}: choose from {', '.join(DECAY_MODES)}")
    if weight_decay < 0:
        raise UserError(f"--weight_decay={weight_decay}: must be >= 0")
    if key in ("sgd", "rmsprop"):
        kwargs["momentum"] = float(momentum)
    elif momentum:
        raise UserError(f"--momentum applies to sgd and rmsprop, not --optimizer={name}")
    if key == "sgd":
        kwargs["nesterov"] = bool(nesterov)
    if isinstance(learning_rate, (int, float)):
        learning_rate = float(learning_rate)
    return optimizer_class(OPTIMIZERS[key])(
        learning_rate=learning_rate, lr_multipliers=multipliers,
        l2=weight_decay if decay == "l2" else 0.0,
        decoupled_decay=weight_decay if decay == "decoupled" else 0.0,
        no_decay=tuple(no_decay), **kwargs)


def inner_optimizer(optimizer: Any) -> Any:
    """The multiplier optimizer inside a ``LossScaleOptimizer`` (or ``optimizer`` itself)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def groups(multipliers: dict[str, float]) -> dict[float, list[str]]:
    """Multiplier -> variable paths, largest multiplier first (for summaries and dry runs)."""
    out: dict[float, list[str]] = {}
    for path, m in multipliers.items():
        out.setdefault(m, []).append(path)
    return dict(sorted(out.items(), key=lambda kv: -kv[0]))


def group_name(multiplier: float) -> str:
    """A summary-friendly name for a multiplier group, e.g. ``x0.01``."""
    return "x" + re.sub(r"[^0-9a-zA-Z.+-]", "_", f"{multiplier:g}")
