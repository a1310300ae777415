"""Near-duplicate detection on a real set with planted copies (issue 22).

  python benchmarks/duplicates_bench.py plant /tmp/sets/openclipart /tmp/sets/planted
  illustration-tl fit --images=/tmp/sets/planted --output=/tmp/fr/planted \
      --backbone=vgg16 --weights=$VGG16 --image_size=64
  python benchmarks/duplicates_bench.py measure /tmp/fr/planted /tmp/sets/planted.planted.json \
      --out=benchmarks/results/duplicates.json

``plant`` copies a set and adds, for ``--n`` originals drawn at random, one altered
copy in the same class folder, the alterations in turn: ``resized`` (60% of the
size, then saved as PNG), ``jpeg`` (flattened on white, JPEG quality 60) and
``padded`` (a white border of 15% of the longer side on every side). ``measure``
reads the finished run's features and, for each candidate feature (resize mode x
blocks) and threshold, reports the share of planted pairs found (recall) and the
share of reported pairs that are not the same picture (``false_share``; and
``false_pair_rate``: those pairs over every pair of distinct pictures). Planted
pairs and pixel-identical images are one picture, and so is a planted copy with
anything pixel-identical to its original; natural near duplicates of the set count
as false, so both are upper bounds: openclipart's ``shapes`` holds a series of
near-identical star drawings. ``copy_false_share``: among the pairs a planted copy is in, those with
another picture that its original does not also pair with at that threshold (the false
matches the alterations cause).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil

KINDS = ("resized", "jpeg", "padded")


def _altered(src: str, kind: str, dst_stem: str) -> str:
    from PIL import Image

    im = Image.open(src)
    im.load()
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    if kind == "resized":
        w, h = flat.size
        out = flat.resize((max(8, int(w * 0.6)), max(8, int(h * 0.6))), Image.LANCZOS)
        path = dst_stem + ".png"
        out.save(path)
    elif kind == "jpeg":
        path = dst_stem + ".jpg"
        flat.save(path, quality=60)
    else:
        w, h = flat.size
        b = int(0.15 * max(w, h))
        out = Image.new("RGB", (w + 2 * b, h + 2 * b), (255, 255, 255))
        out.paste(flat, (b, b))
        path = dst_stem + ".png"
        out.save(path)
    return path


def plant(src: str, out: str, n: int, seed: int) -> None:
    if os.path.exists(out) and os.listdir(out):
        raise SystemExit(f"{out} is not empty")
    shutil.copytree(src, out, dirs_exist_ok=True)
    originals = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out)
                       for f in fs if f.lower().endswith(".png"))
    picks = random.Random(seed).sample(originals, n)
    pairs = []
    for i, rel in enumerate(picks):
        kind = KINDS[i % len(KINDS)]
        stem = os.path.join(out, os.path.dirname(rel), f"planted_{kind}_{i:03d}")
        path = _altered(os.path.join(out, rel), kind, stem)
        pairs.append({"original": rel, "copy": os.path.relpath(path, out), "kind": kind})
    with open(out.rstrip("/") + ".planted.json", "w") as f:
        json.dump(pairs, f, indent=1)
    print(f"planted {len(pairs)} copies in {out}")


def measure(run_dir: str, planted_json: str, thresholds: list[float]) -> dict:
    from illustration_tl.evaluation import duplicates, fit_run
    from illustration_tl.features import multilayer as features

    with open(planted_json) as f:
        planted = json.load(f)
    store = features.FeatureStore.load(os.path.join(run_dir, "features"))
    splits = [s for s in (*fit_run.TRAIN_SPLITS, fit_run.TEST_SPLIT) if s in store.labels]
    images = fit_run.all_rows(store, splits)
    row = {f: i for i, f in enumerate(images.file_names)}
    truth = {tuple(sorted((row[p["original"]], row[p["copy"]]))): p["kind"] for p in planted
             if p["original"] in row and p["copy"] in row}
    thumbs = fit_run.read_thumbs(run_dir, splits)
    hashes = [thumbs.hashes[f] for f in images.file_names]
    groups = duplicates.exact_groups(hashes)
    exact = {(a, b) for g in groups for x, a in enumerate(g) for b in g[x + 1:]}
    # one picture = a union of planted pairs and pixel-identical groups (a copy of a
    # blank image is a copy of every blank image)
    copy_of = {row[p["copy"]]: row[p["original"]] for p in planted
               if p["original"] in row and p["copy"] in row}
    picture = duplicates.components(len(images.file_names), list(truth) + [
        (g[0], m) for g in groups for m in g[1:]])

    def root(i: int) -> int:
        return picture[i]

    same: dict[int, int] = {}
    for r in picture:
        same[r] = same.get(r, 0) + 1
    n = len(picture)
    distinct = n * (n - 1) // 2 - sum(k * (k - 1) // 2 for k in same.values())
    layers = features.layers_of(store.blocks)
    choices = {"all blocks": [b for b in store.blocks if b != features.PAPER_BLOCK],
               "last block": [b for b in store.blocks if b.startswith(layers[-1] + ":")],
               "middle block": [b for b in store.blocks
                                if b.startswith(layers[len(layers) // 2] + ":")],
               "first block": [b for b in store.blocks if b.startswith(layers[0] + ":")]}
    results = []
    for resize in store.resize_modes:
        for name, blocks in choices.items():
            x = fit_run.duplicate_features(store, splits, resize, blocks)
            found = duplicates.near_pairs(x, min(thresholds))
            for t in thresholds:
                got = {(i, j) for i, j, s in found if s >= t}
                hits = got & set(truth)
                false = {(i, j) for i, j in got if root(i) != root(j)}
                # pairs a planted copy makes with another picture, unless its original
                # makes that pair too (the set's own near duplicates, inherited)
                near = got | {(j, i) for i, j in got}
                copy_pairs = [(i, j) for i, j in got if i in copy_of or j in copy_of]
                copy_false = [(i, j) for i, j in copy_pairs if root(i) != root(j) and
                              (copy_of.get(i, i), copy_of.get(j, j)) not in near]
                by_kind = {k: round(sum(1 for p in hits if truth[p] == k) /
                                    max(1, sum(1 for v in truth.values() if v == k)), 4)
                           for k in KINDS}
                results.append({"resize": resize, "blocks": name, "threshold": t,
                                "recall": round(len(hits) / len(truth), 4),
                                "recall_by_kind": by_kind, "reported": len(got),
                                "false_pairs": len(false),
                                "copy_pairs": len(copy_pairs),
                                "copy_false_pairs": len(copy_false),
                                "copy_false_share": round(len(copy_false) /
                                                          max(1, len(copy_pairs)), 4),
                                "false_sample": [(images.file_names[i], images.file_names[j])
                                                 for i, j in sorted(false)[:5]],
                                "false_share": round(len(false) / max(1, len(got)), 4),
                                # flagged pairs of distinct pictures over all such pairs
                                "false_pair_rate": round(len(false) / max(1, distinct), 6)})
    return {"run": run_dir, "images": len(images.file_names), "planted": len(truth),
            "exact_pairs": len(exact), "exact_groups": len(groups), "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("plant")
    a.add_argument("src")
    a.add_argument("out")
    a.add_argument("--n", type=int, default=90)
    a.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure")
    m.add_argument("run")
    m.add_argument("planted")
    m.add_argument("--thresholds", type=float, nargs="+",
                   default=[0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98])
    m.add_argument("--out", default=None)
    args = p.parse_args()
    if args.cmd == "plant":
        plant(args.src, args.out, args.n, args.seed)
        return
    doc = measure(args.run, args.planted, args.thresholds)
    for r in doc["results"]:
        print(r)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
