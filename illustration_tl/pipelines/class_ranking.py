"""Ranking a noisy set's classes for the curated set (paper §4.2): the three rules.

* :func:`imagenet_rule`: how often an ImageNet classifier names an image's class;
* :func:`probe_rule`: how well a probe on the image embeddings separates the class;
* :func:`ambiguity`: how many other meanings the class's words have (``crane``).

:func:`rank_classes` combines them into rows, written by :func:`markdown` and
:func:`write_csv`; :mod:`illustration_tl.pipelines.class_selection` runs the models
and lays out the chosen classes.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
from typing import Any, Sequence

import numpy as np

from illustration_tl.datasets import imagenet, name_mapping
from illustration_tl.errors import UserError

RANK_KEYS = ("auto", "imagenet_top1", "imagenet_top5", "probe_precision", "probe_recall",
             "probe_f1")
PROBES = ("logistic", "knn")
CSV_COLUMNS = ("rank", "wnid", "name", "images", "imagenet_top1", "imagenet_top5",
               "probe_precision", "probe_recall", "probe_f1", "shared_images",
               "shared_fraction", "shared_with", "sharing_words", "ambiguous_words",
               "selected", "reason")


@dataclasses.dataclass
class NoisyExamples:
    """The examples of a noisy dataset: one row per (image, class) copy."""

    file_names: list[str]          # per example
    labels: np.ndarray             # int64 per example, index into class_names
    matched_words: list[str]       # per example, space-separated
    class_names: list[str]         # wnids, in label order
    class_indices: list[int]       # ImageNet index per class

    def images(self) -> list[str]:
        """The distinct image file names, in first-seen order."""
        return list(dict.fromkeys(self.file_names))


# --- Scores -------------------------------------------------------------------------------

def imagenet_rule(scores_1000: np.ndarray, image_of_example: np.ndarray, labels: np.ndarray,
                  class_indices: Sequence[int]) -> dict[int, tuple[float, float]]:
    """The paper's rule: per class, the share of its examples whose 1000-way scores rank
    the class's ImageNet index first (top-1) or within the top 5. Ties count against it.

    ``scores_1000[i]``: scores of image ``i``; ``image_of_example[e]``: the image of
    example ``e``; ``labels[e]``: its class (index into ``class_indices``).
    """
    scores = np.asarray(scores_1000)[np.asarray(image_of_example)]
    target = np.asarray(class_indices, dtype=np.int64)[np.asarray(labels)]
    true = scores[np.arange(len(target)), target][:, None]
    rank = (scores >= true).sum(axis=1) - 1
    out = {}
    for c in np.unique(labels):
        mask = labels == c
        out[int(c)] = (float(np.mean(rank[mask] < 1)), float(np.mean(rank[mask] < 5)))
    return out


def probe_rule(features: np.ndarray, image_of_example: np.ndarray, labels: np.ndarray,
               num_classes: int, *, probe: str = "logistic", folds: int = 5, seed: int = 0,
               progress: Any = None) -> dict[int, tuple[float, float, float]]:
    """Cross-validated probe on image embeddings: per class (precision, recall, f1).

    Each image is predicted once, by a probe trained on the folds that do not hold
    it (folds group the copies of an image). A prediction counts for a class's
    precision when the image carries that class among its labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    if probe not in PROBES:
        raise UserError(f"--probe={probe!r}: choose from {', '.join(PROBES)}")
    features = np.asarray(features, dtype=np.float32)
    image_of_example = np.asarray(image_of_example)
    labels = np.asarray(labels, dtype=np.int64)
    n_images = len(features)
    n_splits = min(max(folds, 2), n_images)
    if n_splits < 2:
        raise UserError("the probe needs at least 2 images")
    predicted = np.full(n_images, -1, dtype=np.int64)
    gkf = GroupKFold(n_splits=n_splits)
    x_ex = features[image_of_example]
    for fold, (train, held) in enumerate(gkf.split(x_ex, labels, groups=image_of_example)):
        if probe == "logistic":
            model = make_pipeline(Normalizer(), StandardScaler(),
                                  LogisticRegression(C=0.1, max_iter=500, random_state=seed))
        else:
            model = make_pipeline(Normalizer(), KNeighborsClassifier(
                n_neighbors=min(5, len(train)), weights="distance"))
        model.fit(x_ex[train], labels[train])
        held_images = np.unique(image_of_example[held])
        predicted[held_images] = model.predict(features[held_images])
        if progress:
            progress(f"probe fold {fold + 1}/{n_splits}")
    label_sets: list[set[int]] = [set() for _ in range(n_images)]
    for img, c in zip(image_of_example, labels):
        label_sets[img].add(int(c))
    out = {}
    for c in range(num_classes):
        members = np.array([c in s for s in label_sets])
        assigned = predicted == c
        hits = int(np.sum(members & assigned))
        precision = hits / int(assigned.sum()) if assigned.any() else 0.0
        recall = hits / int(members.sum()) if members.any() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[c] = (precision, recall, f1)
    return out


def ambiguity(examples: NoisyExamples, mapper: name_mapping.NameMapper | None = None
              ) -> dict[int, dict[str, Any]]:
    """Per class: images shared with other kept classes, by which words, into which
    classes; and its matching words that name more than one ImageNet class."""
    mapper = mapper or name_mapping.NameMapper()
    classes_of: dict[str, set[int]] = collections.defaultdict(set)
    words_of: dict[tuple[str, int], list[str]] = {}
    for f, c, w in zip(examples.file_names, examples.labels, examples.matched_words):
        classes_of[f].add(int(c))
        words_of[(f, int(c))] = w.split()
    word_classes: dict[str, int] = {}
    out = {}
    for c in range(len(examples.class_names)):
        mine = [f for f, cs in classes_of.items() if c in cs]
        shared = [f for f in mine if len(classes_of[f]) > 1]
        sharing_words: collections.Counter = collections.Counter()
        shared_with: collections.Counter = collections.Counter()
        all_words: collections.Counter = collections.Counter()
        for f in mine:
            all_words.update(words_of[(f, c)])
        for f in shared:
            sharing_words.update(words_of[(f, c)])
            shared_with.update(examples.class_names[o] for o in classes_of[f] if o != c)
        ambiguous = {}
        for w in all_words:
            if w not in word_classes:
                word_classes[w] = len(mapper.match(w))
            if word_classes[w] > 1:
                ambiguous[w] = word_classes[w]
        out[c] = {"images": len(mine), "shared_images": len(shared),
                  "shared_fraction": len(shared) / len(mine) if mine else 0.0,
                  "sharing_words": sharing_words, "shared_with": shared_with,
                  "ambiguous_words": ambiguous}
    return out


# --- Ranking ------------------------------------------------------------------------------

def class_name(wnid: str) -> str:
    """The ImageNet name of ``wnid`` (the wnid itself when it is not an ImageNet class)."""
    try:
        return imagenet.by_wnid(wnid).name
    except KeyError:
        return wnid


def _top(counter: collections.Counter, n: int = 4, names: bool = False) -> str:
    items = counter.most_common(n)
    text = " ".join(f"{class_name(k) if names else k}:{v}" for k, v in items)
    return text + (" ..." if len(counter) > n else "")


def rank_classes(examples: NoisyExamples, *, imagenet_scores: dict | None,
                 probe_scores: dict | None, amb: dict, rank_by: str = "auto",
                 num_classes: int = 23, max_shared: float = 0.25, min_images: int = 10
                 ) -> tuple[list[dict[str, Any]], str]:
    """Rows of the ranking (best first) with ``selected`` and ``reason``, and the key
    ranked by."""
    if rank_by not in RANK_KEYS:
        raise UserError(f"--rank_by={rank_by!r}: choose from {', '.join(RANK_KEYS)}")
    if rank_by == "auto":
        rank_by = "imagenet_top1" if imagenet_scores else "probe_precision"
    if rank_by.startswith("imagenet") and not imagenet_scores:
        raise UserError(f"--rank_by={rank_by}: the ImageNet rule needs the classifier top; use "
                        "weights with a top (--include_top=yes) or --rank_by=probe_precision")
    if rank_by.startswith("probe") and not probe_scores:
        raise UserError(f"--rank_by={rank_by}: the probe was not run (--probe=none)")
    rows = []
    for c, wnid in enumerate(examples.class_names):
        a = amb[c]
        row = {"wnid": wnid, "name": class_name(wnid), "images": a["images"],
               "imagenet_top1": None, "imagenet_top5": None, "probe_precision": None,
               "probe_recall": None, "probe_f1": None, "shared_images": a["shared_images"],
               "shared_fraction": round(a["shared_fraction"], 4),
               "shared_with": _top(a["shared_with"], names=True),
               "sharing_words": _top(a["sharing_words"]),
               "ambiguous_words": " ".join(f"{w}:{n}" for w, n in sorted(
                   a["ambiguous_words"].items())), "label": c}
        if imagenet_scores:
            row["imagenet_top1"], row["imagenet_top5"] = (
                round(v, 4) for v in imagenet_scores[c])
        if probe_scores:
            row["probe_precision"], row["probe_recall"], row["probe_f1"] = (
                round(v, 4) for v in probe_scores[c])
        rows.append(row)
    rows.sort(key=lambda r: (-(r[rank_by] or 0.0), -(r["probe_f1"] or 0.0), -r["images"],
                             r["wnid"]))
    chosen = 0
    for i, row in enumerate(rows):
        row["rank"] = i + 1
        if row["images"] < min_images:
            row["selected"], row["reason"] = False, f"fewer than {min_images} images"
        elif row["shared_fraction"] > max_shared:
            row["selected"], row["reason"] = False, (
                f"{100 * row['shared_fraction']:.0f}% of images shared with other classes "
                f"(> {100 * max_shared:.0f}%)")
        elif chosen >= num_classes:
            row["selected"], row["reason"] = False, f"below the best {num_classes}"
        else:
            chosen += 1
            row["selected"], row["reason"] = True, f"rank {chosen} by {rank_by}"
    return rows, rank_by


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if value <= 1.0 else f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown(rows: Sequence[dict[str, Any]], rank_by: str, notes: Sequence[str] = ()) -> str:
    cols = [c for c in CSV_COLUMNS if c != "reason"] + ["reason"]
    lines = [f"# Class ranking (by {rank_by})", ""] + [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
