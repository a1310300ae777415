"""The Python API: ``fit`` a folder, ``load`` a run, ``predict`` files.

  import illustration_tl
  clf = illustration_tl.fit("my_icons", output="runs/mine")   # or load("runs/mine")
  names, probabilities = clf.predict(["a.png", "b.png"])

Safe in a plain script without an ``if __name__ == "__main__":`` guard and in a
notebook: the dataset is decoded in this process (``num_workers=1``), never in
spawned worker processes (which would re-run the script), and the search uses
threads.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

from illustration_tl.errors import UserError


class Classifier:
    """A fitted ``fit`` run: its SavedModel, class names and chosen configuration."""

    def __init__(self, run_dir: str):
        from illustration_tl.pipelines import fit as fitting

        self.run_dir = run_dir
        self.model_dir = os.path.join(run_dir, "model")
        marker = os.path.join(run_dir, fitting.MARKER)
        if not os.path.isfile(os.path.join(self.model_dir, "saved_model.pb")):
            raise UserError(f"{run_dir!r} holds no finished `fit` run (no model/saved_model.pb)")
        with open(marker, encoding="utf-8") as f:
            self.summary = json.load(f)
        from illustration_tl.serving import predict

        # The same loader, decoding and resizing as `illustration-tl predict`.
        self._predictor = predict.Predictor(self.model_dir)
        self.metadata = self._predictor.metadata
        self.class_names: list[str] = self._predictor.class_names
        self.image_size = self._predictor.image_size
        self.resize_mode = self.metadata["resize_mode"]

    def __repr__(self) -> str:
        return (f"Classifier({self.run_dir!r}, {len(self.class_names)} classes, "
                f"{self.metadata.get('label')})")

    def pixels(self, paths: Sequence[str], max_side: int | None = None) -> Any:
        """Images decoded as the dataset builder decodes them, resized as in training."""
        import tensorflow as tf

        side = max_side or self._predictor.max_side
        return tf.stack([self._predictor.prepare(p, side) for p in paths])

    def predict_proba(self, paths: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Calibrated probabilities (n, num_classes), columns in ``class_names`` order."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        out = []
        for i in range(0, len(paths), batch_size):
            res = self._predictor.classify_pixels(self.pixels(paths[i:i + batch_size]))
            out.append(res["probabilities"].astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)))

    def predict(self, paths: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """``(class name of each file, probabilities (n, num_classes))``."""
        probs = self.predict_proba(paths)
        return [self.class_names[i] for i in probs.argmax(axis=1)], probs


def fit(images: str, output: str, *, backbone: str = "vgg16", weights: str | None = "imagenet",
        search: str = "fast", **options: Any) -> Classifier:
    """Runs (or resumes) ``illustration-tl fit`` and returns the :class:`Classifier`.

    ``options``: any other :class:`illustration_tl.pipelines.fit.FitConfig` field
    (``image_size``, ``resize_modes``, ``flip``, ``cv_folds`` as ``folds``, ...).
    """
    from illustration_tl.pipelines import fit as fitting

    options.setdefault("num_workers", 1)  # no spawned processes: safe without a __main__ guard
    summary = fitting.run(fitting.FitConfig(images=os.fspath(images), output=os.fspath(output),
                                            backbone=backbone, weights=weights, search=search,
                                            **options))
    for line in fitting.summary_lines(summary):
        print(line)
    return Classifier(os.fspath(output))


def load(run_dir: str) -> Classifier:
    """The classifier of a finished ``fit`` run folder."""
    return Classifier(os.fspath(run_dir))
