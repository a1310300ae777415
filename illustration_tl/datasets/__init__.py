"""The noisy and curated sets (paper §4): sources (folders, Iconify), ingestion of any
clip-art file, file-name to ImageNet mapping, splits, the `illustrations` TFDS builder
and the ``tf.data`` input pipeline.

Extension points: a data source yields (name, bytes) examples for the builder
(see :mod:`.iconify`).
"""

__all__ = ["iconify", "imagenet", "illustrations", "ingestion", "input_pipeline", "name_mapping",
           "splits"]
