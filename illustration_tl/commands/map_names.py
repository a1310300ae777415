"""``illustration-tl map-names --input=DIR --output=mapping.csv`` (paper §4.1).

Maps every image file under ``--input`` to ImageNet classes by shared words,
writes one CSV row per (image, class) assignment, and prints a summary that
shows how many images and classes the rule covers and which words flood it.
"""

import csv
import os

from absl import flags

from illustration_tl.commands import app, mapping_flags
from illustration_tl.core import files
from illustration_tl.datasets import name_mapping
from illustration_tl.errors import UserError

_INPUT = flags.DEFINE_string("input", None, "Folder of images, searched recursively.")
_OUTPUT = flags.DEFINE_string("output", None, "CSV to write: file,class_index,wnid,"
                              "class_name,matched_words. Omit to print the summary only.")
flags.adopt_module_key_flags(mapping_flags)
_TOP = flags.DEFINE_integer("top", 15, "How many words and classes the summary lists.")


def map_folder(root: str, mapper: name_mapping.NameMapper, output: str | None
               ) -> name_mapping.MappingSummary:
    """Maps every image under ``root``; writes the CSV atomically if asked."""
    summary = name_mapping.MappingSummary()
    rows = []
    for path in files.find_images(root):
        rel = os.path.relpath(path, root)
        matches = mapper.match(rel)
        summary.add(matches)
        rows += [(rel, m.index, m.wnid, m.name, " ".join(m.matched_words)) for m in matches]
    if output:
        tmp = output + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "class_index", "wnid", "class_name", "matched_words"])
            w.writerows(rows)
        os.replace(tmp, output)
    return summary


def main(argv) -> int:
    if not _INPUT.value:
        raise UserError("--input is required: the folder of images to map")
    if _OUTPUT.value and not os.path.isdir(os.path.dirname(os.path.abspath(_OUTPUT.value))):
        raise UserError(f"--output={_OUTPUT.value!r}: its folder does not exist")
    mapper = name_mapping.NameMapper(mapping_flags.options())
    summary = map_folder(_INPUT.value, mapper, _OUTPUT.value)
    print(summary.format(top=_TOP.value))
    if _OUTPUT.value:
        print(f"\nwrote {summary.assignments} rows to {_OUTPUT.value}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
