"""Peak memory of a noisy build as the set grows, with TFDS's writer bound and without.

  npm install @iconify/json        # in a scratch folder
  python benchmarks/build_memory.py --json_dir=node_modules/@iconify/json/json \
      --icons=5000,20000 --work=/tmp/build_memory

For each target size, the first Iconify collections (sorted by name) whose mapped icons
reach it are built as a noisy set (``build --config=noisy``), once with the builder's
writer bound (``shuffle_memory_mb``, default 64) and once with TFDS's own 1 GB. Each build
runs in a fresh process; the peak resident memory of that process (``ru_maxrss``; the
decoding workers are separate, short-lived processes) and wall time are printed as a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BUILD = """
import json, resource, sys
from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b
sets, json_dir, data_dir, mb = json.loads(sys.argv[1])
builder = b.build("noisy", json_dir, data_dir, name="noisy_memory", shuffle_memory_mb=mb,
                  iconify_include_sets=tuple(sets))
print(json.dumps({"examples": sum(builder.info.splits[s].num_examples
                                  for s in builder.info.splits),
                  "classes": builder.info.features["label"].num_classes,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def mapped_counts(json_dir: str) -> list[tuple[str, int]]:
    """(collection prefix, icons the paper's name rule maps) in name order."""
    from illustration_tl.datasets import iconify, name_mapping

    mapper = name_mapping.NameMapper()
    out = []
    for name in sorted(os.listdir(json_dir)):
        if not name.endswith(".json"):
            continue
        data = iconify.read_collection(os.path.join(json_dir, name))
        if data is None or iconify.excluded_reason(data, iconify.IconifyFilter()):
            continue
        n = sum(1 for icon in iconify.icons(data) if mapper.match(icon.name))
        if n:
            out.append((data.get("prefix", name[:-5]), n))
    return out


def run_build(sets: list[str], json_dir: str, data_dir: str, mb: int) -> dict:
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", BUILD, json.dumps([sets, json_dir, data_dir,
                                                                     mb])],
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    doc.update(seconds=round(time.time() - start, 1), peak_mb=round(doc["peak_kb"] / 1024))
    return doc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json_dir", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--icons", type=lambda s: [int(x) for x in s.split(",")],
                   default=[5000, 20000])
    p.add_argument("--bounds", type=lambda s: [int(x) for x in s.split(",")],
                   default=[64, 1000])
    a = p.parse_args()
    counts = mapped_counts(a.json_dir)
    lines = ["| mapped icons | examples | classes | writer bound | peak memory | wall |",
             "|---|---|---|---|---|---|"]
    for target in sorted(a.icons):
        total, sets = 0, []
        for prefix, n in counts:
            sets.append(prefix)
            total += n
            if total >= target:
                break
        for mb in sorted(a.bounds):
            data_dir = os.path.join(a.work, f"{target}_{mb}")
            doc = run_build(sets, a.json_dir, data_dir, mb)
            lines.append(f"| {total:,} | {doc['examples']:,} | {doc['classes']} | {mb} MB | "
                         f"{doc['peak_mb']:,} MB | {doc['seconds'] / 60:.1f} min |")
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
