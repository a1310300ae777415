"""Classifiers on frozen features: SVMs, the fit search, calibration, the TF head graph (§6.1)."""
