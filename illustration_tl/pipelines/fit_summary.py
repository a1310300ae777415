"""``fit``'s summary: ``OUT/report.md`` and the lines the command prints (test top-1 and
top-5, the chosen configuration, the ``modes`` and ``scales`` decisions, the reject
threshold, each stage's time and peak memory, and the leaderboard)."""

from __future__ import annotations

import os
from typing import Any, Sequence

from illustration_tl.core import files
from illustration_tl.evaluation import reject as reject_lib
from illustration_tl.pipelines import fit_modes, fit_scales


def write_report(root: str, summary: dict[str, Any], search_dir: str) -> None:
    t5 = summary["test_top5"]
    lines = ["# fit report", "",
             f"- test split ({summary['num_test']} images, {summary['num_classes']} classes, "
             "scored once): top-1 "
             f"{100 * summary['test_top1']:.2f}%" + (f", top-5 {100 * t5:.2f}%" if t5 is not None
                                                     else " (top-5 n/a: 5 classes or fewer)"),
             f"- chosen: {summary['chosen']['label']} (CV top-1 "
             f"{100 * summary['chosen']['cv_top1']:.2f}%)",
             f"- search `{summary['search']}`: {summary['search_seconds']} s",
             f"- model: {summary['model']}"]
    lines += fit_scales.report_lines(summary) + fit_modes.report_lines(summary)
    if summary.get("reject"):
        lines.append("- reject option (`--reject`): " + reject_lib.RejectThreshold.from_dict(
            summary["reject"]).words() + "; the risk-coverage curve is in report.html")
    peaks = summary.get("peak_rss_gb", {})
    lines += ["",
             "| stage | seconds | peak RSS (GB) |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {peaks.get(k, 'n/a')} |"
              for k, v in summary["timings"].items()]
    with open(os.path.join(search_dir, "leaderboard.md")) as f:
        lines += ["", f.read()]
    files.atomic_write(os.path.join(root, "report.md"), "\n".join(lines) + "\n")


def summary_lines(summary: dict[str, Any]) -> Sequence[str]:
    t5 = summary["test_top5"]
    return [f"chosen: {summary['chosen']['label']} (CV top-1 "
            f"{100 * summary['chosen']['cv_top1']:.2f}%)",
            f"test ({summary['num_test']} images): top-1 {100 * summary['test_top1']:.2f}%"
            + (f", top-5 {100 * t5:.2f}%" if t5 is not None else ""),
            *fit_scales.report_lines(summary, bullet=""),
            *fit_modes.report_lines(summary, bullet=""), f"model: {summary['model']}"]
