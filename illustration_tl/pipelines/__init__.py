"""End-to-end journeys in resumable stages: ``reproduce`` (the paper's Table 3),
``fit`` (the best classifier for a folder) and class selection (paper §4.2).
"""

__all__ = ["class_ranking", "class_selection", "fit", "fit_beam", "fit_export", "fit_modes",
           "fit_plan", "fit_scales", "fit_summary", "reproduce", "reproduce_config",
           "reproduce_stages", "reproduce_summary", "stages"]
