"""What a ``reproduce`` run is: its settings (:class:`ReproduceConfig`, one flag
each), the ImageNet weights it uses (:func:`resolve_weights`: a file, the Keras cache,
a download or random initialization) and the inputs of each stage, whose hash is the
stage's key (:func:`stage_params`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import setting
from illustration_tl.pipelines import stages


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
