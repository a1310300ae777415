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
and only the stages whose inputs changed run again. ``--dry_run`` prints what the run
would do and about how long it would take, and writes nothing.
"""

from __future__ import annotations

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.pipelines.fit import FitConfig

# One flag per FitConfig field with a help text: names, defaults and help live there.
FLAGS = config_flags.define(FitConfig)


def config() -> FitConfig:
    """The :class:`fitting.FitConfig` the flags describe."""
    return FitConfig(**config_flags.values(FLAGS, FitConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.pipelines import fit as fitting
    from illustration_tl.pipelines import fit_summary

    cfg = config()
    if not cfg.images:
        raise UserError("--images is required: a folder with one sub-folder per class")
    summary = fitting.run(cfg, log=lambda m: None) if cfg.dry_run else fitting.run(cfg)
    lines = summary["lines"] if cfg.dry_run else fit_summary.summary_lines(summary)
    for line in lines:
        print(line)
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
