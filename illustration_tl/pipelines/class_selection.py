"""Choosing the curated classes from a noisy set (paper §4.2).

The paper built its curated set by classifying the noisy set with the ImageNet
network, ranking the classes by how often the network recognized their images
(top-1/top-5), and keeping the best ones that had no ambiguity of meaning
(``crane`` the bird and the machine, ``hot dog``), before topping them up and
checking them by hand. :func:`select_classes` does the ranking (the rules are in
:mod:`illustration_tl.pipelines.class_ranking`) and the first cut, and prepares the
manual pass:

* **ImageNet rule** (the paper's, needs the classifier top): for each class,
  the share of its images whose 1000-way prediction has the class at rank 1
  (``imagenet_top1``) or within the top 5 (``imagenet_top5``). Without a top
  (e.g. a conv-base-only weights file) the columns are empty and the report
  says why.
* **Probe rule** (needs only a conv base): a linear (logistic regression) or
  kNN probe on the pooled embeddings, cross-validated with folds grouped by
  image (an image copied into several classes never sits on both sides).
  ``probe_precision``: of the images the probe assigns to the class, the share
  that carry the class; ``probe_recall``: of the class's images, the share the
  probe assigns to it; ``probe_f1``.
* **Name-mapping ambiguity**: how many of a class's images were also copied
  into other kept classes (``shared_images``, ``shared_fraction``), by which
  words and into which classes, and which of its matching words name more
  than one ImageNet class (``ambiguous_words``, e.g. ``crane:2``).

A class is selected when it has at least ``min_images`` images and a
``shared_fraction`` of at most ``max_shared``, best ``rank_by`` first, up to
``num_classes``. Outputs (one folder, written with :mod:`illustration_tl.core.outputs`):

* ``ranking.md`` / ``ranking.csv``: every class, ranked;
* ``selection.json``: the options, timings and the selected classes;
* ``contact_sheets/<class>.png``: thumbnails of each selected class's images;
* ``curated/<class>/<image>.png``: the selected classes as a flat curated
  layout, which ``illustration-tl build --config=curated
  --manual_dir=OUT/curated`` reads directly. The images are the noisy
  dataset's stored pixels (already decoded, alpha on white); an image that
  lands in two selected classes is left out and listed in
  ``curated_dropped.csv``. Delete what the manual pass rejects, add images,
  then build.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
import re
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from illustration_tl.core import common_settings, outputs
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.datasets import imagenet, name_mapping
from illustration_tl.errors import UserError
from illustration_tl.pipelines.class_ranking import (
    PROBES,
    RANK_KEYS,
    NoisyExamples,
    ambiguity,
    class_name,
    imagenet_rule,
    markdown,
    probe_rule,
    rank_classes,
    write_csv,
)

OUTPUT_MARKER = "select-classes"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- Images: contact sheets and the curated layout ---------------------------------------

def folder_name(wnid: str) -> str:
    """The curated folder of a class: its ImageNet name when that name finds this very
    class again (so ``build --config=curated`` keeps the ImageNet index), else the wnid."""
    name = class_name(wnid)
    found = imagenet.find(name)
    safe = re.sub(r"[^\w\- ]+", "_", name).strip() or wnid
    if found is not None and found.wnid == wnid and imagenet.find(safe) is found:
        return safe
    return wnid


def image_file_name(file_name: str, taken: set[str]) -> str:
    """A flat, safe ``.png`` name for a dataset file name (``a/b c.svg`` -> ``a_b_c.png``)."""
    stem, ext = os.path.splitext(file_name)
    stem = stem if ext and 1 < len(ext) <= 5 and ext[1:].isalnum() else file_name
    base = re.sub(r"[^\w\-.]+", "_", stem).strip("._")[:120] or "image"
    name, i = f"{base}.png", 1
    while name in taken:
        i += 1
        name = f"{base}_{i}.png"
    taken.add(name)
    return name


def contact_sheet(images: Sequence[tuple[str, bytes]], title: str, path: str, *,
                  tile: int = 96, columns: int = 10) -> None:
    """A PNG grid of thumbnails (file name under each) for the manual pass."""
    from PIL import Image, ImageDraw

    label_h, head = 12, 24
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("RGB", (columns * tile, head + rows * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), title, fill="black")
    for i, (name, data) in enumerate(images):
        x, y = (i % columns) * tile, head + (i // columns) * (tile + label_h)
        try:
            img = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception:  # noqa: BLE001 - the dataset's own PNGs; never fatal here
            continue
        img.thumbnail((tile - 4, tile - 4))
        sheet.paste(img, (x + (tile - img.width) // 2, y + (tile - img.height) // 2))
        draw.text((x + 2, y + tile), os.path.basename(name)[:15], fill="gray")
    sheet.save(path, optimize=True)


# --- Reading the dataset and running the model --------------------------------------------

def read_noisy(dataset: str, data_dir: str | None, splits: Sequence[str]
               ) -> tuple[NoisyExamples, Any]:
    """Every example of ``splits`` without the pixels, and the dataset's info."""
    import tensorflow_datasets as tfds

    from illustration_tl.datasets import input_pipeline

    builder = input_pipeline.open_builder(dataset, data_dir)
    info = builder.info
    if "matched_words" not in info.features:
        raise UserError(f"--dataset={dataset} is not a noisy dataset (no matched_words); "
                        "select classes from a `build --config=noisy` dataset")
    missing = [s for s in splits if s not in info.splits]
    if missing:
        raise UserError(f"--splits: {', '.join(missing)} not in {dataset} "
                        f"(has {', '.join(sorted(info.splits))})")
    files_, labels, words = [], [], []
    for s in splits:
        ds = builder.as_dataset(split=s, decoders={"image": tfds.decode.SkipDecoding()})
        ds = ds.map(lambda e: {k: e[k] for k in ("file_name", "label", "matched_words")})
        for e in tfds.as_numpy(ds):
            files_.append(e["file_name"].decode("utf-8"))
            labels.append(int(e["label"]))
            words.append(e["matched_words"].decode("utf-8"))
    names = input_pipeline.class_names(info)
    return NoisyExamples(files_, np.asarray(labels, np.int64), words, names,
                         input_pipeline.imagenet_indices(info)), builder


def iter_images(builder: Any, splits: Sequence[str], wanted: set[str] | None = None
                ) -> Iterable[tuple[str, bytes]]:
    """``(file_name, png bytes)`` of each distinct image (first copy), optionally only
    those in ``wanted``."""
    import tensorflow_datasets as tfds

    seen: set[str] = set()
    for s in splits:
        ds = builder.as_dataset(split=s, decoders={"image": tfds.decode.SkipDecoding()})
        ds = ds.map(lambda e: (e["file_name"], e["image"]))
        for name, data in tfds.as_numpy(ds):
            name = name.decode("utf-8")
            if name in seen or (wanted is not None and name not in wanted):
                continue
            seen.add(name)
            yield name, data


@dataclasses.dataclass
class Models:
    """The networks that score the images: an embedding model (conv base or fc2) and,
    when the classifier top exists, the 1000-way classifier in the same forward pass."""

    model: Any            # outputs [embedding] or [embedding, predictions]
    backbone: str
    image_size: int
    layer: str
    has_top: bool
    weights_source: str


def build_models(*, backbone: str = "vgg16", weights: str | None = "imagenet",
                 image_size: int | None = None, include_top: str = "auto",
                 layer: str | None = None, seed: int = 0) -> Models:
    """The scoring networks. ``include_top``: ``yes`` builds the ImageNet classifier
    (the paper's rule), ``no`` only the conv base, ``auto`` the top when the weights
    have one at this size (``imagenet`` at the native size, or a with-top file)."""
    import keras

    from illustration_tl.models import backbones, extractor, layer_surgery

    spec = backbones.get(backbone)
    source = layer_surgery.weights_arg(weights)
    size = int(image_size or spec.image_size)
    top = extractor.keeps_top(spec.name, source, size, include_top)
    keras.utils.set_random_seed(seed)
    if top:
        full = layer_surgery.imagenet_classifier(spec.name, source, size)
        if "predictions" not in {x.name for x in full.layers}:
            raise UserError(f"{spec.name} has no `predictions` layer; use --include_top=no")
        emb, name = extractor.pooled_embedding_model(full, layer)
        model = keras.Model(full.inputs, [emb.output, full.get_layer("predictions").output])
    else:
        base = spec.application()(include_top=False, weights=source,
                                  input_shape=(size, size, 3))
        model, name = extractor.pooled_embedding_model(base, layer)
    described = "random-init" if source is None else (
        source if source == "imagenet" else os.path.abspath(source))
    return Models(model, spec.name, size, name, top, described)


def score_images(models: Models, images: Iterable[tuple[str, bytes]], total: int,
                 batch_size: int = 32) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Embeddings (and 1000-way scores with a top) of each image, decoded as training
    decodes dataset images."""
    import tensorflow as tf

    from illustration_tl.core.progress import Progress
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.models import backbones

    spec = backbones.get(models.backbone)
    progress = Progress("select-classes: embed", total, interval=10.0)
    names, embs, preds = [], [], []
    batch_names: list[str] = []
    batch_px: list[Any] = []

    def flush() -> None:
        if not batch_px:
            return
        x = spec.preprocess_input(tf.stack(batch_px))
        out = models.model.predict_on_batch(x)
        if models.has_top:
            embs.append(np.asarray(out[0], np.float32))
            preds.append(np.asarray(out[1], np.float32))
        else:
            embs.append(np.asarray(out, np.float32))
        names.extend(batch_names)
        progress.update(len(batch_px))
        batch_names.clear()
        batch_px.clear()

    for name, data in images:
        img = tf.io.decode_png(data, channels=3)
        batch_px.append(input_pipeline.resize(img[None], models.image_size, "squash")[0])
        batch_names.append(name)
        if len(batch_px) >= batch_size:
            flush()
    flush()
    progress.update(0, force=True)
    if not embs:
        raise UserError("the dataset has no images to score")
    emb = np.concatenate(embs)
    if emb.ndim != 2:
        raise UserError(f"the embedding layer outputs shape {emb.shape[1:]}; pick a dense or "
                        "pooled --layer")
    return names, emb, (np.concatenate(preds) if preds else None)


# --- The command --------------------------------------------------------------------------

def _mapper_for(info: Any) -> name_mapping.NameMapper:
    opts = dict((info.metadata or {}).get("options") or {})
    try:
        return name_mapping.NameMapper(name_mapping.MappingOptions.create(
            min_token_length=int(opts.get("min_token_length", 1)),
            fold_plurals=bool(opts.get("fold_plurals", False)),
            ignore=tuple(opts.get("ignore") or ()),
            extra_ignore_words=tuple(opts.get("ignore_words") or ()),
            phrase_mode=bool(opts.get("phrase_mode", False))))
    except ValueError:
        return name_mapping.NameMapper()


@dataclasses.dataclass
class SelectClassesConfig:
    """The ``select-classes`` stage's settings, one ``illustration-tl select-classes``
    flag each (:mod:`config_flags`); the arguments of :func:`select_classes`."""

    dataset: str = common_settings.dataset("illustrations/noisy")
    data_dir: str | None = common_settings.data_dir()
    splits: tuple[str, ...] = common_settings.splits()
    output: str | None = optional("New folder for the ranking, contact sheets and curated "
                                  "layout.")
    overwrite: bool = setting(False, "Replace an earlier select-classes output (only if it "
                              "holds nothing else).")
    backbone: str = common_settings.backbone("vgg16")
    weights: str = common_settings.weights()
    include_top: str = common_settings.include_top()
    image_size: int | None = common_settings.image_size()
    layer: str | None = common_settings.layer()
    probe: str = setting("logistic", "Probe on the embeddings (the rule that needs only a "
                         "conv base).", choices=PROBES + ("none",))
    folds: int = setting(5, "Cross-validation folds of the probe.")
    rank_by: str = setting("auto", "Ranking score. auto: imagenet_top1 with a top, else "
                           "probe_precision.", choices=RANK_KEYS)
    num_classes: int = setting(23, "Classes to select (paper: 23).")
    max_shared: float = setting(0.25, "Leave out classes with more than this share of images "
                                "also copied into other classes.")
    min_images: int = setting(10, "Leave out classes with fewer images.")
    sheet_max: int = setting(100, "Thumbnails per contact sheet.")
    batch_size: int = common_settings.batch_size()
    seed: int = setting(0, "Seed (random weights, probe).")


def select_classes(*, dataset: str, output: str, data_dir: str | None = None,
                   splits: Sequence[str] = ("train", "validation", "test"),
                   backbone: str = "vgg16", weights: str | None = "imagenet",
                   image_size: int | None = None, include_top: str = "auto",
                   layer: str | None = None, probe: str = "logistic", folds: int = 5,
                   rank_by: str = "auto", num_classes: int = 23, max_shared: float = 0.25,
                   min_images: int = 10, sheet_max: int = 100, batch_size: int = 32,
                   seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Ranks the classes of a noisy dataset and writes the selection (see module doc).
    Returns the summary written to ``selection.json``."""
    started = time.monotonic()
    if probe not in PROBES + ("none",):
        raise UserError(f"--probe={probe!r}: choose from {', '.join(PROBES)} or none")
    if rank_by not in RANK_KEYS:
        raise UserError(f"--rank_by={rank_by!r}: choose from {', '.join(RANK_KEYS)}")
    if not 0.0 <= max_shared <= 1.0:
        raise UserError(f"--max_shared={max_shared}: a fraction in 0..1")
    if num_classes < 1:
        raise UserError(f"--num_classes={num_classes}: at least 1")
    outputs.prepare_output(output, overwrite=overwrite, marker=OUTPUT_MARKER)
    examples, builder = read_noisy(dataset, data_dir, splits)
    images = examples.images()
    _say(f"select-classes: {dataset}: {len(examples.class_names)} classes, "
         f"{len(images):,} images, {len(examples.file_names):,} examples")
    models = build_models(backbone=backbone, weights=weights, image_size=image_size,
                          include_top=include_top, layer=layer, seed=seed)
    _say(f"select-classes: {models.backbone} at {models.image_size}px, embedding "
         f"{models.layer}, weights {models.weights_source}, "
         f"{'with' if models.has_top else 'without'} the ImageNet classifier top")
    names, emb, preds = score_images(models, iter_images(builder, splits), len(images),
                                     batch_size)
    index = {n: i for i, n in enumerate(names)}
    image_of = np.asarray([index[f] for f in examples.file_names], np.int64)
    notes = []
    imagenet_scores = None
    if preds is not None and preds.shape[1] == imagenet.NUM_CLASSES:
        imagenet_scores = imagenet_rule(preds, image_of, examples.labels, examples.class_indices)
    else:
        notes.append("imagenet_top1/top5 n/a: the backbone has no ImageNet classifier top "
                     f"({models.weights_source}); the paper's rule needs weights with a top, "
                     "ranking uses the probe")
    probe_scores = None
    t_probe = time.monotonic()
    if probe != "none":
        probe_scores = probe_rule(emb, image_of, examples.labels, len(examples.class_names),
                                  probe=probe, folds=folds, seed=seed,
                                  progress=lambda s: _say(f"select-classes: {s}"))
    t_probe = time.monotonic() - t_probe
    amb = ambiguity(examples, _mapper_for(builder.info))
    rows, used = rank_classes(examples, imagenet_scores=imagenet_scores,
                              probe_scores=probe_scores, amb=amb, rank_by=rank_by,
                              num_classes=num_classes, max_shared=max_shared,
                              min_images=min_images)
    selected = [r for r in rows if r["selected"]]
    if not selected:
        notes.append("no class passed the filters: loosen --max_shared or --min_images")
    notes.append(f"probe: {probe}, {folds}-fold cross-validation grouped by image"
                 if probe != "none" else "probe: not run")
    notes.append("ambiguity: shared = images also copied into another kept class; "
                 "ambiguous_words = matching words naming several ImageNet classes")
    sel_labels = {r["label"] for r in selected}
    classes_of: dict[str, set[int]] = collections.defaultdict(set)
    for f, c in zip(examples.file_names, examples.labels):
        classes_of[f].add(int(c))
    members: dict[int, list[str]] = collections.defaultdict(list)
    dropped = []
    for f in images:
        hit = classes_of[f] & sel_labels
        if len(hit) == 1:
            members[hit.pop()].append(f)
        elif len(hit) > 1:
            dropped.append((f, " ".join(examples.class_names[c] for c in sorted(hit))))
    wanted = {f for fs in members.values() for f in fs}
    summary = {
        "dataset": dataset, "data_dir": os.path.abspath(data_dir) if data_dir else None,
        "splits": list(splits), "classes": len(examples.class_names), "images": len(images),
        "examples": len(examples.file_names), "backbone": models.backbone,
        "image_size": models.image_size, "layer": models.layer,
        "weights": models.weights_source, "imagenet_rule": imagenet_scores is not None,
        "probe": probe, "folds": folds, "rank_by": used, "num_classes": num_classes,
        "max_shared": max_shared, "min_images": min_images, "notes": notes,
        "selected": [{"wnid": r["wnid"], "name": r["name"], "folder": folder_name(r["wnid"]),
                      "images": len(members[r["label"]])} for r in selected],
        "curated_dropped_images": len(dropped),
    }
    with outputs.writing(output, overwrite=overwrite, marker=OUTPUT_MARKER) as tmp:
        with open(os.path.join(tmp, "ranking.md"), "w", encoding="utf-8") as f:
            f.write(markdown(rows, used, notes))
        write_csv(rows, os.path.join(tmp, "ranking.csv"))
        with open(os.path.join(tmp, "curated_dropped.csv"), "w", newline="",
                  encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "selected_classes"])
            w.writerows(dropped)
        sheets = os.path.join(tmp, "contact_sheets")
        curated = os.path.join(tmp, "curated")
        os.makedirs(sheets)
        os.makedirs(curated)
        folder_of = {r["label"]: folder_name(r["wnid"]) for r in selected}
        label_of = {f: c for c, fs in members.items() for f in fs}
        taken: dict[int, set[str]] = collections.defaultdict(set)
        thumbs: dict[int, list[tuple[str, bytes]]] = collections.defaultdict(list)
        for c in folder_of:
            os.makedirs(os.path.join(curated, folder_of[c]))
        done = 0
        for name, data in iter_images(builder, splits, wanted):
            c = label_of[name]
            target = os.path.join(curated, folder_of[c], image_file_name(name, taken[c]))
            with open(target, "xb") as f:
                f.write(data)
            if len(thumbs[c]) < sheet_max:
                thumbs[c].append((name, data))
            done += 1
            if done % 500 == 0:
                _say(f"select-classes: wrote {done:,}/{len(wanted):,} curated images")
        for r in selected:
            c = r["label"]
            contact_sheet(thumbs[c], f"{r['name']} ({r['wnid']}): {len(members[c])} images"
                          + (f", first {sheet_max} shown" if len(members[c]) > sheet_max
                             else ""), os.path.join(sheets, f"{folder_of[c]}.png"))
        summary["seconds"] = {"total": round(time.monotonic() - started, 1),
                              "probe": round(t_probe, 1)}
        with open(os.path.join(tmp, "selection.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    _say(f"select-classes: {len(selected)} classes selected; build the curated set with "
         f"`illustration-tl build --config=curated --manual_dir={os.path.join(output, 'curated')}`")
    return summary
