"""``illustration-tl evaluate --model=EXPORT --images=DIR --output=OUT`` (paper §7, Fig. 7).

Scores an export (``illustration-tl export``) on a folder of images and writes
top-1/top-5 overall, per class and per group, a confusion matrix, and every
image's top predictions:

  # DIR/<class>/*: per class
  illustration-tl evaluate --model=runs/export --images=test_images --output=runs/eval
  # DIR/<style>/<class>/*: per style (folder level 0)
  illustration-tl evaluate --model=runs/export --images=by_style --group_by=0 --output=...
  # a CSV with file,label,style,...: per value of a column
  illustration-tl evaluate --model=runs/export --manifest=images.csv --group_by=style ...
  # photographs (Fig. 7): folders named by ImageNet class, or loose files (predictions only)
  illustration-tl evaluate --model=runs/export --images=tests/fixtures/photos --output=...

Labels match the model's classes by name or through ImageNet (wnid or any
synonym). Top-5 is reported only for models with more than 5 classes.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_MODEL = flags.DEFINE_string("model", None, "Export folder written by `illustration-tl export`.")
_IMAGES = flags.DEFINE_string("images", None, "Folder of <class>/* or <group>/<class>/* images "
                              "(with --manifest: the folder its `file` paths are relative to).")
_MANIFEST = flags.DEFINE_string("manifest", None, "CSV with columns file,label and any group "
                                "columns.")
_GROUP_BY = flags.DEFINE_string("group_by", None, "Group results by a folder level (0 = top "
                                "folder under --images) or, with --manifest, a column name.")
_OUTPUT = flags.DEFINE_string("output", None, "New folder for the results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier evaluate output (only if "
                               "it holds nothing else).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 512, "Downscale before resizing, as the dataset "
                                 "builder does (keep equal to the builder's max_side).")


def main(argv) -> int:
    from illustration_tl import grouped_evaluation
    from illustration_tl.errors import UserError

    if not _MODEL.value:
        raise UserError("--model is required: an export folder (illustration-tl export)")
    if not _OUTPUT.value:
        raise UserError("--output is required: a new folder for the results")
    doc = grouped_evaluation.evaluate(
        model=_MODEL.value, output=_OUTPUT.value, images=_IMAGES.value,
        manifest=_MANIFEST.value, group_by=_GROUP_BY.value, batch_size=_BATCH.value,
        max_side=_MAX_SIDE.value, overwrite=_OVERWRITE.value)
    print(grouped_evaluation.markdown(doc), end="")
    print(f"wrote {_OUTPUT.value}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
