"""Multi-layer frozen features of a ``keras.applications`` backbone (``fit``).

The paper feeds an SVM the 4096-d fc2 activations of VGG19 (§6.1). For
illustrations, the mid-level conv blocks transfer better than the ImageNet-
specific top: ``fit`` takes each of the backbone's transfer layers
(:attr:`illustration_tl.models.backbones.Backbone.transfer_layers`, one table for every
family), pools it globally twice (average and max), and normalizes every such
block on its own with a signed square root and unit l2 length ("power
normalization"), so no block dominates the concatenation.

The CNN runs once per image, resize mode and view (the image and its mirror
image; a square image's ``pad`` rows are its ``squash`` rows, :mod:`.extraction`), and
every raw block is kept on disk (:mod:`illustration_tl.features.store`:
sharded while extracting, resumed after a kill, read memory-mapped), so the search
combines layers, pools, resize modes and flips without running the CNN again.
The paper's own embedding (``embed``'s default: fc2 with a VGG top, else the
global average pool of the last conv block) is stored too, as block
``paper``, for ``--search=paper``.

KerasHub vision towers (``keras_hub:<preset>``, the ``hub`` extra) go through the same
stages: their transfer layers are transformer blocks ``block_<k>``, whose tokens give
``block_<k>:cls`` (the class token, CLIP and DINOv2), ``block_<k>:avg`` and
``block_<k>:max`` (over the patch tokens); see :mod:`illustration_tl.models.hub_backbones`.

Block keys: ``<layer>:avg``, ``<layer>:max`` (``<layer>:cls``) and ``paper``; arrays are
keyed ``<resize mode>/<view>/<block>`` with view ``orig`` or ``flip``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from illustration_tl.errors import UserError
from illustration_tl.features import extraction
from illustration_tl.features import store as store_lib
from illustration_tl.features.store import PAPER_BLOCK, FeatureStore, key, power_l2

__all__ = ["POOLS", "TOKEN_POOLS", "VIEWS", "PAPER_BLOCK", "FeatureStore", "key",
           "block_name", "layers_of", "power_l2", "tf_power_l2", "transfer_layers",
           "extractor", "extract", "FLOAT32_POLICY"]

POOLS = ("avg", "max")
TOKEN_POOLS = ("cls",) + POOLS   # a transformer block's pools (class token, when it has one)
VIEWS = ("orig", "flip")
FLOAT32_POLICY = "float32"   # the dtype of every block leaving the extractor


def block_name(layer: str, pool: str) -> str:
    return f"{layer}:{pool}"


def layers_of(blocks: Sequence[str]) -> list[str]:
    """The layers of ``blocks`` in order (``paper`` left out)."""
    return list(dict.fromkeys(b.rpartition(":")[0] for b in blocks if b != PAPER_BLOCK))


def tf_power_l2(x: Any) -> Any:
    """:func:`power_l2` in TensorFlow (float64)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float64)
    x = tf.sign(x) * tf.sqrt(tf.abs(x))
    norm = tf.norm(x, axis=1, keepdims=True)
    return x / tf.where(norm > 0, norm, tf.ones_like(norm))


def transfer_layers(backbone: str, layers: Sequence[str] | None = None) -> tuple[str, ...]:
    from illustration_tl.models import backbones

    spec = backbones.get(backbone)
    chosen = tuple(layers) if layers else spec.transfer_layers
    if not chosen:
        raise UserError(f"backbone {spec.name} has no transfer layers; pass --layers")
    return chosen


def extractor(backbone: str, weights: str | None = "imagenet", image_size: int | None = None,
              layers: Sequence[str] | None = None, seed: int = 0,
              hub_config: dict[str, Any] | None = None, include_top: str = "auto",
              precision: str = "float32") -> tuple[Any, list[str], Any]:
    """A Keras model from preprocessed images to ``[paper, <layer>:avg, <layer>:max, ...]``.

    Returns ``(model, block names in output order, the extractor.EmbeddingSource)``.
    The network is the one ``embed`` builds (same weights logic), so the
    ``paper`` block equals ``embed``'s default embedding. A ``keras_hub:`` backbone
    (``hub_config``: its random tower's constructor arguments) is built by
    :func:`illustration_tl.models.hub_backbones.feature_outputs`. ``include_top``:
    ``no`` builds only the conv base (the ``paper`` block is then its pooled last
    block), so ``imagenet`` fetches the no-top file (``fit`` unless ``--search=paper``).
    A failed ImageNet download is one line (:mod:`illustration_tl.models.imagenet_weights`).

    ``precision`` (``float32``, ``bfloat16`` or ``auto``:
    :func:`illustration_tl.models.precision.resolve`): in ``bfloat16`` the backbone's
    layers compute in bfloat16 (Keras's ``mixed_bfloat16`` policy while it is built; the
    variables stay float32, loaded from the same weights), the blocks are pooled in float32
    and every output leaves the model as float32; the caller's preprocessing is unchanged.
    The global dtype policy is restored afterwards.
    """
    from illustration_tl.models import precision as precision_lib

    resolved = precision_lib.resolve(precision)
    with precision_lib.policy_scope(resolved):
        model, blocks, source = _build(backbone, weights, image_size, layers, seed,
                                       hub_config, include_top)
        if resolved != precision_lib.FLOAT32:
            model = _float32_outputs(model)
    return model, blocks, source


def _float32_outputs(model: Any) -> Any:
    """``model`` with every output cast to float32 (a float32 ``Identity`` layer casts
    its input to its own compute dtype)."""
    import keras

    outputs = [keras.layers.Identity(dtype=FLOAT32_POLICY, name=f"{_stem(t)}_float32")(t)
               for t in model.outputs]
    return keras.Model(model.inputs, outputs, name=model.name)


def _stem(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else "output"


def _build(backbone: str, weights: str | None, image_size: int | None,
           layers: Sequence[str] | None, seed: int, hub_config: dict[str, Any] | None,
           include_top: str) -> tuple[Any, list[str], Any]:
    """:func:`extractor`'s network, built in the current dtype policy."""
    import keras

    from illustration_tl.features import embeddings
    from illustration_tl.models import backbones

    if backbones.is_hub(backbone):
        from illustration_tl.models import hub_backbones

        image, paper, pooled, source = hub_backbones.feature_outputs(
            backbone, weights, image_size, layers, seed, hub_config)
        blocks = [PAPER_BLOCK] + [block_name(layer, pool) for layer, pool, _ in pooled]
        model = keras.Model(image, [paper] + [t for _, _, t in pooled],
                            name=f"{backbones.get(backbone).hub.name}_fit_features")
        return model, blocks, source
    if hub_config:
        raise UserError(f"--hub_config applies to KerasHub backbones "
                        f"({backbones.HUB_PREFIX}<family>), not --backbone={backbone}")

    try:
        source = embeddings.embedding_source(backbone=backbone, weights=weights,
                                             image_size=image_size, seed=seed,
                                             include_top=include_top)
    except Exception as e:  # noqa: BLE001 - only a failed download becomes one line
        from illustration_tl.models import imagenet_weights

        if weights == "imagenet" and imagenet_weights.is_download_failure(e):
            raise imagenet_weights.download_error(backbone, e) from None
        raise
    emb = source.model
    names = {layer.name for layer in emb.layers}
    chosen = transfer_layers(source.backbone, layers)
    missing = [n for n in chosen if n not in names]
    if missing:
        raise UserError(f"layer(s) {', '.join(missing)} are not in {source.backbone}; its "
                        f"last layers are {', '.join(x.name for x in emb.layers[-6:])}")
    outputs = [emb.output]
    blocks = [PAPER_BLOCK]
    for name in chosen:
        out = emb.get_layer(name).output
        if len(out.shape) != 4:
            raise UserError(f"transfer layer {name!r} is not convolutional "
                            f"(shape {tuple(out.shape[1:])})")
        # Pooled in float32 whatever the backbone computes in (a no-op in float32).
        outputs.append(keras.layers.GlobalAveragePooling2D(
            name=f"{name}_fit_gap", dtype=FLOAT32_POLICY)(out))
        outputs.append(keras.layers.GlobalMaxPooling2D(
            name=f"{name}_fit_gmp", dtype=FLOAT32_POLICY)(out))
        blocks += [block_name(name, "avg"), block_name(name, "max")]
    model = keras.Model(emb.inputs, outputs, name=f"{source.backbone}_fit_features")
    return model, blocks, source


def extract(dataset: str, data_dir: str | None, splits: Sequence[str], *, backbone: str,
            weights: str | None, out: str, work: str, image_size: int | None = None,
            layers: Sequence[str] | None = None, resize_modes: Sequence[str] = ("squash",),
            flip: bool = True, batch_size: int = 32, shard_size: int = 1024, seed: int = 0,
            log: Any = None, hub_config: dict[str, Any] | None = None,
            include_top: str = "auto", recipe: dict[str, Any] | None = None,
            precision: str = "float32", limit: int | None = None) -> FeatureStore:
    """Runs the backbone once per image, resize mode and view over ``splits`` of a built
    dataset (decoded exactly as ``embed`` decodes it), keeps every raw block in shards under
    ``work`` (resuming after the finished shards a killed run left there) and writes the
    store to ``out`` (:mod:`illustration_tl.features.store`). Returns the loaded store.
    ``precision`` (:func:`extractor`) is resolved once and recorded in the store's meta:
    bfloat16 features are not float32 features. ``limit``: only each split's first
    ``limit`` images (``fit``'s ``modes`` sample)."""
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.models import precision as precision_lib

    resolved = precision_lib.resolve(precision)
    model, blocks, source = extractor(backbone, weights, image_size, layers, seed, hub_config,
                                      include_top, resolved)
    if log:
        log(f"features: computed in {resolved}")
    views = list(VIEWS if flip else VIEWS[:1])
    parts: dict[str, dict[str, store_lib.ShardedRows]] = {}
    class_names: list[str] = []
    for split in splits:
        ds, info = input_pipeline.load_split(dataset, split, data_dir, decode_images=False)
        class_names = input_pipeline.class_names(info)
        total = info.splits[split].num_examples
        if limit is not None:
            ds, total = ds.take(limit), min(total, limit)
        parts[split] = {mode: store_lib.ShardedRows(os.path.join(work, split, mode),
                                                    shard_size) for mode in resize_modes}
        extraction.extract_split(model, blocks, views, ds, source, total, parts[split],
                                 batch_size, f"features {split}", log)
    meta = dict(source.metadata(), layers=layers_of(blocks), paper_layer=source.layer,
                batch_size=batch_size, precision=resolved,
                **({"recipe": recipe} if recipe else {}))
    store_lib.consolidate(parts, out, {"class_names": class_names, "blocks": blocks,
                                       "resize_modes": list(resize_modes), "views": views,
                                       "meta": meta})
    return FeatureStore.load(out)
