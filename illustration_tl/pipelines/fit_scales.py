"""``fit --scales``: the chosen head at other input sizes, its probabilities averaged.

A frozen backbone sees other details of a drawing at 320 px than at 224 px, and two
heads, one per size, err on different images: averaging their calibrated probabilities
can beat either (issue 21: +1.2 points top-1 on a 23-class clip-art set). ``fit`` keeps
its one main scale (``--image_size``, or the backbone's) as it was and, for each size of
``--scales`` other than it:

* a features stage ``features_<size>``: the same extraction at that size
  (:func:`illustration_tl.features.multilayer.extract`), resumed like ``features``;
* the ``scales`` stage: the configuration the main search chose, cross-validated on each
  size's store with the same folds (:func:`illustration_tl.heads.search.run` with
  ``configs=[chosen]``), each size's out-of-fold scores calibrated by its own temperature
  (:mod:`illustration_tl.heads.calibration`, as :func:`heads.head.fit` does), then the
  decision (:func:`decide`): the average of every scale's probabilities is kept only when
  its top-1 on the out-of-fold rows beats the main scale's alone (``scales.json``);
* in ``final``, one head per kept extra size (``final/scale_<size>/``, beside the main
  head, which :meth:`heads.head.Head.load` reads as before); ``evaluate`` and the
  SavedModel average the kept heads' probabilities (:func:`average_test`;
  :func:`illustration_tl.pipelines.fit_export.export`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import files

MIN_SIZE = 32
SCALES_FILE = "scales.json"
OOF_PROBABILITIES = "oof_probabilities.npy"   # the kept scales' average, for ``reject``
HEAD_FOLDER = "scale_{}"                      # an extra scale's head inside ``final``


HELP = ("Other input sizes in px (320, or 224,320: the main size, --image_size or the "
        "backbone's, may be listed): each gets its own feature extraction and a head with "
        "the chosen configuration, whose calibrated probabilities are averaged with the "
        "main size's; the average is kept only when its cross-validated top-1 beats the "
        "main size alone (searched).")


def main_size(backbone: str, image_size: int | None) -> int:
    """The main input size: ``--image_size``, or the backbone's."""
    from illustration_tl.models import backbones

    return int(image_size or backbones.get(backbone).image_size)


def check(sizes: Sequence[Any]) -> str | None:
    """``--scales``'s check: whole numbers of pixels of at least :data:`MIN_SIZE`."""
    if all(isinstance(s, int) and not isinstance(s, bool) and s >= MIN_SIZE for s in sizes):
        return None
    return f"give input sizes in px, whole numbers of at least {MIN_SIZE}, e.g. 224,320"


def extra_sizes(sizes: Sequence[int], main_size: int) -> tuple[int, ...]:
    """The sizes of ``--scales`` other than the main one, sorted, each once."""
    return tuple(sorted({int(s) for s in sizes} - {int(main_size)}))


def stage_name(size: int) -> str:
    """The features stage of an extra size."""
    return f"features_{size}"


def run_features(st: Any, sizes: Sequence[int], feat_params: dict[str, Any],
                 extract: Callable[[str, str, int], None]) -> dict[int, str]:
    """Runs (or resumes, or skips) each extra size's features stage: ``feat_params`` (the
    main stage's key) at that size, ``extract(out, work, size)`` (``fit``'s own
    extraction). Returns size -> the stage's folder."""
    return {s: st.run(stage_name(s), {**feat_params, "image_size": s},
                      lambda out, work, s=s: extract(out, work, s), ["dataset"],
                      resumable=True) for s in sizes}


def _labels(store: Any, splits: Sequence[str]) -> np.ndarray:
    return np.concatenate([store.labels[s] for s in splits if s in store.labels])


def calibrated(oof: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Out-of-fold scores as probabilities: the softmax at the temperature
    :func:`heads.head.fit` fits on the same rows (the finite ones)."""
    from illustration_tl.heads import calibration

    ok = np.isfinite(oof).all(axis=1)
    return calibration.softmax(oof, calibration.fit_temperature(oof[ok], labels[ok]))


def decide(probs: dict[int, np.ndarray], labels: np.ndarray, main_size: int
           ) -> dict[str, Any]:
    """Main scale alone vs the average of every scale's probabilities, by top-1 on the
    out-of-fold rows every scale scored; the average is kept only when it is higher."""
    rows = np.all([np.isfinite(p).all(axis=1) for p in probs.values()], axis=0)
    average = np.mean(list(probs.values()), axis=0)

    def top1(p: np.ndarray) -> float:
        return float((p[rows].argmax(axis=1) == labels[rows]).mean())

    single, averaged = top1(probs[main_size]), top1(average)
    kept = sorted(probs, key=lambda s: (s != main_size, s)) if averaged > single \
        else [main_size]
    return {"main": main_size, "extra": sorted(s for s in probs if s != main_size),
            "kept": kept, "rows": int(rows.sum()), "oof_top1_main": single,
            "oof_top1_average": averaged,
            "oof_top1": {str(s): top1(p) for s, p in sorted(probs.items())}}


def write_decision(main: Any, stores: dict[int, Any], main_oof: np.ndarray, chosen: Any,
                   main_size: int, splits: Sequence[str], out: str,
                   log: Callable[[str], None], **search_args: Any) -> dict[str, Any]:
    """The ``scales`` stage: ``chosen`` cross-validated on each extra size's store
    (``search_args``: the main search's folds, seed, jobs and memory budget, so the
    folds are the same), :func:`decide`, then ``out/scales.json``, each size's
    out-of-fold scores (``oof_<size>.npy``) and the kept scales' averaged probabilities
    (:data:`OOF_PROBABILITIES`, for the reject threshold)."""
    from illustration_tl.heads import search

    labels = _labels(main, splits)
    probs = {main_size: calibrated(main_oof, labels)}
    for size, store in stores.items():
        if _labels(store, splits).tolist() != labels.tolist():
            raise RuntimeError(f"the {size} px store's training rows differ from the main "
                               "store's; rerun with --force")
        oof = search.run(store, configs=[chosen], splits=splits, **search_args)[0].oof
        np.save(os.path.join(out, f"oof_{size}.npy"), oof)
        probs[size] = calibrated(oof, labels)
    doc = decide(probs, labels, main_size)
    np.save(os.path.join(out, OOF_PROBABILITIES),
            np.mean([probs[s] for s in doc["kept"]], axis=0))
    files.atomic_write_json(os.path.join(out, SCALES_FILE), doc)
    log(f"scales: {words(doc)}")
    return doc


def words(doc: dict[str, Any]) -> str:
    """The decision in one line."""
    sizes = "+".join(str(s) for s in [doc["main"], *doc["extra"]])
    verdict = ("kept" if len(doc["kept"]) > 1 else "not kept: the main scale alone")
    return (f"{doc['main']} px alone {100 * doc['oof_top1_main']:.2f}%, average of {sizes} "
            f"px {100 * doc['oof_top1_average']:.2f}% (out-of-fold top-1, "
            f"{doc['rows']} images); average {verdict}")


def report_lines(summary: dict[str, Any], bullet: str = "- ") -> list[str]:
    """``fit.json``'s ``scales`` entry for ``report.md`` and the console (none without
    ``--scales``): the decision, and the test top-1 of the main scale alone."""
    doc = summary.get("scales")
    if not doc:
        return []
    return [f"{bullet}scales: {words(doc)}",
            f"{bullet}test top-1: {doc['main']} px alone {100 * doc['test_top1_main']:.2f}%, "
            f"served ({'+'.join(str(s) for s in doc['kept'])} px) "
            f"{100 * summary['test_top1']:.2f}%"]


def read_decision(scales_dir: str) -> dict[str, Any]:
    with open(os.path.join(scales_dir, SCALES_FILE), encoding="utf-8") as f:
        return json.load(f)


def fit_heads(stores: dict[int, Any], chosen: Any, scales_dir: str, splits: Sequence[str],
              final_dir: str) -> None:
    """In ``final``: one head per kept extra size (its out-of-fold scores give its
    temperature), in ``final_dir/scale_<size>/``."""
    from illustration_tl.heads import head

    for size in read_decision(scales_dir)["kept"][1:]:
        oof = np.load(os.path.join(scales_dir, f"oof_{size}.npy"), allow_pickle=False)
        folder = os.path.join(final_dir, HEAD_FOLDER.format(size))
        os.makedirs(folder, exist_ok=True)
        head.fit(stores[size], chosen, splits, oof).save(folder)


def extra_heads(final_dir: str, sizes: Sequence[int]) -> dict[int, str]:
    """The folders of the extra sizes' heads in ``final_dir`` (the kept ones of
    ``sizes``), by size."""
    found = {s: os.path.join(final_dir, HEAD_FOLDER.format(s)) for s in sizes}
    return {s: d for s, d in found.items() if os.path.isdir(d)}


def average_test(main_probs: np.ndarray, main: Any, main_size: int, stores: dict[int, Any],
                 final_dir: str, split: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The test probabilities of every kept scale, averaged (the main scale's alone when
    no extra head was kept), and what ``evaluate`` records: the sizes and the main
    scale's own top-1, so the report shows what the other scales bought."""
    from illustration_tl.heads import head as head_lib

    heads = extra_heads(final_dir, list(stores))
    probs = [main_probs]
    for size, folder in heads.items():
        if list(stores[size].file_names[split]) != list(main.file_names[split]):
            raise RuntimeError(f"the {size} px store's {split} images are not the main "
                               "store's, in the same order; rerun with --force")
        probs.append(head_lib.split_probabilities(stores[size], head_lib.Head.load(folder),
                                                    split))
    labels = np.asarray(main.labels[split])
    main_top1 = float((main_probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
    return np.mean(probs, axis=0), {"sizes": [main_size, *heads], "main_scale_top1": main_top1}
