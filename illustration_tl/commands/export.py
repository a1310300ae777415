"""``illustration-tl export``: CNN (+ SVM) as one SavedModel (paper §7.2 best model).

Examples::

  illustration-tl export --svm_dir=runs/svm_optimized --output=runs/export
  illustration-tl export --backbone=vgg19 --weights=imagenet --output=runs/vgg19_imagenet

The SavedModel has a ``serving_default`` signature on encoded image bytes, a
``classify_images`` signature on float RGB batches already resized, and a
``metadata`` signature. Inspect it with ``saved_model_cli show --all --dir=...``.

--output must be a new or empty folder; with --overwrite it may be an earlier
export (recognized by its ``illustration_tl_output.json``) holding nothing
else. Folders with other files, and the current folder, are always refused.
The SVM is read from ``svm.npz`` + ``svm.json`` only (never a pickle).
"""

import json

from absl import flags

from illustration_tl.commands import app

_SVM_DIR = flags.DEFINE_string("svm_dir", None, "Output folder of `illustration-tl svm`; "
                               "the embedding model (backbone, weights, image size, layer, "
                               "resize mode) is read from its record of the embeddings. "
                               "Without it the CNN's softmax head classifies.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Output folder of `illustration-tl "
                                 "optimize` (without --svm_dir, or to check the SVM's record).")
_BACKBONE = flags.DEFINE_string("backbone", None, "Export an ImageNet backbone instead "
                                "(vgg19, vgg16, ...); with --svm_dir only checked against "
                                "the SVM's record.")
_WEIGHTS = flags.DEFINE_string("weights", None, "With --backbone: `imagenet` (download, the "
                               "default) or a local weights file with the classifier top.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "With --backbone: input side in pixels.")
_LAYER = flags.DEFINE_string("layer", None, "Embedding layer (read from the SVM's record; "
                             "default without one: fc2 for VGG).")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write the SavedModel to.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes returned per image (at most the number "
                             "of classes).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it holds an earlier "
                               "export (and nothing else); the new export is written beside "
                               "it and swapped in when complete.")


def main(argv) -> int:
    from illustration_tl import export
    from illustration_tl.errors import UserError

    if not _OUTPUT.value:
        raise UserError("--output is required: the folder to write the SavedModel to")
    meta = export.export_from_artifacts(
        _OUTPUT.value, model_dir=_MODEL_DIR.value, backbone=_BACKBONE.value,
        weights=_WEIGHTS.value, image_size=_IMAGE_SIZE.value, svm_dir=_SVM_DIR.value,
        layer=_LAYER.value, top_k=_TOP_K.value, overwrite=_OVERWRITE.value)
    summary = {k: meta[k] for k in ("backbone", "image_size", "head", "svm")}
    print(f"wrote {_OUTPUT.value}: {json.dumps(summary)}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
