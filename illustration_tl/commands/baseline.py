"""``illustration-tl baseline --output=DIR`` (paper §6, Table 2: the ImageNet baseline).

Scores an unmodified ImageNet classifier on a dataset whose classes are
ImageNet classes (each label's ImageNet index comes from the dataset):

* ``DIR/imagenet1000``: top-1/top-5 over all 1000 ImageNet classes, as the
  paper's Table 2 and the "Baseline CNN" row of Table 3;
* ``DIR/restricted``: top-1/top-5 when only the dataset's own classes compete.

Classes without an ImageNet index are left out (their count is reported).
The classifier needs its fully connected top: ``--weights=imagenet``
(downloaded by Keras) or a local with-top weights file; a conv-base-only file
such as the shared VGG16 one cannot classify ImageNet classes.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_DATASET = flags.DEFINE_string("dataset", "illustrations/curated", "TFDS dataset to score.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_SPLIT = flags.DEFINE_string("split", "test", "Split to score.")
_BACKBONE = flags.DEFINE_string("backbone", "vgg19", "keras.applications backbone (paper: "
                                "vgg19).")
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "'imagenet' (downloaded by Keras), a "
                               "local weights file WITH the classifier top, or 'none' (random, "
                               "for smoke tests only).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input side in pixels (default: the "
                                   "backbone's; VGG's top needs 224).")
_RESIZE_MODE = flags.DEFINE_enum("resize_mode", "squash", ["squash", "pad"],
                                 "squash: plain resize as the paper; pad: white square first.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the two evaluation results.")
_NAME = flags.DEFINE_string("name", None, "Model name in reports (default '<backbone> "
                            "ImageNet').")


def main(argv) -> int:
    from illustration_tl import evaluation
    from illustration_tl.errors import UserError

    if not _OUTPUT.value:
        raise UserError("--output is required: the folder for the evaluation results")
    full, restricted = evaluation.run_baseline(
        backbone=_BACKBONE.value, weights=_WEIGHTS.value, dataset=_DATASET.value,
        split=_SPLIT.value, output=_OUTPUT.value, data_dir=_DATA_DIR.value,
        image_size=_IMAGE_SIZE.value, batch_size=_BATCH_SIZE.value,
        resize_mode=_RESIZE_MODE.value, model_name=_NAME.value)
    skipped = full.extra["skipped_examples"]
    print(f"{full.num_examples} test images of {len(restricted.class_names)} ImageNet classes"
          + (f" ({skipped} images of non-ImageNet classes left out)" if skipped else ""))
    for r in (full, restricted):
        print(f"{r.model_name}: top-1 {100 * r.top_k(1):.2f}%, top-5 {100 * r.top_k(5):.2f}%")
    print(f"wrote {_OUTPUT.value}/imagenet1000 and {_OUTPUT.value}/restricted")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
