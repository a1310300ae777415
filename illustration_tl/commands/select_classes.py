"""``illustration-tl select-classes --dataset=illustrations/noisy --output=DIR`` (paper §4.2).

Ranks the classes of a noisy dataset (``build --config=noisy``) by how well a
network recognizes their images, with the name-mapping ambiguity of each
class, and prepares the curated set for the manual pass:

  illustration-tl select-classes --dataset=illustrations/noisy --data_dir=tfds \\
      --backbone=vgg16 --weights=../shared/weights/vgg16_imagenet_notop.weights.h5 \\
      --num_classes=23 --output=runs/selection
  illustration-tl build --config=curated --manual_dir=runs/selection/curated --data_dir=tfds

Scores: the paper's rule (ImageNet classifier top-1/top-5 on the class's
images; needs weights with the classifier top) and a cross-validated probe on
the pooled embeddings (needs only a conv base). Writes ``ranking.md``,
``ranking.csv``, ``selection.json``, ``contact_sheets/<class>.png`` and
``curated/<class>/*.png``.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_DATASET = flags.DEFINE_string("dataset", "illustrations/noisy", "The noisy TFDS dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_SPLITS = flags.DEFINE_list("splits", ["train", "validation", "test"], "Splits whose images "
                            "are scored and copied.")
_OUTPUT = flags.DEFINE_string("output", None, "New folder for the ranking, contact sheets and "
                              "curated layout.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier select-classes output "
                               "(only if it holds nothing else).")
_BACKBONE = flags.DEFINE_string("backbone", "vgg16", "keras.applications backbone.")
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "'imagenet', a local weights file, or "
                               "'none' (random, for tests).")
_INCLUDE_TOP = flags.DEFINE_enum("include_top", "auto", ["auto", "yes", "no"],
                                 "Build the ImageNet classifier top (the paper's rule). auto: "
                                 "when the weights have one.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input side (default the backbone's).")
_LAYER = flags.DEFINE_string("layer", None, "Embedding layer for the probe (default fc2 with "
                             "a top, else the pooled last conv block).")
_PROBE = flags.DEFINE_enum("probe", "logistic", ["logistic", "knn", "none"],
                           "Probe on the embeddings (the rule that needs only a conv base).")
_FOLDS = flags.DEFINE_integer("folds", 5, "Cross-validation folds of the probe.")
_RANK_BY = flags.DEFINE_enum("rank_by", "auto", ["auto", "imagenet_top1", "imagenet_top5",
                                                 "probe_precision", "probe_recall", "probe_f1"],
                             "Ranking score. auto: imagenet_top1 with a top, else "
                             "probe_precision.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 23, "Classes to select (paper: 23).")
_MAX_SHARED = flags.DEFINE_float("max_shared", 0.25, "Leave out classes with more than this "
                                 "share of images also copied into other classes.")
_MIN_IMAGES = flags.DEFINE_integer("min_images", 10, "Leave out classes with fewer images.")
_SHEET_MAX = flags.DEFINE_integer("sheet_max", 100, "Thumbnails per contact sheet.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (random weights, probe).")


def main(argv) -> int:
    from illustration_tl import class_selection
    from illustration_tl.errors import UserError

    if not _OUTPUT.value:
        raise UserError("--output is required: a new folder for the selection")
    weights = None if (_WEIGHTS.value or "").lower() in ("none", "") else _WEIGHTS.value
    summary = class_selection.select_classes(
        dataset=_DATASET.value, output=_OUTPUT.value, data_dir=_DATA_DIR.value,
        splits=_SPLITS.value, backbone=_BACKBONE.value, weights=weights,
        image_size=_IMAGE_SIZE.value, include_top=_INCLUDE_TOP.value, layer=_LAYER.value,
        probe=_PROBE.value, folds=_FOLDS.value, rank_by=_RANK_BY.value,
        num_classes=_NUM_CLASSES.value, max_shared=_MAX_SHARED.value,
        min_images=_MIN_IMAGES.value, sheet_max=_SHEET_MAX.value,
        batch_size=_BATCH_SIZE.value, seed=_SEED.value, overwrite=_OVERWRITE.value)
    print(f"{summary['classes']} classes ranked by {summary['rank_by']}; "
          f"{len(summary['selected'])} selected:")
    for s in summary["selected"]:
        print(f"  {s['folder']:<28} {s['images']:5d} images")
    print(f"wrote {_OUTPUT.value} (ranking.md, contact_sheets/, curated/)")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
