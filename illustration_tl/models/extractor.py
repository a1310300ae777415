"""Which network and layer produce an embedding, and how to describe it (paper §6.1).

An :class:`EmbeddingSource` is a built embedding model plus what it is (backbone,
input size, layer, weights, preprocessing, and the recipe that rebuilds it); every
feature file records it, so later stages can rebuild or check the same model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from illustration_tl.errors import UserError


def model_fingerprint(model: Any) -> str:
    """sha256 over the model's weights (names, shapes and values), in layer order.

    Two embedding files with the same fingerprint came from the same weights,
    whatever file or checkpoint they were loaded from.
    """
    h = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        h.update(f"{w.path if hasattr(w, 'path') else w.name}:{value.dtype}:{value.shape};"
                 .encode())
        h.update(value.tobytes())
    return "sha256:" + h.hexdigest()


def preprocessing_description(backbone: str, resize_mode: str) -> str:
    """A short text naming the preprocessing, stored in the metadata."""
    from illustration_tl.models import backbones

    b = backbones.get(backbone)
    return f"{resize_mode} resize; {b.preprocessing}"


@dataclasses.dataclass
class EmbeddingSource:
    """An embedding model and what it is: written into every split's metadata."""

    model: Any
    backbone: str
    image_size: int
    layer: str
    weights_source: str
    resize_mode: str = "squash"
    class_names_of_model: list[str] | None = None
    # The arguments of :func:`embedding_source` that rebuild this model (the
    # manifest later stages read, so that no setting has to be repeated).
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "image_size": self.image_size, "layer": self.layer,
                "weights_source": self.weights_source, "resize_mode": self.resize_mode,
                "preprocessing": preprocessing_description(self.backbone, self.resize_mode),
                "source": self.recipe}


def pooled_embedding_model(model: Any, layer: str | None = None) -> tuple[Any, str]:
    """The embedding model of ``model`` at ``layer`` and the layer's name.

    ``layer=None`` picks fc2 for VGG with its top, ``avg_pool`` for a classifier
    with a pooled head, and for a bare convolutional base (no top, e.g. the
    shared VGG16 conv base) the global average pool of its last conv block.
    A convolutional ``layer`` is global-average-pooled into a vector.
    """
    import keras

    names = {x.name for x in model.layers}
    if layer is None:
        layer = next((n for n in ("fc2", "avg_pool") if n in names), None)
    if layer is None:
        out, layer = model.output, model.layers[-1].name
    elif layer not in names:
        raise UserError(f"--layer={layer!r} is not a layer of {model.name}; its last layers "
                        f"are {', '.join(x.name for x in model.layers[-6:])}")
    else:
        out = model.get_layer(layer).output
    if len(out.shape) == 4:
        out = keras.layers.GlobalAveragePooling2D(name=f"{layer}_gap")(out)
        layer = f"gap({layer})"
    elif len(out.shape) != 2:
        raise UserError(f"layer {layer!r} outputs shape {tuple(out.shape[1:])}; pick a dense "
                        "or convolutional layer")
    return keras.Model(model.inputs, out, name=f"{model.name}_embedding"), layer


def keeps_top(backbone: str, source: str | None, size: int, include_top: str = "auto") -> bool:
    """Whether to build the ImageNet classifier top (``--include_top``): ``auto`` keeps it
    when the weights have one at this input size (``imagenet`` only at the backbone's
    native size, where Keras builds its top; a no-top file or random init: no)."""
    from illustration_tl.models import backbones, layer_surgery

    if include_top not in ("auto", "yes", "no"):
        raise UserError(f"--include_top={include_top!r}: choose auto, yes or no")
    if include_top != "auto":
        return include_top == "yes"
    spec = backbones.get(backbone)
    if source == "imagenet":
        return size == spec.image_size
    if source is None:
        return False
    return layer_surgery.weights_file_top(source) is not None
