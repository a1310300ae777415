"""``illustration-tl predict --model=EXPORT --images=PATH_OR_GLOB --top_k=5``.

Classifies image files with a model of this project: a ``fit`` run folder, a
``reproduce`` output folder, an ``export`` folder or the SavedModel itself (checked
before it is loaded: :mod:`illustration_tl.serving.model_check`). Folders are read
recursively, only regular files inside them (symlinks leading out, FIFOs and
devices are listed as skipped, never opened); a file that is not an image is
reported and skipped, and the exit status is 3 when any file was skipped (0
otherwise). With ``--reject`` each image also gets an answer: its top class, or
``unknown`` when the top probability is below the threshold ``fit`` stored with the
model (a model without one is refused in one line, exit 2).
"""

import sys

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.serving.predict import PredictConfig

# One flag per field of PredictConfig: names, defaults and help live there.
FLAGS = config_flags.define(PredictConfig)

SKIPPED_EXIT_CODE = 3


def config() -> PredictConfig:
    """The :class:`predict.PredictConfig` the flags describe."""
    return PredictConfig(**config_flags.values(FLAGS, PredictConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.serving import predict

    cfg = config()
    if not cfg.model or not cfg.images:
        raise UserError("--model and --images are required")
    if cfg.top_k < 1:
        raise UserError(f"--top_k={cfg.top_k}: give at least 1")
    if cfg.batch_size < 1:
        raise UserError(f"--batch_size={cfg.batch_size}: give at least 1")
    if cfg.max_side is not None and cfg.max_side < 1:
        raise UserError(f"--max_side={cfg.max_side}: give a positive number of pixels")
    predictor = predict.Predictor(cfg.model)
    threshold = predictor.reject_threshold() if cfg.reject else None
    refused: list[predict.Prediction] = []
    paths = predict.expand_inputs(
        cfg.images, on_skip=lambda path, why: refused.append(predict.Prediction(path, error=why)))

    def show(p: predict.Prediction) -> None:
        print(p.to_json() if cfg.format == "json" else p.to_table(), flush=True)

    for p in refused:  # symlinks out of a folder, FIFOs, devices: listed, never opened
        show(p)
    skipped = len(refused)
    for p in predict.predict_files(predictor, paths, cfg.top_k, cfg.batch_size,
                                   cfg.max_side or predictor.max_side, threshold):
        skipped += p.error is not None
        show(p)
    if skipped:
        print(f"{skipped} of {len(paths) + len(refused)} files skipped (not regular files "
              "inside the input, or not decodable images)", file=sys.stderr)
        return SKIPPED_EXIT_CODE
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
