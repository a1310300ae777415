"""Metrics, the ImageNet baseline and the run report (paper §7, Tables 2-4)."""
