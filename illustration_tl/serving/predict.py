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
import re
import stat
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.errors import UserError
from illustration_tl.evaluation import reject as reject_lib


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one file, or why it was skipped. ``answer`` (only with
    ``--reject``): the top class, or ``unknown`` when its probability is below the
    model's reject threshold (:mod:`illustration_tl.evaluation.reject`)."""

    path: str
    classes: list[str] = dataclasses.field(default_factory=list)
    indices: list[int] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None
    answer: str | None = None

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        if self.answer is None:  # without --reject: the output of before the reject option
            del doc["answer"]
        return json.dumps(doc, ensure_ascii=False)

    def to_table(self) -> str:
        if self.error:
            return f"{self.path}: skipped ({self.error})"
        head = f"{self.path}" + ("" if self.answer is None else f": {self.answer}")
        rows = [head] + [f"  {i + 1}. {name:<32} {score:10.4f}" for i, (name, score)
                         in enumerate(zip(self.classes, self.scores))]
        return "\n".join(rows)


DEFAULT_MAX_SIDE = 512
"""The builder's default ``max_side``, for exports that record none."""

REJECT_HELP = ("Answer `unknown` for images whose top probability is below the reject "
               "threshold `fit` stored with the model (chosen on its cross-validation folds "
               "for fit --reject_precision).")
"""The help of ``predict --reject`` and ``evaluate --reject`` (one text per flag name)."""


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
    reject: bool = setting(False, REJECT_HELP)


MODEL_LAYOUTS = (("", "an `export` output or the SavedModel folder itself"),
                 ("model", "a `fit` run folder"),
                 (os.path.join("export", "saved_model"), "a `reproduce` output folder"))
"""Where each kind of folder keeps its SavedModel, relative to the folder given."""


def resolve_model_dir(path: str, flag: str = "--model") -> str:
    """The SavedModel folder of ``path``: a `fit` run folder (``run/model``), a
    ``reproduce`` output folder (``out/export/saved_model``), an ``export`` folder or
    the SavedModel folder itself. One-line :class:`UserError` naming the four kinds
    otherwise. Only regular files count (a FIFO named ``saved_model.pb`` does not)."""
    if not os.path.isdir(path):
        raise UserError(f"{flag}={path!r} is not a folder; give a `fit` run folder, a "
                        "`reproduce` output folder, an `export` folder or a SavedModel folder")
    for sub, _ in MODEL_LAYOUTS:
        candidate = os.path.join(path, sub) if sub else path
        try:
            st = os.stat(os.path.join(candidate, "saved_model.pb"))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return candidate
    raise UserError(f"{flag}={path!r} is not a SavedModel folder written by illustration-tl "
                    "(no saved_model.pb in it, in model/ or in export/saved_model/); give a "
                    "`fit` run folder, a `reproduce` output folder, an `export` folder or the "
                    "SavedModel folder itself")


class Predictor:
    """A loaded export plus its metadata.

    ``path``: any folder :func:`resolve_model_dir` accepts. Before TensorFlow loads
    anything, the SavedModel's ops are checked against the project's allowlist
    (:mod:`illustration_tl.serving.model_check`) and the metadata is read from the
    JSON file beside it (never by running a model function); ``flag`` names the
    flag or argument in error lines."""

    def __init__(self, path: str, flag: str = "--model"):
        import tensorflow as tf

        from illustration_tl.serving import export, model_check

        model_dir = resolve_model_dir(path, flag)
        self.path = model_dir
        model_check.check_saved_model(model_dir, flag)
        self.metadata = export.read_metadata(model_dir, flag)
        self.image_size = int(self.metadata["image_size"])
        # fit --scales: the sizes whose heads the model averages (the main one first)
        self.sizes = [int(s) for s in self.metadata.get("scales") or [self.image_size]]
        self.class_names = [str(c) for c in self.metadata["class_names"]]
        # The dataset's stored side (builder max_side), as recorded through embed/svm.
        self.max_side = int(self.metadata.get("max_side") or DEFAULT_MAX_SIDE)
        try:
            self._loaded = tf.saved_model.load(model_dir)
            self._loaded.signatures["classify_images"]
        except Exception as e:  # truncated variables, foreign SavedModel
            text = " ".join(str(e).split())[:200] or type(e).__name__
            raise UserError(f"{flag}={model_dir!r}: cannot load this export "
                            f"({type(e).__name__}: {text}); re-run `illustration-tl export`"
                            ) from None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def reject_threshold(self, flag: str = "--reject") -> reject_lib.RejectThreshold:
        """The reject threshold stored in the model's metadata (``fit`` writes it); a
        one-line :class:`UserError` naming the model and the fix when it has none."""
        doc = self.metadata.get("reject")
        if doc is None:
            raise UserError(f"{flag}: the model {self.path!r} has no reject threshold (a `fit` "
                            "model from before the reject option, or not a `fit` model); "
                            "rerun `illustration-tl fit` with the same --output to add one, "
                            f"or leave out {flag}")
        try:
            return reject_lib.RejectThreshold.from_dict(doc)
        except ValueError as e:
            raise UserError(f"{flag}: the model {self.path!r}: {e}; rerun "
                            "`illustration-tl fit` with the same --output") from None

    def classify_pixels(self, images: Any) -> dict:
        """Runs ``classify_images`` on float RGB images already at the model's size (what
        :meth:`stack` gives: one batch per size for a model of several)."""
        if len(self.sizes) == 1:
            out = self._loaded.signatures["classify_images"](images=images)
        else:
            out = self._loaded.signatures["classify_images"](images=images[0], **{
                f"images_{s}": x for s, x in zip(self.sizes[1:], images[1:])})
        return {k: v.numpy() for k, v in out.items()}

    def stack(self, prepared: Sequence[Any]) -> Any:
        """The batch of images :meth:`prepare` gave, for :meth:`classify_pixels`: one
        tensor, or for a model of several sizes a tuple of one tensor per size."""
        import tensorflow as tf

        if len(self.sizes) == 1:
            return tf.stack(prepared)
        return tuple(tf.stack(parts) for parts in zip(*prepared))

    @staticmethod
    def decode(path: str, max_side: int | None) -> Any:
        """uint8 RGB pixels of ``path`` exactly as the dataset builder stores them."""
        from illustration_tl.datasets import ingestion

        return ingestion.load_image(path, max_side=max_side)

    def _resize(self, pixels: Any) -> Any:
        """Resized like training: the pixels at the model's size, or for a model of
        several sizes a tuple of them at each size (from the same decoded image)."""
        from illustration_tl.datasets import input_pipeline

        mode = self.metadata.get("resize_mode", "squash")
        out = tuple(input_pipeline.resize(pixels[None], s, mode)[0] for s in self.sizes)
        return out[0] if len(out) == 1 else out

    def prepare(self, path: str, max_side: int | None) -> Any:
        """Decodes ``path`` (a file path, or an encoded image's bytes) like the dataset
        builder, then resizes like training."""
        return self._resize(self.decode(path, max_side))

    def decode_bytes(self, data: bytes, max_side: int | None) -> Any:
        """:meth:`prepare` for the bytes of an encoded image (what ``serve`` receives)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UnsupportedInput(f"expected bytes, got {type(data).__name__}")
        return self.prepare(bytes(data), max_side)

    def prepare_any(self, item: Any, max_side: int | None) -> Any:
        """:meth:`prepare` for a path, bytes, a PIL image or a NumPy array (H x W x 3 RGB,
        H x W x 4 RGBA or H x W gray; uint8, or floats on the 0-255 scale, rounded):
        every kind becomes a Pillow image decoded like a dataset file (alpha on white,
        ``max_side`` downscale), then is resized like training. Raises
        :class:`~illustration_tl.datasets.ingestion.IngestionError` or
        :class:`UnsupportedInput` with a one-line reason."""
        from PIL import Image

        from illustration_tl.datasets import ingestion

        if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
            return self.prepare(item, max_side)
        if isinstance(item, Image.Image):
            image = item
        elif isinstance(item, np.ndarray):
            image = _array_image(item)
        else:
            raise UnsupportedInput(f"cannot classify a {type(item).__name__}: give a path, "
                                   "bytes, a PIL image or a NumPy array")
        try:
            image.load()
            return self._resize(ingestion.to_rgb_array(image, max_side=max_side))
        except (OSError, ValueError, SyntaxError) as e:
            raise ingestion.IngestionError(f"image could not be decoded: "
                                           f"{type(e).__name__}") from None


class UnsupportedInput(ValueError):
    """An input of a kind :meth:`Predictor.prepare_any` does not take (one line)."""


def _array_image(array: np.ndarray) -> Any:
    """A NumPy image as a Pillow image (see :meth:`Predictor.prepare_any`)."""
    from PIL import Image

    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise UnsupportedInput(f"an array image is H x W x 3 (or x 4, or H x W); got shape "
                               f"{tuple(array.shape)}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "fiu":
            raise UnsupportedInput(f"an array image holds numbers; got dtype {array.dtype}")
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise UnsupportedInput("the array holds NaN or infinite values")
        array = np.clip(np.round(values), 0, 255).astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode)


_BYTES_ECHO = re.compile(r" starting with b(['\"]).*$")


def safe_reason(reason: str) -> str:
    """An ingestion error as one printable line that quotes none of the file's bytes."""
    from illustration_tl.core import files

    return files.display_name(_BYTES_ECHO.sub("", " ".join(reason.split())))[:300]


def expand_inputs(patterns: Sequence[str],
                  on_skip: Callable[[str, str], None] | None = None) -> list[str]:
    """Files from paths, folders (recursive) and globs, in order.

    Only regular files are kept. A folder is walked with
    :func:`illustration_tl.core.files.walk`: symlinks leading out of it, FIFOs,
    devices, sockets and hidden entries are left out, each but hidden ones reported to
    ``on_skip(shown path, reason)``, and never opened. A glob keeps the regular files it
    matches that are not symlinks (a symlink matched by a glob is reported); a file
    named explicitly is kept as given (opening it later refuses anything but a regular
    file)."""
    from illustration_tl.core import files

    report = on_skip or (lambda path, reason: None)
    out: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            def skipped(s: Any, root: str = pattern) -> None:
                report(files.display_name(os.path.join(root, s.rel)), s.reason)
            out += [os.path.join(pattern, *rel.split("/"))
                    for rel in files.walk(pattern, on_skip=skipped)]
        elif os.path.lexists(pattern):
            out.append(pattern)
        else:
            matched = sorted(glob.glob(pattern, recursive=True))
            if not matched:
                raise UserError(f"--images={files.display_name(pattern)!r} matches no file or "
                                "folder")
            for m in matched:
                st = os.lstat(m)
                if stat.S_ISREG(st.st_mode):
                    out.append(m)
                elif not stat.S_ISDIR(st.st_mode):
                    report(files.display_name(m), "a symlink or special file matched by a "
                           "glob; not opened")
    return out


def answers(out: dict, threshold: float | None) -> list[str] | None:
    """Per row of a ``classify_images`` output: the top class, or ``unknown`` when the top
    probability is below ``threshold`` (None: no reject option, None returned)."""
    if threshold is None:
        return None
    probs = np.asarray(out.get("probabilities", out["all_scores"]), np.float64)
    keep = reject_lib.accepted(probs, threshold)
    return [n.decode("utf-8", "replace") if ok else reject_lib.UNKNOWN
            for n, ok in zip(out["class_names"][:, 0], keep)]


def predict_files(predictor: Predictor, paths: Iterable[str], top_k: int = 5,
                  batch_size: int = 32, max_side: int | None = 512,
                  reject: reject_lib.RejectThreshold | None = None) -> Iterator[Prediction]:
    """Yields one :class:`Prediction` per path, in order; bad files carry an error.
    Paths are shown with :func:`~illustration_tl.core.files.display_name` (printable on a
    strict UTF-8 console) and errors quote none of a file's bytes. ``reject``: each
    prediction's ``answer`` is its top class or ``unknown`` (:func:`answers`)."""
    from illustration_tl.core import files
    from illustration_tl.datasets import ingestion

    batch: list[tuple[str, Any]] = []

    def flush() -> Iterator[Prediction]:
        if not batch:
            return
        out = predictor.classify_pixels(predictor.stack([img for _, img in batch]))
        said = answers(out, None if reject is None else reject.threshold)
        for row, (path, _) in enumerate(batch):
            k = min(top_k, out["scores"].shape[1])
            yield Prediction(files.display_name(path),
                             [n.decode("utf-8", "replace") for n in out["class_names"][row][:k]],
                             out["class_indices"][row][:k].tolist(),
                             out["scores"][row][:k].astype(float).tolist(),
                             answer=None if said is None else said[row])
        batch.clear()

    for path in paths:
        try:
            batch.append((path, predictor.prepare(path, max_side)))
        except ingestion.IngestionError as e:
            yield Prediction(files.display_name(path), error=safe_reason(str(e)))
            continue
        if len(batch) == batch_size:
            yield from flush()
    yield from flush()
