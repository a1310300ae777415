"""The `illustrations` TFDS builder (noisy and curated configs).

Importing this package registers the builder with TFDS, so the raw command line
works from any folder (with the ``tfds-cli`` extra installed)::

    tfds build illustrations --imports=illustration_tl.datasets.illustrations \
        --config=curated --manual_dir=DIR --data_dir=DATA
"""

from illustration_tl.datasets.illustrations.illustrations_dataset_builder import Builder

__all__ = ["Builder"]
