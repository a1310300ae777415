"""``illustration-tl extract --images=DIR --output=OUT --beam_options=...``: ``fit``'s
feature extraction on Apache Beam (the ``tfds-cli`` extra).

Takes ``fit``'s flags and ``--beam_options`` (Beam pipeline flags: the DirectRunner by
default, or a Dataflow, Spark or Flink runner's options). Builds ``fit``'s dataset in OUT,
then embeds every image with Beam's RunInference into the shards of ``fit``'s features
stage; ``fit`` with the same flags then only consolidates them and searches:

  illustration-tl extract --images=my_icons --output=runs/mine \\
      --beam_options=--runner=FlinkRunner,--flink_master=HOST:8081
  illustration-tl fit --images=my_icons --output=runs/mine
"""

from __future__ import annotations

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.pipelines.fit_beam import ExtractConfig

# One flag per ExtractConfig field with a help text: fit's flags (but --dry_run, which
# `fit --dry_run` answers) and --beam_options.
FLAGS = config_flags.define(ExtractConfig, exclude=("dry_run",))


def main(argv) -> int:
    from illustration_tl.commands import VERBOSE
    from illustration_tl.pipelines import fit_beam

    cfg = ExtractConfig(**config_flags.values(FLAGS, ExtractConfig))
    for line in fit_beam.summary_lines(fit_beam.run(cfg, quiet=not VERBOSE)):
        print(line)
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
