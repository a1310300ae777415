"""Backbones described in one place: ``keras.applications`` CNNs and KerasHub vision towers.

The paper uses VGG19 (§5); any ``keras.applications`` CNN goes through the same
code. A :class:`Backbone` says how to construct the network, which
``preprocess_input`` it expects (VGG: Caffe mode, RGB->BGR minus the ImageNet
means, no scaling), its native input size, and the layer whose activations
are the embedding fed to the SVM (paper §6.1: fc2 for VGG with its top; the
global-average-pooled last conv block otherwise).

KerasHub image backbones (the ``hub`` extra: ``pip install 'illustration-tl[hub]'``)
are named ``keras_hub:<preset>`` (``keras_hub:dinov2_small``,
``keras_hub:clip_vit_base_patch16``, ``keras_hub:siglip_base_patch16_224``) or, for
a randomly initialized tower given by ``hub_config``, ``keras_hub:<family>``. One
:class:`HubFamily` row per family (:data:`HUB_FAMILIES`) says how to get its vision
tower, how it normalizes pixels and which outputs are features;
:mod:`illustration_tl.models.hub_backbones` builds them (``fit`` only); ``keras_hub`` is
imported only when such a backbone is chosen (:func:`get`).

Only Keras APIs are used here, so this runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
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
    # global-max-pooled (:mod:`illustration_tl.features.multilayer`).
    transfer_layers: tuple[str, ...] = ()
    # KerasHub vision towers only: the family's row and the preset (None: a tower
    # built from ``hub_config``, randomly initialized).
    hub: HubFamily | None = None
    preset: str | None = None

    def application(self) -> Callable[..., Any]:
        """The ``keras.applications`` constructor."""
        import keras

        if self.hub is not None:
            raise UserError(f"--backbone={self.name}: KerasHub backbones work with `fit` (and "
                            "its Python API) only; this command needs a keras.applications "
                            f"CNN ({', '.join(NAMES)})")
        return getattr(keras.applications, self.constructor)

    def preprocess_input(self, images: Any) -> Any:
        """The backbone's own ``preprocess_input`` on float RGB images in [0, 255].

        Inside a ``tf.data`` pipeline on another Keras backend (JAX), Keras's function
        cannot take the graph's tensors: the same arithmetic runs in TensorFlow ops
        (:data:`TF_DATA_MODES`; a test checks both agree for every row)."""
        if self.hub is not None:
            return self.hub.preprocess_input(images)
        if _is_graph_tensor_off_tensorflow(images):
            return _tf_preprocess(images, TF_DATA_MODES[self.module])
        module = importlib.import_module(f"keras.applications.{self.module}")
        return module.preprocess_input(images)

    @property
    def preprocessing(self) -> str:
        """What :meth:`preprocess_input` does, in words (stored in metadata)."""
        if self.hub is not None:
            return self.hub.preprocessing
        return f"keras.applications.{self.module}.preprocess_input"


# What each keras.applications module's preprocess_input does (imagenet_utils' modes):
# caffe: RGB->BGR minus the ImageNet means; tf: to [-1, 1]; torch: ImageNet mean/std on
# [0, 1]; none: nothing (the network normalizes inside).
TF_DATA_MODES = {"vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe", "resnet_v2": "tf",
                 "mobilenet_v2": "tf", "inception_v3": "tf", "densenet": "torch",
                 "efficientnet": "none", "convnext": "none"}


def _is_graph_tensor_off_tensorflow(images: Any) -> bool:
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(images, tf.Tensor):
        return False
    import keras

    return keras.backend.backend() != "tensorflow"


def _tf_preprocess(images: Any, mode: str) -> Any:
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if mode == "caffe":
        return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    return x


@dataclasses.dataclass(frozen=True)
class HubFamily:
    """How to use one family of KerasHub vision towers as a frozen feature extractor.

    Features (``fit``): the tokens after transformer block ``k`` (1-based, named
    ``block_<k>``), put through the tower's final LayerNormalization (as DINOv2's
    linear probes do), give blocks ``block_<k>:cls`` (the class token, when the
    family has one), ``block_<k>:avg`` and ``block_<k>:max`` (mean and max over the
    patch tokens). The family's own image embedding (``pooled``) is the ``paper``
    block, what ``--search=paper`` uses.
    """

    name: str                 # "dinov2": also the backbone name of a hub_config tower
    preset_class: str         # keras_hub.models class whose presets are the family's
    tower_class: str          # keras_hub.models class of the vision tower (hub_config)
    tower_attribute: str | None  # the tower inside the preset's model (None: itself)
    # Pixel normalization on RGB in [0, 1], the values keras_hub's image converters
    # store for the family's presets (scale = 1 / (255 std), offset = -mean / std).
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int           # default side; CLIP/SigLIP presets run at their own side
    resizable: bool           # position embeddings interpolate to any side (DINOv2)
    layer_outputs: str        # "pyramid_outputs" (stage<k>) or "encoder_layers" ([k - 1])
    final_norm: str           # attribute of the tower's final LayerNormalization
    cls_token: bool           # a class token first (then DINOv2's register tokens)
    pooled: str               # the family's embedding: "cls" (final class token) or "head"
    # Default transfer blocks: at these fractions of the depth (12 blocks: 8, 10, 12).
    depth_fractions: tuple[float, ...] = (2 / 3, 5 / 6, 1.0)

    @property
    def pools(self) -> tuple[str, ...]:
        """The pools of every transfer block: the class token (if any), mean, max."""
        return (("cls",) if self.cls_token else ()) + ("avg", "max")

    def preprocess_input(self, images: Any) -> Any:
        import numpy as np

        scale = np.asarray([1.0 / (255.0 * s) for s in self.std], np.float32)
        offset = np.asarray([-m / s for m, s in zip(self.mean, self.std)], np.float32)
        return images * scale + offset

    @property
    def preprocessing(self) -> str:
        return (f"KerasHub {self.name} normalization: (x / 255 - mean) / std, "
                f"mean={list(self.mean)}, std={list(self.std)}")


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

HUB_PREFIX = "keras_hub:"
HUB_FAMILIES = {
    f.name: f
    for f in [
        # DINOv2 (Oquab et al. 2023): ImageNet mean/std; 224 by default (the Hugging
        # Face processor's crop; the presets were trained up to 518), any multiple of 14.
        HubFamily("dinov2", "DINOV2Backbone", "DINOV2Backbone", None, IMAGENET_MEAN,
                  IMAGENET_STD, 224, True, "pyramid_outputs", "layernorm", True, "cls"),
        # CLIP (Radford et al. 2021): OpenAI's mean/std (LAION presets use them too).
        HubFamily("clip", "CLIPBackbone", "CLIPVisionEncoder", "vision_encoder",
                  OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 224, False, "encoder_layers",
                  "layer_norm", True, "cls"),
        # SigLIP / SigLIP 2 (Zhai et al. 2023): pixels to [-1, 1]; no class token, an
        # attention-pooling head gives the image embedding.
        HubFamily("siglip", "SigLIPBackbone", "SigLIPVisionEncoder", "vision_encoder",
                  (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224, False, "encoder_layers",
                  "post_layer_norm", False, "head"),
    ]
}


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
    """The :class:`Backbone` called ``name`` (case-insensitive), or a clear error.

    ``keras_hub:<preset or family>`` imports ``keras_hub`` (the ``hub`` extra) to check
    the preset; a missing extra is a one-line error naming it.
    """
    if is_hub(name):
        return _hub_backbone(name)
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _BACKBONES:
        raise UserError(f"--backbone={name!r} is not supported; choose from {', '.join(NAMES)}"
                        f", or {HUB_PREFIX}<preset> (KerasHub: "
                        f"{', '.join(HUB_FAMILIES)})")
    return _BACKBONES[key]


def is_hub(name: str | None) -> bool:
    """Whether ``name`` names a KerasHub backbone (``keras_hub:...``)."""
    return bool(name) and name.lower().replace("-", "_").startswith(HUB_PREFIX)


HUB_EXTRA = "pip install 'illustration-tl[hub]'"


def import_keras_hub(what: str) -> Any:
    """``keras_hub``, or a one-line UserError naming the ``hub`` extra."""
    try:
        import keras_hub
    except ImportError as e:
        raise UserError(f"{what} needs KerasHub, which is not installed ({e}): "
                        f"{HUB_EXTRA}") from None
    return keras_hub


def hub_presets(keras_hub: Any, family: HubFamily) -> tuple[str, ...]:
    return tuple(getattr(keras_hub.models, family.preset_class).presets)


@functools.cache
def _hub_backbone(name: str) -> Backbone:
    """The :class:`Backbone` of ``keras_hub:<preset or family>``; imports ``keras_hub``."""
    rest = name.split(":", 1)[1].strip() if ":" in name else ""
    if not rest:
        raise UserError(f"--backbone={name!r}: name a KerasHub preset or family after "
                        f"'{HUB_PREFIX}' (e.g. {HUB_PREFIX}dinov2_small)")
    family = HUB_FAMILIES.get(rest.lower())
    keras_hub = import_keras_hub(f"--backbone={name}")
    preset = None
    if family is None and os.path.isdir(rest):  # a preset folder (downloaded or saved)
        preset = os.path.abspath(rest)
        family = _family_of_preset_folder(preset, name)
    elif family is None:
        family = next((f for f in HUB_FAMILIES.values() if rest in hub_presets(keras_hub, f)),
                      None)
        if family is None:
            known = "; ".join(f"{f.name}: {', '.join(hub_presets(keras_hub, f)[:4])}, ..."
                              for f in HUB_FAMILIES.values())
            raise UserError(f"--backbone={name!r}: {rest!r} is not a KerasHub preset of a "
                            f"supported family ({known})")
        preset = rest
    return Backbone(f"{HUB_PREFIX}{preset or family.name}", family.tower_class, "",
                    family.image_size, None, False, (), hub=family, preset=preset)


def _family_of_preset_folder(folder: str, name: str) -> HubFamily:
    """The family of a KerasHub preset folder, from its ``config.json`` class."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            class_name = json.load(f).get("class_name")
    except (OSError, ValueError, AttributeError) as e:
        raise UserError(f"--backbone={name!r}: {folder} is not a KerasHub preset folder "
                        f"(config.json: {e})") from None
    family = next((f for f in HUB_FAMILIES.values() if f.preset_class == class_name), None)
    if family is None:
        raise UserError(f"--backbone={name!r}: the preset in {folder} is a {class_name}; "
                        "supported: " + ", ".join(f.preset_class for f in HUB_FAMILIES.values()))
    return family
