"""The noisy and curated sets (paper §4): sources (folders, Iconify), ingestion of any
clip-art file (and of a build's files in parallel), file-name to ImageNet mapping,
splits, the `illustrations` TFDS builder package and the ``tf.data`` input pipeline.

Extension points: a data source yields (name, bytes) examples for the builder
(see :mod:`.iconify`, planned into a build by :mod:`.illustrations.iconify_icons`).
"""

__all__ = ["batch_ingestion", "iconify", "imagenet", "illustrations", "ingestion",
           "input_pipeline", "name_mapping", "splits"]
