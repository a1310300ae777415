"""The reject option on real images (issue 22, "None of these"): does the top calibrated
probability of a finished ``fit`` run tell its test images from real images of other
classes, and what does the threshold ``fit`` chooses cost in coverage?

  python benchmarks/reject_bench.py --run=emoji:/tmp/fr/emoji \\
      --run=openclipart:/tmp/fr/openclipart --photos=/tmp/rj/photos \\
      --ood=emoji:openclipart=/tmp/sets/openclipart \\
      --ood=openclipart:emoji=/tmp/sets/emoji \\
      --ood=openclipart:openclipart_other=/usr/share/openclipart/png/{buttons,...}

Per run (``NAME:FOLDER``, a finished ``fit`` output):

* the threshold: the run's ``reject/reject.json`` when it has one, else computed as
  ``fit`` does (:func:`illustration_tl.pipelines.fit.reject_threshold`: the chosen
  configuration's out-of-fold scores through the final head's calibrated softmax) for
  ``--target`` (and each of ``--targets`` for the sweep);
* in-domain: the run's test split, its calibrated probabilities from ``OUT/evaluate``
  (the model's scores on its stored features);
* out-of-domain: real images that are none of the run's classes, classified by the
  run's SavedModel (``OUT/model``) as ``predict`` does: ``--photos`` (real
  photographs, every run) and the run's ``--ood`` groups (``RUN:GROUP=FOLDER[,FOLDER]``:
  clip art of other classes, at most ``--per_group`` files each, a seeded sample);
* AUROC in- versus out-of-domain with the top probability as the score (Hendrycks &
  Gimpel 2017), coverage and accuracy at the threshold on the test split, and the
  share of each out-of-domain group answered ``unknown``.

Writes ``--out`` (JSON) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".tif", ".tiff")


def image_files(folders: list[str], limit: int | None, seed: int) -> list[str]:
    """Image files under ``folders`` (recursive), sorted, then a seeded sample of
    ``limit``."""
    found = []
    for folder in folders:
        for root, _, names in os.walk(folder):
            found += [os.path.join(root, n) for n in names if n.lower().endswith(
                IMAGE_SUFFIXES)]
    found.sort()
    if limit is not None and len(found) > limit:
        found = sorted(random.Random(seed).sample(found, limit))
    return found


def model_probabilities(predictor: Any, paths: list[str], batch_size: int = 64
                        ) -> tuple[np.ndarray, list[str]]:
    """The model's calibrated probabilities of each decodable file (as ``predict``
    decodes and resizes it); the files it could not decode are left out."""
    import tensorflow as tf

    from illustration_tl.datasets import ingestion

    rows, kept, batch = [], [], []

    def flush() -> None:
        if batch:
            out = predictor.classify_pixels(tf.stack([px for _, px in batch]))
            rows.append(np.asarray(out.get("probabilities", out["all_scores"]), np.float64))
            kept.extend(p for p, _ in batch)
            batch.clear()

    for path in paths:
        try:
            batch.append((path, predictor.prepare(path, predictor.max_side)))
        except ingestion.IngestionError:
            continue
        if len(batch) >= batch_size:
            flush()
    flush()
    probs = np.concatenate(rows) if rows else np.zeros((0, predictor.num_classes))
    return probs, kept


def threshold_of(run_dir: str, target: float) -> dict[str, Any]:
    """The run's stored threshold for ``target``, else the one ``fit`` would store."""
    from illustration_tl.evaluation import fit_run
    from illustration_tl.features import multilayer as features
    from illustration_tl.pipelines import fit

    stored = fit_run.read_reject(run_dir)
    if stored is not None and stored.target == target:
        return {**stored.to_dict(), "source": "reject/reject.json"}
    store = features.FeatureStore.load(os.path.join(run_dir, "features"))
    chosen = fit.reject_threshold(store, os.path.join(run_dir, "search"),
                                  os.path.join(run_dir, "final"), target)
    return {**chosen.to_dict(), "source": "computed as fit does (fit.reject_threshold)"}


def measure(name: str, run_dir: str, ood: dict[str, list[str]], target: float,
            targets: list[float]) -> dict[str, Any]:
    from illustration_tl.evaluation import fit_run, reject
    from illustration_tl.serving import predict

    run = fit_run.load(run_dir)
    test = run.result
    test_conf = reject.confidence(test.scores)
    predictor = predict.Predictor(run_dir)
    groups: dict[str, dict[str, Any]] = {}
    all_ood = []
    for group, paths in ood.items():
        probs, kept = model_probabilities(predictor, paths)
        conf = reject.confidence(probs)
        all_ood.append(conf)
        groups[group] = {"files": len(paths), "classified": len(kept), "confidence": conf}
    ood_conf = np.concatenate(all_ood)
    sweep = []
    for t in sorted(set(targets) | {target}):
        chosen = threshold_of(run_dir, t)
        coverage, accuracy = reject.at_threshold(test.scores, test.labels,
                                                 chosen["threshold"])
        row = {"target": t, "threshold": chosen["threshold"], "source": chosen["source"],
               "cv_coverage": chosen["coverage"], "cv_accuracy": chosen["accuracy"],
               "reached": chosen["reached"], "test_coverage": coverage,
               "test_accuracy": accuracy,
               "ood_rejected": {g: float(np.mean(v["confidence"] < chosen["threshold"]))
                                for g, v in groups.items()},
               "ood_rejected_all": float(np.mean(ood_conf < chosen["threshold"]))}
        sweep.append(row)
    main = next(r for r in sweep if r["target"] == target)
    return {
        "run": name, "folder": run_dir, "classes": len(test.class_names),
        "test_images": test.num_examples, "test_top1": test.top_k(1),
        "cv_rows": int(np.sum(~np.isnan(run.oof_probabilities()).any(axis=1))),
        "auroc": {g: reject.auroc(test_conf, v["confidence"]) for g, v in groups.items()},
        "auroc_all": reject.auroc(test_conf, ood_conf),
        "ood": {g: {"files": v["files"], "classified": v["classified"],
                    "median_top_probability": float(np.median(v["confidence"]))}
                for g, v in groups.items()},
        "test_median_top_probability": float(np.median(test_conf)),
        "at_target": main, "sweep": sweep,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = ["| run | OOD group | OOD images | AUROC | rejected at the threshold |",
             "|---|---|---|---|---|"]
    for r in results:
        for g, o in r["ood"].items():
            lines.append(f"| {r['run']} | {g} | {o['classified']} | {r['auroc'][g]:.3f} | "
                         f"{pct(r['at_target']['ood_rejected'][g])} |")
        lines.append(f"| {r['run']} | all | {sum(o['classified'] for o in r['ood'].values())}"
                     f" | {r['auroc_all']:.3f} | {pct(r['at_target']['ood_rejected_all'])} |")
    lines += ["", "| run | target | threshold | CV coverage / accuracy | test coverage / "
              "accuracy (all: top-1) | OOD rejected |", "|---|---|---|---|---|---|"]
    for r in results:
        for s in r["sweep"]:
            lines.append(f"| {r['run']} | {pct(s['target'])} | {s['threshold']:.3f} | "
                         f"{pct(s['cv_coverage'])} / {pct(s['cv_accuracy'])} | "
                         f"{pct(s['test_coverage'])} / {pct(s['test_accuracy'])} "
                         f"({pct(r['test_top1'])}) | {pct(s['ood_rejected_all'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="NAME:FIT_OUTPUT")
    p.add_argument("--photos", action="append", default=[],
                   help="folders of real photographs (every run's OOD)")
    p.add_argument("--ood", action="append", default=[], help="RUN:GROUP=FOLDER[,FOLDER]")
    p.add_argument("--per_group", type=int, default=300)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--targets", default="0.9,0.95,0.99")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "reject.json"))
    args = p.parse_args()
    from illustration_tl.core import quiet

    quiet.install()
    photos = image_files(args.photos, None, args.seed)
    results = []
    for spec in args.run:
        name, _, folder = spec.partition(":")
        ood = {"photographs": photos} if photos else {}
        for o in args.ood:
            run, _, rest = o.partition(":")
            group, _, folders = rest.partition("=")
            if run == name:
                ood[group] = image_files(folders.split(","), args.per_group, args.seed)
        results.append(measure(name, folder, ood, args.target,
                               [float(t) for t in args.targets.split(",")]))
        print(f"{name}: AUROC {results[-1]['auroc_all']:.3f}", file=sys.stderr, flush=True)
    doc = {"what": "reject option on real images: AUROC of the top calibrated probability, "
                   "test split (in-domain) versus real images of other classes; coverage "
                   "and accuracy at the threshold fit chooses",
           "photographs": [os.path.basename(p) for p in photos],
           "ood_sources": args.ood, "per_group": args.per_group, "seed": args.seed,
           "results": results}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    print(markdown(results))


if __name__ == "__main__":
    main()
