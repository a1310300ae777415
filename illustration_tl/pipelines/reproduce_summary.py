"""``reproduce``'s results beside the paper's: Table 3 (the four models on the curated
test split) and Table 2 (the ImageNet baseline on both test splits, §6), written as
``summary.md`` and ``summary.json`` at the top of the output folder, and which row is
best (what the export stage serves)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from illustration_tl.core import files

if TYPE_CHECKING:
    from illustration_tl.pipelines.reproduce_config import ReproduceConfig, Weights

# Paper Table 3 (top-1, top-5 on the curated test set, VGG19).
PAPER_TABLE3 = {
    "baseline_cnn": ("Baseline CNN", 26.50, 47.40),
    "baseline_svm": ("Baseline CNN + SVM", 62.04, 85.64),
    "optimized_cnn": ("Optimized CNN", 49.39, 70.07),
    "optimized_svm": ("Optimized CNN + SVM", 86.61, 97.21),
}
ROWS = tuple(PAPER_TABLE3)

# Paper Table 2: the unmodified ImageNet VGG19 on each dataset's test split. The curated
# row is Table 3's first row; the noisy-set value is not transcribed here (None), so the
# summary shows ours beside "see paper" instead of inventing one.
PAPER_TABLE2 = {"noisy": None, "curated": (26.50, 47.40)}


def pct(result: Any, k: int) -> str:
    """``87.50``, or ``n/a`` when top-k is meaningless (k >= the number of classes)."""
    value = result.top_k_or_none(k)
    return "n/a" if value is None else f"{100 * value:.2f}"


def load_rows(root: str) -> dict[str, Any]:
    """The evaluation of each Table 3 row that exists under ``root`` (None if n/a)."""
    from illustration_tl.evaluation import metrics as evaluation

    rows = {}
    for row in ROWS:
        path = os.path.join(root, row, "eval")
        rows[row] = evaluation.EvalResult.load(path) if os.path.isdir(path) else None
    return rows


def write_summary(root: str, weights: Weights, cfg: ReproduceConfig, ds: dict,
                  timings: dict[str, float], skipped: list[str]) -> str:
    """``summary.md``: Table 3 beside the paper's numbers, and what this run was."""
    rows = load_rows(root)
    lines = ["# illustration-tl reproduce: Table 3", "",
             f"- backbone: {cfg.backbone} at {cfg.image_size} px (paper: VGG19 at 224 px)",
             f"- weights: {weights.description}",
             f"- curated: `{ds['curated']['dataset']}` {ds['curated']['examples']}",
             f"- noisy: `{ds['noisy']['dataset']}` {ds['noisy']['classes']} classes "
             f"{ds['noisy']['examples']}", "",
             "| model | top-1 | top-5 | paper (VGG19) top-1 | paper (VGG19) top-5 |",
             "|---|---:|---:|---:|---:|"]
    table = {}
    for row in ROWS:
        paper_name, p1, p5 = PAPER_TABLE3[row]
        r = rows[row]
        if r is None:
            reason = "n/a"
            unavailable = os.path.join(root, row, "unavailable.json")
            if os.path.exists(unavailable):
                reason = "n/a: " + read_json(unavailable)["reason"]
            lines.append(f"| {paper_name} | {reason} | | {p1:.2f} | {p5:.2f} |")
            table[row] = None
            continue
        t5 = r.top_k_or_none(5)
        table[row] = {"top1": 100 * r.top_k(1), "top5": None if t5 is None else 100 * t5,
                      "examples": r.num_examples}
        lines.append(f"| {paper_name} | {pct(r, 1)} | {pct(r, 5)} | {p1:.2f} | {p5:.2f} |")
    lines += ["", "Top-1/top-5 in % on the curated test split (top-5 is n/a with 5 classes "
              "or fewer). CNN rows score the network's "
              "own classes (1000 ImageNet classes for the baseline, the noisy set's classes "
              "for the optimized network) as the paper's Table 2 does; `eval_restricted/` "
              "beside each holds the score over the curated classes only.", ""]
    table2 = _table2_lines(root)
    lines += table2["lines"]
    lines += ["## Stages", "", "| stage | seconds | |", "|---|---:|---|"]
    for name, seconds in timings.items():
        note = "skipped (up to date; time of the run that made it)" if name in skipped else ""
        lines.append(f"| {name} | {seconds:.1f} | {note} |")
    report_md = os.path.join(root, "report", "report", "report.md")
    if os.path.exists(report_md):
        lines += ["", "Per-class results (Table 4), confusion matrix, t-SNE and failure "
                  "grids: [report/report/report.md](report/report/report.md)."]
    text = "\n".join(lines) + "\n"
    files.atomic_write(os.path.join(root, "summary.md"), text)
    files.atomic_write_json(os.path.join(root, "summary.json"), {
        "weights": weights.description, "backbone": cfg.backbone,
        "image_size": cfg.image_size, "table3": table, "table2": table2["table"],
        "paper": {k: {"top1": v[1], "top5": v[2]} for k, v in PAPER_TABLE3.items()},
        "paper_table2": {k: None if v is None else {"top1": v[0], "top5": v[1]}
                         for k, v in PAPER_TABLE2.items()}})
    return text


def _table2_lines(root: str) -> dict[str, Any]:
    """Table 2 (§6): the unmodified ImageNet classifier, 1000-way, on both test splits."""
    from illustration_tl.evaluation import metrics as evaluation

    lines = ["## Table 2: the ImageNet baseline on both datasets", "",
             "| test split | top-1 | top-5 | restricted top-1 | restricted top-5 "
             "| paper (VGG19) top-1 | paper (VGG19) top-5 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    table: dict[str, Any] = {}
    base = os.path.join(root, "baseline_cnn")
    for config, sub in (("noisy", "noisy"), ("curated", "")):
        paper = PAPER_TABLE2[config]
        p = ("see paper", "") if paper is None else (f"{paper[0]:.2f}", f"{paper[1]:.2f}")
        path = os.path.join(base, sub, "eval")
        if not os.path.isdir(path):
            reason = "n/a"
            if os.path.exists(os.path.join(base, "unavailable.json")):
                reason = "n/a: no classifier top in the weights"
            lines.append(f"| {config} | {reason} | | | | {p[0]} | {p[1]} |")
            table[config] = None
            continue
        full = evaluation.EvalResult.load(path)
        restricted = evaluation.EvalResult.load(os.path.join(base, sub, "eval_restricted"))
        table[config] = {"top1": 100 * full.top_k(1), "top5": 100 * full.top_k(5),
                         "restricted_top1": 100 * restricted.top_k(1),
                         "examples": full.num_examples}
        lines.append(f"| {config} ({full.num_examples} images) | {pct(full, 1)} | "
                     f"{pct(full, 5)} | {pct(restricted, 1)} | {pct(restricted, 5)} | "
                     f"{p[0]} | {p[1]} |")
    lines += ["", "1000-way: every ImageNet class competes; restricted: only the dataset's "
              "own classes do. The noisy test split's labels come from file names "
              "(§4.1), so its score also measures the labels' noise.", ""]
    return {"lines": lines, "table": table}


def best_row(root: str) -> str:
    """The Table 3 row with the best top-1 (then top-5) on the curated test split."""
    rows = {k: v for k, v in load_rows(root).items() if v is not None}
    return max(rows, key=lambda k: (rows[k].top_k(1), rows[k].top_k(5)))


def read_json(path: str) -> Any:
    """A JSON file a stage of this run wrote (``datasets.json``, ``unavailable.json``)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
