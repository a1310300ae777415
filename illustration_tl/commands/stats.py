"""``illustration-tl stats --dataset=illustrations/curated`` (paper Table 1).

Prints the number of images per class in each split of a built dataset,
with each class's ImageNet wnid, and what the build skipped.
"""

import json
import os

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.datasets import input_pipeline
from illustration_tl.datasets.input_pipeline import StatsConfig

# One flag per field of StatsConfig: names, defaults and help live there.
FLAGS = config_flags.define(StatsConfig)


def config() -> StatsConfig:
    """The :class:`input_pipeline.StatsConfig` the flags describe."""
    return StatsConfig(**config_flags.values(FLAGS, StatsConfig))


def main(argv) -> int:
    cfg = config()
    info, counts = input_pipeline.label_counts(cfg.dataset, cfg.data_dir)
    print(f"{info.full_name}  ({info.data_dir})\n")
    print(input_pipeline.format_counts(info, counts))
    report_path = os.path.join(info.data_dir, "build_report.json")
    if os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        dups = report.get("duplicates", {})
        print(f"\nfiles seen {report.get('files_seen')}, decoded {report.get('files_decoded')}, "
              f"skipped {report.get('files_skipped')}; duplicates "
              f"{dups.get('byte_identical_duplicates', 0)} byte-identical + "
              f"{dups.get('pixel_identical_duplicates', 0)} pixel-identical")
    skipped_path = os.path.join(info.data_dir, "skipped.tsv")
    if cfg.skipped and os.path.exists(skipped_path):
        with open(skipped_path, encoding="utf-8") as f:
            print("\nskipped:\n" + "".join("  " + line for line in f.readlines()[1:]), end="")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
