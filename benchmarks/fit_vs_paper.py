"""fit's default search against the paper's 64-point grid, on the same features.

  python benchmarks/fit_vs_paper.py --images=/tmp/sets/emoji --output=/tmp/runs/emoji \\
      --weights=$ILLUSTRATION_TL_VGG16_WEIGHTS [--image_size=224] [--resize_modes=squash,pad]

Runs ``fit --search=fast`` into OUTPUT/fast, copies its dataset and features stages
into OUTPUT/paper and runs ``--search=paper`` there (the CNN runs once), then prints
both test top-1/top-5, the chosen configurations and the times.

  python benchmarks/fit_vs_paper.py --features=RUN/features/features.npz \\
      --output=OUT [--modes=paper,fast,thorough]

does the same from a features file already extracted (a ``fit`` run's features
stage): for each mode, the search, the refit with calibration and the test split
scored once, with the same functions as ``fit``'s search, final and evaluate stages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from illustration_tl.pipelines import fit as fitting


def from_features(path: str, output: str, modes: list[str], n_jobs: int) -> dict:
    from illustration_tl.evaluation.metrics import top_k_accuracy, top_k_applicable
    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import head, search

    store = features.FeatureStore.load(path)
    y_test = store.labels[fitting.TEST_SPLIT]
    out: dict = {"features": path, "resize_modes": store.resize_modes,
                 "image_size": store.meta.get("image_size"),
                 "train_images": int(sum(len(store.labels[s]) for s in fitting.TRAIN_SPLITS)),
                 "num_test": int(len(y_test)), "classes": len(store.class_names)}
    for mode in modes:
        t0 = time.perf_counter()
        results = search.run(store, mode, splits=fitting.TRAIN_SPLITS, n_jobs=n_jobs)
        seconds = time.perf_counter() - t0
        best = results[0]
        os.makedirs(os.path.join(output, mode), exist_ok=True)
        with open(os.path.join(output, mode, "leaderboard.md"), "w") as f:
            f.write(search.leaderboard_markdown(results, best.config, mode, seconds))
        t1 = time.perf_counter()
        h = head.fit(store, best.config, fitting.TRAIN_SPLITS, best.oof)
        c = best.config
        orig = head.store_blocks(store, [fitting.TEST_SPLIT], c.resize, "orig", c.blocks)
        flip = (head.store_blocks(store, [fitting.TEST_SPLIT], c.resize, "flip", c.blocks)
                if c.flip_test else None)
        probs = h.probabilities(orig, flip)
        out[mode] = {"test_top1": top_k_accuracy(probs, y_test, 1),
                     "test_top5": (top_k_accuracy(probs, y_test, 5)
                                   if top_k_applicable(5, probs.shape[1]) else None),
                     "chosen": c.label(), "cv_top1": best.top1, "cv_top5": best.top5,
                     "search_seconds": round(seconds, 1),
                     "refit_and_test_seconds": round(time.perf_counter() - t1, 1),
                     "configurations": len(results)}
        print(mode, json.dumps(out[mode]), flush=True)
    if "fast" in out and "paper" in out:
        out["gain_top1_points"] = round(100 * (out["fast"]["test_top1"]
                                               - out["paper"]["test_top1"]), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images")
    p.add_argument("--features")
    p.add_argument("--output", required=True)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--resize_modes", default="squash,pad")
    p.add_argument("--modes", default="paper,fast")
    p.add_argument("--n_jobs", type=int, default=2)
    a = p.parse_args()
    if a.features:
        out = from_features(a.features, a.output, a.modes.split(","), a.n_jobs)
        with open(os.path.join(a.output, "fit_vs_paper.json"), "w") as f:
            json.dump(out, f, indent=2)
        print(json.dumps(out, indent=2))
        return
    if not a.images:
        p.error("--images or --features is required")
    common = dict(images=a.images, backbone=a.backbone, weights=a.weights,
                  image_size=a.image_size, resize_modes=tuple(a.resize_modes.split(",")),
                  num_workers=1)
    rows = {}
    fast_dir, paper_dir = os.path.join(a.output, "fast"), os.path.join(a.output, "paper")
    t0 = time.perf_counter()
    rows["fast"] = fitting.run(fitting.FitConfig(output=fast_dir, search="fast", **common))
    rows["fast"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    os.makedirs(paper_dir, exist_ok=True)
    for name in ("tfds", "dataset", "features", fitting.MARKER):
        src, dst = os.path.join(fast_dir, name), os.path.join(paper_dir, name)
        if not os.path.exists(dst):
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
    t0 = time.perf_counter()
    rows["paper"] = fitting.run(fitting.FitConfig(output=paper_dir, search="paper", **common))
    rows["paper"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out = {k: {"test_top1": v["test_top1"], "test_top5": v["test_top5"],
               "chosen": v["chosen"]["label"], "cv_top1": v["chosen"]["cv_top1"],
               "search_seconds": v["search_seconds"], "timings": v["timings"],
               "num_test": v["num_test"]} for k, v in rows.items()}
    out["gain_top1_points"] = round(100 * (rows["fast"]["test_top1"]
                                           - rows["paper"]["test_top1"]), 2)
    with open(os.path.join(a.output, "fit_vs_paper.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
