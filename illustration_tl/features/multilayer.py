"""Multi-layer frozen features of a ``keras.applications`` backbone (``fit``).

The paper feeds an SVM the 4096-d fc2 activations of VGG19 (§6.1). For
illustrations, the mid-level conv blocks transfer better than the ImageNet-
specific top: ``fit`` takes each of the backbone's transfer layers
(:attr:`illustration_tl.models.backbones.Backbone.transfer_layers`, one table for every
family), pools it globally twice (average and max), and normalizes every such
block on its own with a signed square root and unit l2 length ("power
normalization"), so no block dominates the concatenation.

The CNN runs once per image, resize mode and view (the image and its mirror
image), and every raw block is kept (:class:`FeatureStore`), so the search
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

import dataclasses
import os
import time
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError

POOLS = ("avg", "max")
TOKEN_POOLS = ("cls",) + POOLS   # a transformer block's pools (class token, when it has one)
VIEWS = ("orig", "flip")
PAPER_BLOCK = "paper"
FILE = "features.npz"


def block_name(layer: str, pool: str) -> str:
    return f"{layer}:{pool}"


def layers_of(blocks: Sequence[str]) -> list[str]:
    """The layers of ``blocks`` in order (``paper`` left out)."""
    return list(dict.fromkeys(b.rpartition(":")[0] for b in blocks if b != PAPER_BLOCK))


def key(mode: str, view: str, block: str) -> str:
    return f"{mode}/{view}/{block}"


def power_l2(x: np.ndarray) -> np.ndarray:
    """Signed square root, then unit l2 rows (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    x = np.sign(x) * np.sqrt(np.abs(x))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


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
              hub_config: dict[str, Any] | None = None, include_top: str = "auto"
              ) -> tuple[Any, list[str], Any]:
    """A Keras model from preprocessed images to ``[paper, <layer>:avg, <layer>:max, ...]``.

    Returns ``(model, block names in output order, the extractor.EmbeddingSource)``.
    The network is the one ``embed`` builds (same weights logic), so the
    ``paper`` block equals ``embed``'s default embedding. A ``keras_hub:`` backbone
    (``hub_config``: its random tower's constructor arguments) is built by
    :func:`illustration_tl.models.hub_backbones.feature_outputs`. ``include_top``:
    ``no`` builds only the conv base (the ``paper`` block is then its pooled last
    block), so ``imagenet`` fetches the no-top file (``fit`` unless ``--search=paper``).
    A failed ImageNet download is one line (:mod:`illustration_tl.models.imagenet_weights`).
    """
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
        outputs.append(keras.layers.GlobalAveragePooling2D(name=f"{name}_fit_gap")(out))
        outputs.append(keras.layers.GlobalMaxPooling2D(name=f"{name}_fit_gmp")(out))
        blocks += [block_name(name, "avg"), block_name(name, "max")]
    model = keras.Model(emb.inputs, outputs, name=f"{source.backbone}_fit_features")
    return model, blocks, source


@dataclasses.dataclass
class FeatureStore:
    """Raw blocks of every split, resize mode and view, in memory."""

    arrays: dict[str, dict[str, np.ndarray]]   # split -> key(mode, view, block) -> (n, d)
    labels: dict[str, np.ndarray]               # split -> (n,)
    file_names: dict[str, list[str]]
    class_names: list[str]
    blocks: list[str]
    resize_modes: list[str]
    views: list[str]
    meta: dict[str, Any]

    def block(self, split: str, mode: str, view: str, block: str) -> np.ndarray:
        return self.arrays[split][key(mode, view, block)]

    def assemble(self, splits: Sequence[str], mode: str, view: str,
                 blocks: Sequence[str]) -> np.ndarray:
        """Rows of ``splits`` (concatenated): each block power-l2-normalized, then joined;
        the ``paper`` block is kept raw, as the paper's SVM sees it."""
        parts = []
        for b in blocks:
            raw = np.concatenate([self.block(s, mode, view, b) for s in splits])
            parts.append(np.asarray(raw, np.float64) if b == PAPER_BLOCK else power_l2(raw))
        return np.concatenate(parts, axis=1)

    def save(self, path: str) -> None:
        flat = {}
        for split, arrays in self.arrays.items():
            for k, v in arrays.items():
                flat[f"{split}//{k}"] = v
            flat[f"{split}//labels"] = self.labels[split]
            flat[f"{split}//file_names"] = np.asarray(self.file_names[split], dtype=str)
        import json

        flat["meta"] = np.array(json.dumps(dict(
            self.meta, class_names=self.class_names, blocks=self.blocks,
            resize_modes=self.resize_modes, views=self.views)))
        tmp = path + ".partial.npz"
        np.savez(tmp, **flat)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> FeatureStore:
        import json

        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays: dict[str, dict[str, np.ndarray]] = {}
            labels, names = {}, {}
            for k in z.files:
                if k == "meta":
                    continue
                split, _, rest = k.partition("//")
                if rest == "labels":
                    labels[split] = z[k].astype(np.int64)
                elif rest == "file_names":
                    names[split] = [str(n) for n in z[k]]
                else:
                    arrays.setdefault(split, {})[rest] = z[k]
        return cls(arrays, labels, names, list(meta.pop("class_names")),
                   list(meta.pop("blocks")), list(meta.pop("resize_modes")),
                   list(meta.pop("views")), meta)


def extract(dataset: str, data_dir: str | None, splits: Sequence[str], *, backbone: str,
            weights: str | None, image_size: int | None = None,
            layers: Sequence[str] | None = None, resize_modes: Sequence[str] = ("squash",),
            flip: bool = True, batch_size: int = 32, seed: int = 0,
            log: Any = None, hub_config: dict[str, Any] | None = None,
            include_top: str = "auto") -> FeatureStore:
    """Runs the backbone once per image, resize mode and view over ``splits`` of a built
    dataset (decoded exactly as ``embed`` decodes it) and keeps every raw block."""
    import tensorflow as tf

    from illustration_tl.core.progress import Progress
    from illustration_tl.datasets import input_pipeline

    model, blocks, source = extractor(backbone, weights, image_size, layers, seed, hub_config,
                                      include_top)
    views = list(VIEWS if flip else VIEWS[:1])
    arrays: dict[str, dict[str, list[np.ndarray]]] = {}
    labels: dict[str, np.ndarray] = {}
    file_names: dict[str, list[str]] = {}
    class_names: list[str] = []
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    for split in splits:
        ds, info = input_pipeline.load_split(dataset, split, data_dir, decode_images=False)
        class_names = input_pipeline.class_names(info)
        total = info.splits[split].num_examples
        arrays[split] = {}
        for mode in resize_modes:
            batches = input_pipeline.make_dataset(
                ds, backbone=source.backbone, image_size=source.image_size,
                batch_size=batch_size, training=False, resize_mode=mode, with_file_names=True)
            progress = Progress(f"features {split} ({mode})",
                                           total * len(views), interval=10.0)
            ys, names = [], []
            start = time.perf_counter()
            for images, y, n in batches:
                for view in views:
                    x = tf.image.flip_left_right(images) if view == "flip" else images
                    outs = predict(x)
                    for b, o in zip(blocks, outs):
                        arrays[split].setdefault(key(mode, view, b), []).append(
                            np.asarray(o, np.float32))
                    progress.update(len(y))
                ys.append(np.asarray(y, np.int64))
                names += [v.decode("utf-8") for v in np.asarray(n)]
            if log:
                log(f"features {split} ({mode}): {len(names)} images x {len(views)} views "
                    f"in {time.perf_counter() - start:.0f}s")
            labels[split] = np.concatenate(ys) if ys else np.zeros(0, np.int64)
            file_names[split] = names
    stacked = {s: {k: np.concatenate(v) for k, v in a.items()} for s, a in arrays.items()}
    meta = dict(source.metadata(), layers=layers_of(blocks),
                paper_layer=source.layer, batch_size=batch_size)
    return FeatureStore(stacked, labels, file_names, class_names, blocks,
                        list(resize_modes), views, meta)
