"""The Python API: ``fit`` a folder, ``load`` a model, ``predict`` images.

  import illustration_tl
  clf = illustration_tl.fit("my_icons", output="runs/mine")   # or load("runs/mine")
  names, probabilities = clf.predict(["a.png", "b.png"])

Quiet like the CLI (:mod:`illustration_tl.core.quiet`): importing this module
silences TensorFlow's C++ logging, absl's library lines and tqdm bars; progress
comes as plain lines on stderr (``verbose=1``, the default) or not at all
(``verbose=0``).

Safe in a plain script without an ``if __name__ == "__main__":`` guard and in a
notebook: the dataset is decoded in this process (``num_workers=1``), never in
spawned worker processes (which would re-run the script), and the search uses
threads.

Loading checks the model before TensorFlow sees it (an op allowlist, metadata
from JSON; see :mod:`illustration_tl.serving.model_check`): a model from
elsewhere that could touch files is refused with a :class:`UserError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import quiet
from illustration_tl.errors import UserError

quiet.install()
quiet.quiet_python_loggers()

ERRORS = ("skip", "raise")


@dataclasses.dataclass(frozen=True)
class SkippedInput:
    """An input :meth:`Classifier.predict` could not classify: its position, a
    printable name (the path, or ``<bytes #3>``) and the reason (one line)."""

    index: int
    name: str
    reason: str


class Predictions(tuple):
    """``(names, probabilities)`` (so ``names, probs = clf.predict(...)`` works) plus
    ``skipped``: the :class:`SkippedInput` of every input that was not classified.

    Row ``i`` is input ``i``; a skipped input has the name ``None`` and a row of NaN.
    With ``reject=True``, an input whose top probability is below the model's reject
    threshold has the name ``"unknown"`` (its probabilities are kept); ``threshold`` is
    that threshold (None without ``reject``)."""

    skipped: list[SkippedInput]
    threshold: float | None

    def __new__(cls, names: list[str | None], probabilities: np.ndarray,
                skipped: list[SkippedInput], threshold: float | None = None) -> Predictions:
        self = super().__new__(cls, (names, probabilities))
        self.skipped = skipped
        self.threshold = threshold
        return self

    @property
    def rejected(self) -> np.ndarray:
        """Per input: whether it was answered ``unknown`` (all False without ``reject``)."""
        from illustration_tl.evaluation import reject

        if self.threshold is None:
            return np.zeros(len(self.names), bool)
        scored = ~np.isnan(self.probabilities).any(axis=1)
        return scored & ~reject.accepted(self.probabilities, self.threshold)

    @property
    def names(self) -> list[str | None]:
        return self[0]

    @property
    def probabilities(self) -> np.ndarray:
        return self[1]


def _say_to(verbose: int) -> Callable[[str], None]:
    if verbose < 1:
        return lambda line: None
    return lambda line: print(line, file=sys.stderr, flush=True)


class Classifier:
    """A fitted model: its SavedModel, class names and (for a ``fit`` run) its summary.

    ``path``: a ``fit`` run folder, a ``reproduce`` output folder, an ``export``
    folder or the SavedModel folder itself
    (:func:`illustration_tl.serving.predict.resolve_model_dir`).
    """

    def __init__(self, path: str, verbose: int = 1):
        from illustration_tl.serving import predict

        self.run_dir = os.fspath(path)
        self.verbose = verbose
        self.summary = _fit_summary(self.run_dir)
        if self.summary and self.summary.get("status") != "done":  # a killed or running fit
            raise UserError(f"{self.run_dir!r}: the fit run did not finish (fit.json says "
                            f"{self.summary.get('status')!r}); rerun the same fit command")
        # The same loader, checks, decoding and resizing as `illustration-tl predict`.
        self._predictor = predict.Predictor(self.run_dir, flag="path")
        self.model_dir = self._predictor.path
        self.metadata = self._predictor.metadata
        self.class_names: list[str] = self._predictor.class_names
        self.image_size = self._predictor.image_size
        self.resize_mode = self.metadata.get("resize_mode", "squash")
        self.last_skipped: list[SkippedInput] = []

    def __repr__(self) -> str:
        return (f"Classifier({self.run_dir!r}, {len(self.class_names)} classes, "
                f"{self.metadata.get('label') or self.metadata.get('head')})")

    def pixels(self, inputs: Sequence[Any], max_side: int | None = None) -> Any:
        """Images decoded as the dataset builder decodes them, resized as in training
        (raises on the first input that cannot be decoded): one batch, or for a model of
        several input sizes (``fit --scales``) a tuple of one batch per size."""
        side = max_side or self._predictor.max_side
        return self._predictor.stack([self._predictor.prepare_any(x, side)
                                       for x in _as_list(inputs)])

    def reject_threshold(self) -> float:
        """The top probability below which ``predict(..., reject=True)`` answers
        ``unknown`` (stored by ``fit``); :class:`UserError` naming the model and the fix
        when it has none."""
        return self._predictor.reject_threshold(flag="reject=True").threshold

    def predict_proba(self, inputs: Any, batch_size: int = 32, errors: str = "skip",
                      max_side: int | None = None) -> np.ndarray:
        """Probabilities (n, num_classes), columns in ``class_names`` order, row ``i``
        for input ``i``. See :meth:`predict` for ``inputs`` and ``errors``; the skipped
        inputs of the last call are in ``last_skipped``."""
        return self.predict(inputs, batch_size=batch_size, errors=errors,
                            max_side=max_side).probabilities

    def predict(self, inputs: Any, batch_size: int = 32, errors: str = "skip",
                max_side: int | None = None, reject: bool = False) -> Predictions:
        """``(class name of each input, probabilities (n, num_classes))``.

        ``inputs``: one input or a list of them; each a file path, the bytes of an
        encoded image (PNG, JPEG, GIF, BMP, WebP, TIFF, SVG), a PIL image or a NumPy
        array (H x W x 3 RGB or H x W x 4 RGBA, or H x W gray; uint8, or floats on
        the same 0-255 scale, rounded). Every input is decoded like a file of the
        dataset (alpha on white, downscaled to ``max_side``, the model's default),
        then resized as in training.

        ``errors="skip"`` (default): an input that cannot be read or decoded is
        skipped: its name is ``None``, its row NaN, and it is listed (index, name,
        reason) in the result's ``skipped`` (and ``self.last_skipped``), and named on
        stderr when ``verbose``. ``errors="raise"``: the first such input raises
        :class:`UserError` naming it.

        ``reject=True``: an input whose top probability is below the reject threshold
        ``fit`` stored with the model is named ``"unknown"`` ("none of these";
        :mod:`illustration_tl.evaluation.reject`); a model without a threshold raises
        :class:`UserError` before anything is classified.
        """

        if errors not in ERRORS:
            raise UserError(f"errors={errors!r}: choose 'skip' or 'raise'")
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size}: at least 1")
        from illustration_tl.datasets import ingestion
        from illustration_tl.serving import predict

        threshold = self.reject_threshold() if reject else None
        items = _as_list(inputs)
        side = max_side or self._predictor.max_side
        probs = np.full((len(items), len(self.class_names)), np.nan)
        skipped: list[SkippedInput] = []
        say = _say_to(self.verbose)
        batch: list[tuple[int, Any]] = []

        def flush() -> None:
            if batch:
                out = self._predictor.classify_pixels(
                    self._predictor.stack([px for _, px in batch]))
                scores = out.get("probabilities", out["all_scores"])
                probs[[i for i, _ in batch]] = np.asarray(scores, np.float64)
                batch.clear()

        for i, item in enumerate(items):
            try:
                batch.append((i, self._predictor.prepare_any(item, side)))
            except (ingestion.IngestionError, predict.UnsupportedInput) as e:
                name, reason = _input_name(item, i), predict.safe_reason(str(e))
                if errors == "raise":
                    raise UserError(f"{name}: {reason}") from None
                skipped.append(SkippedInput(i, name, reason))
                say(f"skipped {name}: {reason}")
            if len(batch) >= batch_size:
                flush()
        flush()
        self.last_skipped = skipped
        done = {s.index for s in skipped}
        names = [None if i in done else self.class_names[int(np.argmax(probs[i]))]
                 for i in range(len(items))]
        result = Predictions(names, probs, skipped, threshold)
        if threshold is not None:
            from illustration_tl.evaluation import reject as reject_lib

            for i in np.flatnonzero(result.rejected):
                names[int(i)] = reject_lib.UNKNOWN
        return result


def _as_list(inputs: Any) -> list[Any]:
    """One input or a sequence of inputs, as a list (a 4-D array is a batch)."""
    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        return list(inputs) if inputs.ndim == 4 else [inputs]
    if type(inputs).__module__.startswith("PIL."):
        return [inputs]
    return list(inputs)


def _input_name(item: Any, index: int) -> str:
    from illustration_tl.core import files

    if isinstance(item, (str, os.PathLike)):
        return files.display_name(os.fspath(item))
    return f"<{type(item).__name__} #{index}>"


def _fit_summary(path: str) -> dict[str, Any]:
    """``fit.json`` of a ``fit`` run folder, or ``{}`` (not a fit run, or a file that
    is missing or not a JSON object: the model alone is enough to predict)."""
    from illustration_tl.core import files
    from illustration_tl.pipelines import fit as fitting

    try:
        doc = json.loads(files.read_regular_file(os.path.join(path, fitting.MARKER),
                                                 16 * 1024 * 1024).decode("utf-8"))
    except (files.UnreadableFile, UnicodeDecodeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def fit(images: str, output: str, *, backbone: str = "vgg16", weights: str | None = "imagenet",
        search: str = "fast", verbose: int = 1, **options: Any) -> Classifier:
    """Runs (or resumes) ``illustration-tl fit`` and returns the :class:`Classifier`.

    ``options``: any other :class:`illustration_tl.pipelines.fit.FitConfig` field
    (``image_size``, ``resize_modes``, ``flip``, ``cv_folds`` as ``folds``, ...).
    ``verbose``: 1 (default) prints progress and the summary as plain lines, 0 nothing.
    """
    from illustration_tl.pipelines import fit as fitting
    from illustration_tl.pipelines import fit_summary

    say = _say_to(verbose)
    options.setdefault("num_workers", 1)  # no spawned processes: safe without a __main__ guard
    summary = fitting.run(fitting.FitConfig(images=os.fspath(images), output=os.fspath(output),
                                            backbone=backbone, weights=weights, search=search,
                                            **options), log=say)
    if verbose >= 1:
        for line in fit_summary.summary_lines(summary):
            print(line, flush=True)
    return Classifier(os.fspath(output), verbose=verbose)


def load(path: str, verbose: int = 1) -> Classifier:
    """The classifier of a ``fit`` run folder, a ``reproduce`` output folder, an
    ``export`` folder or a SavedModel folder of this project (checked before loading:
    :mod:`illustration_tl.serving.model_check`)."""
    return Classifier(os.fspath(path), verbose=verbose)
