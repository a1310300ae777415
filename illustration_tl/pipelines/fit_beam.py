"""``illustration-tl extract``: ``fit``'s feature extraction on Apache Beam, so Dataflow,
Spark or Flink runners embed a large folder (the ``tfds-cli`` extra).

It takes ``fit``'s flags (the same ones decide the dataset and the features) and
``--beam_options``, claims and locks ``OUT`` as a ``fit`` output, runs ``fit``'s
``dataset`` stage, then writes the feature shards with Beam
(:func:`illustration_tl.features.beam_extract.write_shards`) into the work folder of
``fit``'s ``features`` stage, ``OUT/.features.resume-KEY/`` with the key ``fit`` computes
from the same flags. A later ``illustration-tl fit`` with the same flags resumes that
stage: it finds every shard finished ("N images already in finished shards"), embeds
nothing and only consolidates the store, then searches as usual.

The dataset stage and the features key come from ``fit`` itself
(:func:`fit.dataset_stage`, :func:`fit.feature_params`); ``tests/beam_extract_test.py``
checks that ``fit`` embeds nothing after ``extract``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Callable

from illustration_tl.core import outputs
from illustration_tl.core.config_flags import optional
from illustration_tl.errors import UserError
from illustration_tl.pipelines import fit, stages

FEATURES_STAGE = "features"
DATASET_STAGE = "dataset"
HARNESS_LOG_LEVEL = "--default_sdk_harness_log_level"   # Beam workers' Python log level


@dataclasses.dataclass
class ExtractConfig(fit.FitConfig):
    """``fit``'s settings (those of the search are accepted and unused, so one flagfile
    serves both commands) and the Beam pipeline's options."""

    beam_options: tuple[str, ...] | None = optional(
        "Apache Beam pipeline flags for the feature extraction (the tfds-cli extra), e.g. "
        "--beam_options=--runner=DirectRunner,--direct_num_workers=2 or the options of a "
        "Dataflow, Spark or Flink runner (default: the DirectRunner). The output folder, "
        "the dataset and --weights must be on a filesystem the workers share.")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recipe(cfg: fit.FitConfig, resolved: str, top: str) -> Any:
    """The extractor the workers build: ``fit``'s, with the launcher's precision."""
    from illustration_tl.features import beam_inference, multilayer

    return beam_inference.ExtractorRecipe(
        backbone=cfg.backbone, weights=cfg.weights, image_size=cfg.image_size,
        layers=tuple(cfg.layers) or None, seed=cfg.seed, hub_config=cfg.hub_config or None,
        include_top=top, precision=resolved,
        views=tuple(multilayer.VIEWS if cfg.flip else multilayer.VIEWS[:1]))


class _NoMemoryProbeWarning(logging.Filter):
    """Drops Beam's per-batch "Resource module is not available" warning (RunInference
    logs it on the root logger where an optional Beam module is missing; memory use
    is only used for Beam's own metrics)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Resource module is not available" not in record.getMessage()


_NO_MEMORY_PROBE_WARNING = _NoMemoryProbeWarning()


def pipeline_options(flags: tuple[str, ...] | None, quiet: bool = False) -> Any:
    """Beam ``PipelineOptions`` from ``--beam_options`` (None: the DirectRunner), or one
    line naming the extra when Apache Beam is missing. ``quiet``: Beam's own log records
    below ERROR dropped, here and (unless the flags set a level) on its workers."""
    root, level = logging.getLogger(), logging.getLogger().level
    if quiet:   # Beam's import warns on the root logger about Google Cloud clients
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        root.setLevel(logging.ERROR)
        root.addFilter(_NO_MEMORY_PROBE_WARNING)   # kept for the run (same object: once)
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise UserError("illustration-tl extract needs Apache Beam: pip install "
                        "'illustration-tl[tfds-cli]'") from None
    finally:
        root.setLevel(level)
    given = list(flags or ())
    if quiet:
        if not any(f.startswith(f"{HARNESS_LOG_LEVEL}=") for f in given):
            given.append(f"{HARNESS_LOG_LEVEL}=ERROR")
    return PipelineOptions(given)


def run(cfg: ExtractConfig, log: Callable[[str], None] = _log,
        quiet: bool = False) -> dict[str, Any]:
    """Builds (or reuses) ``fit``'s dataset stage in ``cfg.output`` and writes every
    feature shard with Beam into ``fit``'s features work folder. Returns a summary.
    ``quiet``: :func:`pipeline_options`'s."""
    if cfg.dry_run:
        raise UserError("--dry_run: `illustration-tl fit --dry_run` says what fit would "
                        "extract; extract has no dry run")
    fit.check(cfg)
    options = pipeline_options(cfg.beam_options, quiet)
    lock = stages.open_output(cfg.output, fit.OUTPUT_MARKER, {"--images": cfg.images},
                              "--output")
    try:
        return _run(cfg, options, log)
    finally:
        lock.release()


def _run(cfg: ExtractConfig, options: Any, log: Callable[[str], None]) -> dict[str, Any]:
    from illustration_tl.features import beam_extract

    root = os.path.abspath(cfg.output)
    st = stages.Stages(root, force=cfg.force, log=log, marker=fit.OUTPUT_MARKER)
    ds_dir, dataset = fit.dataset_stage(st, cfg, log)
    params, resolved, top = fit.feature_params(cfg)
    key = st.key_of(FEATURES_STAGE, params, [DATASET_STAGE])
    summary = {"output": root, "dataset": dataset, "features_key": key, "embedded": 0}
    if not cfg.force and st.done(FEATURES_STAGE, key):
        log(f"[{FEATURES_STAGE}] up to date, nothing to extract")
        return summary
    work = st.work_dir(FEATURES_STAGE, key)
    log(f"[{FEATURES_STAGE}] extracting with Apache Beam into {work}")
    try:
        done = beam_extract.write_shards(
            dataset, os.path.join(ds_dir, "tfds"), list(fit.TRAIN_SPLITS) + [fit.TEST_SPLIT],
            recipe=recipe(cfg, resolved, top), work=work, resize_modes=cfg.resize_modes,
            batch_size=cfg.batch_size, shard_size=cfg.shard_size, pipeline_options=options,
            log=log)
    finally:
        outputs.record(root, fit.OUTPUT_MARKER)   # the shards written so far are fit's
    summary["embedded"] = sum(done.values())
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    return [f"features extracted with Apache Beam: {summary['embedded']} images x resize "
            f"modes into {summary['output']}",
            "run `illustration-tl fit` with the same flags to consolidate them and search"]
