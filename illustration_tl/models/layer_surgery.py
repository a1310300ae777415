"""Layer surgery for the adaptive layer-based optimization (paper §7).

The paper rebuilds VGG19 for the illustration classes, keeps the ImageNet
weights of some layers and re-initializes the others before training them
with their own learning rates. This module does the model side of that:

* :func:`build_classifier` rebuilds any ``keras.applications`` CNN for a new
  number of classes. VGG keeps its fc1/fc2 head and gets the dropout 0.5 after
  fc1 and fc2 that the Caffe original had (Keras's VGG has none); other
  backbones get global average pooling + dropout + a dense classifier. Weights
  come from ``"imagenet"`` (downloaded by Keras), a local ``.h5`` /
  ``.weights.h5`` file (with or without the classifier top), or nothing.
* :func:`parse_layer_spec` turns ``"1-10,17-19"`` (the paper's numbering of
  weighted layers: VGG19's 16 convolutions, then fc1, fc2, predictions) and
  name patterns (``"block1_*,fc*"``) into layer names.
* :func:`reinitialize` redraws chosen layers with each layer's own
  initializers, seeded per variable, leaving every other weight untouched.
* :func:`save_trained` / :func:`load_trained` write and read the trained-model
  directory that later stages (embeddings, export) consume.

Only Keras / ``keras.ops`` APIs are used, so this runs on the TensorFlow and
the JAX backends.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import re
import zlib
from typing import Any, Iterable

from illustration_tl.errors import UserError
from illustration_tl.models import backbones

MODEL_FILE = "model.keras"
CONFIG_FILE = "model_config.json"
CONFIG_KEYS = ("backbone", "image_size", "num_classes", "class_names", "dropout", "resize_mode",
               "weights_source", "reinit_layers", "dataset")

# Names of the layers this module adds on top of a ``keras.applications`` base.
VGG_HEAD = ("flatten", "fc1", "fc1_dropout", "fc2", "fc2_dropout", "predictions")
GAP_HEAD = ("avg_pool", "top_dropout", "predictions")


@dataclasses.dataclass
class Rebuilt:
    """A rebuilt classifier and where each weighted layer's weights came from."""

    model: Any                       # keras.Model
    weights_source: str              # "imagenet", the file path, or "none"
    loaded_layers: list[str]         # layers holding weights from ``weights_source``
    fresh_layers: list[str]          # layers initialized from their initializers (seeded)
    unfit_layers: list[str] = dataclasses.field(default_factory=list)  # in the source, wrong shape


# --------------------------------------------------------------------------- seeds


def derive_seed(seed: int, *parts: str) -> int:
    """A stable 31-bit seed for ``parts`` (same in every process and on every worker)."""
    return zlib.crc32("/".join([str(seed), *parts]).encode("utf-8")) & 0x7FFFFFFF


# --------------------------------------------------------------------------- layer specs


def _all_layers(model: Any) -> list[Any]:
    """The model's layers in order, descending into nested models."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and layer is not model:
            out += _all_layers(layer)
        else:
            out.append(layer)
    return out


def weighted_layers(model: Any) -> list[Any]:
    """The layers that own weights, in model order: the paper's layer numbering (§7).

    For VGG19 these are its 16 convolutions, then fc1, fc2 and predictions
    (layers 1-19); for VGG16 the 13 convolutions, then fc1, fc2, predictions.
    """
    return [layer for layer in _all_layers(model) if layer.weights]


def parse_layer_spec(spec: str | Iterable[str] | None, model: Any, *,
                     flag: str = "layer spec") -> list[str]:
    """Layer names selected by ``spec``, in model order (paper §7 layer choice).

    ``spec`` is a comma-separated list of items, each one of: ``N`` or ``N-M``
    (1-based positions among the weighted layers, the paper's numbering),
    a layer-name pattern with ``*``/``?``/``[...]`` (``block1_*``, ``fc*``), an
    exact layer name, ``all`` (every weighted layer) or ``none``. Only weighted
    layers are returned; an item that selects nothing is an error, so typos
    do not silently train the wrong recipe. ``model`` may also be the list of
    weighted-layer names (see :func:`weighted_layer_names`).
    """
    if spec is None:
        return []
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if isinstance(model, (list, tuple)):
        names, all_names, title = list(model), set(model), "the model"
    else:
        names = [layer.name for layer in weighted_layers(model)]
        all_names, title = {layer.name for layer in _all_layers(model)}, model.name
    chosen: set[str] = set()
    for item in items:
        low = item.lower()
        if low == "none":
            continue
        if low == "all":
            chosen.update(names)
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if m:
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            if not 1 <= first <= last <= len(names):
                raise UserError(
                    f"{flag}: {item!r} is outside 1-{len(names)}, the weighted layers of "
                    f"{title} (1={names[0]}, {len(names)}={names[-1]})")
            chosen.update(names[first - 1:last])
            continue
        matched = [n for n in names if fnmatch.fnmatchcase(n, item)]
        if not matched:
            if item in all_names:
                raise UserError(f"{flag}: layer {item!r} has no weights")
            raise UserError(f"{flag}: {item!r} matches no weighted layer of {title}; "
                            f"its weighted layers are {', '.join(names)}")
        chosen.update(matched)
    return [n for n in names if n in chosen]


def weighted_layer_names(backbone: str, image_size: int | None = None) -> list[str]:
    """The weighted layers of :func:`rebuild`'s model, from a cheap weightless base."""
    spec = backbones.get(backbone)
    size = int(image_size or spec.image_size)
    base = spec.application()(include_top=False, weights=None, input_shape=(size, size, 3))
    head = ["fc1", "fc2", "predictions"] if spec.has_fc_top else ["predictions"]
    return [layer.name for layer in weighted_layers(base)] + head


def layer_number(model: Any) -> dict[str, int]:
    """Layer name -> its 1-based number among the weighted layers."""
    return {layer.name: i + 1 for i, layer in enumerate(weighted_layers(model))}


# --------------------------------------------------------------------------- re-initialization


def _initializer_for(layer: Any, variable: Any) -> Any:
    """The initializer ``layer`` declares for ``variable`` (kernel -> ``kernel_initializer``)."""
    name = variable.name.split("/")[-1].split(":")[0]
    candidates = [f"{name}_initializer", f"{name.replace('_kernel', '')}_initializer"]
    if name == "kernel" and hasattr(layer, "depthwise_initializer"):
        candidates.insert(0, "depthwise_initializer")
    for attr in candidates:
        init = getattr(layer, attr, None)
        if init is not None:
            return init
    raise UserError(f"cannot re-initialize layer {layer.name!r}: it declares no initializer for "
                    f"its variable {name!r} (looked for {', '.join(candidates)})")


def _seeded(initializer: Any, seed: int) -> Any:
    """A copy of ``initializer`` with ``seed`` (itself if it takes no seed)."""
    config = initializer.get_config()
    if "seed" not in config:
        return initializer
    return type(initializer).from_config({**config, "seed": seed})


def reinitialize(model: Any, layer_names: Iterable[str], seed: int) -> None:
    """Redraws the weights of ``layer_names`` from each layer's own initializers (paper §7).

    Each variable gets its own seed derived from ``seed`` and its path, so the
    result is the same in every process (multi-worker training relies on it)
    and does not depend on which other layers are re-initialized. All other
    weights are left bit-identical.
    """
    by_name = {layer.name: layer for layer in _all_layers(model)}
    for name in layer_names:
        layer = by_name.get(name)
        if layer is None:
            raise UserError(f"cannot re-initialize {name!r}: no such layer in {model.name}")
        for variable in layer.weights:
            init = _seeded(_initializer_for(layer, variable), derive_seed(seed, variable.path))
            variable.assign(init(tuple(variable.shape), dtype=variable.dtype))


# --------------------------------------------------------------------------- weight files


def weights_arg(weights: str | None) -> str | None:
    """Normalizes ``weights``: ``"imagenet"``, an existing ``.h5`` path, or ``None``."""
    if weights is None or str(weights).lower() in ("", "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = os.path.expanduser(str(weights))
    if not path.endswith(".h5"):
        raise UserError(f"--weights={weights!r}: expected 'imagenet', 'none' or a Keras weights "
                        "file ending in .h5 or .weights.h5")
    if not os.path.isfile(path):
        raise UserError(f"--weights={weights!r}: no such file")
    return path


@dataclasses.dataclass(frozen=True)
class FileTop:
    """The classifier top stored in a weights file."""

    classes: int                  # width of the last dense layer
    first_dense_inputs: int       # inputs of the first dense layer (VGG fc1: 512 * (S/32)^2)


def weights_file_top(path: str) -> FileTop | None:
    """The classifier top of a Keras weights file, or ``None`` for a no-top file.

    Reads both the Keras 3 ``.weights.h5`` layout (``layers/dense_2/vars/1``)
    and the legacy ``.h5`` layout (``predictions/predictions/bias:0``).
    """
    import h5py

    def arrays(group: Any) -> list[Any]:
        found: list[Any] = []
        group.visititems(lambda n, o: found.append(o) if isinstance(o, h5py.Dataset) else None)
        return found

    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and isinstance(f["layers"], h5py.Group):  # Keras 3 format
                dense = sorted((k for k in f["layers"] if re.fullmatch(r"dense(_\d+)?", k)),
                               key=lambda k: int(k.rsplit("_", 1)[1]) if "_" in k else 0)
                if not dense:
                    return None
                first, last = f["layers"][dense[0]]["vars"], f["layers"][dense[-1]]["vars"]
                return FileTop(int(last["1"].shape[0]), int(first["0"].shape[0]))
            group = f["model_weights"] if "model_weights" in f else f
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs.get("layer_names", [])]
            if "predictions" not in names:
                return None
            bias = [a for a in arrays(group["predictions"]) if len(a.shape) == 1]
            dense = [n for n in names if n.startswith("fc")] or ["predictions"]
            kernel = [a for a in arrays(group[dense[0]]) if len(a.shape) == 2]
            if not bias or not kernel:
                return None
            return FileTop(int(bias[0].shape[0]), int(kernel[0].shape[0]))
    except OSError as e:
        raise UserError(f"--weights={path!r}: not a readable HDF5 weights file ({e})") from e


def _copy_weights(source: Any, target: Any, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Copies same-named layers' weights; returns (copied, skipped for shape mismatch)."""
    copied, skipped = [], []
    for name in names:
        src, dst = source.get_layer(name), target.get_layer(name)
        values = src.get_weights()
        if [tuple(w.shape) for w in dst.weights] == [v.shape for v in values]:
            dst.set_weights(values)
            copied.append(name)
        else:
            skipped.append(name)
    return copied, skipped


# --------------------------------------------------------------------------- rebuilding


def _head(backbone: backbones.Backbone, features: Any, num_classes: int, dropout: float,
          seed: int, fc_units: int = 4096) -> Any:
    """The classifier head (VGG: fc1, dropout, fc2, dropout, predictions; else GAP head).

    ``fc_units``: the width of VGG's fc1 and fc2 (4096 in the paper and in the
    ImageNet weights, which load only at that width)."""
    import keras

    layers = keras.layers
    if backbone.has_fc_top:
        x = layers.Flatten(name="flatten")(features)
        x = layers.Dense(fc_units, activation="relu", name="fc1")(x)
        x = layers.Dropout(dropout, seed=derive_seed(seed, "fc1_dropout"), name="fc1_dropout")(x)
        x = layers.Dense(fc_units, activation="relu", name="fc2")(x)
        x = layers.Dropout(dropout, seed=derive_seed(seed, "fc2_dropout"), name="fc2_dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
        x = layers.Dropout(dropout, seed=derive_seed(seed, "top_dropout"), name="top_dropout")(x)
    # float32 softmax even under a mixed-precision policy.
    return layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)


def rebuild(backbone: str, num_classes: int, *, weights: str | None = "imagenet",
            image_size: int | None = None, dropout: float = 0.5, seed: int = 0,
            top_weights: bool = True, fc_units: int = 4096) -> Rebuilt:
    """Rebuilds ``backbone`` for ``num_classes`` classes (paper §7) and says what was loaded.

    ``weights``: ``"imagenet"``, a local ``.h5``/``.weights.h5`` file with or
    without the classifier top, or ``None``. VGG's ImageNet fc1/fc2 are loaded
    only when ``top_weights`` is set, the source has them, and ``image_size`` is
    the native 224 (fc1's shape depends on it) and ``fc_units`` is 4096.
    ``predictions`` is always new.
    Layers without loaded weights are initialized from their initializers,
    seeded by ``seed``, so every process builds the same model.
    """
    import keras

    spec = backbones.get(backbone)
    size = int(image_size or spec.image_size)
    if num_classes < 2:
        raise UserError(f"need at least 2 classes to train a classifier, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"--dropout={dropout}: must be in [0, 1)")
    if fc_units < 1:
        raise UserError(f"--fc_units={fc_units}: must be >= 1")
    top_weights = top_weights and fc_units == 4096
    source = weights_arg(weights)
    app = spec.application()
    shape = (size, size, 3)

    file_top = None
    if source not in (None, "imagenet"):
        file_top = weights_file_top(source)
    use_top = top_weights and (
        (source == "imagenet" and spec.has_fc_top and size == spec.image_size)
        or file_top is not None)

    if file_top is not None or use_top:
        # The file or download holds a whole classifier: build it at the size it was
        # made for, then copy every layer that fits into the model at ``size``.
        kwargs: dict[str, Any] = {"classes": file_top.classes if file_top else 1000}
        if file_top is not None and spec.has_fc_top:
            side = 32 * math.isqrt(max(file_top.first_dense_inputs // 512, 1))
            kwargs["input_shape"] = (side, side, 3)
        full = app(include_top=True, weights=source, **kwargs)
        base = app(include_top=False, weights=None, input_shape=shape)
    else:
        full = None
        base = app(include_top=False, weights=source, input_shape=shape)
    model = keras.Model(base.input,
                        _head(spec, base.output, num_classes, dropout, seed, fc_units),
                        name=f"{spec.name}_illustrations")

    unfit: list[str] = []
    base_names = [layer.name for layer in weighted_layers(base)]
    head_names = [layer.name for layer in weighted_layers(model) if layer.name not in base_names]
    if source is None:
        loaded: list[str] = []
    elif full is None:
        loaded = base_names
    else:
        full_names = {layer.name for layer in weighted_layers(full)}
        wanted = [n for n in base_names + head_names
                  if n in full_names and n != "predictions" and (use_top or n in base_names)]
        loaded, unfit = _copy_weights(full, model, wanted)
        missing = [n for n in base_names if n not in loaded]
        if missing:
            raise UserError(f"--weights={weights!r}: layers {', '.join(missing)} of "
                            f"{spec.name} could not be loaded from it (wrong backbone?)")
        del full
    fresh = [n for n in base_names + head_names if n not in loaded]
    reinitialize(model, fresh, seed)
    return Rebuilt(model, source or "none", loaded, fresh, unfit)


def build_classifier(backbone: str, num_classes: int, *, weights: str | None = "imagenet",
                     image_size: int | None = None, dropout: float = 0.5, seed: int = 0,
                     top_weights: bool = True, fc_units: int = 4096) -> Any:
    """The rebuilt classifier of :func:`rebuild` (paper §7); input: preprocessed images."""
    return rebuild(backbone, num_classes, weights=weights, image_size=image_size,
                   dropout=dropout, seed=seed, top_weights=top_weights,
                   fc_units=fc_units).model


def classifier_image_size(backbone: str, weights: str | None, requested: int | None) -> int:
    """The input side of the unmodified ImageNet classifier (§6 baseline, its export).

    With real weights a VGG-style fc top fixes the input to the backbone's native
    side; otherwise (random init, or a pooled head) the requested side is used.
    """
    spec = backbones.get(backbone)
    if weights is not None and spec.has_fc_top:
        return spec.image_size
    return int(requested or spec.image_size)


def imagenet_classifier(backbone: str, weights: str | None = "imagenet",
                        image_size: int | None = None) -> Any:
    """The unmodified ImageNet classifier (the paper's baseline, §6), top included."""
    spec = backbones.get(backbone)
    source = weights_arg(weights)
    kwargs: dict[str, Any] = {}
    side = spec.image_size
    if source not in (None, "imagenet"):
        top = weights_file_top(source)
        if top is None:
            raise UserError(f"--weights={weights!r} has no classifier top (fc1/fc2/predictions);"
                            " the ImageNet classifier needs a with-top weights file or 'imagenet'")
        kwargs["classes"] = top.classes
        if spec.has_fc_top:
            side = 32 * math.isqrt(max(top.first_dense_inputs // 512, 1))
    size = int(image_size or side)
    if spec.has_fc_top and size != side and source is not None:
        raise UserError(f"--image_size={size}: this {spec.name} classifier top only fits "
                        f"{side}x{side} inputs")
    if size != spec.image_size or "classes" in kwargs:
        kwargs["input_shape"] = (size, size, 3)
    return spec.application()(include_top=True, weights=source, **kwargs)


def embedding_model(model: Any, layer: str | None = None) -> Any:
    """A model whose output is ``layer``'s activations (paper §6.1: fc2 for VGG).

    Default: ``fc2`` when the model has it, else the global-average-pooled last
    conv block (``avg_pool``).
    """
    import keras

    names = {x.name for x in model.layers}
    if layer is None:
        layer = next((n for n in ("fc2", "avg_pool") if n in names), None)
        if layer is None:
            raise UserError(f"{model.name} has neither fc2 nor avg_pool; pass the embedding "
                            "layer explicitly")
    if layer not in names:
        raise UserError(f"embedding layer {layer!r} is not in {model.name}")
    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_{layer}")


# --------------------------------------------------------------------------- trained models


def write_atomic(path: str, write: Any) -> None:
    """Runs ``write(tmp_path)`` then renames onto ``path``, so readers never see half a file.

    The temporary name keeps ``path``'s suffix (Keras insists on ``.keras`` and
    ``.weights.h5``).
    """
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_trained(model: Any, directory: str, config: dict[str, Any]) -> None:
    """Writes ``model.keras`` (architecture and weights) and ``model_config.json`` atomically.

    (A separate ``.weights.h5`` copy is not written: it doubled the folder's size;
    ``keras.saving.load_model(...).save_weights(path)`` makes one when needed.)"""
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"model config lacks {missing}")
    os.makedirs(directory, exist_ok=True)
    write_atomic(os.path.join(directory, MODEL_FILE), model.save)

    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")

    write_atomic(os.path.join(directory, CONFIG_FILE), dump)


def load_trained(directory: str) -> tuple[Any, dict[str, Any]]:
    """Loads a directory written by ``optimize``: ``(keras.Model, model_config dict)``."""
    import keras

    config_path = os.path.join(directory, CONFIG_FILE)
    model_path = os.path.join(directory, MODEL_FILE)
    for path in (config_path, model_path):
        if not os.path.isfile(path):
            raise UserError(f"{directory!r} is not a trained-model directory: {path} is missing "
                            "(train one with `illustration-tl optimize`)")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # safe mode refusing a lambda, a corrupt zip, a foreign file
        text = str(e).strip().splitlines()
        detail = text[0][:300] if text else type(e).__name__
        hint = (" (it holds code that Keras's safe mode will not run: only load models you "
                "made yourself)" if "safe_mode" in str(e) or "unsafe" in str(e).lower()
                else "")
        raise UserError(f"{model_path} could not be loaded{hint}: {type(e).__name__}: "
                        f"{detail}") from None
    return model, config
