"""``illustration-tl fit --images=DIR --output=OUT``: the best classifier for a folder.

DIR holds one sub-folder of images per class (or the authors' ``train/`` + ``val/``
layout, ``val`` being the test split). Builds the dataset, extracts frozen multi-layer
features once, searches features x normalization x classifier by cross-validation
on the training split, refits the winner, scores the test split once, and writes one
SavedModel (image bytes in, calibrated probabilities out) and ``OUT/report.md``:

  illustration-tl fit --images=my_icons --output=runs/mine
  illustration-tl fit --images=my_icons --output=runs/mine --search=thorough
  illustration-tl predict --model=runs/mine/model --images=new_icon.png

Resumable: rerun the same command after an interruption, or with another --search,
and only the stages whose inputs changed run again.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_IMAGES = flags.DEFINE_string("images", None, "Folder of images, one sub-folder per class.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the run (new, empty, or an earlier "
                              "`fit` output, which is resumed).")
_BACKBONE = flags.DEFINE_string("backbone", "vgg16", "keras.applications backbone (vgg16, "
                                "vgg19, resnet50, efficientnetb0, ...), or a KerasHub vision "
                                "tower: keras_hub:<preset> (keras_hub:dinov2_small, "
                                "keras_hub:clip_vit_base_patch16, ...; the hub extra).")
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "'imagenet' (downloaded by Keras), a "
                               "local .h5/.weights.h5 file, or 'none' (random, for tests).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input side in pixels (default: the "
                                   "backbone's, 224 for VGG).")
_LAYERS = flags.DEFINE_list("layers", [], "Transfer layers (default: the backbone's table in "
                            "backbones.py).")
_RESIZE = flags.DEFINE_list("resize_modes", ["squash", "pad"], "Resize modes to search: squash "
                            "(the paper's plain resize), pad (to a white square).")
_FLIP = flags.DEFINE_bool("flip", True, "Also embed mirror images: train on them and average "
                          "each test image's scores with its mirror's (searched).")
_SEARCH = flags.DEFINE_enum("search", "fast", ["paper", "fast", "thorough"], "paper: the "
                            "paper's 64-point SVM grid on its fc2/pooled embedding; fast: a short "
                            "ordered list with successive halving; thorough: a wide grid.")
_FOLDS = flags.DEFINE_integer("cv_folds", 3, "Cross-validation folds.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the folds (and of random weights).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_WORKERS = flags.DEFINE_integer("num_workers", None, "Decoding processes (0: one per CPU; "
                                "1: in this process).")
_JOBS = flags.DEFINE_integer("n_jobs", 2, "Search threads.")
_FORCE = flags.DEFINE_bool("force", False, "Rerun every stage.")
_HUB_CONFIG = flags.DEFINE_string("hub_config", None, "keras_hub:<family> with --weights=none "
                                  "only: the random tower's constructor arguments, as a JSON "
                                  "object or a .json file.")


def main(argv) -> int:
    from illustration_tl import fitting
    from illustration_tl.errors import UserError

    if not _IMAGES.value:
        raise UserError("--images is required: a folder with one sub-folder per class")
    cfg = fitting.FitConfig(
        images=_IMAGES.value, output=_OUTPUT.value, backbone=_BACKBONE.value,
        weights=_WEIGHTS.value, image_size=_IMAGE_SIZE.value, layers=tuple(_LAYERS.value),
        resize_modes=tuple(_RESIZE.value), flip=_FLIP.value, search=_SEARCH.value,
        folds=_FOLDS.value, seed=_SEED.value, batch_size=_BATCH.value,
        num_workers=_WORKERS.value, n_jobs=_JOBS.value, force=_FORCE.value,
        hub_config=_HUB_CONFIG.value)
    summary = fitting.run(cfg)
    for line in fitting.summary_lines(summary):
        print(line)
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
