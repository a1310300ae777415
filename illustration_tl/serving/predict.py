"""Classify image files with an exported classifier (see :mod:`illustration_tl.serving.export`).

Any number of classes from 2 up: each file gets its ``top_k`` classes, at most
as many as the model has.

Files are decoded with :mod:`illustration_tl.datasets.ingestion`, exactly as the dataset
builder decodes them (format from the bytes, alpha on white, the same
``max_side`` downscale), then resized with the training pipeline's resize and
fed to the export's ``classify_images`` signature. So a file gets the same
pixels here as in the dataset, and the same scores as in the training
pipeline.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Iterable, Iterator, Sequence

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.errors import UserError


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one file, or why it was skipped."""

    path: str
    classes: list[str] = dataclasses.field(default_factory=list)
    indices: list[int] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    def to_table(self) -> str:
        if self.error:
            return f"{self.path}: skipped ({self.error})"
        rows = [f"{self.path}"] + [f"  {i + 1}. {name:<32} {score:10.4f}" for i, (name, score)
                                   in enumerate(zip(self.classes, self.scores))]
        return "\n".join(rows)


DEFAULT_MAX_SIDE = 512
"""The builder's default ``max_side``, for exports that record none."""


@dataclasses.dataclass
class PredictConfig:
    """The ``predict`` command's settings, one ``illustration-tl predict`` flag each
    (:mod:`config_flags`)."""

    model: str | None = common_settings.export_dir()
    images: tuple[str, ...] | None = setting(None, "Image files, folders (recursive) or globs.")
    top_k: int = setting(5, "How many classes to print per image (at most the model's number "
                         "of classes and the export's --top_k).")
    format: str = setting("table", "`table` for people, `json` for one JSON object per line.",
                          choices=("table", "json"))
    batch_size: int = common_settings.batch_size()
    max_side: int | None = optional("Downscale before resizing, as the dataset builder did "
                                    "(default: the max_side the export records, else "
                                    f"{DEFAULT_MAX_SIDE}).")


class Predictor:
    """A loaded export plus its metadata."""

    def __init__(self, path: str):
        import tensorflow as tf

        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UserError(f"--model={path!r} is not a SavedModel folder written by "
                            "`illustration-tl export`")
        self.path = path
        try:
            self._loaded = tf.saved_model.load(path)
            self.metadata = json.loads(self._loaded.metadata()["metadata"].numpy().decode())
            self.image_size = int(self.metadata["image_size"])
            self.class_names = [str(c) for c in self.metadata["class_names"]]
            # The dataset's stored side (builder max_side), as recorded through embed/svm.
            self.max_side = int(self.metadata.get("max_side") or DEFAULT_MAX_SIDE)
            self._loaded.signatures["classify_images"]
        except Exception as e:  # truncated variables, foreign SavedModel, bad metadata
            text = " ".join(str(e).split())[:200] or type(e).__name__
            raise UserError(f"--model={path!r}: cannot load this export ({type(e).__name__}: "
                            f"{text}); re-run `illustration-tl export`") from None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def classify_pixels(self, images: Any) -> dict:
        """Runs ``classify_images`` on float RGB images already at the model's size."""
        out = self._loaded.signatures["classify_images"](images=images)
        return {k: v.numpy() for k, v in out.items()}

    @staticmethod
    def decode(path: str, max_side: int | None) -> Any:
        """uint8 RGB pixels of ``path`` exactly as the dataset builder stores them."""
        from illustration_tl.datasets import ingestion

        return ingestion.load_image(path, max_side=max_side)

    def prepare(self, path: str, max_side: int | None) -> Any:
        """Decodes ``path`` like the dataset builder, then resizes like training."""
        from illustration_tl.datasets import input_pipeline

        return input_pipeline.resize(self.decode(path, max_side)[None], self.image_size,
                                     self.metadata.get("resize_mode", "squash"))[0]


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Files from paths, folders (recursive, every file) and globs, in order."""
    out: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            for root, dirs, names in os.walk(pattern):
                dirs.sort()
                out += [os.path.join(root, n) for n in sorted(names)]
        elif os.path.exists(pattern):
            out.append(pattern)
        else:
            matched = sorted(glob.glob(pattern, recursive=True))
            if not matched:
                raise UserError(f"--images={pattern!r} matches no file or folder")
            out += [m for m in matched if os.path.isfile(m)]
    return out


def predict_files(predictor: Predictor, paths: Iterable[str], top_k: int = 5,
                  batch_size: int = 32, max_side: int | None = 512) -> Iterator[Prediction]:
    """Yields one :class:`Prediction` per path, in order; bad files carry an error."""
    import tensorflow as tf

    from illustration_tl.datasets import ingestion

    batch: list[tuple[str, Any]] = []

    def flush() -> Iterator[Prediction]:
        if not batch:
            return
        out = predictor.classify_pixels(tf.stack([img for _, img in batch]))
        for row, (path, _) in enumerate(batch):
            k = min(top_k, out["scores"].shape[1])
            yield Prediction(path, [n.decode() for n in out["class_names"][row][:k]],
                             out["class_indices"][row][:k].tolist(),
                             out["scores"][row][:k].astype(float).tolist())
        batch.clear()

    for path in paths:
        try:
            batch.append((path, predictor.prepare(path, max_side)))
        except ingestion.IngestionError as e:
            yield Prediction(path, error=str(e))
            continue
        if len(batch) == batch_size:
            yield from flush()
    yield from flush()

