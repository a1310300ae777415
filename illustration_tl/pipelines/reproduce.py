"""The paper's Table 3 end to end: four models, one output folder (paper §6-§7).

Stages, each resumable (:mod:`illustration_tl.pipelines.stages`; their bodies are in
:mod:`illustration_tl.pipelines.reproduce_stages`):

1. ``datasets``: build the curated and noisy TFDS datasets (§4).
2. ``baseline_cnn``: the ImageNet classifier scored on the curated and the noisy test
   splits (§6, Table 2; the curated score is also Table 3's first row).
3. ``baseline_svm``: its embeddings (fc2, or the pooled conv base) + an SVM (§6.1).
4. ``optimize``: the adaptive layer-based optimization on the noisy set (§7).
5. ``optimized_cnn``: the optimized network scored on the curated test set (§7.1).
6. ``optimized_svm``: its fc2 embeddings + an SVM (§7.2).
7. ``report``: Table 3 / Table 4, figures; ``summary.md`` beside the paper's numbers
   (:mod:`illustration_tl.pipelines.reproduce_summary`).
8. ``export``: the best model as one SavedModel.

This module is the driver: it checks the folders, holds the output folder's lock and
runs the stages in order with their keys (:mod:`illustration_tl.pipelines.reproduce_config`
holds the settings, the weights' resolution and the stage keys; its names are
importable from here too).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from illustration_tl.core import config_flags, outputs
from illustration_tl.errors import UserError
from illustration_tl.pipelines import reproduce_stages as bodies
from illustration_tl.pipelines import reproduce_summary, stages
from illustration_tl.pipelines.reproduce_config import (
    EXECUTION_ONLY,
    ReproduceConfig,
    Weights,
    resolve_weights,
    stage_params,
)
from illustration_tl.pipelines.reproduce_summary import (
    PAPER_TABLE2,
    PAPER_TABLE3,
    ROWS,
    load_rows,
    write_summary,
)

__all__ = ["EXECUTION_ONLY", "OUTPUT_MARKER", "PAPER_TABLE2", "PAPER_TABLE3", "ROWS",
           "ReproduceConfig", "Weights", "fit_without_noisy_set", "load_rows", "reproduce",
           "resolve_weights", "stage_params", "write_summary"]

OUTPUT_MARKER = "reproduce"  # the output manifest's ``written_by`` (core/outputs.py)


def reproduce(cfg: ReproduceConfig, log: Callable[[str], None] | None = None) -> str:
    """Runs (or resumes) every stage; returns the text of ``summary.md``."""
    log = log or (lambda m: print(m, flush=True))
    config_flags.check(cfg)
    if not cfg.noisy_dir:
        return fit_without_noisy_set(cfg, log)
    for flag, path in [("--curated_dir", cfg.curated_dir), ("--noisy_dir", cfg.noisy_dir)]:
        if not os.path.isdir(path):
            raise UserError(f"{flag}={path!r} is not a folder of images")
    root = cfg.output_dir
    if not root:
        raise UserError("--output_dir is required: the folder for every stage's outputs")
    # The output manifest (a foreign folder is refused), one run per folder (the lock).
    lock = stages.open_output(root, OUTPUT_MARKER, {"--curated_dir": cfg.curated_dir,
                                                    "--noisy_dir": cfg.noisy_dir},
                              "--output_dir")
    try:
        return _reproduce(cfg, root, log, _strategy(cfg))
    finally:
        lock.release()


def fit_without_noisy_set(cfg: ReproduceConfig, log: Callable[[str], None]) -> str:
    """No noisy folder, no §7 optimization: the best classifier for the curated folder,
    which is what ``fit`` makes (frozen ImageNet features and a cross-validated search;
    :mod:`fitting`). The settings that mean the same there carry over; the SVM and
    training settings have nothing to act on and are said to be unused."""
    from illustration_tl.pipelines import fit as fitting
    from illustration_tl.pipelines import fit_summary

    if not os.path.isdir(cfg.curated_dir):
        raise UserError(f"--curated_dir={cfg.curated_dir!r} is not a folder of images")
    if not cfg.output_dir:
        raise UserError("--output_dir is required: the folder for every stage's outputs")
    weights = resolve_weights(cfg.backbone, cfg.weights, log)
    log("no --noisy_dir: the paper's optimization (§7) needs a noisy set, so this runs "
        "`illustration-tl fit` on --curated_dir (frozen features, cross-validated search); "
        "the --svm_* and training flags are not used")
    fit_cfg = fitting.FitConfig(
        images=cfg.curated_dir, output=cfg.output_dir, backbone=cfg.backbone,
        weights=weights.source, image_size=cfg.image_size, resize_modes=(cfg.resize_mode,),
        seed=cfg.seed, batch_size=cfg.batch_size, top_k=cfg.top_k, force=cfg.force,
        n_jobs=cfg.svm_jobs)  # joblib threads; -1: all cores
    summary = fitting.run(fit_cfg, log)
    text = "\n".join(fit_summary.summary_lines(summary))
    log(text)
    return text


def _strategy(cfg: ReproduceConfig) -> Any:
    """The training's ``tf.distribute`` strategy (None off TensorFlow), made before any
    other TensorFlow op (a multi-worker strategy cannot be created once TensorFlow has
    run)."""
    from illustration_tl.training import run

    return run.make_strategy(cfg.train_overrides.get("strategy", "auto"),
                             tpu=cfg.train_overrides.get("tpu", ""))


def _reproduce(cfg: ReproduceConfig, root: str, log: Callable[[str], None],
               strategy: Any) -> str:
    data_dir = cfg.tfds_dir or os.path.join(root, "tfds")
    # Every stage is written beside its folder and swapped in when complete; training
    # resumes from the optimize stage's work folder after a kill.
    run = stages.Stages(root, force=cfg.force, log=log, marker=OUTPUT_MARKER)
    weights = resolve_weights(cfg.backbone, cfg.weights, log)
    log(f"weights: {weights.description}")
    params = stage_params(cfg, weights.description, data_dir)
    inside = os.path.relpath(os.path.abspath(data_dir), os.path.abspath(root))
    ds_dir = run.run("datasets", params["datasets"],
                     lambda out: bodies.datasets(cfg, data_dir, out),
                     writes=[] if inside.startswith("..") else [inside])
    ds = reproduce_summary.read_json(os.path.join(ds_dir, "datasets.json"))

    run.run("baseline_cnn", params["baseline_cnn"],
            lambda out: bodies.baseline_cnn(cfg, weights, ds, out), ["datasets"])
    run.run("baseline_svm", params["baseline_svm"],
            lambda out: bodies.baseline_svm(cfg, weights, ds, out), ["datasets"])
    model_dir = run.run("optimize", params["optimize"],
                        lambda out, work: bodies.optimize(cfg, weights, ds, out, work, strategy),
                        ["datasets"], resumable=True)
    trained = ["datasets", "optimize"]
    run.run("optimized_cnn", params["optimized_cnn"],
            lambda out: bodies.optimized_cnn(cfg, ds, model_dir, out), trained)
    run.run("optimized_svm", params["optimized_svm"],
            lambda out: bodies.optimized_svm(cfg, ds, model_dir, out), trained)
    upstream = ["baseline_cnn", "baseline_svm", "optimized_cnn", "optimized_svm"]
    run.run("report", params["report"],
            lambda out: bodies.report(root, ds, os.path.join(out, "report")), upstream)
    run.run("export", params["export"],
            lambda out: bodies.export(cfg, weights, root, out), upstream)
    text = write_summary(root, weights, cfg, ds, run.timings, run.skipped)
    outputs.record(root, OUTPUT_MARKER)
    log(text)
    return text

