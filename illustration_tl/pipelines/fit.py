"""``fit``: the best classifier for a folder of illustrations, in resumable stages.

Stages (each in ``OUT/<stage>/`` with a ``stage.json``; see :mod:`illustration_tl.pipelines.stages`;
a rerun skips what is up to date and redoes what a changed input affects):

1. ``dataset``: the `illustrations` TFDS dataset from the folder (``<class>/*``, or
   the authors' ``train/`` + ``val/`` layout, ``val`` being the test split), in
   ``OUT/dataset/tfds``; the files it left out are named on the console;
2. ``features``: every transfer layer's pooled blocks, per resize mode and view
   (:mod:`illustration_tl.features.multilayer`), for every split, into the feature
   store (:mod:`illustration_tl.features.store`); shards of ``--shard_size`` images
   land in ``OUT/.features.resume-KEY/`` as they are computed, so a killed run
   resumes after its last finished shard; on a large training split the resize mode
   is decided first on a sample, in a ``modes`` stage (:mod:`.fit_modes`);
3. ``search``: cross-validation on train + validation only
   (:mod:`illustration_tl.heads.search`); ``leaderboard.json`` / ``leaderboard.md``;
4. ``final``: the chosen configuration refitted on all training images, with its
   temperature calibrated on the CV folds (:mod:`illustration_tl.heads.head`);
5. ``reject``: the reject threshold (``reject.json``): the top calibrated probability
   below which the model answers ``unknown`` when asked, the largest coverage of the
   out-of-fold predictions at ``--reject_precision``
   (:mod:`illustration_tl.evaluation.reject`); its own stage, so a changed
   ``--reject_precision`` redoes only it, the model and the report;
6. ``evaluate``: the test split, scored once (``eval.json``, ``scores.npz``);
   ``--scales`` adds ``features_<size>`` stages and ``scales`` (:mod:`.fit_scales`);
7. ``model``: one SavedModel, image bytes in, calibrated probabilities out; the reject
   threshold in its metadata;
8. ``report``: ``OUT/report.md`` (test top-1/top-5, the chosen configuration, the
   reject threshold and the leaderboard).

``OUT`` carries the output manifest (:mod:`illustration_tl.core.outputs`): a folder
that is not an earlier ``fit`` output (a stray ``fit.json`` is not one) is refused,
as are ``--output`` inside ``--images`` and the reverse. Each stage is written
beside its folder and swapped in when complete, and its key holds the content
hashes of the stages it reads (:mod:`illustration_tl.pipelines.stages`), so a stage
with missing or edited outputs is redone, and so is everything downstream of it.
``fit.json`` says ``running`` until the run finishes. ``--dry_run`` says what a run
would do and cost (:mod:`illustration_tl.pipelines.fit_plan`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import common_settings, config_flags, files, outputs
from illustration_tl.core.config_flags import optional, required, setting
from illustration_tl.datasets.ingestion import DEFAULT_MAX_PIXELS
from illustration_tl.errors import UserError
from illustration_tl.evaluation import dedupe as dedupe_lib
from illustration_tl.evaluation import reject as reject_lib
from illustration_tl.heads import search as search_lib
from illustration_tl.pipelines import (
    fit_export,
    fit_modes,
    fit_plan,
    fit_scales,
    fit_summary,
    stages,
)

MARKER = "fit.json"
OUTPUT_MARKER = "fit"  # the output manifest's ``written_by`` (core/outputs.py)
TRAIN_SPLITS = ("train", "validation")
TEST_SPLIT = "test"
DATASET = "illustrations/curated"


@dataclasses.dataclass
class FitConfig:
    """What ``fit`` does; the fields with a help text are ``illustration-tl fit``'s flags
    (:mod:`config_flags`; ``folds`` is ``--cv_folds``). Values out of range are refused
    in one line before any work, from the flags and from Python alike."""

    images: str = required("Folder of images, one sub-folder per class.")
    output: str = required("Folder for the run (new, empty, or an earlier `fit` output, "
                           "which is resumed).")
    backbone: str = setting("vgg16", "keras.applications backbone (vgg16, vgg19, resnet50, "
                            "efficientnetb0, ...), or a KerasHub vision tower: "
                            "keras_hub:<preset> (keras_hub:dinov2_small, "
                            "keras_hub:clip_vit_base_patch16, ...; the hub extra).",
                            literal=True)
    weights: str | None = common_settings.weights()
    image_size: int | None = common_settings.image_size()
    scales: tuple[int, ...] = setting((), fit_scales.HELP, check=fit_scales.check)
    layers: tuple[str, ...] = setting((), "Transfer layers (default: the backbone's table in "
                                      "backbones.py).")
    resize_modes: tuple[str, ...] = setting(common_settings.RESIZE_MODES, "Resize modes to "
                                            "search: squash (the paper's plain resize), pad "
                                            "(to a white square).",
                                            items=common_settings.RESIZE_MODES)
    flip: bool = setting(True, "Also embed mirror images: train on them and average each "
                         "test image's scores with its mirror's (searched).")
    mode_sample: int = setting(1024, fit_modes.HELP, minimum=0)
    search: str = setting("fast", "paper: the paper's 64-point SVM grid on its fc2/pooled "
                          "embedding; fast: a short ordered list with successive halving; "
                          "thorough: a wide grid.", choices=search_lib.MODES)
    folds: int = common_settings.cv_folds(3)
    seed: int = setting(0, "Seed of the folds (and of random weights).", minimum=0)
    batch_size: int = common_settings.batch_size()
    shard_size: int = common_settings.shard_size(1024)
    precision: str = setting("auto", "Compute precision of the feature extraction (and of "
                             "the exported backbone): auto (bfloat16 on GPUs of compute "
                             "capability >= 8.0 and CPUs with AVX-512 BF16 or AMX, else "
                             "float32), float32, bfloat16.",
                             choices=("auto", "float32", "bfloat16"))
    num_workers: int | None = common_settings.num_workers()  # 1: decode in this process
    n_jobs: int = setting(2, "Search threads.", check=common_settings.jobs_check)
    max_memory_mb: int | None = optional(
        "Memory budget of the search in MB (default: a fifth of this machine's memory); "
        "beyond it the search switches from exact kernel SVMs to Nystroem and linear "
        "heads cross-validated on a stratified sample (heads/budget.py).", minimum=1)
    dedupe: bool = setting(False, "Put every group of near-duplicate images that spans "
                           "training and test on one side (the side holding most of "
                           "it), so the test score is not inflated by pictures the "
                           "model trained on (duplicates.csv lists the pairs).")
    max_pixels: int = setting(DEFAULT_MAX_PIXELS, "Skip images declaring more pixels than "
                              "this (decompression-bomb guard); raise it for large images "
                              "you trust (skipped.tsv names those it skipped).", minimum=1)
    dry_run: bool = setting(False, "Say what the run would do (classes, images per split, "
                            "forward passes, configurations to search) and about how long "
                            "it would take on this machine (a short timed probe); writes "
                            "nothing.")
    reject_precision: float = setting(
        reject_lib.DEFAULT_TARGET_PRECISION, "Precision the reject threshold aims at: the "
        "largest share of the cross-validation images whose top probability is above it "
        "and whose answers are right this often (predict/evaluate --reject, "
        "reject=True in Python, answer `unknown` below it).",
        check=lambda v: None if 0.0 < v <= 1.0 else "give a precision in (0, 1], e.g. 0.95")
    top_k: int = 5
    force: bool = common_settings.force()
    # KerasHub backbones only (keras_hub:<family>, --weights=none): the random tower's
    # constructor arguments, a dict, JSON text or a .json file (hub_backbones); the flag
    # gives JSON text or a file.
    hub_config: dict[str, Any] | str | None = optional(
        "keras_hub:<family> with --weights=none only: the random tower's constructor "
        "arguments, as a JSON object or a .json file.")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_output(path: str, images: str = "") -> None:
    """``OUT`` must be new, empty, or an earlier ``fit`` output (its manifest, nothing it
    does not list), apart from ``--images``; checks only, writes nothing."""
    outputs.claim(path, marker=OUTPUT_MARKER, inputs={"--images": images}, create=False)


def _weights_description(weights: str | None) -> str | None:
    if weights in (None, "", "none", "imagenet"):
        return weights or None
    from illustration_tl.core.fingerprints import file_sha256

    return f"{os.path.abspath(weights)} {file_sha256(weights)}"


def include_top(cfg: FitConfig) -> str:
    """``no`` (the conv base only: Keras fetches the no-top ImageNet file) unless the
    paper's fc2 embedding is searched (``--search=paper``) or a weights file decides."""
    return "no" if cfg.weights == "imagenet" and cfg.search != "paper" else "auto"


def check(cfg: FitConfig) -> None:
    """Every check that needs no work: settings in range, folders, backbone, output."""
    config_flags.check(cfg)
    if cfg.search not in search_lib.MODES:
        raise UserError(f"--search={cfg.search!r}: choose from {', '.join(search_lib.MODES)}")
    if not cfg.images:
        raise UserError("--images is required: a folder with one sub-folder per class")
    if not os.path.isdir(cfg.images):
        raise UserError(f"--images={cfg.images!r} is not a folder of images")
    _check_backbone(cfg)
    check_output(cfg.output, cfg.images)


def run(cfg: FitConfig, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Runs (or resumes) every stage; returns the summary (also ``OUT/fit.json``).
    With ``cfg.dry_run``: the plan and its estimated time, nothing written."""
    check(cfg)
    if cfg.dry_run:
        return fit_plan.dry_run(cfg, log, include_top(cfg))
    _fetch_weights(cfg)
    lock = stages.open_output(cfg.output, OUTPUT_MARKER, {"--images": cfg.images},
                              "--output")
    try:
        return _run(cfg, log)
    finally:
        lock.release()


def _fetch_weights(cfg: FitConfig) -> None:
    """``--weights=imagenet``: the one file the run needs, fetched before any work (a
    failed download is one line naming ``--weights=PATH`` and the Keras cache)."""
    from illustration_tl.models import backbones, imagenet_weights

    spec = backbones.get(cfg.backbone)
    if cfg.weights != "imagenet" or spec.hub is not None:
        return
    size = int(cfg.image_size or spec.image_size)
    top = include_top(cfg) == "auto" and spec.has_fc_top and size == spec.image_size
    imagenet_weights.fetch(spec, top, size)


def _check_backbone(cfg: FitConfig) -> None:
    """Refuses an unknown backbone (or a missing ``hub`` extra) before any work."""
    from illustration_tl.models import backbones

    spec = backbones.get(cfg.backbone)
    if spec.hub is not None:
        from illustration_tl.models import hub_backbones

        cfg.backbone = spec.name  # canonical: a preset folder's absolute path
        cfg.hub_config = hub_backbones.parse_config(cfg.hub_config)
        hub_backbones.check_choice(spec, cfg.weights, cfg.hub_config)
    elif cfg.hub_config:
        raise UserError(f"--hub_config applies to KerasHub backbones "
                        f"({backbones.HUB_PREFIX}<family>), not --backbone={cfg.backbone}")
    if cfg.weights not in (None, "", "none", "imagenet") and not os.path.isfile(cfg.weights):
        raise UserError(f"--weights={cfg.weights}: no such file; give a .h5/.weights.h5 "
                        "file, imagenet or none")


def dataset_name(cfg: FitConfig) -> tuple[str, dict[str, Any]]:
    """The TFDS config name and the builder options that differ from the preset."""
    options = {"max_pixels": cfg.max_pixels} if cfg.max_pixels != DEFAULT_MAX_PIXELS else {}
    if not options:
        return "curated", options
    return f"curated_{stages.stage_key('curated', options)[:8]}", options


def dataset_stage(st: stages.Stages, cfg: FitConfig, log: Callable[[str], None]
                  ) -> tuple[str, str]:
    """Runs (or skips) the ``dataset`` stage; returns (its folder, the TFDS dataset name).
    ``extract`` (:mod:`illustration_tl.pipelines.fit_beam`) runs it too."""
    name, options = dataset_name(cfg)
    ds_dir = st.run("dataset", {"images": stages.tree_fingerprint(cfg.images),
                                "data_dir": "dataset/tfds", **options},
                    lambda out: _build(cfg, name, options, out, log))
    with open(os.path.join(ds_dir, "dataset.json"), encoding="utf-8") as f:
        return ds_dir, json.load(f)["dataset"]


def feature_params(cfg: FitConfig) -> tuple[dict[str, Any], str, str]:
    """The ``features`` stage's key parameters, the resolved precision and include_top
    (``extract`` writes its shards into the work folder of the same key)."""
    from illustration_tl.models import precision as precision_lib

    top = include_top(cfg)
    feat_params = {"backbone": cfg.backbone, "weights": _weights_description(cfg.weights),
                   "image_size": cfg.image_size, "layers": list(cfg.layers),
                   "resize_modes": list(cfg.resize_modes), "flip": cfg.flip,
                   "seed": cfg.seed, "batch_size": cfg.batch_size}
    if top != "auto":
        feat_params["include_top"] = top
    resolved = precision_lib.resolve(cfg.precision)
    if resolved != precision_lib.FLOAT32:   # float32 runs keep their earlier stage keys
        feat_params["precision"] = resolved
    if cfg.hub_config:
        feat_params["hub_config"] = cfg.hub_config
    return feat_params, resolved, top


def _run(cfg: FitConfig, log: Callable[[str], None]) -> dict[str, Any]:
    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import search

    root = os.path.abspath(cfg.output)
    files.atomic_write_json(os.path.join(root, MARKER), {"status": "running"})
    st = stages.Stages(root, force=cfg.force, log=log, marker=OUTPUT_MARKER)
    eta = fit_plan.Eta(cfg, st, include_top(cfg), log)
    ds_dir, dataset = dataset_stage(st, cfg, log)
    data_dir = os.path.join(ds_dir, "tfds")
    splits = list(TRAIN_SPLITS) + [TEST_SPLIT]
    feat_params, resolved, top = feature_params(cfg)
    search_args = {"folds": cfg.folds, "seed": cfg.seed, "n_jobs": cfg.n_jobs,
                   "max_memory_bytes": cfg.max_memory_mb * 2**20 if cfg.max_memory_mb else None}

    def extract(out: str, work: str, size: int | None, modes: Sequence[str],
                split_names: Sequence[str] = splits, limit: int | None = None) -> Any:
        recipe = {"backbone": cfg.backbone, "weights": (
            cfg.weights if cfg.weights in (None, "imagenet", "none") else
            os.path.abspath(cfg.weights)), "image_size": size,
            "layers": list(cfg.layers), "seed": cfg.seed, "include_top": top,
            "precision": resolved}
        if cfg.hub_config:
            recipe["hub_config"] = cfg.hub_config
        return features.extract(
            dataset, data_dir, split_names, backbone=cfg.backbone, weights=cfg.weights,
            out=out, work=work, image_size=size, layers=cfg.layers or None,
            resize_modes=modes, flip=cfg.flip, batch_size=cfg.batch_size,
            shard_size=cfg.shard_size, seed=cfg.seed, log=log,
            hub_config=cfg.hub_config or None, include_top=top, recipe=recipe,
            precision=resolved, limit=limit)

    modes, modes_dir = fit_modes.run_stage(st, cfg, ds_dir, feat_params, extract,
                                           search_args, log)
    feat_params["resize_modes"] = list(modes)

    def do_features(out: str, work: str, size: int | None = cfg.image_size) -> None:
        for mode in modes if modes_dir and size == cfg.image_size else ():
            fit_modes.seed(modes_dir, work, mode, log)
        extract(out, work, size, modes)

    feat_dir = st.run("features", feat_params, do_features,
                      ["dataset"] + (["modes"] if modes_dir else []), resumable=True)
    size = fit_scales.main_size(cfg.backbone, cfg.image_size)
    extra = fit_scales.extra_sizes(cfg.scales, size)
    scale_dirs = fit_scales.run_features(st, extra, feat_params, do_features)
    scale_stages = list(map(fit_scales.stage_name, extra))
    rows = ["features"]
    if cfg.dedupe:
        dedupe_dir = st.run("dedupe", {}, lambda out: write_dedupe(
            features.FeatureStore.load(feat_dir), out, log), ["features"])
        rows.append("dedupe")
    store_cache: dict[str, Any] = {}

    def store(folder: str = feat_dir) -> features.FeatureStore:
        if folder not in store_cache:
            s = features.FeatureStore.load(folder)
            store_cache[folder] = dedupe_lib.apply(s, dedupe_dir) if cfg.dedupe else s
        return store_cache[folder]

    def scale_stores() -> dict[int, features.FeatureStore]:
        return {s: store(d) for s, d in scale_dirs.items()}

    def do_search(out: str) -> None:
        import time

        t0 = time.perf_counter()
        results = search.run(store(), cfg.search, splits=TRAIN_SPLITS, log=log, **search_args)
        seconds = time.perf_counter() - t0
        best = results[0]
        doc = {"mode": cfg.search, "seconds": round(seconds, 2), "folds": cfg.folds,
               "chosen": best.as_dict(), "results": [r.as_dict() for r in results]}
        files.atomic_write_json(os.path.join(out, "leaderboard.json"), doc)
        files.atomic_write(os.path.join(out, "leaderboard.md"), search.leaderboard_markdown(
            results, best.config, cfg.search, seconds))
        np.save(os.path.join(out, "oof_scores.npy"), best.oof)
        log(f"search ({cfg.search}): {len(results)} configurations in {seconds:.1f}s; chosen "
            f"{best.config.label()} (CV top-1 {100 * best.top1:.2f}%)")

    search_dir = st.run("search", {"mode": cfg.search, "folds": cfg.folds, "seed": cfg.seed,
                                   "max_memory_mb": cfg.max_memory_mb},
                        do_search, rows)
    chosen = search.Config.from_dict(_read_board(search_dir)["chosen"]["config"])
    oof = np.load(os.path.join(search_dir, "oof_scores.npy"), allow_pickle=False)
    scales_dir = st.run("scales", {}, lambda out: fit_scales.write_decision(
        store(), scale_stores(), oof, chosen, size, TRAIN_SPLITS, out, log, **search_args),
        rows + ["search"] + scale_stages) if extra else None
    decided = ["scales"] if extra else []

    def do_final(out: str) -> None:
        from illustration_tl.heads import head

        head.fit(store(), chosen, TRAIN_SPLITS, oof, log).save(out)
        if extra:
            fit_scales.fit_heads(scale_stores(), chosen, scales_dir, TRAIN_SPLITS, out)

    final_dir = st.run("final", {}, do_final, rows + ["search"] + decided)
    reject_dir = st.run("reject", {"precision": cfg.reject_precision}, lambda out: (
        write_reject(store(), search_dir, final_dir, out, cfg.reject_precision, log,
                     scales_dir)), ["search", "final"] + decided)

    def do_evaluate(out: str) -> None:
        ev = _evaluate(store(), final_dir, cfg)
        if extra:
            ev.scores, ev.extra["scales"] = fit_scales.average_test(
                ev.scores, store(), size, scale_stores(), final_dir, TEST_SPLIT)
        ev.save(out)

    eval_dir = st.run("evaluate", {}, do_evaluate, rows + ["final"] + scale_stages)
    model_dir = os.path.join(root, "model")
    threshold = read_reject(reject_dir)
    st.run("model", {"top_k": cfg.top_k}, lambda out: fit_export.export(
        final_dir, feat_dir, out, top_k=cfg.top_k, reject=threshold, scales=scale_dirs),
        ["features", "final", "reject"] + scale_stages)
    eta.finish()
    from illustration_tl.evaluation.metrics import EvalResult

    ev = EvalResult.load(eval_dir)
    board = _read_board(search_dir)
    summary = {"status": "done", "search": cfg.search, "chosen": board["chosen"],
               "search_seconds": board["seconds"], "test_top1": ev.top_k(1),
               "test_top5": ev.top_k_or_none(5), "num_test": ev.num_examples,
               "num_classes": len(ev.class_names), "model": model_dir,
               "reject": threshold.to_dict(), "dedupe": cfg.dedupe,
               "timings": {k: round(v, 1) for k, v in st.timings.items()},
               "peak_rss_gb": {k: round(v / 1e9, 2) for k, v in st.peak_rss.items()}}
    if modes_dir:
        summary["modes"] = fit_modes.read_decision(modes_dir)
    if extra:
        summary["scales"] = {**fit_scales.read_decision(scales_dir),
                             "test_top1_main": ev.extra["scales"]["main_scale_top1"]}
    fit_summary.write_report(root, summary, search_dir)
    from illustration_tl.evaluation import html_report

    html_report.write_fit_report(root, log=log)  # report.html, label_issues, duplicates
    files.atomic_write_json(os.path.join(root, MARKER), summary)
    outputs.record(root, OUTPUT_MARKER)
    return summary


def write_dedupe(store: Any, out: str, log: Callable[[str], None]) -> None:
    """The ``dedupe`` stage: each near-duplicate group spanning training and test goes to
    one side (:func:`illustration_tl.evaluation.dedupe.regroup`)."""
    from illustration_tl.evaluation import fit_run

    images, pairs = fit_run.find_duplicates(store, None)
    moved = dedupe_lib.regroup(store, images, pairs, out)
    log(f"dedupe: {moved} images moved so that no group of near duplicates spans "
        "training and test")


def _read_board(search_dir: str) -> dict[str, Any]:
    with open(os.path.join(search_dir, "leaderboard.json"), encoding="utf-8") as f:
        return json.load(f)


def reject_threshold(store: Any, search_dir: str, final_dir: str, target_precision: float,
                     scales_dir: str | None = None) -> reject_lib.RejectThreshold:
    """The reject threshold of a run (:func:`reject.choose_threshold`): the chosen
    configuration's out-of-fold scores (``search/oof_scores.npy``, one row per image of
    the training splits of ``store``, in their order) through the final head's calibrated
    softmax (its temperature), or the kept scales' average (``scales_dir``)."""
    from illustration_tl.evaluation import label_issues
    from illustration_tl.heads import head as head_lib

    temperature = head_lib.Head.load(final_dir).temperature
    oof = np.load(os.path.join(search_dir, "oof_scores.npy"), allow_pickle=False)
    labels = np.concatenate([store.labels[s] for s in TRAIN_SPLITS if s in store.labels])
    probs = label_issues.softmax(oof, temperature) if scales_dir is None else np.load(
        os.path.join(scales_dir, fit_scales.OOF_PROBABILITIES), allow_pickle=False)
    return reject_lib.choose_threshold(probs, labels, target_precision)


def write_reject(store: Any, search_dir: str, final_dir: str, out: str,
                 target_precision: float, log: Callable[[str], None] = _log,
                 scales_dir: str | None = None) -> reject_lib.RejectThreshold:
    """The ``reject`` stage: :func:`reject_threshold` into ``out/reject.json``."""
    chosen = reject_threshold(store, search_dir, final_dir, target_precision, scales_dir)
    files.atomic_write_json(os.path.join(out, reject_lib.REJECT_FILE), chosen.to_dict())
    log(f"reject: {chosen.words()}")
    return chosen


def read_reject(reject_dir: str) -> reject_lib.RejectThreshold:
    with open(os.path.join(reject_dir, reject_lib.REJECT_FILE), encoding="utf-8") as f:
        return reject_lib.RejectThreshold.from_dict(json.load(f))


def _build(cfg: FitConfig, name: str, options: dict[str, Any], out: str,
           log: Callable[[str], None]) -> None:
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    data_dir = os.path.join(out, "tfds")
    try:
        builder = b.build("curated", cfg.images, data_dir, name=None if name == "curated"
                          else name, overwrite=True, flag="--images",
                          num_workers=cfg.num_workers, **options)
    except ValueError as e:
        raise UserError(f"--images={cfg.images!r}: {str(e).splitlines()[0]}") from None
    info = builder.info
    doc = {"dataset": f"illustrations/{name}", "classes": info.features["label"].names,
           "examples": {s: info.splits[s].num_examples for s in info.splits}}
    files.atomic_write_json(os.path.join(out, "dataset.json"), doc)
    skipped = os.path.join(os.fspath(builder.data_dir), b.SKIPPED_FILE)
    final = os.path.join(os.path.dirname(out), "dataset", os.path.relpath(skipped, out))
    fit_plan.log_skipped(skipped, log, shown_as=final)   # the stage is written beside


def _evaluate(store: Any, final_dir: str, cfg: FitConfig) -> Any:
    from illustration_tl.evaluation.metrics import EvalResult
    from illustration_tl.heads import head as head_lib

    h = head_lib.Head.load(final_dir)
    c, probs = h.config, head_lib.split_probabilities(store, h, TEST_SPLIT)
    return EvalResult(f"{store.meta.get('backbone')} fit ({cfg.search})", h.class_names,
                      store.labels[TEST_SPLIT], probs, store.file_names[TEST_SPLIT],
                      {"stage": "fit", "config": c.as_dict(), "label": c.label(),
                       "temperature": h.temperature})
