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

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.evaluation.metrics import BaselineConfig

# One flag per field of BaselineConfig: names, defaults and help live there.
FLAGS = config_flags.define(BaselineConfig)


def config() -> BaselineConfig:
    """The :class:`evaluation.BaselineConfig` the flags describe."""
    return BaselineConfig(**config_flags.values(FLAGS, BaselineConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.evaluation import metrics as evaluation

    cfg = config()
    if not cfg.output:
        raise UserError("--output is required: the folder for the evaluation results")
    full, restricted = evaluation.run_baseline(
        backbone=cfg.backbone, weights=cfg.weights, dataset=cfg.dataset, split=cfg.split,
        output=cfg.output, data_dir=cfg.data_dir, image_size=cfg.image_size,
        batch_size=cfg.batch_size, resize_mode=cfg.resize_mode, model_name=cfg.name)
    skipped = full.extra["skipped_examples"]
    print(f"{full.num_examples} test images of {len(restricted.class_names)} ImageNet classes"
          + (f" ({skipped} images of non-ImageNet classes left out)" if skipped else ""))
    for r in (full, restricted):
        print(f"{r.model_name}: top-1 {100 * r.top_k(1):.2f}%, top-5 {100 * r.top_k(5):.2f}%")
    print(f"wrote {cfg.output}/imagenet1000 and {cfg.output}/restricted")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
