"""Backbones: the keras.applications and KerasHub table, weights, layer surgery (paper §5, §7)."""
