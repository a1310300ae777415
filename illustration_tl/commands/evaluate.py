"""``illustration-tl evaluate --model=EXPORT --images=DIR --output=OUT`` (paper §7, Fig. 7).

Scores a model of this project (a ``fit`` run folder, a ``reproduce`` output
folder, an ``export`` folder or the SavedModel itself; checked before it is loaded)
on a folder of images or a manifest and writes
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

Labels match the model's classes by exact name (``Cat`` and ``cat`` are two
classes) or through ImageNet (wnid or any synonym). Only regular files inside
--images (or the manifest's root) are opened: symlinks leading out, FIFOs,
devices, absolute and ``../`` manifest paths are listed as skipped. Cells of
``predictions.csv`` that a spreadsheet would run as formulas get a leading ``'``.
Top-5 is reported only for models with more than 5 classes. ``--reject`` answers
``unknown`` below the reject threshold ``fit`` stored with the model and reports the
coverage and the accuracy on the answered images beside the usual numbers.
"""

from __future__ import annotations

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.serving.grouped_evaluation import EvaluateConfig

# One flag per field of EvaluateConfig: names, defaults and help live there.
FLAGS = config_flags.define(EvaluateConfig)


def config() -> EvaluateConfig:
    """The :class:`grouped_evaluation.EvaluateConfig` the flags describe."""
    return EvaluateConfig(**config_flags.values(FLAGS, EvaluateConfig))


def main(argv) -> int:
    from illustration_tl.core import files
    from illustration_tl.errors import UserError
    from illustration_tl.serving import grouped_evaluation

    cfg = config()
    if not cfg.model:
        raise UserError("--model is required: an export folder (illustration-tl export)")
    if not cfg.output:
        raise UserError("--output is required: a new folder for the results")
    doc = grouped_evaluation.evaluate(
        model=cfg.model, output=cfg.output, images=cfg.images, manifest=cfg.manifest,
        group_by=cfg.group_by, batch_size=cfg.batch_size, max_side=cfg.max_side,
        overwrite=cfg.overwrite, reject=cfg.reject)
    print(grouped_evaluation.markdown(doc), end="")
    print(f"wrote {files.display_name(cfg.output)}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
