"""The settings several stages share, each defined once: name, help text, choices.

Every function returns a fresh dataclass field (:func:`config_flags.setting`) for a
stage's config; the field's name in the config is the flag's name (``data_dir``,
``backbone``, ...). Where stages differ in a setting's default, the function takes the
default; the help text never changes, so ``--backbone`` reads the same in every
command. A setting whose meaning differs between stages (``--output``, ``--seed``)
is not here: each config declares its own.

  @dataclasses.dataclass
  class EmbedConfig:
      data_dir: str | None = common_settings.data_dir()
      backbone: str = common_settings.backbone("vgg19")
"""

from __future__ import annotations

from typing import Any

from illustration_tl.core.config_flags import optional, setting

RESIZE_MODES = ("squash", "pad")
INCLUDE_TOP = ("auto", "yes", "no")
SPLITS = ("train", "validation", "test")
MIN_IMAGE_SIZE = 32  # keras.applications' smallest input side


def jobs_check(value: int) -> str | None:
    """joblib's thread counts: a positive number, or -1 for every core."""
    return None if value >= 1 or value == -1 else "give 1 or more threads, or -1 for all cores"


def dataset(default: str | None) -> Any:
    return setting(default, "TFDS dataset, e.g. illustrations/curated or illustrations/noisy.",
                   literal=True)


def data_dir() -> Any:
    return optional("TFDS data folder (default ~/tensorflow_datasets or $TFDS_DATA_DIR).")


def splits() -> Any:
    return setting(SPLITS, "Dataset splits to read.")


def backbone(default: str | None) -> Any:
    """``None`` (``export``): taken from the artifacts the command reads."""
    return setting(default, "keras.applications backbone (vgg19, vgg16, resnet50, ...).",
                   literal=True)


def weights(default: str | None = "imagenet") -> Any:
    """Passed on as given (``none`` included); ``None`` only when not given (``export``)."""
    return setting(default, "'imagenet' (downloaded by Keras), a local .h5/.weights.h5 file, "
                   "or 'none' (random initialization, for tests).", literal=True)


def include_top() -> Any:
    return setting("auto", "Build the classifier top (fc1, fc2) or only the conv base. auto: "
                   "the top when the weights have one.", choices=INCLUDE_TOP)


def image_size() -> Any:
    return optional("Input side in pixels (default: the backbone's, 224 for VGG).",
                    minimum=MIN_IMAGE_SIZE)


def layer() -> Any:
    return optional("Layer whose activations are the embedding (default: fc2 with a VGG top, "
                    "avg_pool for pooled heads, else the global average pool of the last "
                    "conv block). Conv layers are global-average-pooled.")


def resize_mode() -> Any:
    return setting("squash", "squash: plain resize as the paper; pad: white square first.",
                   choices=RESIZE_MODES)


def batch_size() -> Any:
    return setting(32, "Images per forward pass.", minimum=1)


def shard_size(default: int) -> Any:
    return setting(default, "Images per shard file (bounds the memory held while writing; "
                   "`fit` resumes a killed extraction after its last finished shard).",
                   minimum=1)


def model_dir() -> Any:
    return optional("Output folder of `illustration-tl optimize`: the trained model, with "
                    "its backbone, image size and resize mode.")


def export_dir() -> Any:
    return optional("Export folder written by `illustration-tl export` (or `fit`).")


def model_name() -> Any:
    return optional("Model name in reports (default from the model, e.g. 'vgg19 ImageNet' "
                    "or 'vgg19 fc2 + SVM').")


def cv_folds(default: int = 3) -> Any:
    """``--cv_folds``, whatever the field's name (``FitConfig.folds``)."""
    return setting(default, "Cross-validation folds of the search.", flag="cv_folds",
                   minimum=2)


def num_workers() -> Any:
    return optional("Decoding processes (0: one per CPU; 1: in this process).", minimum=0)


def top_k() -> Any:
    """How many classes an export returns (``export``; ``reproduce`` exports too)."""
    return setting(5, "Classes the export returns per image (at most the number of classes).",
                   minimum=1)


def force() -> Any:
    return setting(False, "Rerun every stage even if up to date.")
