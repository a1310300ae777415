"""KerasHub vision towers (DINOv2, CLIP, SigLIP) as frozen ``fit`` backbones (``hub`` extra).

``--backbone=keras_hub:<preset>`` (``keras_hub:dinov2_small``,
``keras_hub:clip_vit_base_patch16``, ``keras_hub:siglip_base_patch16_224``, any preset
of a family in :data:`illustration_tl.models.backbones.HUB_FAMILIES`) loads the preset's
vision tower; KerasHub downloads its weights (Kaggle or Hugging Face) on first use.
``--weights`` keeps its meaning of "the pretrained weights" (its default,
``imagenet``, is the preset's own weights here); ``--weights=none`` keeps the
preset's architecture and initializes it at random.

``--backbone=keras_hub:<folder>`` loads a preset folder (one KerasHub downloaded, or
``save_to_preset`` wrote): its ``config.json`` names the family.

``--backbone=keras_hub:<family>`` with ``hub_config`` (``--hub_config``, a JSON object
or a ``.json`` file: the constructor arguments of the family's tower class,
e.g. ``keras_hub.models.DINOV2Backbone``, less ``image_shape``, which
``--image_size`` sets) builds a randomly initialized tower without downloading
anything: the way to try the code path offline, and what the tests do.

``keras_hub`` is imported (:func:`illustration_tl.models.backbones.import_keras_hub`) only
when such a backbone is chosen; when it is missing the error is one line naming the
extra.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Sequence

from illustration_tl.errors import UserError
from illustration_tl.models import backbones

BLOCK_RE = re.compile(r"block_(\d+)")


def parse_config(value: Any) -> dict[str, Any] | None:
    """``hub_config`` as a dict: a dict, a JSON object, or the path of a ``.json`` file."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, dict):
        config = dict(value)
    else:
        text = str(value)
        if not text.lstrip().startswith("{") and os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--hub_config: not a JSON object or a .json file ({e})") from None
    if not isinstance(config, dict):
        raise UserError("--hub_config: a JSON object of the tower's constructor arguments")
    if "image_shape" in config:
        raise UserError("--hub_config: drop image_shape; --image_size sets the input side")
    return config


def _weights(weights: str | None) -> str | None:
    """``"pretrained"`` (the preset's weights) or ``None`` (random)."""
    if weights is None or str(weights).lower() in ("", "none"):
        return None
    if weights == "imagenet":
        return "pretrained"
    raise UserError(f"--weights={weights!r}: a KerasHub backbone takes its preset's weights "
                    "(the default, --weights=imagenet) or none (random initialization)")


def check_choice(spec: backbones.Backbone, weights: str | None,
                 hub_config: dict[str, Any] | None) -> str | None:
    """Refuses a family without ``hub_config`` (or with weights), ``hub_config`` with a
    preset, and weights other than the preset's; returns ``"pretrained"`` or ``None``."""
    family = spec.hub
    source = _weights(weights)
    if spec.preset is None and (not hub_config or source is not None):
        keras_hub = backbones.import_keras_hub(f"--backbone={spec.name}")
        raise UserError(
            f"--backbone={spec.name} names a family, not a preset: pass a preset "
            f"({', '.join(backbones.hub_presets(keras_hub, family)[:4])}, ...), or a "
            "random tower with --hub_config='{...}' (constructor arguments of "
            f"keras_hub.models.{family.tower_class}) and --weights=none")
    if spec.preset is not None and hub_config:
        raise UserError(f"--hub_config builds a random {family.name} tower: use "
                        f"--backbone={backbones.HUB_PREFIX}{family.name} with --weights=none, "
                        f"or drop --hub_config to use the preset {spec.preset}")
    return source


def build_tower(spec: backbones.Backbone, weights: str | None, image_size: int | None,
                hub_config: dict[str, Any] | None, seed: int = 0) -> tuple[Any, int, str]:
    """``(vision tower, input side, weights description)`` for a KerasHub backbone."""
    import keras

    family = spec.hub
    source = check_choice(spec, weights, hub_config)
    keras_hub = backbones.import_keras_hub(f"--backbone={spec.name}")
    keras.utils.set_random_seed(seed)
    if spec.preset is None:
        size = int(image_size or family.image_size)
        try:
            tower = getattr(keras_hub.models, family.tower_class)(
                **hub_config, image_shape=(size, size, 3))
        except (TypeError, ValueError) as e:
            raise UserError(f"--hub_config for {family.tower_class}: {e}") from None
        return tower, size, "random-init"
    overrides: dict[str, Any] = {}
    if family.resizable:
        overrides["image_shape"] = (int(image_size or family.image_size),) * 2 + (3,)
    # KerasHub downloads the preset (config, and the weights unless random) on first use.
    try:
        model = getattr(keras_hub.models, family.preset_class).from_preset(
            spec.preset, load_weights=source is not None, **overrides)
    except Exception as e:  # offline (requests/urllib/kagglehub errors), unknown preset
        first = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"--backbone={spec.name}: could not load the KerasHub preset "
                        f"{spec.preset!r} ({type(e).__name__}: {first}); check the name, "
                        "download it once with internet, or pass a preset folder "
                        "(--backbone=keras_hub:/path/to/preset)") from None
    tower = getattr(model, family.tower_attribute) if family.tower_attribute else model
    size = int(tower.image_shape[0])
    if image_size and int(image_size) != size:
        raise UserError(f"--image_size={image_size}: {spec.preset} runs at {size} px only "
                        "(its position embeddings do not interpolate); drop --image_size")
    if source is not None:
        _check_normalization(keras_hub, family, spec.preset)
    described = (f"keras_hub preset {spec.preset}" if source is not None
                 else f"random-init ({spec.preset} architecture)")
    return tower, size, described


def _check_normalization(keras_hub: Any, family: backbones.HubFamily, preset: str) -> None:
    """Refuses a preset whose image converter normalizes pixels unlike the family's row."""
    import numpy as np

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (OSError, ValueError):  # the preset ships no image converter: nothing to compare
        return
    if converter.scale is None or converter.offset is None:
        return
    scale = np.broadcast_to(np.asarray(converter.scale, np.float64), (3,))
    offset = np.broadcast_to(np.asarray(converter.offset, np.float64), (3,))
    want_scale = np.asarray([1 / (255 * s) for s in family.std])
    want_offset = np.asarray([-m / s for m, s in zip(family.mean, family.std)])
    if not (np.allclose(scale, want_scale, rtol=1e-4) and
            np.allclose(offset, want_offset, rtol=1e-4, atol=1e-6)):
        raise UserError(f"{preset}'s image converter normalizes pixels with scale "
                        f"{scale.tolist()} and offset {offset.tolist()}, not as the "
                        f"{family.name} row of backbones.HUB_FAMILIES; add a row for it")


def default_layers(depth: int, family: backbones.HubFamily) -> tuple[str, ...]:
    """The default transfer blocks: at the family's fractions of the depth, shallow first."""
    ks = sorted({min(depth, max(1, int(math.floor(f * depth + 0.5))))
                 for f in family.depth_fractions})
    return tuple(f"block_{k}" for k in ks)


def _layer_index(name: str, depth: int, backbone: str) -> int:
    m = BLOCK_RE.fullmatch(name)
    if not m or not 1 <= int(m.group(1)) <= depth:
        raise UserError(f"--layers: {name!r} is not a block of {backbone}: choose block_1 "
                        f"... block_{depth} (the output of that transformer block)")
    return int(m.group(1))


def _layer_tokens(family: backbones.HubFamily, tower: Any, k: int) -> Any:
    """The tokens after transformer block ``k`` (1-based), final-normalized."""
    if family.layer_outputs == "pyramid_outputs":
        tokens = tower.pyramid_outputs[f"stage{k}"]
        if getattr(tower, "apply_layernorm", False):
            return tokens  # the tower already normalizes its pyramid outputs
    else:
        tokens = tower.encoder_layers[k - 1].output
    return getattr(tower, family.final_norm)(tokens)


def _prefix_tokens(family: backbones.HubFamily, tower: Any) -> int:
    """Tokens before the patch tokens: the class token and DINOv2's register tokens."""
    return int(family.cls_token) + int(getattr(tower, "num_register_tokens", 0) or 0)


def _pool(tokens: Any, pool: str, prefix: int, name: str) -> Any:
    import keras

    if pool == "cls":
        fn = lambda t: t[:, 0]  # noqa: E731
    elif pool == "avg":
        fn = lambda t: keras.ops.mean(t[:, prefix:], axis=1)  # noqa: E731
    else:
        fn = lambda t: keras.ops.max(t[:, prefix:], axis=1)  # noqa: E731
    return keras.layers.Lambda(fn, name=name)(tokens)


def feature_outputs(backbone: str, weights: str | None = "imagenet",
                    image_size: int | None = None, layers: Sequence[str] | None = None,
                    seed: int = 0, hub_config: dict[str, Any] | None = None
                    ) -> tuple[Any, Any, list[tuple[str, str, Any]], Any]:
    """The tensors :func:`illustration_tl.features.multilayer.extractor` makes its model of, for a
    KerasHub backbone: ``(image input, the family's own embedding, [(block_<k>, pool,
    pooled tokens), ...], the extractor.EmbeddingSource)``; inputs are preprocessed."""
    import keras

    from illustration_tl.models import extractor

    spec = backbones.get(backbone)
    family = spec.hub
    tower, size, described = build_tower(spec, weights, image_size, hub_config, seed)
    depth = int(tower.num_layers)
    chosen = tuple(layers) if layers else default_layers(depth, family)
    indices = [_layer_index(n, depth, spec.name) for n in chosen]
    prefix = _prefix_tokens(family, tower)
    out = tower.output
    if isinstance(out, dict):  # a CLIP tower built with intermediate_output_index
        out = out["sequence_output"]
    if family.pooled == "cls":
        paper, paper_layer = _pool(out, "cls", prefix, "paper_cls"), f"block_{depth}:cls"
    else:
        paper, paper_layer = out, "head"
    pooled = []
    for name, k in zip(chosen, indices):
        tokens = _layer_tokens(family, tower, k)
        pooled += [(name, pool, _pool(tokens, pool, prefix, f"{name}_fit_{pool}"))
                   for pool in family.pools]
    image = tower.inputs[0]
    recipe = {"model_dir": None, "backbone": spec.name, "weights": _weights(weights),
              "image_size": size, "layer": None, "seed": seed,
              "hub_config": hub_config or None}
    source = extractor.EmbeddingSource(keras.Model(image, paper), spec.name, size,
                                        paper_layer, described, recipe=recipe)
    return image, paper, pooled, source
