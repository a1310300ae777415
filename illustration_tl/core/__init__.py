"""Shared plumbing below every stage: files read and written safely, output folders that
never lose a user's files, typed configs and the flags generated from them, presets,
progress lines, per-stage peak memory and content fingerprints.

Extension points: a new shared setting goes in :mod:`.common_settings`; a stage's
config is a dataclass of :func:`.config_flags.setting` fields.
"""

__all__ = ["common_settings", "config_flags", "files", "fingerprints", "memory", "outputs",
           "presets", "progress", "quiet"]
