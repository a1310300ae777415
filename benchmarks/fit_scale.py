"""``fit`` end to end at 1k to 100k real icons: wall time per stage, peak RSS, top-1 (issue 21).

Real icons: the first 40 Iconify sets by name (npm ``@iconify/json``) with at least
2,600 icons and no non-commercial license; the set is the class (which set drew this
icon). ``prepare`` rasterizes 2,500 random icons of each with resvg at 64 px on white and
writes them as PNG files, one folder per class, under ``$FIT_SCALE_WORK/icons``; an
N-image folder links the first N/40 icons of each class (``folder --images=N``), so every
size is a user's folder that ``fit`` reads like any other.

Each size runs the installed command line as a user would::

    illustration-tl fit --images=DIR --output=RUN --backbone=vgg16 --image_size=64 \\
        --weights=$ILLUSTRATION_TL_VGG16_WEIGHTS

with every other flag at its default (search ``fast``, both resize modes, mirrors,
precision ``auto``, the memory budget of the machine), in a child process. A row: the
stage times and each stage's own peak RSS (``fit.json``), the run's peak RSS,
CV and test top-1, the head chosen and the size rule the search applied (leaderboard).

Steps (each run under ``flock /tmp/tf.lock``)::

    python benchmarks/fit_scale.py prepare --images=100000
    python benchmarks/fit_scale.py run --sizes=1000,10000,30000
    python benchmarks/fit_scale.py exact --images=10000   # exact SVMs, same features
    python benchmarks/fit_scale.py plot      # benchmarks/results/fit_scale.png

Rows are merged into ``benchmarks/results/fit_scale.json`` as each size finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

WORK = os.environ.get("FIT_SCALE_WORK", "/tmp/fit_scale")
ICONIFY = os.environ.get("ICONIFY_JSON", "/tmp/iconify_h/node_modules/@iconify/json")
CLASSES, MIN_ICONS, SIZE = 40, 2600, 64
RESULTS = os.path.join(os.path.dirname(__file__), "results", "fit_scale.json")
PLOT = os.path.join(os.path.dirname(__file__), "results", "fit_scale.png")


def _sets() -> list[str]:
    from illustration_tl.datasets import iconify

    with open(os.path.join(ICONIFY, "collections.json"), encoding="utf-8") as f:
        info = json.load(f)
    ok = [k for k, v in sorted(info.items()) if v.get("total", 0) >= MIN_ICONS
          and not iconify.is_non_commercial({"info": v})]
    return ok[:CLASSES]


def _icon_png(svg: str) -> bytes | None:
    """The icon at ``SIZE`` px, centred on white, as PNG bytes (None if resvg fails)."""
    import io

    from PIL import Image

    from illustration_tl.datasets import ingestion

    try:
        rgb = ingestion.load_image(ingestion.rasterize_svg(svg.encode(), SIZE),
                                   background=(255,) * 3)
    except ingestion.IngestionError:
        return None
    canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    im = Image.fromarray(rgb)
    im.thumbnail((SIZE, SIZE))
    canvas.paste(im, ((SIZE - im.width) // 2, (SIZE - im.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


def prepare(n_images: int) -> None:
    """Writes ``n_images / CLASSES`` icons per class (resumable: a finished class is kept)."""
    from illustration_tl.datasets import iconify

    per = n_images // CLASSES
    rng = np.random.default_rng(0)
    for prefix in _sets():
        folder = os.path.join(WORK, "icons", prefix)
        order = os.path.join(folder, "order.txt")
        if os.path.exists(order):
            continue
        data = iconify.read_collection(os.path.join(ICONIFY, "json", f"{prefix}.json"))
        icons = list(iconify.icons(data))
        picked = [icons[i] for i in rng.permutation(len(icons))]
        os.makedirs(folder, exist_ok=True)
        names = []
        for icon in picked:
            if len(names) == per:
                break
            png = _icon_png(icon.svg)
            if png is None:
                continue
            name = icon.name.replace("/", "_") + ".png"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(png)
            names.append(name)
        with open(order + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        os.replace(order + ".tmp", order)
        print(f"{prefix}: {len(names)} icons", flush=True)


def folder(n_images: int) -> str:
    """``WORK/folders/N``: hard links to the first N/CLASSES icons of each class."""
    out = os.path.join(WORK, "folders", str(n_images))
    if os.path.isdir(out):
        return out
    per = n_images // CLASSES
    tmp = out + ".tmp"
    for prefix in _sets():
        src = os.path.join(WORK, "icons", prefix)
        with open(os.path.join(src, "order.txt"), encoding="utf-8") as f:
            names = f.read().split()
        if len(names) < per:
            raise SystemExit(f"{prefix} has {len(names)} icons: run prepare --images="
                             f"{n_images}")
        os.makedirs(os.path.join(tmp, prefix), exist_ok=True)
        for name in names[:per]:
            os.link(os.path.join(src, name), os.path.join(tmp, prefix, name))
    os.replace(tmp, out)
    return out


def run_one(n_images: int, extra: list[str]) -> dict:
    """One ``fit`` on the N-image folder, in a child process."""
    images = folder(n_images)
    run = os.path.join(WORK, "runs", str(n_images))
    os.makedirs(os.path.dirname(run), exist_ok=True)
    cmd = [sys.executable, "-m", "illustration_tl.cli", "fit", f"--images={images}",
           f"--output={run}", "--backbone=vgg16", f"--image_size={SIZE}",
           f"--weights={os.environ['ILLUSTRATION_TL_VGG16_WEIGHTS']}"] + extra
    t0 = time.perf_counter()
    with open(run + ".log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    with open(os.path.join(run, "fit.json"), encoding="utf-8") as f:
        summary = json.load(f)
    # fit resets the kernel's peak before each stage (core/memory.py), so the child's
    # ru_maxrss is the peak after the last reset: the run's peak is the larger of both
    stage_peaks = summary.get("peak_rss_gb", {})
    rss = max([rss] + list(stage_peaks.values()))
    with open(os.path.join(run, "search", "leaderboard.json"), encoding="utf-8") as f:
        board = json.load(f)
    with open(os.path.join(run, "dataset", "dataset.json"), encoding="utf-8") as f:
        examples = json.load(f)["examples"]
    chosen = board["chosen"]
    return {"images": n_images, "classes": CLASSES, "flags": extra,
            "train_images": examples["train"] + examples["validation"],
            "test_images": summary["num_test"], "wall_seconds": round(wall, 1),
            "stage_seconds": summary["timings"], "peak_rss_gb": round(rss, 2),
            "stage_peak_rss_gb": stage_peaks,
            "cv_top1": chosen["cv_top1"],
            "test_top1": summary["test_top1"], "test_top5": summary["test_top5"],
            "chosen": summary["chosen"]["label"],
            "rule": (chosen.get("regime") or {}).get("rule")}


def exact(n_images: int) -> dict:
    """Exact RBF SVMs (one-vs-one, C in 1, 10, γ in scale, 2 x scale, 3-fold CV) on the
    feature set the N-image run chose, refitted and scored on its test split: the
    yardstick of the approximate head the size rule picked at that size."""
    from illustration_tl.features.store import FeatureStore
    from illustration_tl.heads import head, search
    from illustration_tl.heads.config import Config

    run = os.path.join(WORK, "runs", str(n_images))
    with open(os.path.join(run, "search", "leaderboard.json"), encoding="utf-8") as f:
        chosen = Config.from_dict(json.load(f)["chosen"]["config"])
    store = FeatureStore.load(os.path.join(run, "features"))
    splits = ["train", "validation"]
    configs = [Config(chosen.resize, chosen.blocks, chosen.flip_train, chosen.flip_test,
                      chosen.norm, "svm", "rbf", C, g, "ovo")
               for g in ("scale", "2*scale") for C in (1.0, 10.0)]
    t0 = time.perf_counter()
    best = search.run(store, "fast", splits=splits, n_jobs=1, configs=configs,
                      max_memory_bytes=10 ** 12)[0]
    h = head.fit(store, best.config, splits, best.oof)
    views = [head.store_blocks(store, ["test"], chosen.resize, v, chosen.blocks)
             for v in ("orig", "flip")]
    top1 = float((h.probabilities(*views).argmax(1) == store.labels["test"]).mean())
    return {"images": n_images, "what": "exact", "chosen": best.config.label(),
            "cv_top1": best.top1, "test_top1": top1,
            "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                 * 1024 / 1e9, 2)}


def _rows() -> dict[str, dict]:
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS, encoding="utf-8") as f:
        return {f"{r['images']} {' '.join(r['flags'])}".strip(): r for r in json.load(f)["rows"]}


def _save(rows: dict[str, dict]) -> None:
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump({"setup": __doc__.split("Steps")[0].strip(),
                   "rows": sorted(rows.values(), key=lambda r: (r["images"], r["flags"]))},
                  f, indent=1)


def plot() -> None:
    """Wall time and peak RSS against the number of images (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _rows().values() if not r["flags"] and "stage_seconds" in r]
    rows.sort(key=lambda r: r["images"])
    n = [r["images"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for stage in ("features", "search", "final"):
        a.plot(n, [r["stage_seconds"].get(stage, 0) / 60 for r in rows], "o-", label=stage)
    a.plot(n, [r["wall_seconds"] / 60 for r in rows], "ko-", label="end to end")
    a.set(xscale="log", yscale="log", xlabel="images", ylabel="minutes",
          title="fit wall time (2 cores)")
    a.legend(fontsize=8)
    b.plot(n, [r["peak_rss_gb"] for r in rows], "o-")
    b.set(xscale="log", xlabel="images", ylabel="GB", title="peak RSS", ylim=(0, None))
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("step", choices=["prepare", "run", "exact", "plot"])
    p.add_argument("--images", type=int, default=100000)
    p.add_argument("--sizes", default="1000,10000,30000,100000")
    p.add_argument("--fit_flags", default="", help="extra fit flags, space separated")
    a = p.parse_args()
    if a.step == "prepare":
        prepare(a.images)
    elif a.step == "plot":
        plot()
    elif a.step == "exact":
        row = exact(a.images)
        print(json.dumps(row), flush=True)
        rows = _rows()
        rows[f"{a.images} exact"] = dict(row, flags=["exact"])
        _save(rows)
    else:   # each size in its own child, so ru_maxrss of the children is that size's peak
        extra = a.fit_flags.split()
        for n in [int(s) for s in a.sizes.split(",")]:
            out = subprocess.run([sys.executable, __file__, "_one", str(n)] + extra,
                                 check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows = _rows()
            rows[f"{n} {' '.join(extra)}".strip()] = row
            _save(rows)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_one":
        print(json.dumps(run_one(int(sys.argv[2]), sys.argv[3:])))
    else:
        main()
