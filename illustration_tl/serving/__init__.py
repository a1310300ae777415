"""Exported classifiers: one SavedModel (image bytes in, classes out), prediction on
files, and evaluation on folders grouped by style or source.
"""

__all__ = ["export", "grouped_evaluation", "model_check", "page", "predict", "server"]
