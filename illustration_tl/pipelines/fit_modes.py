"""``fit``'s ``modes`` stage: the resize mode decided on a sample of the training split.

``fit`` searches two resize modes (``squash``, the paper's plain resize, and ``pad`` to a
white square). Embedding every image in both costs a second pass for each image that
is not square (a square image's ``pad`` rows are its ``squash`` rows:
:mod:`illustration_tl.features.extraction`), yet the search keeps one mode. Issue 21's
pass saving: when the training split holds at least twice ``--mode_sample`` images,

* the ``modes`` stage embeds the split's first ``--mode_sample`` images in every mode
  (a random sample: TFDS stores a split in the hashed order it shuffled it into) and
  runs the ``fit`` search on them alone (:func:`illustration_tl.heads.search.run`);
  the mode of its best configuration is the decision (``modes.json``), and the
  sample's shards are kept (``shards/<mode>/``);
* ``features`` then embeds every image in the chosen mode only, starting after the
  sample, whose shards it takes as finished (:func:`seed`): the sample is embedded
  once per mode, the rest once.

Smaller folders embed every mode for every image and leave the choice to the full
search, as before (``--mode_sample=0`` does that at any size); so does a sample with a
class of fewer images than the cross-validation folds, its shards serving every mode.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import files

STAGE = "modes"
MODES_FILE = "modes.json"
SHARDS = "shards"            # the sample's shards, shards/<mode>/, in the stage folder
SAMPLE_SPLIT = "train"

HELP = ("Decide the resize mode on the first N training images (a random sample) when "
        "the training split holds at least 2N: only they are embedded in every mode, "
        "the other images in the chosen mode alone (0: every mode for every image, "
        "all searched).")


def applies(resize_modes: Sequence[str], mode_sample: int, train_images: int) -> bool:
    """Whether the mode is decided on a sample: several modes, and a training split of
    at least twice the sample."""
    return len(resize_modes) > 1 and 0 < mode_sample and 2 * mode_sample <= train_images


def passes(resize_modes: Sequence[str], mode_sample: int, examples: dict[str, int],
           views: int) -> int:
    """Forward passes of the features (with the ``modes`` stage when it applies): every
    image once per view in each mode, or the sample in every mode and the rest in one."""
    images = sum(examples.values())
    if applies(resize_modes, mode_sample, examples.get(SAMPLE_SPLIT, 0)):
        return views * (images + mode_sample * (len(resize_modes) - 1))
    return views * images * len(resize_modes)


def train_images(dataset_dir: str) -> int:
    """The training split's size, from the ``dataset`` stage's ``dataset.json``."""
    with open(os.path.join(dataset_dir, "dataset.json"), encoding="utf-8") as f:
        return int(json.load(f)["examples"].get(SAMPLE_SPLIT, 0))


def decide(results: Sequence[Any], sample: int) -> dict[str, Any]:
    """The decision from the sample's search results (best first): the best
    configuration's mode, and each mode's best cross-validated top-1."""
    best: dict[str, float] = {}
    for r in results:
        best.setdefault(r.config.resize, r.top1)
    return {"chosen": results[0].config.resize, "sample": sample,
            "cv_top1": best, "configuration": results[0].config.label()}


def thin_classes(labels: np.ndarray, folds: int) -> int:
    """Classes of the sample with fewer images than ``folds`` (cross-validation needs
    ``folds`` per class)."""
    counts = np.bincount(labels)
    return int(((counts > 0) & (counts < folds)).sum())


def write_decision(store: Any, out: str, work: str, search_mode: str,
                   log: Callable[[str], None], **search_args: Any) -> dict[str, Any]:
    """The ``modes`` stage after the sample's extraction (``store``, its shards in
    ``work``): the search on the sample, ``modes.json``, and every mode's sample shards
    copied into ``out/shards/<mode>``. A sample with a class of fewer images than the
    folds decides nothing (``chosen`` None): every mode is then embedded for every image,
    the sample's shards serving each."""
    from illustration_tl.heads import search

    labels = store.labels[SAMPLE_SPLIT]
    thin = thin_classes(labels, search_args["folds"])
    if thin:
        doc = {"chosen": None, "sample": len(labels), "cv_top1": {},
               "reason": f"{thin} class(es) with fewer than {search_args['folds']} sample "
                         "images"}
    else:
        doc = decide(search.run(store, search_mode, splits=[SAMPLE_SPLIT], log=log,
                                **search_args), len(labels))
    for mode in store.resize_modes:
        target = os.path.join(out, SHARDS, mode)
        os.makedirs(target)
        for path in sorted(glob.glob(os.path.join(work, SAMPLE_SPLIT, mode, "shard-*.npz"))):
            shutil.copyfile(path, os.path.join(target, os.path.basename(path)))
    files.atomic_write_json(os.path.join(out, MODES_FILE), doc)
    log(f"modes: {words(doc)}")
    return doc


def words(doc: dict[str, Any]) -> str:
    """The decision in one line."""
    if doc["chosen"] is None:
        return (f"not decided on {doc['sample']} training images ({doc['reason']}); every "
                "mode is embedded for every image and searched")
    scores = ", ".join(f"{m} {100 * t:.2f}%" for m, t in doc["cv_top1"].items())
    return (f"{doc['chosen']} chosen on {doc['sample']} training images (best CV top-1 per "
            f"mode: {scores}); the other images are embedded in {doc['chosen']} only")


def read_decision(modes_dir: str) -> dict[str, Any]:
    with open(os.path.join(modes_dir, MODES_FILE), encoding="utf-8") as f:
        return json.load(f)


def report_lines(summary: dict[str, Any], bullet: str = "- ") -> list[str]:
    """``fit.json``'s ``modes`` entry for ``report.md`` and the console (none when every
    mode was embedded for every image)."""
    doc = summary.get("modes")
    return [f"{bullet}resize mode: {words(doc)}"] if doc else []


def run_stage(st: Any, cfg: Any, dataset_dir: str, feat_params: dict[str, Any],
              extract: Callable[..., Any], search_args: dict[str, Any],
              log: Callable[[str], None]) -> tuple[tuple[str, ...], str | None]:
    """Runs (or skips) the ``modes`` stage when :func:`applies`; returns the modes the
    ``features`` stage embeds and the stage's folder (None when it does not apply).
    ``extract(out, work, size, modes, splits, limit)`` is ``fit``'s extraction."""
    every_mode = tuple(cfg.resize_modes), None
    if not applies(cfg.resize_modes, cfg.mode_sample, train_images(dataset_dir)):
        return every_mode
    if st.started("features", st.key_of("features", feat_params, ["dataset"])):
        log("modes: every mode's features are already extracted or under way (an earlier "
            "run, or `illustration-tl extract`); all of them are searched")
        return every_mode

    def do(out: str, work: str) -> None:
        store = extract(os.path.join(work, "store"), work, cfg.image_size, cfg.resize_modes,
                        [SAMPLE_SPLIT], cfg.mode_sample)
        write_decision(store, out, work, cfg.search, log, **search_args)
        store.release_pages()

    params = {**feat_params, "mode_sample": cfg.mode_sample, "search": cfg.search,
              "folds": cfg.folds, "max_memory_mb": cfg.max_memory_mb}
    out = st.run(STAGE, params, do, ["dataset"], resumable=True)
    chosen = read_decision(out)["chosen"]
    return ((chosen,) if chosen else tuple(cfg.resize_modes)), out


def seed(modes_dir: str, work: str, mode: str, log: Callable[[str], None]) -> int:
    """Copies the sample's shards of ``mode`` into the ``features`` work folder, where
    the extraction takes them as finished (unless it already has shards of its own);
    returns how many were copied."""
    target = os.path.join(work, SAMPLE_SPLIT, mode)
    if glob.glob(os.path.join(target, "shard-*.npz")):
        return 0
    os.makedirs(target, exist_ok=True)
    shards = sorted(glob.glob(os.path.join(modes_dir, SHARDS, mode, "shard-*.npz")))
    for path in shards:
        tmp = os.path.join(target, "partial-" + os.path.basename(path))
        shutil.copyfile(path, tmp)
        os.replace(tmp, os.path.join(target, os.path.basename(path)))
    log(f"features: the {read_decision(modes_dir)['sample']} sample images' {mode} rows "
        f"taken from the modes stage ({len(shards)} shard(s))")
    return len(shards)
