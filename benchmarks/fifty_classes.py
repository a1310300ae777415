"""A 50-class real clip-art set for checking ``report.html`` at scale (issue 22).

  python benchmarks/fifty_classes.py /tmp/sets/fifty

Every folder of Debian's ``openclipart-png`` (``/usr/share/openclipart/png``, up to
three levels deep) holding at least ``--per_class`` PNG files directly becomes a class
(``animals/birds`` -> ``animals_birds``), the first 50 by name; ``--per_class`` files
each (sorted, then a seeded shuffle). Images stay local (never committed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil

OPENCLIPART = "/usr/share/openclipart/png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--per_class", type=int, default=20)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if os.path.exists(a.out) and os.listdir(a.out):
        raise SystemExit(f"{a.out} is not empty")
    folders = []
    for root, _, names in os.walk(OPENCLIPART):
        depth = os.path.relpath(root, OPENCLIPART).count(os.sep) + 1
        pngs = sorted(n for n in names if n.lower().endswith(".png"))
        if root != OPENCLIPART and depth <= 3 and len(pngs) >= a.per_class:
            folders.append((os.path.relpath(root, OPENCLIPART), pngs))
    folders.sort()
    if len(folders) < a.classes:
        raise SystemExit(f"only {len(folders)} folders hold {a.per_class} images")
    for rel, pngs in folders[:a.classes]:
        random.Random(a.seed).shuffle(pngs)
        dst = os.path.join(a.out, rel.replace(os.sep, "_"))
        os.makedirs(dst)
        for n in pngs[:a.per_class]:
            shutil.copy(os.path.join(OPENCLIPART, rel, n), os.path.join(dst, n))
    print(f"{a.classes} classes x {a.per_class} images in {a.out}")


if __name__ == "__main__":
    main()
