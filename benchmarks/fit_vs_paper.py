"""fit's default search against the paper's 64-point grid, on the same features.

  python benchmarks/fit_vs_paper.py --images=/tmp/sets/emoji --output=/tmp/runs/emoji \\
      --weights=$ILLUSTRATION_TL_VGG16_WEIGHTS [--image_size=224] [--resize_modes=squash]

Runs ``fit --search=fast`` into OUTPUT/fast, copies its dataset and features stages
into OUTPUT/paper and runs ``--search=paper`` there (the CNN runs once), then prints
both test top-1/top-5, the chosen configurations and the times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from illustration_tl import fitting


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--resize_modes", default="squash,pad")
    a = p.parse_args()
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
