"""``illustration-tl stats --dataset=illustrations/curated`` (paper Table 1).

Prints the number of images per class in each split of a built dataset,
with each class's ImageNet wnid, and what the build skipped.
"""

import json
import os

from absl import flags

from illustration_tl import input_pipeline
from illustration_tl.commands import app

_DATASET = flags.DEFINE_string("dataset", "illustrations/curated",
                               "TFDS dataset to count, e.g. illustrations/noisy.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_SKIPPED = flags.DEFINE_bool("skipped", False, "Also list the files the build skipped.")


def main(argv) -> int:
    info, counts = input_pipeline.label_counts(_DATASET.value, _DATA_DIR.value)
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
    if _SKIPPED.value and os.path.exists(skipped_path):
        with open(skipped_path, encoding="utf-8") as f:
            print("\nskipped:\n" + "".join("  " + line for line in f.readlines()[1:]), end="")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
