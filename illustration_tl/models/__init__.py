"""Backbones (paper §5, §7): the table of ``keras.applications`` CNNs and KerasHub vision
towers, the embedding model and what it is, and the layer surgery of the adaptive
layer-based optimization.

Extension points: a backbone family is one row of ``backbones._BACKBONES`` (or
:data:`.backbones.HUB_FAMILIES`).
"""

__all__ = ["backbones", "extractor", "hub_backbones", "imagenet_weights", "layer_surgery",
           "precision"]
