"""``fit``'s default against the default of the commit issue 21 was filed on, end to end,
on one real folder at 224 px, in one run (issue 21: >= 3x faster, test top-1 within
0.3 points).

  git worktree add /tmp/old21 7169c60     # the tree issue 21 measured ("today's" fit)
  python benchmarks/fit_speed.py --images=/tmp/sets/union4k --old_tree=/tmp/old21 \\
      --weights=$ILLUSTRATION_TL_VGG16_WEIGHTS --work=/tmp/fit_speed

Each tree runs ``illustration-tl fit --images=... --weights=...`` with every other flag
at its default (VGG16 at 224 px; both resize modes and mirrors; the ``fast`` search),
one after the other on an otherwise idle machine, in a fresh output folder. What
changed in between: bfloat16 extraction on CPUs that have it, a square image's ``pad``
rows copied from its ``squash`` rows, one decode per image for every mode, and the
resize mode decided on a sample of the training split (``modes`` stage). Writes
``benchmarks/results/fit_speed.json``: wall seconds, stage seconds, test top-1/top-5,
the chosen configuration of each, and the ratios. ``--only every_mode`` adds today's
code with ``--mode_sample=0`` (every mode for every image) to the file, which isolates
the ``modes`` stage; ``--only NAME`` reruns one row and keeps the others.

``/tmp/sets/union4k``: ``real_sets.py`` emoji (1,503 images) and emoji_b (816) with
``openclipart --per_class=130`` (1,734), each class prefixed by its set: 45 classes,
4,053 images, 2,319 of the emoji square, most openclipart images not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "fit_speed.json")   # --results
# name: (tree, flags beside the defaults). ``every_mode``: today's code without the
# ``modes`` stage (both modes for every image, searched on all), to isolate its cost.
RUNS = {"new": ("new", []), "old": ("old", []), "every_mode": ("new", ["--mode_sample=0"])}


def images_in(folder: str) -> tuple[int, int]:
    """(classes, files) of a ``<class>/<file>`` folder."""
    classes = [e for e in os.scandir(folder) if e.is_dir()]
    return len(classes), sum(len(os.listdir(c.path)) for c in classes)


def run_fit(tree: str, images: str, weights: str, out: str, flags: list[str]) -> dict:
    """One ``fit`` of ``tree`` (its own package on PYTHONPATH) with ``flags`` beside the
    defaults; wall seconds and what its ``fit.json`` says."""
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "illustration_tl.cli", "fit", f"--images={images}",
           f"--output={out}", f"--weights={weights}", *flags]
    t0 = time.perf_counter()
    with open(out + ".log", "w") as logf:
        subprocess.run(cmd, env=env, cwd=os.path.dirname(out), stdout=logf,
                       stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "fit.json")) as f:
        summary = json.load(f)
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"tree": tree, "commit": commit, "flags": flags, "wall_seconds": round(wall, 1),
            "timings": summary["timings"], "test_top1": summary["test_top1"],
            "test_top5": summary.get("test_top5"), "num_test": summary["num_test"],
            "chosen": summary["chosen"]["label"], "cv_top1": summary["chosen"]["cv_top1"],
            "modes": summary.get("modes")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--old_tree", required=True)
    p.add_argument("--new_tree", default=ROOT)
    p.add_argument("--weights", required=True)
    p.add_argument("--work", default="/tmp/fit_speed")
    p.add_argument("--only", choices=sorted(RUNS), help="run this one only, keeping the "
                   "other rows of the results file (same images)")
    p.add_argument("--mode_sample", type=int, help="the new run's --mode_sample (a folder "
                   "under 3,200 images needs a smaller one for the modes stage to apply)")
    p.add_argument("--results", default=RESULTS)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    classes, files = images_in(a.images)
    rows = {}
    if a.only and os.path.exists(a.results):
        with open(a.results) as f:
            rows = json.load(f)["runs"]
    trees = {"new": a.new_tree, "old": a.old_tree}
    for name in [a.only] if a.only else ["new", "old"]:   # new first: fails fast
        out = os.path.join(a.work, name)
        if os.path.exists(out):
            sys.exit(f"{out} exists: give an empty --work")
        tree, flags = RUNS[name]
        if name == "new" and a.mode_sample is not None:
            flags = [f"--mode_sample={a.mode_sample}"]
        rows[name] = run_fit(trees[tree], a.images, a.weights, out, flags)
        print(name, json.dumps(rows[name]), flush=True)
    cpu = open("/proc/cpuinfo").read()
    doc = {"images": a.images, "classes": classes, "files": files, "image_size": 224,
           "backbone": "vgg16 (ImageNet conv base)", "cores": os.cpu_count(),
           "avx512_bf16": "avx512_bf16" in cpu, "runs": rows}
    for other, key in (("old", "against_old"), ("every_mode", "against_every_mode")):
        if other in rows and "new" in rows:   # new's speed-up and top-1 gain over other
            doc[key] = {"speedup": round(rows[other]["wall_seconds"]
                                         / rows["new"]["wall_seconds"], 3),
                        "top1_difference_points": round(100 * (
                            rows["new"]["test_top1"] - rows[other]["test_top1"]), 2)}
            print(key, doc[key])
    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)
    with open(a.results, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
