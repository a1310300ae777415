"""``illustration-tl predict --model=EXPORT --images=PATH_OR_GLOB --top_k=5``.

Classifies image files with a SavedModel written by ``illustration-tl export``.
Folders are read recursively; a file that is not an image is reported and
skipped, and the exit status is 3 when any file was skipped (0 otherwise).
"""

import sys

from absl import flags

from illustration_tl.commands import app

_MODEL = flags.DEFINE_string("model", None, "Export folder written by `illustration-tl export`.")
_IMAGES = flags.DEFINE_list("images", None, "Image files, folders (recursive) or globs.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "How many classes to print per image (at most the "
                             "model's number of classes and the export's --top_k).")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"],
                            "`table` for people, `json` for one JSON object per line.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_MAX_SIDE = flags.DEFINE_integer("max_side", None, "Downscale before resizing, as the dataset "
                                 "builder did (default: the max_side the export records, "
                                 "else 512).")

SKIPPED_EXIT_CODE = 3


def main(argv) -> int:
    from illustration_tl import predict
    from illustration_tl.errors import UserError

    if not _MODEL.value or not _IMAGES.value:
        raise UserError("--model and --images are required")
    if _TOP_K.value < 1:
        raise UserError(f"--top_k={_TOP_K.value}: give at least 1")
    predictor = predict.Predictor(_MODEL.value)
    paths = predict.expand_inputs(_IMAGES.value)
    skipped = 0
    for p in predict.predict_files(predictor, paths, _TOP_K.value, _BATCH.value,
                                   _MAX_SIDE.value or predictor.max_side):
        skipped += p.error is not None
        print(p.to_json() if _FORMAT.value == "json" else p.to_table(), flush=True)
    if skipped:
        print(f"{skipped} of {len(paths)} files skipped (not decodable images)", file=sys.stderr)
        return SKIPPED_EXIT_CODE
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
