"""absl entry points, one per pipeline stage; see ``illustration_tl.cli``."""
