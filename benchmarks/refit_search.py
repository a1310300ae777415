"""Rerun today's ``fit`` search on the features of finished ``fit`` runs and compare with
what those runs chose: configuration, CV top-1 and test top-1 (issue 19: the fold-leakage
fix). Usage: ``python benchmarks/refit_search.py RUN_DIR [RUN_DIR ...]``; one JSON line per
run. Results of 2026-12-06: ``benchmarks/results/refit_search.jsonl``."""

import json
import os
import sys
import time

from illustration_tl.evaluation.metrics import EvalResult
from illustration_tl.features import multilayer as features
from illustration_tl.heads import head, search

TRAIN = ["train", "validation"]


def compare(root: str) -> dict:
    store = features.FeatureStore.load(os.path.join(root, "features"))
    with open(os.path.join(root, "search", "leaderboard.json"), encoding="utf-8") as f:
        old = json.load(f)
    old_ev = EvalResult.load(os.path.join(root, "evaluate"))
    start = time.time()
    best = search.run(store, old["mode"], splits=TRAIN, folds=old["folds"], seed=0)[0]
    h = head.fit(store, best.config, TRAIN, best.oof)
    c = best.config
    orig = head.store_blocks(store, ["test"], c.resize, "orig", c.blocks)
    flip = head.store_blocks(store, ["test"], c.resize, "flip", c.blocks) if c.flip_test else None
    y = store.labels["test"]
    top1 = float((h.probabilities(orig, flip).argmax(1) == y).mean())
    return {"run": os.path.basename(os.path.normpath(root)),
            "train_images": int(sum(len(store.labels[s]) for s in TRAIN)),
            "test_images": int(len(y)),
            "old_chosen": old["chosen"]["label"], "new_chosen": c.label(),
            "old_cv_top1": round(100 * old["chosen"]["cv_top1"], 2),
            "new_cv_top1": round(100 * best.top1, 2),
            "old_test_top1": round(100 * old_ev.top_k(1), 2), "new_test_top1": round(100 * top1, 2),
            "seconds": round(time.time() - start, 1)}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        print(json.dumps(compare(run)), flush=True)
