"""TFDS's Beam mode for the builder: examples as a Beam PTransform, options from flags.

``illustration-tl build --beam_options=...`` (or ``tfds build`` with a Beam runner)
writes the examples with Apache Beam (the ``tfds-cli`` extra); the files are still
decoded by the driver first. Apache Beam is imported only here, and only then.
"""

from __future__ import annotations

from typing import Any, Sequence

from illustration_tl.datasets.illustrations import example_encoding
from illustration_tl.errors import UserError


def beam_examples(split: str, examples: Sequence[example_encoding.Example], noisy: bool) -> Any:
    """The same ``(key, features)`` as the plain build, as a Beam PTransform:
    encoding, shuffling and writing the examples run on the Beam runner (Dataflow,
    Spark, Flink, or DirectRunner locally). Files are decoded by the driver first (into
    the dataset's ingest cache, which a remote runner's workers must be able to read)."""
    import apache_beam as beam

    return (f"Create_{split}" >> beam.Create(list(examples))
            | f"Features_{split}" >> beam.Map(example_encoding.key_features, noisy))


def pipeline_options(flags: Sequence[str] | None) -> Any:
    """Beam ``PipelineOptions`` from command-line style flags, or None."""
    if not flags:
        return None
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise UserError("--beam_options needs Apache Beam: pip install "
                        "'illustration-tl[tfds-cli]'") from None
    return PipelineOptions(list(flags))
