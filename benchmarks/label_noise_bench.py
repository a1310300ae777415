"""Label-issue ranking on real sets with planted label flips (issue 22).

  python benchmarks/label_noise_bench.py /tmp/fr/openclipart /tmp/fr/emoji \
      --out=benchmarks/results/label_noise.json

Each argument is a finished ``fit`` run (``benchmarks/real_sets.py`` sets, VGG16
ImageNet weights, 64 px). From its stored features (the CNN is not run again) it
flips ``--fraction`` of the training images' labels (train + validation: what the
search cross-validates) to another class drawn at random, runs ``fit``'s search
(``--search`` mode, 3 folds) on the noisy labels, turns the chosen configuration's
out-of-fold scores into probabilities (the temperature fitted on them, as ``fit``'s
head does) and ranks the images with :mod:`illustration_tl.evaluation.label_issues`.
Reported: precision and recall of the first 2 x (flipped count) images of the
ranking, and of the flagged set (the confident joint's off-diagonal), per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from illustration_tl.evaluation import label_issues
from illustration_tl.features import multilayer as features
from illustration_tl.heads import calibration, search

TRAIN_SPLITS = ("train", "validation")


def flip_labels(y: np.ndarray, num_classes: int, fraction: float, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``y`` with ``round(fraction * n)`` random rows moved to another random
    class, and the mask of those rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    rows = rng.choice(n, int(round(fraction * n)), replace=False)
    noisy = y.copy()
    noisy[rows] = (y[rows] + rng.integers(1, num_classes, len(rows))) % num_classes
    mask = np.zeros(n, bool)
    mask[rows] = True
    return noisy, mask


def one(run_dir: str, fraction: float, seed: int, mode: str, n_jobs: int) -> dict:
    store = features.FeatureStore.load(os.path.join(run_dir, "features"))
    splits = [s for s in TRAIN_SPLITS if s in store.labels]
    y = np.concatenate([store.labels[s] for s in splits])
    noisy, flipped = flip_labels(y, len(store.class_names), fraction, seed)
    start = 0
    for s in splits:   # the search reads labels from the store
        n = len(store.labels[s])
        store.labels[s] = noisy[start:start + n]
        start += n
    t0 = time.perf_counter()
    best = search.run(store, mode, splits=splits, folds=3, seed=0, n_jobs=n_jobs)[0]
    seconds = time.perf_counter() - t0
    temperature = calibration.fit_temperature(best.oof, noisy)
    probs = label_issues.softmax(best.oof, temperature)
    found = label_issues.find(probs, noisy)
    k = 2 * int(flipped.sum())
    at_2x = {}
    for method in label_issues.RANKINGS:
        p_k, r_k = label_issues.precision_recall_at(label_issues.ranking(probs, noisy, method),
                                                    flipped, k)
        at_2x[method] = {"precision": round(p_k, 4), "recall": round(r_k, 4)}
    issues = found.issues()
    p_f, r_f = label_issues.precision_recall_at(issues, flipped, len(issues))
    clean_top1 = float(np.mean(np.argmax(best.oof, 1)[~flipped] == y[~flipped]))
    return {"run": run_dir, "seed": seed, "images": int(len(y)),
            "classes": len(store.class_names), "flipped": int(flipped.sum()),
            "top_k": k, "at_2x": at_2x, "oof_top1_on_unflipped": round(clean_top1, 4),
            "flagged": len(issues), "flagged_precision": round(p_f, 4),
            "flagged_recall": round(r_f, 4), "cv_top1_noisy": round(best.top1, 4),
            "chosen": best.config.label(), "search_seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--fraction", type=float, default=0.05)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--search", default="fast", choices=search.MODES)
    p.add_argument("--n_jobs", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rows = []
    for run in a.runs:
        for seed in a.seeds:
            rows.append(one(run, a.fraction, seed, a.search, a.n_jobs))
            print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"fraction": a.fraction, "search": a.search, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
