"""ImageNet backbones from ``keras.applications``, described in one place.

The paper uses VGG19 (§5); any ``keras.applications`` CNN goes through the same
code. A :class:`Backbone` says how to construct the network, which
``preprocess_input`` it expects (VGG: Caffe mode, RGB->BGR minus the ImageNet
means, no scaling), its native input size, and the layer whose activations
are the embedding fed to the SVM (paper §6.1: fc2 for VGG with its top; the
global-average-pooled last conv block otherwise).

Only Keras APIs are used here, so this runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from illustration_tl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How to build and feed one ``keras.applications`` architecture."""

    name: str
    constructor: str            # attribute of keras.applications, e.g. "VGG19"
    module: str                 # keras.applications submodule with preprocess_input
    image_size: int             # native input side in pixels
    top_embedding_layer: str | None  # embedding layer when the classifier top is kept
    has_fc_top: bool            # VGG-style fc1/fc2/predictions head
    # Conv layers whose pooled activations transfer best to illustrations (``fit``):
    # the last two or three stages, shallow to deep; each is global-average- and
    # global-max-pooled (:mod:`illustration_tl.features`).
    transfer_layers: tuple[str, ...] = ()

    def application(self) -> Callable[..., Any]:
        """The ``keras.applications`` constructor."""
        import keras

        return getattr(keras.applications, self.constructor)

    def preprocess_input(self, images: Any) -> Any:
        """The backbone's own ``preprocess_input`` on float RGB images in [0, 255]."""
        module = importlib.import_module(f"keras.applications.{self.module}")
        return module.preprocess_input(images)


_BACKBONES = {
    b.name: b
    for b in [
        Backbone("vgg19", "VGG19", "vgg19", 224, "fc2", True,
                 ("block3_pool", "block4_pool", "block5_pool")),
        Backbone("vgg16", "VGG16", "vgg16", 224, "fc2", True,
                 ("block3_pool", "block4_pool", "block5_pool")),
        Backbone("resnet50", "ResNet50", "resnet50", 224, "avg_pool", False,
                 ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")),
        Backbone("resnet50v2", "ResNet50V2", "resnet_v2", 224, "avg_pool", False,
                 ("conv3_block4_out", "conv4_block6_out", "post_relu")),
        Backbone("mobilenetv2", "MobileNetV2", "mobilenet_v2", 224, None, False,
                 ("block_6_expand_relu", "block_13_expand_relu", "out_relu")),
        Backbone("efficientnetb0", "EfficientNetB0", "efficientnet", 224, "avg_pool", False,
                 ("block4c_add", "block5c_add", "top_activation")),
        Backbone("inceptionv3", "InceptionV3", "inception_v3", 299, "avg_pool", False,
                 ("mixed5", "mixed7", "mixed10")),
        Backbone("densenet121", "DenseNet121", "densenet", 224, "avg_pool", False,
                 ("pool3_pool", "pool4_pool", "relu")),
        Backbone("convnexttiny", "ConvNeXtTiny", "convnext", 224, None, False,
                 ("convnext_tiny_stage_1_block_2_identity",
                  "convnext_tiny_stage_2_block_8_identity",
                  "convnext_tiny_stage_3_block_2_identity")),
    ]
}

NAMES = tuple(_BACKBONES)


def get(name: str) -> Backbone:
    """The :class:`Backbone` called ``name`` (case-insensitive), or a clear error."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _BACKBONES:
        raise UserError(f"--backbone={name!r} is not supported; choose from {', '.join(NAMES)}")
    return _BACKBONES[key]
