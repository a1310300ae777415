"""CNN embeddings of a dataset split, streamed to disk in shards (paper §6.1, §7.2).

The paper's SVM rows ("VGG19 fc2 + SVM", "optimized fc2 + SVM") train an SVM
on the 4096-d fc2 activations of a CNN. This module runs an embedding model
(built with ``layer_surgery.embedding_model``: fc2 for VGG with its top, the
global-average-pooled last conv block otherwise) over a ``tf.data`` dataset of
preprocessed images and writes the activations shard by shard, so the noisy
set never has to fit in memory. Each split folder is a feature store
(:mod:`illustration_tl.features.store`, the one ``fit`` writes) holding one block,
``paper``, at the run's resize mode, read memory-mapped:

    <dir>/<split>/store.json, labels.npy, file_names.npy, 000-<mode>_orig_paper.npy
    <dir>/<split>/metadata.json     class_names, layer, image_size, backbone, preprocessing,
                                    model_fingerprint, dataset, dataset_version, num_examples, dim

Split folders of earlier releases (``shard-00000.npz`` files of ``embeddings``,
``labels``, ``file_names``) are still read, checked shard by shard.

A split folder is built under a temporary name and renamed into place when
complete, so an interrupted run never leaves a half-written split that looks done.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from illustration_tl.core import common_settings, files
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.core.files import atomic_write_json
from illustration_tl.core.fingerprints import file_sha256
from illustration_tl.core.progress import Progress
from illustration_tl.errors import UserError
from illustration_tl.features import store
from illustration_tl.models.extractor import (
    EmbeddingSource,
    keeps_top,
    model_fingerprint,
    pooled_embedding_model,
)

METADATA = "metadata.json"
SHARD_GLOB = "shard-*.npz"      # the layout of earlier releases, still read
WORK_DIR = ".shards"            # shards while a split is written, removed after
VIEW = "orig"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


@dataclasses.dataclass
class Embeddings:
    """Embeddings of one or more splits, loaded into memory."""

    x: np.ndarray               # float32 (n, d)
    y: np.ndarray               # int64 (n,)
    class_names: list[str]
    file_names: list[str]
    metadata: dict[str, Any]


def _batches(model: Any, dataset: Iterable[Any], limit: int | None = None
             ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields (embeddings, labels, file_names) per batch of ``dataset``.

    ``dataset`` yields ``(images, labels)`` or ``(images, labels, file_names)``
    (``input_pipeline.make_dataset(..., with_file_names=True)``). The model runs
    through Keras's compiled ``predict_on_batch``.

    ``limit``: the number of examples the dataset holds, when known exactly (a
    TFDS split's ``num_examples``). Reading stops after that many instead of
    asking for one more batch: at the end of an autotuned tf.data pipeline that
    last request sits idle for about one batch's compute time (measured: 3 s of
    a 10 s split at 128 px, 18 s of 40 s at 224 px, with no CPU in use).
    """
    seen = 0
    for batch in dataset:
        if len(batch) == 3:
            images, labels, names = batch
            names = np.asarray([n.decode("utf-8") if isinstance(n, bytes) else str(n)
                                for n in np.asarray(names).reshape(-1)], dtype=str)
        else:
            images, labels = batch
            names = np.full(len(labels), "", dtype=str)
        # numpy in: a tf.data tensor is not an array the JAX backend takes
        out = np.asarray(model.predict_on_batch(np.asarray(images)), dtype=np.float32)
        if out.ndim != 2:
            raise UserError(f"the embedding layer outputs shape {out.shape[1:]}; an embedding "
                            "must be a vector per image (pick a dense or pooled --layer)")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        yield out, labels, names
        seen += len(labels)
        if limit is not None and seen >= limit:
            return


def compute(model: Any, dataset: Iterable[Any], progress: Progress | None = None,
            limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All embeddings of ``dataset`` in memory: ``(x float32 (n, d), y int64, file_names)``.

    ``limit``: the exact number of examples, if known (see :func:`_batches`).
    """
    xs, ys, names = [], [], []
    for x, y, n in _batches(model, dataset, limit):
        xs.append(x)
        ys.append(y)
        names.extend(n.tolist())
        if progress:
            progress.update(len(y))
    if not xs:
        raise UserError("the dataset split is empty: nothing to embed")
    return np.concatenate(xs), np.concatenate(ys), names


def write(model: Any, dataset: Iterable[Any], directory: str, metadata: dict[str, Any], *,
          shard_size: int = 4096, total: int | None = None, overwrite: bool = False,
          progress_interval: float = 5.0, label: str = "embed") -> dict[str, Any]:
    """Streams the embeddings of ``dataset`` to ``directory`` (one split) in shards.

    ``metadata`` must hold at least ``class_names``; ``num_examples``, ``dim``,
    ``num_shards`` and ``model_fingerprint`` (of ``model``) are added. At most
    ``shard_size`` rows are held in memory. ``total``, the exact number of
    examples when known, drives the progress line and ends reading after the
    last example (see :func:`_batches`). Refuses to replace an existing split
    unless ``overwrite``. Returns the metadata written.
    """
    if "class_names" not in metadata:
        raise ValueError("metadata needs class_names")
    if shard_size < 1:
        raise UserError(f"--shard_size={shard_size} must be at least 1")
    directory = os.path.abspath(directory)
    if os.path.lexists(directory) and not overwrite:
        raise UserError(f"{directory} already exists; pass --overwrite to replace it")
    if os.path.lexists(directory):
        check_replaceable(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(directory)}.partial-")
    try:
        meta = _write_store(model, dataset, tmp, metadata, shard_size,
                            Progress(label, total, progress_interval))
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _write_store(model: Any, dataset: Iterable[Any], tmp: str, metadata: dict[str, Any],
                 shard_size: int, progress: Progress) -> dict[str, Any]:
    """The split as a feature store in ``tmp`` (:mod:`illustration_tl.features.store`, one
    block ``paper`` at one resize mode, view ``orig``), and its ``metadata.json``."""
    rows = store.ShardedRows(os.path.join(tmp, WORK_DIR), shard_size)
    count, dim = 0, None
    for x, y, n in _batches(model, dataset, progress.total):
        dim = dim or x.shape[1]
        rows.add({store.key_in_mode(VIEW, store.PAPER_BLOCK): x}, y, n.tolist())
        count += len(y)
        progress.update(len(y))
    rows.close()
    if count == 0:
        raise UserError("the dataset split is empty: nothing to embed")
    progress.update(0, force=True)
    meta = dict(metadata, num_examples=count, dim=int(dim), num_shards=len(rows.shards),
                model_fingerprint=metadata.get("model_fingerprint") or model_fingerprint(model),
                images_per_second=round(progress.rate(), 2))
    mode = str(metadata.get("resize_mode") or "squash")
    store.consolidate({str(metadata.get("split") or "split"): {mode: rows}}, tmp, {
        "class_names": list(metadata["class_names"]), "blocks": [store.PAPER_BLOCK],
        "resize_modes": [mode], "views": [VIEW], "meta": meta}, in_place=True)
    shutil.rmtree(os.path.join(tmp, WORK_DIR))
    atomic_write_json(os.path.join(tmp, METADATA), meta)
    return meta


def replace_dir(src: str, dst: str) -> None:
    """Moves the finished ``src`` to ``dst``, replacing an old ``dst`` only at the end."""
    files.replace_dir(src, dst)


_SHARD_NAME = re.compile(r"shard-\d{5}\.npz")   # the layout of earlier releases
_STORE_NAME = re.compile(r"store\.json|labels\.npy|file_names\.npy|\d{3}-[A-Za-z0-9_.-]+\.npy")


def check_replaceable(directory: str) -> None:
    """Refuses to replace ``directory`` unless it is a split folder ``embed`` wrote:
    ``--overwrite`` must never delete a file it did not write."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        raise UserError(f"{directory} exists and is not an embeddings split folder; "
                        "--overwrite only replaces what `embed` wrote: move it away or "
                        "choose another --output")
    foreign = sorted(n for n in os.listdir(directory) if n != METADATA
                     and not _SHARD_NAME.fullmatch(n) and not _STORE_NAME.fullmatch(n))
    if foreign or not os.path.isfile(os.path.join(directory, METADATA)):
        what = (f"holds files `embed` did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''})" if foreign else
                f"has no {METADATA}, so `embed` did not write it")
        raise UserError(f"{directory} {what}; --overwrite only replaces embeddings: move "
                        "them away or choose another --output")


def split_dir(directory: str, split: str | None = None) -> str:
    """The folder of one split: ``directory`` itself, or ``directory/split``."""
    if os.path.isfile(os.path.join(directory, METADATA)) and split is None:
        return directory
    if split is not None and os.path.isfile(os.path.join(directory, split, METADATA)):
        return os.path.join(directory, split)
    if os.path.isfile(os.path.join(directory, METADATA)):
        return directory
    found = sorted(os.path.basename(os.path.dirname(p))
                   for p in glob.glob(os.path.join(directory, "*", METADATA)))
    where = f"{directory!r}" + (f" has no split {split!r}" if split else " holds several splits")
    raise UserError(f"{where}: no {METADATA} found there"
                    + (f"; splits present: {', '.join(found)}" if found else
                       "; write embeddings with `illustration-tl embed` first"))


def read_metadata(directory: str, split: str | None = None) -> dict[str, Any]:
    with open(os.path.join(split_dir(directory, split), METADATA), encoding="utf-8") as f:
        return json.load(f)


def iter_shards(directory: str, split: str | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields ``(embeddings, labels, file_names)`` per shard, in order, without loading all
    (a split in the feature-store layout is one part, its embeddings memory-mapped)."""
    d = split_dir(directory, split)
    if os.path.isfile(os.path.join(d, store.STORE_FILE)):
        yield _read_store(d)
        return
    for path in sorted(glob.glob(os.path.join(d, SHARD_GLOB))):
        yield read_shard(path)


def _read_store(d: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split folder in the feature-store layout: ``(embeddings, labels, file_names)``,
    checked as :func:`read_shard` checks a shard."""
    fs = store.FeatureStore.load(d)
    if len(fs.labels) != 1 or fs.blocks != [store.PAPER_BLOCK] or fs.views != [VIEW]:
        raise UserError(f"{d} is a feature store but not one `embed` wrote (one split, "
                        f"block {store.PAPER_BLOCK!r}); re-run `embed --overwrite`")
    split = next(iter(fs.labels))
    x = fs.block(split, fs.resize_modes[0], VIEW, store.PAPER_BLOCK)
    if not np.isfinite(x).all():
        raise UserError(f"embeddings in {d} hold {int((~np.isfinite(x)).any(axis=1).sum())} "
                        f"rows of NaN or infinite values; the model diverged or the file was "
                        "altered: re-run `embed`")
    return x, fs.labels[split], np.asarray(fs.file_names[split], dtype=str)


def read_shard(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard's ``(embeddings, labels, file_names)``, checked.

    A truncated or corrupt file, missing arrays, rows that disagree in number,
    and NaN or infinite embeddings raise :class:`UserError` naming the shard.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            x, y, n = z["embeddings"], z["labels"], z["file_names"]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"embeddings shard {path} is unreadable (truncated or corrupt: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "re-run `embed --overwrite`") from None
    if x.ndim != 2 or len(x) != len(y) or len(y) != len(n):
        raise UserError(f"embeddings shard {path} is inconsistent: embeddings {x.shape}, "
                        f"{len(y)} labels, {len(n)} file names; re-run `embed --overwrite`")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise UserError(f"embeddings shard {path} holds {x.dtype} embeddings, not numbers")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        kinds = ", ".join(f"{c} {k}" for c, k in ((nan, "NaN"), (inf, "infinite (Inf)"))
                          if c)
        raise UserError(f"embeddings shard {path} holds {kinds} value(s) in "
                        f"{int((~np.isfinite(x)).any(axis=1).sum())} of {len(x)} rows; "
                        "the model diverged or the file was altered: re-run `embed`")
    return x, y, n


def load(directory: str, split: str | None = None) -> Embeddings:
    """Loads one split (``directory`` is the split folder, or its parent with ``split``)."""
    meta = read_metadata(directory, split)
    parts = list(iter_shards(directory, split))
    if not parts:
        raise UserError(f"{split_dir(directory, split)!r} holds no shards")
    x = np.concatenate([p[0] for p in parts])
    if len(x) != meta["num_examples"]:
        raise UserError(f"{split_dir(directory, split)!r}: shards hold {len(x)} rows but the "
                        f"metadata says {meta['num_examples']}; re-run `embed --overwrite`")
    return Embeddings(x, np.concatenate([p[1] for p in parts]).astype(np.int64),
                      list(meta["class_names"]),
                      [str(n) for p in parts for n in p[2]], meta)


CONSISTENT_KEYS = ("class_names", "layer", "model_fingerprint", "image_size", "preprocessing")


def load_splits(directory: str, splits: Sequence[str]) -> Embeddings:
    """Concatenates several splits (e.g. train + validation) written by the same model.

    Refuses splits that disagree on classes, layer or model fingerprint: mixing
    them would train the SVM on two different feature spaces.
    """
    parts = [load(directory, s) for s in splits]
    first = parts[0].metadata
    for s, p in zip(splits[1:], parts[1:]):
        for key in CONSISTENT_KEYS:
            if p.metadata.get(key) != first.get(key):
                raise UserError(f"embeddings of split {s!r} differ from {splits[0]!r} in "
                                f"{key}; re-run `embed` for both splits with the same model")
    meta = dict(first, splits=list(splits), num_examples=sum(len(p.y) for p in parts))
    return Embeddings(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                      parts[0].class_names, [n for p in parts for n in p.file_names], meta)


def check_compatible(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Raises if two embedding metadata disagree on classes, layer or model."""
    for key in CONSISTENT_KEYS:
        if a.get(key) != b.get(key):
            raise UserError(f"{what}: the embeddings differ in {key} "
                            f"({a.get(key)!r} vs {b.get(key)!r}); embed both with one model")


# --- Which model and layer produce the embeddings (paper §6.1) -------------------------

@dataclasses.dataclass
class EmbedConfig:
    """The ``embed`` stage's settings, one ``illustration-tl embed`` flag each
    (:mod:`config_flags`). With ``model_dir`` the trained model's backbone, image size
    and resize mode are used, and ``backbone``, ``weights``, ``include_top``,
    ``image_size`` and ``resize_mode`` do not apply."""

    dataset: str = common_settings.dataset("illustrations/curated")
    data_dir: str | None = common_settings.data_dir()
    splits: tuple[str, ...] = common_settings.splits()
    output: str | None = optional("Folder for the embeddings (one subfolder per split).")
    model_dir: str | None = common_settings.model_dir()
    backbone: str = common_settings.backbone("vgg19")
    weights: str = common_settings.weights()
    include_top: str = common_settings.include_top()
    image_size: int | None = common_settings.image_size()
    layer: str | None = common_settings.layer()
    resize_mode: str = common_settings.resize_mode()
    batch_size: int = common_settings.batch_size()
    shard_size: int = common_settings.shard_size(4096)
    overwrite: bool = setting(False, "Replace splits that already exist.")
    seed: int = setting(0, "Seed for randomly initialized weights.")


def embedding_source(*, model_dir: str | None = None, backbone: str = "vgg19",
                     weights: str | None = "imagenet", image_size: int | None = None,
                     layer: str | None = None, include_top: str = "auto", seed: int = 0,
                     resize_mode: str = "squash") -> EmbeddingSource:
    """Builds the embedding model from a trained-model folder or an ImageNet backbone.

    * ``model_dir``: the output of ``optimize`` (``layer_surgery.load_trained``);
      its backbone, image size and resize mode come from its config.
    * otherwise ``backbone`` with ``weights`` (``"imagenet"``, a local ``.h5``
      file, or ``None`` for random initialization seeded by ``seed``).
      ``include_top="auto"`` keeps the classifier top (and so fc2) when the
      weights have one at this size; a no-top file such as the shared VGG16
      conv base gives the global average pool of the last conv block.
      ``resize_mode`` (squash or pad) is how images reach ``image_size``.
    """
    import keras

    from illustration_tl.models import backbones, layer_surgery

    if model_dir:
        model, config = layer_surgery.load_trained(model_dir)
        emb, name = pooled_embedding_model(model, layer)
        return EmbeddingSource(emb, config["backbone"], int(config["image_size"]), name,
                               f"trained:{os.path.abspath(model_dir)}",
                               config.get("resize_mode", "squash"),
                               list(config.get("class_names") or []) or None,
                               recipe={"model_dir": os.path.abspath(model_dir), "layer": layer})
    spec = backbones.get(backbone)
    size = int(image_size or spec.image_size)
    source = layer_surgery.weights_arg(weights)
    top = keeps_top(spec.name, source, size, include_top)
    keras.utils.set_random_seed(seed)
    if top:
        model = layer_surgery.imagenet_classifier(spec.name, source, size)
    else:
        model = spec.application()(include_top=False, weights=source, input_shape=(size, size, 3))
    emb, name = pooled_embedding_model(model, layer)
    described = "random-init" if source is None else (
        source if source == "imagenet" else f"{os.path.abspath(source)} ({file_sha256(source)})")
    recipe = {"model_dir": None, "backbone": spec.name,
              "weights": source if source in (None, "imagenet") else os.path.abspath(source),
              "image_size": size, "layer": layer, "include_top": include_top, "seed": seed,
              "resize_mode": resize_mode}
    return EmbeddingSource(emb, spec.name, size, name, described, resize_mode, recipe=recipe)


def source_from_manifest(metadata: dict[str, Any], manifest: str,
                         **flags: Any) -> EmbeddingSource:
    """Rebuilds the embedding model that wrote embeddings with ``metadata``.

    The model's settings come from the manifest (``metadata["source"]``, written by
    :func:`embedding_source`); ``flags`` are the settings a user gave explicitly
    (``None``: not given). A flag that contradicts the manifest is refused in one
    line naming both values and ``manifest``; the rebuilt model must have the
    recorded weights fingerprint (else the weights file changed since).
    """
    recipe = dict(metadata.get("source") or {})
    if not recipe:
        raise UserError(f"{manifest} records no embedding model (written by an older "
                        "version); pass --backbone/--weights/--image_size/--layer as at embed")
    for key, value in flags.items():
        if value is None:
            continue
        if key not in recipe:
            raise UserError(f"--{key}={value} does not apply: {manifest} records embeddings of "
                            f"the trained model in {recipe.get('model_dir')}; drop the flag")
        recorded = recipe[key]
        given = value
        if key == "layer" and value == metadata.get("layer"):
            continue  # the resolved name (e.g. fc2 when the recipe said "default")
        if key in ("weights", "model_dir") and value not in ("imagenet", "none", ""):
            given = os.path.abspath(value)
        if key == "weights" and value in ("none", ""):
            given = None
        if key == "backbone":
            from illustration_tl.models import backbones

            given = backbones.get(value).name
        if given != recorded:
            raise UserError(f"--{key}={value} contradicts {manifest}: the embeddings were made "
                            f"with {key}={recorded}; drop the flag (it is read from there)")
    source = embedding_source(**recipe)
    recorded_fp = metadata.get("model_fingerprint")
    if recorded_fp and model_fingerprint(source.model) != recorded_fp:
        raise UserError(f"the model rebuilt from {manifest} ({source.weights_source}) is not the "
                        "one that made the embeddings (weights fingerprint differs): was the "
                        "weights file or trained model replaced? Re-run embed and svm")
    return source


def embed_dataset(source: EmbeddingSource, *, dataset: str, splits: Sequence[str], output: str,
                  data_dir: str | None = None, batch_size: int = 32, shard_size: int = 4096,
                  overwrite: bool = False, progress_interval: float = 5.0
                  ) -> dict[str, dict[str, Any]]:
    """Embeds every split of a TFDS dataset into ``output/<split>`` (paper §6.1).

    Images go through ``input_pipeline.make_dataset`` exactly as for training
    and evaluation (same decoding, resize and ``preprocess_input``), in stored
    order. Returns each split's metadata.
    """
    from illustration_tl.datasets import input_pipeline

    if not splits:
        raise UserError("--splits is empty: name at least one split to embed")
    loaded = {s: input_pipeline.load_split(dataset, s, data_dir, decode_images=False)
              for s in splits}
    for s in splits:
        target = os.path.join(output, s)
        if os.path.lexists(target):
            if not overwrite:
                raise UserError(f"{target} already exists; pass --overwrite to replace it")
            check_replaceable(target)  # before any work: never delete what we did not write
    fingerprint = model_fingerprint(source.model)
    written = {}
    for s, (ds, info) in loaded.items():
        batches = input_pipeline.make_dataset(
            ds, backbone=source.backbone, image_size=source.image_size, batch_size=batch_size,
            training=False, resize_mode=source.resize_mode, with_file_names=True)
        meta = dict(source.metadata(), class_names=input_pipeline.class_names(info),
                    imagenet_indices=input_pipeline.imagenet_indices(info),
                    dataset=info.full_name, dataset_version=str(info.version),
                    max_side=((info.metadata or {}).get("options") or {}).get("max_side"),
                    data_dir=os.path.abspath(data_dir) if data_dir else None, split=s,
                    model_fingerprint=fingerprint)
        try:
            total = info.splits[s].num_examples
        except (KeyError, ValueError):
            total = None
        written[s] = write(source.model, batches, os.path.join(output, s), meta,
                           shard_size=shard_size, total=total, overwrite=overwrite,
                           progress_interval=progress_interval, label=f"embed {s}")
    return written
