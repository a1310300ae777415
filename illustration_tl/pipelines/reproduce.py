"""The paper's Table 3 end to end: four models, one output folder (paper §6-§7).

Stages, each resumable (:mod:`illustration_tl.pipelines.stages`):

1. ``datasets``: build the curated and noisy TFDS datasets (§4).
2. ``baseline_cnn``: the ImageNet classifier scored on the curated and the noisy test
   splits (§6, Table 2; the curated score is also Table 3's first row).
3. ``baseline_svm``: its embeddings (fc2, or the pooled conv base) + an SVM (§6.1).
4. ``optimize``: the adaptive layer-based optimization on the noisy set (§7).
5. ``optimized_cnn``: the optimized network scored on the curated test set (§7.1).
6. ``optimized_svm``: its fc2 embeddings + an SVM (§7.2).
7. ``report``: Table 3 / Table 4, figures; ``summary.md`` beside the paper's numbers.
8. ``export``: the best model as one SavedModel.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import numpy as np

from illustration_tl.core import common_settings, config_flags, files, outputs
from illustration_tl.core.config_flags import setting
from illustration_tl.errors import UserError
from illustration_tl.pipelines import stages

OUTPUT_MARKER = "reproduce"  # the output manifest's ``written_by`` (core/outputs.py)

# Paper Table 3 (top-1, top-5 on the curated test set, VGG19).
PAPER_TABLE3 = {
    "baseline_cnn": ("Baseline CNN", 26.50, 47.40),
    "baseline_svm": ("Baseline CNN + SVM", 62.04, 85.64),
    "optimized_cnn": ("Optimized CNN", 49.39, 70.07),
    "optimized_svm": ("Optimized CNN + SVM", 86.61, 97.21),
}
ROWS = tuple(PAPER_TABLE3)

# Paper Table 2: the unmodified ImageNet VGG19 on each dataset's test split. The curated
# row is Table 3's first row; the noisy-set value is not transcribed here (None), so the
# summary shows ours beside "see paper" instead of inventing one.
PAPER_TABLE2 = {"noisy": None, "curated": (26.50, 47.40)}


@dataclasses.dataclass
class ReproduceConfig:
    """Everything ``reproduce`` needs. Fields with a help text are its flags
    (:mod:`config_flags`); the training recipe is ``train_overrides`` (the
    :class:`training.config.TrainConfig` flags ``optimize`` has too)."""

    output_dir: str = setting("", "Folder for every stage's outputs; rerun with the same "
                              "folder to resume.")
    curated_dir: str = setting("", "Curated images: <class>/* or the authors' train/<class>/* "
                               "+ val/<class>/* layout.")
    noisy_dir: str = setting("", "Illustrations named by content (and Iconify JSON "
                             "collections) for the noisy set. Without it, reproduce runs "
                             "`fit` on --curated_dir (no noisy set, no §7 optimization).")
    tfds_dir: str = setting("", "TFDS data folder (default: <output_dir>/tfds).")
    curated_options: dict = dataclasses.field(default_factory=dict)
    noisy_options: dict = dataclasses.field(default_factory=dict)
    backbone: str = setting("vgg19", "keras.applications backbone (vgg19, vgg16, resnet50, "
                            "...).")
    weights: str = setting("auto", "auto: ImageNet weights from a download or the Keras cache "
                           "if available, else random initialization (said in one line); "
                           "imagenet; none; or a local .h5/.weights.h5 file.")
    image_size: int = setting(224, "Input side in pixels, for every stage.",
                              minimum=common_settings.MIN_IMAGE_SIZE)
    resize_mode: str = setting("squash", "squash: plain resize as the paper; pad: white "
                               "square first. Used by every stage (training included).",
                               choices=("squash", "pad"))
    batch_size: int = setting(32, "Batch size of every stage (training: the global batch).",
                              minimum=1)
    train_overrides: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields
    augment: bool = setting(False, "Random crop and left-right mirror while training.")
    svm_baseline: str = setting("grid", "'grid' (the paper's 64-point 3-fold search) or "
                                "kernel,C,gamma[,ovr|ovo[,scaling]] (paper's best: "
                                "rbf,1,1e-4,ovr).")
    svm_optimized: str = setting("grid", "As --svm_baseline (paper's best: "
                                 "sigmoid,10,1e-4,ovr).")
    svm_scalings: tuple[str, ...] = setting(("none",), "Feature scalings the grid searches: "
                                            "none, standard, l2.")
    svm_jobs: int = setting(-1, "Parallel grid-search jobs (-1: all cores).",
                            check=common_settings.jobs_check)
    top_k: int = common_settings.top_k()
    force: bool = setting(False, "Rerun every stage even if up to date.")
    seed: int = setting(0, "Seed of initialization, dropout, data order and SVM folds.",
                        minimum=0)


@dataclasses.dataclass
class Weights:
    """Which ImageNet weights the run uses, and how that was decided."""

    source: str | None                  # "imagenet", a path, or None (random init)
    description: str
    has_top: bool


def _keras_cache_file(backbone: str, top: bool) -> str | None:
    name = {"vgg16": "vgg16", "vgg19": "vgg19"}.get(backbone)
    if name is None:
        return None
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    suffix = "" if top else "_notop"
    path = os.path.join(home, "models", f"{name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5")
    return path if os.path.isfile(path) else None


def resolve_weights(backbone: str, weights: str, log: Callable[[str], None]) -> Weights:
    """``auto``: a local file if given, else the Keras cache, else a download, else random
    initialization, said in one clear line (issue: the demo must run offline)."""
    from illustration_tl.models import backbones, layer_surgery

    spec = backbones.get(backbone)
    if weights.lower() in ("none", ""):
        return Weights(None, "random initialization (--weights=none)", False)
    if weights not in ("auto", "imagenet"):
        path = layer_surgery.weights_arg(weights)
        top = layer_surgery.weights_file_top(path) is not None
        return Weights(path, f"ImageNet weights from {path} ({'with' if top else 'no'} "
                       "classifier top)", top)
    for top in (True, False):
        cached = _keras_cache_file(spec.name, top)
        if cached:
            return Weights(cached, f"ImageNet weights from the Keras cache ({cached})", top)
    try:
        spec.application()(include_top=spec.has_fc_top, weights="imagenet")
    except Exception as e:  # offline: URLError, OSError, ValueError from get_file
        if weights == "imagenet":
            from illustration_tl.models import imagenet_weights

            raise imagenet_weights.download_error(spec.name, e) from None
        log(f"ImageNet weights for {spec.name} are not available (no --weights file, none in "
            f"the Keras cache, download failed: {type(e).__name__}); running from random "
            "initialization.")
        return Weights(None, "random initialization (no ImageNet weights available)", False)
    cached = _keras_cache_file(spec.name, spec.has_fc_top)
    return Weights(cached or "imagenet", "ImageNet weights (downloaded)", spec.has_fc_top)


# --------------------------------------------------------------------------- stages


def _dataset_name(config: str, options: dict) -> str | None:
    """A config name for non-preset options (TFDS keeps each config under its name)."""
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    preset = builder_lib.PRESETS[config]
    changed = {k: v for k, v in options.items() if v != getattr(preset, k)}
    if not changed:
        return None
    return f"{config}_{stages.stage_key(config, changed)[:8]}"


def _build_datasets(cfg: ReproduceConfig, data_dir: str, out: str) -> dict:
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    result = {}
    for config, root, options in [("curated", cfg.curated_dir, cfg.curated_options),
                                  ("noisy", cfg.noisy_dir, cfg.noisy_options)]:
        name = _dataset_name(config, options)
        flag = f"--{config}_dir"
        try:
            builder = builder_lib.build(config, root, data_dir, name=name, overwrite=True,
                                        flag=flag, **options)
        except ValueError as e:  # no usable images, one class, empty splits
            raise UserError(f"{flag}={root!r}: {str(e).splitlines()[0]}") from None
        info = builder.info
        result[config] = {
            "dataset": f"illustrations/{builder.builder_config.name}",
            "classes": info.features["label"].num_classes,
            "examples": {s: info.splits[s].num_examples for s in info.splits},
            "data_dir": os.path.abspath(data_dir),
        }
        print(f"  {result[config]['dataset']}: {result[config]['classes']} classes, "
              f"{result[config]['examples']}", flush=True)
    _write_json(os.path.join(out, "datasets.json"), result)
    return result


def _write_json(path: str, doc: Any) -> None:
    from illustration_tl.core.files import atomic_write_json

    atomic_write_json(path, doc)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _scores_on(model: Any, dataset: str, split: str, data_dir: str, *, backbone: str,
               image_size: int, batch_size: int, resize_mode: str = "squash"
               ) -> tuple[np.ndarray, np.ndarray, list[str], Any]:
    """The model's outputs on a split, with labels, file names and the dataset info."""
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.features import embeddings

    ds, info = input_pipeline.load_split(dataset, split, data_dir, decode_images=False)
    batches = input_pipeline.make_dataset(ds, backbone=backbone, image_size=image_size,
                                          batch_size=batch_size, training=False,
                                          resize_mode=resize_mode, with_file_names=True)
    scores, labels, names = embeddings.compute(model, batches.as_numpy_iterator())
    return scores, labels, names, info


def _pct(result: Any, k: int) -> str:
    """``87.50``, or ``n/a`` when top-k is meaningless (k >= the number of classes)."""
    value = result.top_k_or_none(k)
    return "n/a" if value is None else f"{100 * value:.2f}"


def _cnn_rows(name: str, scores_1000: np.ndarray, labels: np.ndarray, files: list[str],
              info: Any, out: str, extra: dict) -> None:
    """Writes the 1000-way (Table 2/3) and the restricted evaluation of a CNN."""
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.evaluation import metrics as evaluation

    full, restricted = evaluation.imagenet_baseline(
        name, scores_1000, labels, input_pipeline.class_names(info),
        input_pipeline.imagenet_indices(info), files, extra)
    full.save(os.path.join(out, "eval"))
    restricted.model_name = f"{name} (dataset classes only)"
    restricted.save(os.path.join(out, "eval_restricted"))
    print(f"  {name}: top-1 {_pct(full, 1)}  top-5 {_pct(full, 5)}  "
          f"(restricted to the dataset's classes: {_pct(restricted, 1)} / "
          f"{_pct(restricted, 5)})", flush=True)


def _baseline_cnn(cfg: ReproduceConfig, w: Weights, ds: dict, out: str) -> None:
    from illustration_tl.models import backbones, layer_surgery

    spec = backbones.get(cfg.backbone)
    if w.source is not None and not w.has_top:
        _write_json(os.path.join(out, "unavailable.json"), {
            "reason": f"{w.description}: the ImageNet classifier's fc layers are not in it, "
                      "so the 1000-way baseline cannot be scored"})
        print("  baseline CNN: n/a (weights without the classifier top)", flush=True)
        return
    size = layer_surgery.classifier_image_size(spec.name, w.source, cfg.image_size)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = layer_surgery.imagenet_classifier(cfg.backbone, w.source, size)
    for config in ("curated", "noisy"):  # Table 2: both test splits; curated = Table 3 row
        scores, labels, files, info = _scores_on(
            model, ds[config]["dataset"], "test", ds[config]["data_dir"],
            backbone=cfg.backbone, image_size=size, batch_size=cfg.batch_size,
            resize_mode=cfg.resize_mode)
        _cnn_rows(f"Baseline CNN ({config} test)" if config == "noisy" else "Baseline CNN",
                  scores, labels, files, info, out if config == "curated"
                  else os.path.join(out, "noisy"),
                  {"weights": w.description, "image_size": size, "dataset": config})


def _svm_params(text: str, scalings: tuple) -> list:
    from illustration_tl.heads import svm

    if text == "grid":
        return svm.paper_grid(scalings=scalings)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 3:
        raise UserError(f"SVM setting {text!r}: use 'grid' or 'kernel,C,gamma[,ovr|ovo"
                        "[,scaling]]' (e.g. rbf,1,1e-4,ovr)")
    kw = dict(kernel=parts[0], C=float(parts[1]), gamma=float(parts[2]))
    if len(parts) > 3:
        kw["multiclass"] = parts[3]
    if len(parts) > 4:
        kw["scaling"] = parts[4]
    return [svm.SvmParams(**kw)]


def _svm_stage(name: str, source: Any, cfg: ReproduceConfig, ds: dict, setting: str,
               out: str) -> None:
    """Embeds the curated splits with ``source`` and fits + evaluates the SVM (§6.1, §7.2)."""
    from illustration_tl.features import embeddings
    from illustration_tl.heads import svm

    emb_dir = os.path.join(out, "embeddings")
    embeddings.embed_dataset(source, dataset=ds["curated"]["dataset"],
                             splits=["train", "validation", "test"], output=emb_dir,
                             data_dir=ds["curated"]["data_dir"], batch_size=cfg.batch_size,
                             overwrite=True)
    result = svm.train_and_evaluate(
        emb_dir, os.path.join(out, "svm"), _svm_params(setting, tuple(cfg.svm_scalings)),
        model_name=name, n_jobs=cfg.svm_jobs, seed=cfg.seed, log=svm.stderr_log,
        overwrite=True)
    result.save(os.path.join(out, "eval"))
    print(f"  {name}: {svm.SvmParams(**result.extra['svm_params']).label()}: "
          f"top-1 {_pct(result, 1)}  top-5 {_pct(result, 5)}", flush=True)


def _baseline_svm(cfg: ReproduceConfig, w: Weights, ds: dict, out: str) -> None:
    import keras

    from illustration_tl.features import embeddings

    keras.utils.set_random_seed(cfg.seed)
    source = embeddings.embedding_source(backbone=cfg.backbone, weights=w.source,
                                         image_size=cfg.image_size, seed=cfg.seed,
                                         resize_mode=cfg.resize_mode)
    _svm_stage("Baseline CNN + SVM", source, cfg, ds, cfg.svm_baseline, out)


def _optimize(cfg: ReproduceConfig, w: Weights, ds: dict, out: str, strategy: Any) -> None:
    from illustration_tl.training import run
    from illustration_tl.training.config import TrainConfig
    from illustration_tl.training.data import tfds_data

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(cfg.train_overrides) - fields)
    if unknown:
        raise UserError(f"unknown training setting(s): {', '.join(unknown)}")
    config = TrainConfig(
        output_dir=out, backbone=cfg.backbone, weights=w.source, image_size=cfg.image_size,
        batch_size=cfg.batch_size, seed=cfg.seed, dataset=ds["noisy"]["dataset"],
        resize_mode=cfg.resize_mode, **cfg.train_overrides)
    config.validate()
    data = tfds_data(ds["noisy"]["dataset"], ds["noisy"]["data_dir"],
                     backbone=cfg.backbone, image_size=cfg.image_size,
                     batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                     eval_dataset=ds["curated"]["dataset"],
                     eval_data_dir=ds["curated"]["data_dir"],
                     deterministic=config.deterministic, resize_mode=cfg.resize_mode)
    run.train(config, data, strategy=strategy)  # the loop for the Keras backend


def _optimized_cnn(cfg: ReproduceConfig, ds: dict, model_dir: str, out: str) -> None:
    from illustration_tl.datasets import imagenet
    from illustration_tl.models import layer_surgery

    model, config = layer_surgery.load_trained(model_dir)
    scores, labels, files, info = _scores_on(
        model, ds["curated"]["dataset"], "test", ds["curated"]["data_dir"],
        backbone=config["backbone"], image_size=int(config["image_size"]),
        batch_size=cfg.batch_size, resize_mode=config.get("resize_mode", "squash"))
    # The network's classes are ImageNet classes (wnids): spread them over the 1000.
    scores_1000 = np.full((len(scores), imagenet.NUM_CLASSES), -1.0, np.float32)
    columns = [imagenet.by_wnid(w).index for w in config["class_names"]]
    scores_1000[:, columns] = scores
    _cnn_rows("Optimized CNN", scores_1000, labels, files, info, out,
              {"model_dir": model_dir, "classes_of_network": len(columns)})


def _optimized_svm(cfg: ReproduceConfig, ds: dict, model_dir: str, out: str) -> None:
    from illustration_tl.features import embeddings

    source = embeddings.embedding_source(model_dir=model_dir)
    _svm_stage("Optimized CNN + SVM", source, cfg, ds, cfg.svm_optimized, out)


# --------------------------------------------------------------------------- summary


def load_rows(root: str) -> dict[str, Any]:
    """The evaluation of each Table 3 row that exists under ``root`` (None if n/a)."""
    from illustration_tl.evaluation import metrics as evaluation

    rows = {}
    for row in ROWS:
        path = os.path.join(root, row, "eval")
        rows[row] = evaluation.EvalResult.load(path) if os.path.isdir(path) else None
    return rows


def write_summary(root: str, weights: Weights, cfg: ReproduceConfig, ds: dict,
                  timings: dict[str, float], skipped: list[str]) -> str:
    """``summary.md``: Table 3 beside the paper's numbers, and what this run was."""
    rows = load_rows(root)
    lines = ["# illustration-tl reproduce: Table 3", "",
             f"- backbone: {cfg.backbone} at {cfg.image_size} px (paper: VGG19 at 224 px)",
             f"- weights: {weights.description}",
             f"- curated: `{ds['curated']['dataset']}` {ds['curated']['examples']}",
             f"- noisy: `{ds['noisy']['dataset']}` {ds['noisy']['classes']} classes "
             f"{ds['noisy']['examples']}", "",
             "| model | top-1 | top-5 | paper (VGG19) top-1 | paper (VGG19) top-5 |",
             "|---|---:|---:|---:|---:|"]
    table = {}
    for row in ROWS:
        paper_name, p1, p5 = PAPER_TABLE3[row]
        r = rows[row]
        if r is None:
            reason = "n/a"
            unavailable = os.path.join(root, row, "unavailable.json")
            if os.path.exists(unavailable):
                reason = "n/a: " + _read_json(unavailable)["reason"]
            lines.append(f"| {paper_name} | {reason} | | {p1:.2f} | {p5:.2f} |")
            table[row] = None
            continue
        t5 = r.top_k_or_none(5)
        table[row] = {"top1": 100 * r.top_k(1), "top5": None if t5 is None else 100 * t5,
                      "examples": r.num_examples}
        lines.append(f"| {paper_name} | {_pct(r, 1)} | {_pct(r, 5)} | {p1:.2f} | {p5:.2f} |")
    lines += ["", "Top-1/top-5 in % on the curated test split (top-5 is n/a with 5 classes "
              "or fewer). CNN rows score the network's "
              "own classes (1000 ImageNet classes for the baseline, the noisy set's classes "
              "for the optimized network) as the paper's Table 2 does; `eval_restricted/` "
              "beside each holds the score over the curated classes only.", ""]
    table2 = _table2_lines(root)
    lines += table2["lines"]
    lines += ["## Stages", "", "| stage | seconds | |", "|---|---:|---|"]
    for name, seconds in timings.items():
        note = "skipped (up to date; time of the run that made it)" if name in skipped else ""
        lines.append(f"| {name} | {seconds:.1f} | {note} |")
    report_md = os.path.join(root, "report", "report", "report.md")
    if os.path.exists(report_md):
        lines += ["", "Per-class results (Table 4), confusion matrix, t-SNE and failure "
                  "grids: [report/report/report.md](report/report/report.md)."]
    text = "\n".join(lines) + "\n"
    files.atomic_write(os.path.join(root, "summary.md"), text)
    _write_json(os.path.join(root, "summary.json"), {
        "weights": weights.description, "backbone": cfg.backbone,
        "image_size": cfg.image_size, "table3": table, "table2": table2["table"],
        "paper": {k: {"top1": v[1], "top5": v[2]} for k, v in PAPER_TABLE3.items()},
        "paper_table2": {k: None if v is None else {"top1": v[0], "top5": v[1]}
                         for k, v in PAPER_TABLE2.items()}})
    return text


def _table2_lines(root: str) -> dict[str, Any]:
    """Table 2 (§6): the unmodified ImageNet classifier, 1000-way, on both test splits."""
    from illustration_tl.evaluation import metrics as evaluation

    lines = ["## Table 2: the ImageNet baseline on both datasets", "",
             "| test split | top-1 | top-5 | restricted top-1 | restricted top-5 "
             "| paper (VGG19) top-1 | paper (VGG19) top-5 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    table: dict[str, Any] = {}
    base = os.path.join(root, "baseline_cnn")
    for config, sub in (("noisy", "noisy"), ("curated", "")):
        paper = PAPER_TABLE2[config]
        p = ("see paper", "") if paper is None else (f"{paper[0]:.2f}", f"{paper[1]:.2f}")
        path = os.path.join(base, sub, "eval")
        if not os.path.isdir(path):
            reason = "n/a"
            if os.path.exists(os.path.join(base, "unavailable.json")):
                reason = "n/a: no classifier top in the weights"
            lines.append(f"| {config} | {reason} | | | | {p[0]} | {p[1]} |")
            table[config] = None
            continue
        full = evaluation.EvalResult.load(path)
        restricted = evaluation.EvalResult.load(os.path.join(base, sub, "eval_restricted"))
        table[config] = {"top1": 100 * full.top_k(1), "top5": 100 * full.top_k(5),
                         "restricted_top1": 100 * restricted.top_k(1),
                         "examples": full.num_examples}
        lines.append(f"| {config} ({full.num_examples} images) | {_pct(full, 1)} | "
                     f"{_pct(full, 5)} | {_pct(restricted, 1)} | {_pct(restricted, 5)} | "
                     f"{p[0]} | {p[1]} |")
    lines += ["", "1000-way: every ImageNet class competes; restricted: only the dataset's "
              "own classes do. The noisy test split's labels come from file names "
              "(§4.1), so its score also measures the labels' noise.", ""]
    return {"lines": lines, "table": table}


def _report(root: str, ds: dict, out: str) -> None:
    """Table 3/4, confusion matrices, t-SNE (Fig. 6), failures (Fig. 8), comparison (Fig. 7)."""
    from illustration_tl.evaluation import report

    results = [r for r in load_rows(root).values() if r is not None]
    tsne = [d for d in (os.path.join(root, row, "embeddings", "test")
                        for row in ("baseline_svm", "optimized_svm")) if os.path.isdir(d)]
    loader = report.image_loader(results, dataset=ds["curated"]["dataset"], split="test",
                                 data_dir=ds["curated"]["data_dir"])
    compare = ("Baseline CNN + SVM", "Optimized CNN + SVM")
    names = {r.model_name for r in results}
    options = report.ReportOptions(compare=compare if set(compare) <= names else None)
    report.write_report(results, out, load_image=loader,
                        tsne=report.tsne_inputs(results, tsne), options=options)


def _best_row(root: str) -> str:
    rows = {k: v for k, v in load_rows(root).items() if v is not None}
    return max(rows, key=lambda k: (rows[k].top_k(1), rows[k].top_k(5)))


def _export(cfg: ReproduceConfig, w: Weights, root: str, out: str) -> None:
    from illustration_tl.serving import export

    best = _best_row(root)
    target = os.path.join(out, "saved_model")
    model_dir = os.path.join(root, "optimize") if best.startswith("optimized") else None
    svm_dir = os.path.join(root, best, "svm") if best.endswith("_svm") else None
    size = cfg.image_size
    if best == "baseline_cnn":  # the classifier at the size _baseline_cnn scored it
        from illustration_tl.models import layer_surgery

        size = layer_surgery.classifier_image_size(cfg.backbone, w.source, cfg.image_size)
    if svm_dir:  # the SVM's record of its embeddings names the model (issue 11)
        meta = export.export_from_artifacts(target, svm_dir=svm_dir, top_k=cfg.top_k,
                                            overwrite=True)
    else:
        meta = export.export_from_artifacts(target, model_dir=model_dir, backbone=cfg.backbone,
                                            weights=w.source, image_size=size,
                                            top_k=cfg.top_k, seed=cfg.seed, overwrite=True)
    _write_json(os.path.join(out, "export.json"), {"best": best, "path": target,
                                                    "head": meta["head"]})
    print(f"  exported {best} to {target}", flush=True)


# --------------------------------------------------------------------------- driver


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
    text = "\n".join(fitting.summary_lines(summary))
    log(text)
    return text


# Settings that change how a run goes, not what it makes: the folder, rerunning, and the
# SVM grid's parallelism. Every other setting enters some stage's key (tested).
EXECUTION_ONLY = ("output_dir", "force", "svm_jobs")


def stage_params(cfg: ReproduceConfig, weights: str, data_dir: str) -> dict[str, dict]:
    """The inputs of each stage, hashed into its key (:mod:`stages`): a stage reruns
    exactly when one of them changes. ``weights``: :class:`Weights` description."""
    common = {"backbone": cfg.backbone, "image_size": cfg.image_size, "seed": cfg.seed,
              "batch_size": cfg.batch_size, "weights": weights}
    if cfg.resize_mode != "squash":  # keeps the stage keys of earlier squash runs
        common["resize_mode"] = cfg.resize_mode
    return {
        "datasets": {"curated": stages.tree_fingerprint(cfg.curated_dir),
                     "noisy": stages.tree_fingerprint(cfg.noisy_dir),
                     "curated_options": cfg.curated_options,
                     "noisy_options": cfg.noisy_options,
                     "data_dir": os.path.abspath(data_dir)},
        "baseline_cnn": {**common, "table2": True},
        "baseline_svm": {**common, "svm": cfg.svm_baseline,
                         "scalings": list(cfg.svm_scalings)},
        "optimize": {**common, "train": cfg.train_overrides, "augment": cfg.augment},
        "optimized_cnn": {},
        "optimized_svm": {"svm": cfg.svm_optimized, "scalings": list(cfg.svm_scalings),
                          "batch_size": cfg.batch_size},
        "report": {},
        "export": {"top_k": cfg.top_k},
    }


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
    # In place (swap=False): the SVM stages record their folders' absolute paths.
    run = stages.Stages(root, force=cfg.force, log=log, marker=OUTPUT_MARKER, swap=False)
    weights = resolve_weights(cfg.backbone, cfg.weights, log)
    log(f"weights: {weights.description}")
    params = stage_params(cfg, weights.description, data_dir)
    inside = os.path.relpath(os.path.abspath(data_dir), os.path.abspath(root))
    ds_dir = run.run("datasets", params["datasets"],
                     lambda out: _build_datasets(cfg, data_dir, out),
                     writes=[] if inside.startswith("..") else [inside])
    ds = _read_json(os.path.join(ds_dir, "datasets.json"))

    run.run("baseline_cnn", params["baseline_cnn"],
            lambda out: _baseline_cnn(cfg, weights, ds, out), ["datasets"])
    run.run("baseline_svm", params["baseline_svm"],
            lambda out: _baseline_svm(cfg, weights, ds, out), ["datasets"])
    model_dir = run.run("optimize", params["optimize"],
                        lambda out: _optimize(cfg, weights, ds, out, strategy), ["datasets"])
    run.run("optimized_cnn", params["optimized_cnn"],
            lambda out: _optimized_cnn(cfg, ds, model_dir, out), ["datasets", "optimize"])
    run.run("optimized_svm", params["optimized_svm"],
            lambda out: _optimized_svm(cfg, ds, model_dir, out), ["datasets", "optimize"])
    upstream = ["baseline_cnn", "baseline_svm", "optimized_cnn", "optimized_svm"]
    run.run("report", params["report"],
            lambda out: _report(root, ds, os.path.join(out, "report")), upstream)
    run.run("export", params["export"], lambda out: _export(cfg, weights, root, out),
            upstream)
    text = write_summary(root, weights, cfg, ds, run.timings, run.skipped)
    outputs.record(root, OUTPUT_MARKER)
    log(text)
    return text

