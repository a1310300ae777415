"""The body of each ``reproduce`` stage (paper §4, §6-§7), one function per stage, named
as the stage: what :func:`illustration_tl.pipelines.reproduce.reproduce` runs in
resumable stages (:mod:`illustration_tl.pipelines.stages`), each writing into its
folder ``out``.

* :func:`datasets`: the curated and noisy TFDS datasets (§4);
* :func:`baseline_cnn`: the ImageNet classifier on both test splits (§6, Table 2);
* :func:`baseline_svm` and :func:`optimized_svm`: embeddings + an SVM (§6.1, §7.2);
* :func:`optimize`: the adaptive layer-based optimization on the noisy set (§7);
* :func:`optimized_cnn`: the optimized network on the curated test split (§7.1);
* :func:`report`: Tables 3/4, confusion, t-SNE (Fig. 6), failures (Fig. 8);
* :func:`export`: the best row as one SavedModel.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from illustration_tl.core import files
from illustration_tl.errors import UserError
from illustration_tl.pipelines import reproduce_summary as summary
from illustration_tl.pipelines import stages

if TYPE_CHECKING:
    from illustration_tl.pipelines.reproduce_config import ReproduceConfig, Weights


def _dataset_name(config: str, options: dict) -> str | None:
    """A config name for non-preset options (TFDS keeps each config under its name)."""
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    preset = builder_lib.PRESETS[config]
    changed = {k: v for k, v in options.items() if v != getattr(preset, k)}
    if not changed:
        return None
    return f"{config}_{stages.stage_key(config, changed)[:8]}"


def datasets(cfg: ReproduceConfig, data_dir: str, out: str) -> dict:
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
    files.atomic_write_json(os.path.join(out, "datasets.json"), result)
    return result


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


def _cnn_rows(name: str, scores_1000: np.ndarray, labels: np.ndarray, names: list[str],
              info: Any, out: str, extra: dict) -> None:
    """Writes the 1000-way (Table 2/3) and the restricted evaluation of a CNN."""
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.evaluation import metrics as evaluation

    full, restricted = evaluation.imagenet_baseline(
        name, scores_1000, labels, input_pipeline.class_names(info),
        input_pipeline.imagenet_indices(info), names, extra)
    full.save(os.path.join(out, "eval"))
    restricted.model_name = f"{name} (dataset classes only)"
    restricted.save(os.path.join(out, "eval_restricted"))
    print(f"  {name}: top-1 {summary.pct(full, 1)}  top-5 {summary.pct(full, 5)}  "
          f"(restricted to the dataset's classes: {summary.pct(restricted, 1)} / "
          f"{summary.pct(restricted, 5)})", flush=True)


def baseline_cnn(cfg: ReproduceConfig, w: Weights, ds: dict, out: str) -> None:
    from illustration_tl.models import backbones, layer_surgery

    spec = backbones.get(cfg.backbone)
    if w.source is not None and not w.has_top:
        files.atomic_write_json(os.path.join(out, "unavailable.json"), {
            "reason": f"{w.description}: the ImageNet classifier's fc layers are not in it, "
                      "so the 1000-way baseline cannot be scored"})
        print("  baseline CNN: n/a (weights without the classifier top)", flush=True)
        return
    size = layer_surgery.classifier_image_size(spec.name, w.source, cfg.image_size)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = layer_surgery.imagenet_classifier(cfg.backbone, w.source, size)
    for config in ("curated", "noisy"):  # Table 2: both test splits; curated = Table 3 row
        scores, labels, names, info = _scores_on(
            model, ds[config]["dataset"], "test", ds[config]["data_dir"],
            backbone=cfg.backbone, image_size=size, batch_size=cfg.batch_size,
            resize_mode=cfg.resize_mode)
        _cnn_rows(f"Baseline CNN ({config} test)" if config == "noisy" else "Baseline CNN",
                  scores, labels, names, info, out if config == "curated"
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
          f"top-1 {summary.pct(result, 1)}  top-5 {summary.pct(result, 5)}", flush=True)


def baseline_svm(cfg: ReproduceConfig, w: Weights, ds: dict, out: str) -> None:
    import keras

    from illustration_tl.features import embeddings

    keras.utils.set_random_seed(cfg.seed)
    source = embeddings.embedding_source(backbone=cfg.backbone, weights=w.source,
                                         image_size=cfg.image_size, seed=cfg.seed,
                                         resize_mode=cfg.resize_mode)
    _svm_stage("Baseline CNN + SVM", source, cfg, ds, cfg.svm_baseline, out)


def optimize(cfg: ReproduceConfig, w: Weights, ds: dict, out: str, work: str,
             strategy: Any) -> None:
    """Trains in ``work`` (the stage's work folder, kept across a kill: a rerun resumes
    from its checkpoints, §7), then moves what training wrote into ``out``, the folder
    swapped in when the stage is complete."""
    from illustration_tl.training import run
    from illustration_tl.training.config import TrainConfig
    from illustration_tl.training.data import tfds_data

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(cfg.train_overrides) - fields)
    if unknown:
        raise UserError(f"unknown training setting(s): {', '.join(unknown)}")
    config = TrainConfig(
        output_dir=work, backbone=cfg.backbone, weights=w.source, image_size=cfg.image_size,
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
    for entry in os.listdir(work):
        os.replace(os.path.join(work, entry), os.path.join(out, entry))


def optimized_cnn(cfg: ReproduceConfig, ds: dict, model_dir: str, out: str) -> None:
    from illustration_tl.datasets import imagenet
    from illustration_tl.models import layer_surgery

    model, config = layer_surgery.load_trained(model_dir)
    scores, labels, names, info = _scores_on(
        model, ds["curated"]["dataset"], "test", ds["curated"]["data_dir"],
        backbone=config["backbone"], image_size=int(config["image_size"]),
        batch_size=cfg.batch_size, resize_mode=config.get("resize_mode", "squash"))
    # The network's classes are ImageNet classes (wnids): spread them over the 1000.
    scores_1000 = np.full((len(scores), imagenet.NUM_CLASSES), -1.0, np.float32)
    columns = [imagenet.by_wnid(w).index for w in config["class_names"]]
    scores_1000[:, columns] = scores
    _cnn_rows("Optimized CNN", scores_1000, labels, names, info, out,
              {"model_dir": model_dir, "classes_of_network": len(columns)})


def optimized_svm(cfg: ReproduceConfig, ds: dict, model_dir: str, out: str) -> None:
    from illustration_tl.features import embeddings

    source = embeddings.embedding_source(model_dir=model_dir)
    _svm_stage("Optimized CNN + SVM", source, cfg, ds, cfg.svm_optimized, out)


def report(root: str, ds: dict, out: str) -> None:
    """Table 3/4, confusion matrices, t-SNE (Fig. 6), failures (Fig. 8), comparison (Fig. 7)."""
    from illustration_tl.evaluation import report as report_lib

    results = [r for r in summary.load_rows(root).values() if r is not None]
    tsne = [d for d in (os.path.join(root, row, "embeddings", "test")
                        for row in ("baseline_svm", "optimized_svm")) if os.path.isdir(d)]
    loader = report_lib.image_loader(results, dataset=ds["curated"]["dataset"], split="test",
                                 data_dir=ds["curated"]["data_dir"])
    compare = ("Baseline CNN + SVM", "Optimized CNN + SVM")
    names = {r.model_name for r in results}
    options = report_lib.ReportOptions(compare=compare if set(compare) <= names else None)
    report_lib.write_report(results, out, load_image=loader,
                        tsne=report_lib.tsne_inputs(results, tsne), options=options)


def export(cfg: ReproduceConfig, w: Weights, root: str, out: str) -> None:
    from illustration_tl.serving import export as export_lib

    best = summary.best_row(root)
    target = os.path.join(out, "saved_model")
    model_dir = os.path.join(root, "optimize") if best.startswith("optimized") else None
    svm_dir = os.path.join(root, best, "svm") if best.endswith("_svm") else None
    size = cfg.image_size
    if best == "baseline_cnn":  # the classifier at the size baseline_cnn scored it
        from illustration_tl.models import layer_surgery

        size = layer_surgery.classifier_image_size(cfg.backbone, w.source, cfg.image_size)
    if svm_dir:  # the SVM's record of its embeddings names the model (issue 11)
        meta = export_lib.export_from_artifacts(target, svm_dir=svm_dir, top_k=cfg.top_k,
                                            overwrite=True)
    else:
        meta = export_lib.export_from_artifacts(target, model_dir=model_dir, backbone=cfg.backbone,
                                            weights=w.source, image_size=size,
                                            top_k=cfg.top_k, seed=cfg.seed, overwrite=True)
    files.atomic_write_json(os.path.join(out, "export.json"), {"best": best, "path": target,
                                                    "head": meta["head"]})
    print(f"  exported {best} to {target}", flush=True)
