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

import dataclasses

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.pipelines.class_selection import SelectClassesConfig

# One flag per field of SelectClassesConfig: names, defaults and help live there.
FLAGS = config_flags.define(SelectClassesConfig)


def config() -> SelectClassesConfig:
    """The :class:`class_selection.SelectClassesConfig` the flags describe."""
    return SelectClassesConfig(**config_flags.values(FLAGS, SelectClassesConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.pipelines import class_selection

    cfg = config()
    if not cfg.output:
        raise UserError("--output is required: a new folder for the selection")
    settings = dataclasses.asdict(cfg)
    if cfg.weights.lower() in config_flags.NONE_WORDS:
        settings["weights"] = None  # random initialization
    summary = class_selection.select_classes(**settings)
    print(f"{summary['classes']} classes ranked by {summary['rank_by']}; "
          f"{len(summary['selected'])} selected:")
    for s in summary["selected"]:
        print(f"  {s['folder']:<28} {s['images']:5d} images")
    print(f"wrote {cfg.output} (ranking.md, contact_sheets/, curated/)")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
