"""Shared plumbing: files, output folders, typed configs and their flags, presets."""
