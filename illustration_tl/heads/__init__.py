"""Classifiers on frozen features (paper §6.1, §7.2): the paper's SVM grid, the ``fit``
search and its cross-validation, the fitted head (numpy and TensorFlow), calibration,
and SVMs as TensorFlow operations.
"""

__all__ = ["approximate", "budget", "calibration", "classifiers", "config", "grids", "head",
           "ridge", "search", "svm", "svm_cv", "svm_graph", "svm_params"]
