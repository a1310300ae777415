"""``--search=fast`` against ``--search=thorough`` on the same features, in one run.

  python benchmarks/search_bench.py RUN_DIR/features/features.npz [--n_jobs=2]

RUN_DIR is a ``fit`` output (its features stage). Prints each mode's wall time,
CV top-1 of its chosen configuration, and the ratios; writes search_bench.json
next to the features file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from illustration_tl import features, search


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("features")
    p.add_argument("--n_jobs", type=int, default=2)
    p.add_argument("--modes", default="fast,thorough")
    a = p.parse_args()
    store = features.FeatureStore.load(a.features)
    n = sum(len(store.labels[s]) for s in ("train", "validation") if s in store.labels)
    out = {"training_images": n, "classes": len(store.class_names)}
    for mode in a.modes.split(","):
        t0 = time.perf_counter()
        results = search.run(store, mode, n_jobs=a.n_jobs)
        out[mode] = {"seconds": round(time.perf_counter() - t0, 1),
                     "cv_top1": results[0].top1, "chosen": results[0].config.label(),
                     "configurations": len(results)}
        print(mode, json.dumps(out[mode]), flush=True)
    if "fast" in out and "thorough" in out:
        out["time_ratio_fast_over_thorough"] = round(out["fast"]["seconds"]
                                                     / out["thorough"]["seconds"], 3)
        out["cv_gap_points"] = round(100 * (out["thorough"]["cv_top1"]
                                            - out["fast"]["cv_top1"]), 2)
    with open(os.path.join(os.path.dirname(a.features), "search_bench.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
