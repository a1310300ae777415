"""Class weights on real sets made imbalanced: balanced versus unweighted (issue 22).

  python benchmarks/imbalance_bench.py /tmp/fr/emoji /tmp/fr/openclipart \
      --out=benchmarks/results/imbalance.json

Each argument is a finished ``fit`` run (``benchmarks/real_sets.py`` sets, VGG16
ImageNet weights, 64 px). From its stored features (the CNN is not run again), for
``--classes`` classes (a seeded choice among those with at least
``--min_test`` test images) and every seed, the training images (train + validation:
what the search cross-validates and the head is fitted on) of one class are cut to
``--fraction`` of their number (a seeded choice; at least ``--folds`` images, which
cross-validation needs), the other classes and the test split are kept as they are.
Then, on those rows:

* ``unweighted`` / ``balanced``: the run's chosen configuration
  (``search/leaderboard.json``) with ``class_weight`` forced to None and to
  ``"balanced"`` (sklearn's ``n / (classes * count)``), otherwise equal:
  cross-validated (``search.run(configs=...)``: the out-of-fold scores fit the
  temperature, as in ``fit``), refitted on every training image
  (:func:`illustration_tl.heads.head.fit`) and scored on the test split;
* ``default``: what ``fit``'s own search (``--search``, default ``fast``) chooses on the
  imbalanced rows, refitted and scored the same way (does it pick ``balanced``?);
* ``before_cut``: the run's own test scores on every training image (no class cut),
  from its ``evaluate/eval.json``: the reference the minority's recall fell from;
* ``logit_adjusted`` (inside each method's scores): the same head's calibrated
  probabilities divided by the training class prior before the argmax (post-hoc
  logit adjustment, :func:`logit_adjusted`), a remedy that does not need the loss;
* ``by_cv_macro_recall``: among the default search's fully cross-validated rows, the
  one with the best out-of-fold macro-recall instead of top-1 (a candidate rule for
  imbalanced folders), refitted and scored.

Reported per setting: test macro-recall (the mean of the per-class recalls, sklearn's
balanced accuracy), the minority class's test recall and top-1, and the summary over
settings (means, and in how many settings balanced beats / ties / loses to
unweighted on macro-recall). For a GPU host nothing changes: this is CPU work
(scikit-learn on stored features); the defaults take about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Sequence

import numpy as np

from illustration_tl.features import multilayer as features
from illustration_tl.heads import head, search

TRAIN_SPLITS = ("train", "validation")
TEST_SPLIT = "test"
METHODS = ("unweighted", "balanced", "default", "by_cv_macro_recall")


def macro_recall(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``y`` (balanced accuracy)."""
    recalls = [float(np.mean(pred[y == c] == c)) for c in range(num_classes) if (y == c).any()]
    return float(np.mean(recalls))


def minority_rows(y: np.ndarray, cls: int, fraction: float, minimum: int, seed: int
                  ) -> np.ndarray:
    """A boolean mask over the training rows ``y``: every row of the other classes and a
    seeded ``max(minimum, round(fraction * count))`` of class ``cls``'s."""
    rows = np.flatnonzero(y == cls)
    keep_n = min(len(rows), max(minimum, int(round(fraction * len(rows)))))
    kept = np.random.default_rng(seed).choice(rows, keep_n, replace=False)
    mask = y != cls
    mask[kept] = True
    return mask


def reduced_store(store: features.FeatureStore, splits: Sequence[str], mask: np.ndarray
                  ) -> features.FeatureStore:
    """An in-memory copy of ``store`` whose ``splits`` (concatenated in that order) keep
    the rows of ``mask`` only; the other splits (the test split) are copied whole."""
    arrays, labels, names = {}, {}, {}
    at = 0
    for split in store.labels:
        n = len(store.labels[split])
        keep = mask[at:at + n] if split in splits else np.ones(n, bool)
        if split in splits:
            at += n
        arrays[split] = {k: np.asarray(v)[keep] for k, v in store.arrays[split].items()}
        labels[split] = np.asarray(store.labels[split])[keep]
        names[split] = [f for f, k in zip(store.file_names[split], keep) if k]
    return features.FeatureStore(arrays, labels, names, store.class_names, store.blocks,
                                 store.resize_modes, store.views, store.meta)


def test_scores(store: features.FeatureStore, cfg: search.Config, splits: Sequence[str],
                oof: np.ndarray | None, minority: int) -> dict[str, Any]:
    """Refits ``cfg`` on every training row and scores the test split."""
    h = head.fit(store, cfg, splits, oof)
    orig = head.store_blocks(store, [TEST_SPLIT], cfg.resize, "orig", cfg.blocks)
    flip = (head.store_blocks(store, [TEST_SPLIT], cfg.resize, "flip", cfg.blocks)
            if cfg.flip_test else None)
    probs = h.probabilities(orig, flip)
    y = np.asarray(store.labels[TEST_SPLIT])
    out = scored(probs.argmax(1), y, len(store.class_names), minority)
    y_train = np.concatenate([store.labels[s] for s in splits if s in store.labels])
    out["logit_adjusted"] = scored(logit_adjusted(probs, y_train), y, len(store.class_names),
                                   minority)
    return out


def scored(pred: np.ndarray, y: np.ndarray, num_classes: int, minority: int
           ) -> dict[str, float]:
    """Test macro-recall, the minority's recall and top-1 of predictions ``pred``."""
    return {"macro_recall": round(macro_recall(pred, y, num_classes), 4),
            "minority_recall": round(float(np.mean(pred[y == minority] == minority)), 4),
            "top1": round(float(np.mean(pred == y)), 4)}


def logit_adjusted(probs: np.ndarray, y_train: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021, "Long-tail learning via logit
    adjustment", eq. 6): argmax of ``log p(c|x) - tau * log prior(c)``, the prior being
    the training rows' class frequencies (the calibrated probabilities of the head)."""
    prior = np.bincount(y_train, minlength=probs.shape[1]) / len(y_train)
    logp = np.log(np.clip(probs, 1e-300, None))
    return np.argmax(logp - tau * np.log(np.clip(prior, 1e-12, None)), axis=1)


def cv_macro_recall(r: search.Result, y: np.ndarray, num_classes: int) -> float:
    """The out-of-fold macro-recall of a fully cross-validated search row."""
    return macro_recall(np.asarray(r.oof).argmax(1), y, num_classes)


def one(store: features.FeatureStore, chosen: search.Config, cls: int, seed: int,
        a: argparse.Namespace) -> dict[str, Any]:
    """One imbalanced setting: class ``cls`` cut to ``a.fraction`` with seed ``seed``."""
    splits = [s for s in TRAIN_SPLITS if s in store.labels]
    y_full = np.concatenate([store.labels[s] for s in splits])
    mask = minority_rows(y_full, cls, a.fraction, a.folds, seed)
    small = reduced_store(store, splits, mask)
    y = y_full[mask]
    num_classes = len(store.class_names)
    out: dict[str, Any] = {"class": store.class_names[cls], "seed": seed,
                           "minority_train": int((y == cls).sum()),
                           "minority_train_before": int((y_full == cls).sum()),
                           "train_images": int(len(y)),
                           "minority_test": int((store.labels[TEST_SPLIT] == cls).sum())}
    t0 = time.perf_counter()
    for method, weight in (("unweighted", None), ("balanced", "balanced")):
        cfg = dataclasses.replace(chosen, class_weight=weight)
        r = search.run(small, "fast", splits=splits, folds=a.folds, seed=0,
                       n_jobs=a.n_jobs, configs=[cfg])[0]
        out[method] = dict(test_scores(small, cfg, splits, r.oof, cls),
                           cv_top1=round(r.top1, 4),
                           cv_macro_recall=round(cv_macro_recall(r, y, num_classes), 4))
    results = search.run(small, a.search, splits=splits, folds=a.folds, seed=0,
                         n_jobs=a.n_jobs)
    best = results[0]
    full = [r for r in results if len(r.fold_top1) == a.folds and r.oof is not None]
    out["default"] = dict(test_scores(small, best.config, splits, best.oof, cls),
                          chosen=best.config.label(),
                          picks_balanced=best.config.class_weight == "balanced",
                          cv_top1=round(best.top1, 4),
                          cv_macro_recall=round(cv_macro_recall(best, y, num_classes), 4),
                          balanced_rows_cross_validated=sum(
                              r.config.class_weight == "balanced" for r in full),
                          balanced_rows_tried=sum(
                              r.config.class_weight == "balanced" for r in results))
    by_mr = max(full, key=lambda r: cv_macro_recall(r, y, num_classes))
    out["by_cv_macro_recall"] = dict(
        test_scores(small, by_mr.config, splits, by_mr.oof, cls),
        chosen=by_mr.config.label(),
        picks_balanced=by_mr.config.class_weight == "balanced",
        cv_top1=round(by_mr.top1, 4),
        cv_macro_recall=round(cv_macro_recall(by_mr, y, num_classes), 4))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def chosen_classes(store: features.FeatureStore, count: int, min_test: int, seed: int
                   ) -> list[int]:
    """A seeded choice of ``count`` classes with at least ``min_test`` test images (so the
    minority's test recall is not one or two images' worth)."""
    test = np.bincount(store.labels[TEST_SPLIT], minlength=len(store.class_names))
    ok = np.flatnonzero(test >= min_test)
    pick = np.random.default_rng(seed).choice(ok, min(count, len(ok)), replace=False)
    return sorted(int(c) for c in pick)


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over settings and balanced-versus-unweighted wins on test macro-recall."""
    out: dict[str, Any] = {"settings": len(rows)}
    for m in METHODS:
        out[m] = {k: round(float(np.mean([r[m][k] for r in rows])), 4)
                  for k in ("macro_recall", "minority_recall", "top1")}
    for m in ("unweighted", "balanced"):
        out[m]["logit_adjusted"] = {
            k: round(float(np.mean([r[m]["logit_adjusted"][k] for r in rows])), 4)
            for k in ("macro_recall", "minority_recall", "top1")}
    diff = [r["balanced"]["macro_recall"] - r["unweighted"]["macro_recall"] for r in rows]
    out["balanced_vs_unweighted_macro_recall"] = {
        "wins": sum(d > 0 for d in diff), "ties": sum(d == 0 for d in diff),
        "losses": sum(d < 0 for d in diff)}
    out["default_picks_balanced"] = sum(r["default"]["picks_balanced"] for r in rows)
    out["by_cv_macro_recall_picks_balanced"] = sum(
        r["by_cv_macro_recall"]["picks_balanced"] for r in rows)
    return out


def reference(run_dir: str) -> dict[str, Any]:
    """The finished run's own test scores before any cut (``evaluate/eval.json``): its
    macro-recall, top-1 and every class's recall."""
    with open(os.path.join(run_dir, "evaluate", "eval.json"), encoding="utf-8") as f:
        doc = json.load(f)
    recall = {c["class"]: round(float(c["top1"]), 4) for c in doc["per_class"]}
    return {"macro_recall": round(float(np.mean(list(recall.values()))), 4),
            "top1": round(float(doc["top1"]), 4), "class_recall": recall}


def bench_run(run_dir: str, a: argparse.Namespace) -> dict[str, Any]:
    """Every (class, seed) setting of one finished ``fit`` run."""
    store = features.FeatureStore.load(os.path.join(run_dir, "features"))
    with open(os.path.join(run_dir, "search", "leaderboard.json"), encoding="utf-8") as f:
        chosen = search.Config.from_dict(json.load(f)["chosen"]["config"])
    before = reference(run_dir)
    rows = []
    for cls in chosen_classes(store, a.classes, a.min_test, a.class_seed):
        for seed in a.seeds:
            rows.append(one(store, chosen, cls, seed, a))
            rows[-1]["minority_recall_before_cut"] = before["class_recall"][store.class_names[cls]]
            print(json.dumps(dict(run=run_dir, **rows[-1])), flush=True)
    return {"run": run_dir, "chosen": chosen.label(), "before_cut": before,
            "rows": rows, "summary": summary(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="finished fit runs (their features/ and search/)")
    p.add_argument("--fraction", type=float, default=0.1,
                   help="share of the minority class's training images kept")
    p.add_argument("--classes", type=int, default=3, help="minority classes per run")
    p.add_argument("--min_test", type=int, default=5,
                   help="a minority class needs this many test images")
    p.add_argument("--class_seed", type=int, default=0, help="seed of the class choice")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds of the kept minority images")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--search", default="fast", choices=search.MODES)
    p.add_argument("--n_jobs", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    runs = [bench_run(r, a) for r in a.runs]
    doc = {"fraction": a.fraction, "folds": a.folds, "search": a.search,
           "seeds": a.seeds, "runs": runs,
           "summary": summary([row for r in runs for row in r["rows"]])}
    print(json.dumps(doc["summary"]), flush=True)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
