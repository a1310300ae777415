"""``illustration-tl export``: CNN (+ SVM) as one SavedModel (paper §7.2 best model).

Examples::

  illustration-tl export --svm_dir=runs/svm_optimized --output=runs/export
  illustration-tl export --backbone=vgg19 --weights=imagenet --output=runs/vgg19_imagenet

The classifier is the SVM of --svm_dir on the embedding model its record names,
else the softmax head of --model_dir (an ``optimize`` output), else the ImageNet
classifier --backbone names (--weights: imagenet unless given; --image_size: the
backbone's unless given). Model flags given beside --svm_dir must match its record.

The SavedModel has a ``serving_default`` signature on encoded image bytes, a
``classify_images`` signature on float RGB batches already resized, and a
``metadata`` signature. Inspect it with ``saved_model_cli show --all --dir=...``.

--output must be a new or empty folder; with --overwrite it may be an earlier
export (recognized by its ``illustration_tl_output.json``) holding nothing
else. Folders with other files, and the current folder, are always refused.
The SVM is read as the head the ``svm`` stage wrote, ``head.npz`` + ``head.json``
+ ``svm.json`` (an earlier version's ``svm.npz`` as the same head), never a pickle;
the SavedModel is built by the one graph builder ``fit`` uses too.
"""

import json

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.serving.export import ExportConfig

# One flag per field of ExportConfig: names, defaults and help live there.
FLAGS = config_flags.define(ExportConfig)


def config() -> ExportConfig:
    """The :class:`export.ExportConfig` the flags describe (None: a flag not given)."""
    return ExportConfig(**config_flags.values(FLAGS, ExportConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.serving import export

    cfg = config()
    if not cfg.output:
        raise UserError("--output is required: the folder to write the SavedModel to")
    meta = export.export_from_artifacts(
        cfg.output, model_dir=cfg.model_dir, backbone=cfg.backbone, weights=cfg.weights,
        image_size=cfg.image_size, svm_dir=cfg.svm_dir, layer=cfg.layer, top_k=cfg.top_k,
        overwrite=cfg.overwrite)
    summary = {k: meta[k] for k in ("backbone", "image_size", "head", "svm")}
    print(f"wrote {cfg.output}: {json.dumps(summary)}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
