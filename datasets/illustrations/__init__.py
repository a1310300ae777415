"""The `illustrations` TFDS builder (noisy and curated configs)."""
