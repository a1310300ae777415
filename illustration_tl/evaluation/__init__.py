"""Scoring (paper §7, Tables 2-4): top-k metrics and evaluation results, the ImageNet
baseline, and the run report's tables and figures.
"""

__all__ = ["dedupe", "duplicates", "figures", "fit_run", "html_report", "label_issues", "metrics",
           "reject", "report"]
