"""Builds two real clip-art sets for measuring ``fit`` (never committed: images stay local).

  python benchmarks/real_sets.py openclipart /tmp/sets/openclipart
  python benchmarks/real_sets.py emoji /tmp/sets/emoji --npm_dir=/tmp/emoji_npm/node_modules

* ``openclipart``: the Debian/Ubuntu ``openclipart-png`` package
  (``/usr/share/openclipart/png/<category>/...``); each of 15 top-level categories
  with at least 40 images is a class, at most ``--per_class`` images each (files
  sorted by name, then a seeded shuffle).
* ``emoji``: 15 emoji subcategories (emoji-datasource ``subcategory``) drawn in
  4 styles: ``npm install emoji-datasource-apple@16.0.0 emoji-datasource-google@16.0.0
  emoji-datasource-twitter@16.0.0 openmoji@17.0.0`` in a scratch folder, then pass
  its ``node_modules`` as ``--npm_dir``. Apple/Google/Twitter come as 64-px PNGs,
  OpenMoji as SVG (rasterized by the dataset builder). ``emoji_b``: 15 other
  subcategories (``EMOJI_CLASSES_B``), the same styles.

Each writes ``<out>/<class>/<file>`` (the flat layout ``fit`` accepts).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil

OPENCLIPART = "/usr/share/openclipart/png"
OPENCLIPART_CLASSES = ("computer", "shapes", "signs_and_symbols", "recreation", "people",
                       "food", "animals", "transportation", "geography", "tools", "office",
                       "buildings", "plants", "education", "special")
EMOJI_CLASSES = ("animal-mammal", "transport-ground", "sky & weather", "clothing",
                 "food-prepared", "geometric", "time", "place-building", "tool",
                 "face-concerned", "heart", "household", "animal-bird", "food-fruit", "drink")
# A second, disjoint draw of 15 subcategories (the label-issue benchmark's second set).
EMOJI_CLASSES_B = ("sport", "game", "office", "event", "arrow", "food-vegetable",
                   "plant-other", "food-asian", "book-paper", "animal-marine", "animal-bug",
                   "food-sweet", "computer", "transport-air", "musical-instrument")
EMOJI_STYLES = ("apple", "google", "twitter")


def openclipart(out: str, per_class: int, seed: int) -> None:
    for cls in OPENCLIPART_CLASSES:
        found = []
        for root, _, names in os.walk(os.path.join(OPENCLIPART, cls)):
            found += [os.path.join(root, n) for n in names if n.lower().endswith(".png")]
        found.sort()
        random.Random(seed).shuffle(found)
        os.makedirs(os.path.join(out, cls), exist_ok=True)
        for path in found[:per_class]:
            shutil.copy(path, os.path.join(out, cls, os.path.basename(path)))
        print(cls, min(per_class, len(found)))


def emoji(out: str, npm_dir: str, classes: tuple[str, ...] = EMOJI_CLASSES) -> None:
    with open(os.path.join(npm_dir, "emoji-datasource-apple", "emoji.json")) as f:
        table = json.load(f)
    counts: dict[str, int] = {}
    for e in table:
        cls = e["subcategory"]
        if cls not in classes:
            continue
        folder = os.path.join(out, cls.replace(" & ", "_and_"))
        os.makedirs(folder, exist_ok=True)
        for style in EMOJI_STYLES:
            src = os.path.join(npm_dir, f"emoji-datasource-{style}", "img", style, "64",
                               e["image"])
            if e.get(f"has_img_{style}") and os.path.isfile(src):
                shutil.copy(src, os.path.join(folder, f"{style}_{e['image']}"))
                counts[cls] = counts.get(cls, 0) + 1
        code = e["unified"].upper()
        for name in (code, code.replace("-FE0F", "")):
            svg = os.path.join(npm_dir, "openmoji", "color", "svg", f"{name}.svg")
            if os.path.isfile(svg):
                shutil.copy(svg, os.path.join(folder, f"openmoji_{name}.svg"))
                counts[cls] = counts.get(cls, 0) + 1
                break
    for cls, n in counts.items():
        print(cls, n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", choices=["openclipart", "emoji", "emoji_b"])
    p.add_argument("out")
    p.add_argument("--per_class", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--npm_dir", default="/tmp/emoji_npm/node_modules")
    a = p.parse_args()
    if os.path.exists(a.out) and os.listdir(a.out):
        raise SystemExit(f"{a.out} is not empty")
    if a.set == "openclipart":
        openclipart(a.out, a.per_class, a.seed)
    else:
        emoji(a.out, a.npm_dir, EMOJI_CLASSES if a.set == "emoji" else EMOJI_CLASSES_B)


if __name__ == "__main__":
    main()
