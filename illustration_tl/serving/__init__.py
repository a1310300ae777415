"""Exported classifiers: SavedModel export, prediction, grouped evaluation."""
