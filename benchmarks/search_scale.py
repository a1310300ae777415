"""The ``fit`` search at scale on real features (issue 21): memory budget and size rule.

Real icons: 30 Iconify sets (npm ``@iconify/json``; the first 30 by name with at least
1,100 icons and no non-commercial license), 1,000 random icons of each, the set being
the class (a style task: which set drew this icon). Each icon is rasterized by resvg at
64 px on white, run through the VGG16 ImageNet conv base with its mirror
(``$ILLUSTRATION_TL_VGG16_WEIGHTS``), and the transfer blocks (block3-5 pools, global
average and max) are kept, as ``fit``'s feature store keeps them. Splits per class:
70% train, 10% validation, 20% test; an N-image subset takes the first N/30 icons of
each class.

Steps (each resumable, each run under ``flock /tmp/tf.lock``)::

    python benchmarks/search_scale.py prepare   # rasterize -> $WORK/images.npz
    python benchmarks/search_scale.py extract --max_seconds=500   # repeat until done
    python benchmarks/search_scale.py one --images=10000 --what=search   # one measurement
    python benchmarks/search_scale.py all       # every measurement, each in a subprocess

``one`` prints a JSON line: wall time, peak RSS (``ru_maxrss`` of that process, which
loads only its subset), the regime, CV and test top-1 of the chosen head.
``all --sizes=... --what=search|exact`` merges its rows into
``benchmarks/results/search_scale.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

WORK = os.environ.get("SEARCH_SCALE_WORK", "/tmp/search_scale")
ICONIFY = os.environ.get("ICONIFY_JSON", "/tmp/iconify_h/node_modules/@iconify/json")
CLASSES, PER_CLASS, SIZE, SHARD = 30, 1000, 64, 2000
LAYERS = ("block3_pool", "block4_pool", "block5_pool")
RESULTS = os.path.join(os.path.dirname(__file__), "results", "search_scale.json")


def _sets() -> list[str]:
    with open(os.path.join(ICONIFY, "collections.json"), encoding="utf-8") as f:
        info = json.load(f)
    from illustration_tl.datasets import iconify

    ok = [k for k, v in sorted(info.items()) if v.get("total", 0) >= 1100
          and not iconify.is_non_commercial({"info": v})]
    return ok[:CLASSES]


def prepare() -> None:
    from PIL import Image

    from illustration_tl.datasets import iconify, ingestion

    os.makedirs(WORK, exist_ok=True)
    rng = np.random.default_rng(0)
    images, labels, names = [], [], []
    for c, prefix in enumerate(_sets()):
        data = iconify.read_collection(os.path.join(ICONIFY, "json", f"{prefix}.json"))
        icons = list(iconify.icons(data))
        picked = [icons[i] for i in sorted(rng.permutation(len(icons))[:PER_CLASS * 2])]
        got = 0
        for icon in picked:
            if got == PER_CLASS:
                break
            try:
                png = ingestion.rasterize_svg(icon.svg.encode(), SIZE)
                rgb = ingestion.load_image(png, background=(255,) * 3)
            except ingestion.IngestionError:
                continue
            canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
            im = Image.fromarray(rgb)
            im.thumbnail((SIZE, SIZE))
            canvas.paste(im, ((SIZE - im.width) // 2, (SIZE - im.height) // 2))
            images.append(np.asarray(canvas, np.uint8))
            labels.append(c)
            names.append(icon.name)
            got += 1
        print(f"{prefix}: {got} icons", flush=True)
    np.savez(os.path.join(WORK, "images.npz"), images=np.stack(images),
             labels=np.asarray(labels), names=np.asarray(names), sets=np.asarray(_sets()))


def extract(max_seconds: float) -> None:
    import keras

    t0 = time.perf_counter()
    with np.load(os.path.join(WORK, "images.npz")) as z:
        images, labels = z["images"], z["labels"]
    # interleaved: the first shards hold the first icons of every class, so a subset
    # (the first N/30 icons of each class) is ready before the whole set is
    order = np.lexsort((labels, _position(labels)))
    base = keras.applications.VGG16(include_top=False, weights=os.environ[
        "ILLUSTRATION_TL_VGG16_WEIGHTS"], input_shape=(SIZE, SIZE, 3))
    outs = []
    for name in LAYERS:
        o = base.get_layer(name).output
        outs += [keras.layers.GlobalAveragePooling2D()(o), keras.layers.GlobalMaxPooling2D()(o)]
    model = keras.Model(base.input, outs)
    for start in range(0, len(order), SHARD):
        path = os.path.join(WORK, f"shard_{start // SHARD:03d}.npz")
        if os.path.exists(path):
            continue
        if time.perf_counter() - t0 > max_seconds:
            print("time is up; rerun to continue", flush=True)
            return
        t1 = time.perf_counter()
        index = order[start:start + SHARD]
        x = images[index].astype(np.float32)
        arrays = {"index": index}
        for view, batch in (("orig", x), ("flip", x[:, :, ::-1])):
            pre = keras.applications.vgg16.preprocess_input(batch.copy())
            res = model.predict(pre, batch_size=64, verbose=0)
            for i, name in enumerate(LAYERS):
                arrays[f"{view}/{name}:avg"] = res[2 * i]
                arrays[f"{view}/{name}:max"] = res[2 * i + 1]
        np.savez(path + ".partial.npz", **arrays)
        os.replace(path + ".partial.npz", path)
        n = len(x)
        print(f"{path}: {n} images x 2 views in {time.perf_counter() - t1:.0f}s "
              f"({2 * n / (time.perf_counter() - t1):.0f} passes/s)", flush=True)
    print("extraction complete", flush=True)


def _position(labels: np.ndarray) -> np.ndarray:
    """Each icon's position within its class."""
    pos = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        pos[idx] = np.arange(len(idx))
    return pos


def _split_of(labels: np.ndarray) -> np.ndarray:
    """0 train, 1 validation, 2 test: per class, the i-th icon by position mod 10."""
    r = _position(labels) % 10
    return np.where(r < 7, 0, np.where(r < 8, 1, 2))


def load_store(n_images: int):
    from illustration_tl.features import multilayer as features

    with np.load(os.path.join(WORK, "images.npz")) as z:
        labels, names, sets = z["labels"], z["names"], [str(s) for s in z["sets"]]
    shards = sorted(glob.glob(os.path.join(WORK, "shard_*.npz")))
    index = np.concatenate([np.load(p)["index"] for p in shards])   # extracted icons
    per = n_images // len(sets)
    sel_all = (_position(labels)[index] < per)
    if (np.bincount(labels[index][sel_all], minlength=len(sets)) < per).any():
        raise SystemExit(f"{n_images} images are not all extracted yet: run extract")
    split = _split_of(labels)[index]
    blocks = [features.block_name(n, p) for n in LAYERS for p in features.POOLS]
    arrays: dict[str, dict[str, np.ndarray]] = {s: {} for s in ("train", "validation", "test")}
    for view in features.VIEWS:
        for b in blocks:
            col = np.concatenate([np.load(p)[f"{view}/{b}"] for p in shards])
            for i, s in enumerate(("train", "validation", "test")):
                arrays[s][features.key("squash", view, b)] = col[sel_all & (split == i)]
    out_labels, out_names = {}, {}
    for i, s in enumerate(("train", "validation", "test")):
        sel = index[sel_all & (split == i)]
        out_labels[s] = labels[sel].astype(np.int64)
        out_names[s] = [str(n) for n in names[sel]]
    return features.FeatureStore(arrays, out_labels, out_names, sets, blocks, ["squash"],
                                 list(features.VIEWS), {"layers": list(LAYERS),
                                                        "backbone": "vgg16"})


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def one(n_images: int, what: str, budget: int | None, config: str | None) -> dict:
    """One measurement in this process: ``search`` (the default fast search, then the
    chosen head refitted on everything and scored on the test split) or ``exact``
    (exact kernel SVMs on ``config``'s feature set, whatever the budget)."""
    from illustration_tl.heads import head, search
    from illustration_tl.heads.config import Config

    t0 = time.perf_counter()
    store = load_store(n_images)
    rss_loaded = _rss_gb()
    splits = ["train", "validation"]
    if what == "exact":
        base = Config.from_dict(json.loads(config))
        configs = [Config(base.resize, base.blocks, base.flip_train, base.flip_test,
                          base.norm, "svm", "rbf", C, g, "ovo")
                   for g in ("scale", "2*scale") for C in (1.0, 10.0)]
        results = search.run(store, "fast", splits=splits, n_jobs=1, configs=configs,
                             max_memory_bytes=10 ** 12)
    else:
        results = search.run(store, "fast", splits=splits, n_jobs=1,
                             max_memory_bytes=budget, log=print)
    t_search = time.perf_counter() - t0
    best = results[0]
    rss_search = _rss_gb()
    t1 = time.perf_counter()
    h = head.fit(store, best.config, splits, best.oof)
    t_final = time.perf_counter() - t1
    orig = head.store_blocks(store, ["test"], "squash", "orig", best.config.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", best.config.blocks)
    top1 = float((h.probabilities(orig, flip).argmax(1) == store.labels["test"]).mean())
    return {"images": n_images, "what": what,
            "train_images": int(sum(len(store.labels[s]) for s in splits)),
            "test_images": int(len(store.labels["test"])),
            "regime": best.regime.as_dict(), "chosen": best.config.label(),
            "chosen_config": best.config.as_dict(), "cv_top1": best.top1,
            "test_top1": top1, "search_seconds": round(t_search, 1),
            "final_fit_seconds": round(t_final, 1),
            "rss_after_load_gb": round(rss_loaded, 2), "peak_rss_search_gb": round(
                rss_search, 2), "peak_rss_gb": round(_rss_gb(), 2)}


def head_only(n_images: int, config: str) -> dict:
    """One head (``config``) fitted on every training image, scored on the test split,
    without a search: the exact-vs-approximate comparison on the same features."""
    from illustration_tl.heads import head
    from illustration_tl.heads.config import Config

    store = load_store(n_images)
    rss_loaded = _rss_gb()
    cfg = Config.from_dict(json.loads(config))
    t0 = time.perf_counter()
    h = head.fit(store, cfg, ["train", "validation"], None)
    t_fit = time.perf_counter() - t0
    orig = head.store_blocks(store, ["test"], "squash", "orig", cfg.blocks)
    flip = head.store_blocks(store, ["test"], "squash", "flip", cfg.blocks)
    top1 = float((h.probabilities(orig, flip).argmax(1) == store.labels["test"]).mean())
    return {"images": n_images, "what": "head " + cfg.label(), "config": cfg.as_dict(),
            "train_images": int(sum(len(store.labels[s]) for s in ("train", "validation"))),
            "test_images": int(len(store.labels["test"])), "test_top1": top1,
            "fit_seconds": round(t_fit, 1), "rss_after_load_gb": round(rss_loaded, 2),
            "peak_rss_gb": round(_rss_gb(), 2)}


def _rows() -> dict[tuple, dict]:
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS, encoding="utf-8") as f:
        return {(r["images"], r["what"]): r for r in json.load(f)["rows"]}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "one"] + args, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("step", choices=["prepare", "extract", "one", "head", "all"])
    p.add_argument("--max_seconds", type=float, default=500)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--what", default="search", choices=["search", "exact"])
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--sizes", default="1000,10000,30000")
    a = p.parse_args()
    if a.step == "prepare":
        prepare()
    elif a.step == "extract":
        extract(a.max_seconds)
    elif a.step == "head":
        row = head_only(a.images, a.config)
        print(json.dumps(row))
        rows = _rows()
        rows[(row["images"], row["what"])] = row
        with open(RESULTS, "w") as f:
            json.dump({"setup": __doc__.split("Steps")[0].strip(), "rows": [
                rows[k] for k in sorted(rows)]}, f, indent=1)
    elif a.step == "one":
        print(json.dumps(one(a.images, a.what, a.budget, a.config)))
    else:   # each size in a subprocess, merged into RESULTS as it finishes
        for n in [int(s) for s in a.sizes.split(",")]:
            args = ["--images", str(n), "--what", a.what]
            if a.what == "exact":   # on the feature set the search chose at this size
                args += ["--config", json.dumps(_rows()[(n, "search")]["chosen_config"])]
            row = _child(args)
            print(json.dumps(row), flush=True)
            rows = _rows()
            rows[(n, a.what)] = row
            os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
            with open(RESULTS, "w") as f:
                json.dump({"setup": __doc__.split("Steps")[0].strip(), "rows": [
                    rows[k] for k in sorted(rows)]}, f, indent=1)


if __name__ == "__main__":
    main()
