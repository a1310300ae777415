"""``--search=fast`` against ``--search=thorough`` on the same features, in one run.

  python benchmarks/search_bench.py RUN_DIR/features/features.npz [MORE.npz ...] \\
      [--n_jobs=2] [--include_test] [--output=search_bench.json]

Each file is a ``fit`` run's features stage. Several files (same backbone, size,
resize modes and layers) are merged into one store with their classes kept
apart (``<file #>/<class>``), to time the search on more embeddings than one set
has; ``--include_test`` adds each set's test split to the training rows (the
benchmark scores CV only and chooses nothing). Prints each mode's wall time, the
CV top-1 of its chosen configuration, the time ratio and the CV gap.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from illustration_tl.features import multilayer as features
from illustration_tl.heads import search


def merged(paths: list[str], include_test: bool) -> features.FeatureStore:
    stores = [features.FeatureStore.load(p) for p in paths]
    first = stores[0]
    splits = ["train", "validation"] + (["test"] if include_test else [])
    arrays: dict = {"train": {}}
    labels, names, classes = [], [], []
    for i, st in enumerate(stores):
        if st.resize_modes != first.resize_modes or st.blocks != first.blocks or \
                st.meta.get("image_size") != first.meta.get("image_size"):
            raise SystemExit(f"{paths[i]} does not match {paths[0]}")
        for s in splits:
            if s not in st.labels:
                continue
            for k, v in st.arrays[s].items():
                arrays["train"].setdefault(k, []).append(v)
            labels.append(st.labels[s] + len(classes))
            names += [f"{i}/{n}" for n in st.file_names[s]]
        classes += [f"{i}/{c}" for c in st.class_names]
    arrays["train"] = {k: np.concatenate(v) for k, v in arrays["train"].items()}
    return features.FeatureStore(arrays, {"train": np.concatenate(labels)}, {"train": names},
                                 classes, first.blocks, first.resize_modes, first.views,
                                 first.meta)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("features", nargs="+")
    p.add_argument("--n_jobs", type=int, default=2)
    p.add_argument("--modes", default="fast,thorough")
    p.add_argument("--include_test", action="store_true")
    p.add_argument("--output", default=None)
    a = p.parse_args()
    store = merged(a.features, a.include_test)
    n = len(store.labels["train"])
    out = {"features": a.features, "training_images": n,
           "rows_per_feature_set": n * len(store.views),  # images + mirrors
           "resize_modes": store.resize_modes, "views": store.views,
           "classes": len(store.class_names), "n_jobs": a.n_jobs,
           "cpus": os.cpu_count()}
    print(json.dumps(out), flush=True)
    for mode in a.modes.split(","):
        t0 = time.perf_counter()
        results = search.run(store, mode, splits=("train",), n_jobs=a.n_jobs)
        out[mode] = {"seconds": round(time.perf_counter() - t0, 1),
                     "cv_top1": results[0].top1, "cv_top5": results[0].top5,
                     "chosen": results[0].config.label(), "configurations": len(results)}
        print(mode, json.dumps(out[mode]), flush=True)
    if "fast" in out and "thorough" in out:
        out["time_ratio_fast_over_thorough"] = round(out["fast"]["seconds"]
                                                     / out["thorough"]["seconds"], 3)
        out["cv_gap_points"] = round(100 * (out["thorough"]["cv_top1"]
                                            - out["fast"]["cv_top1"]), 2)
    path = a.output or os.path.join(os.path.dirname(a.features[0]), "search_bench.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
