"""``fit``'s extractor as an Apache Beam ``RunInference`` model handler (the ``tfds-cli``
extra).

Beam's own TensorFlow handler (``apache_beam.ml.inference.tensorflow_inference``) does not
fit this model, so this module subclasses :class:`apache_beam.ml.inference.base.ModelHandler`:

* it imports ``tensorflow_hub`` at module import (a Keras 2 era package this project does
  not install), and loads a model from a saved file (``tf.keras.models.load_model`` or
  ``create_model_fn`` + ``load_weights``), where ``fit``'s extractor is built in-process
  from the backbone table, ``--weights`` (ImageNet, a file, or random weights seeded by
  ``--seed``) and ``--precision`` (:func:`illustration_tl.features.multilayer.extractor`);
* its inference function pairs the *i*-th input with the *i*-th output of a model
  returning one tensor, where the extractor returns one tensor per block (``paper``,
  ``<layer>:avg``, ``<layer>:max``, ...), and it runs each image once, where ``fit`` runs
  it twice (the image and its mirror image);
* the images must be decoded, resized and preprocessed exactly as the local extraction
  does: this handler feeds each batch of encoded images through the same
  :func:`illustration_tl.datasets.input_pipeline.make_dataset`, per resize mode.

Every element is ``(resize mode, encoded image, label, file name)``; its inference is a
dict ``<view>/<block>`` -> float32 row, in the order the local extraction writes its
shards (views, then blocks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

# (resize mode, encoded image bytes, label, file name)
Element = tuple[str, bytes, int, str]


@dataclasses.dataclass(frozen=True)
class ExtractorRecipe:
    """What :func:`illustration_tl.features.multilayer.extractor` is built from, resolved on
    the launcher (``precision`` is ``float32`` or ``bfloat16``, never ``auto``: workers
    compute what the launcher decided), plus the views to run."""

    backbone: str
    weights: str | None
    image_size: int | None
    layers: tuple[str, ...] | None
    seed: int
    hub_config: dict[str, Any] | None
    include_top: str
    precision: str
    views: tuple[str, ...]


@dataclasses.dataclass
class LoadedExtractor:
    """The extractor on a worker: its compiled call, block names and embedding source."""

    predict: Any
    blocks: list[str]
    source: Any


class ExtractorHandler(ModelHandler[Element, PredictionResult, LoadedExtractor]):
    """Runs ``fit``'s multi-layer extractor over batches of encoded images."""

    def __init__(self, recipe: ExtractorRecipe, batch_size: int) -> None:
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.recipe = recipe

    def load_model(self) -> LoadedExtractor:
        import tensorflow as tf

        from illustration_tl.features import multilayer

        r = self.recipe
        model, blocks, source = multilayer.extractor(
            r.backbone, r.weights, r.image_size, r.layers, r.seed, r.hub_config,
            r.include_top, r.precision)
        # the local extraction's call (multilayer._extract_rows)
        predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return LoadedExtractor(predict, blocks, source)

    def run_inference(self, batch: Sequence[Element], model: LoadedExtractor,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        rows: list[dict[str, np.ndarray] | None] = [None] * len(batch)
        for mode in dict.fromkeys(e[0] for e in batch):
            at = [i for i, e in enumerate(batch) if e[0] == mode]
            for i, row in zip(at, self._embed([batch[i] for i in at], mode, model)):
                rows[i] = row
        return [PredictionResult(e, row) for e, row in zip(batch, rows)]

    def _embed(self, elements: Sequence[Element], mode: str, model: LoadedExtractor
               ) -> list[dict[str, np.ndarray]]:
        """One row dict per element, all of resize mode ``mode``."""
        import tensorflow as tf

        from illustration_tl.datasets import input_pipeline
        from illustration_tl.features import store

        ds = tf.data.Dataset.from_tensor_slices({
            "image": tf.constant([e[1] for e in elements], tf.string),
            "label": tf.constant([e[2] for e in elements], tf.int64),
            "file_name": tf.constant([e[3] for e in elements], tf.string)})
        images, _, _ = next(iter(input_pipeline.make_dataset(
            ds, backbone=model.source.backbone, image_size=model.source.image_size,
            batch_size=len(elements), training=False, resize_mode=mode,
            with_file_names=True)))
        out: dict[str, np.ndarray] = {}
        for view in self.recipe.views:
            x = tf.image.flip_left_right(images) if view == "flip" else images
            for b, o in zip(model.blocks, model.predict(x)):
                out[store.key_in_mode(view, b)] = np.asarray(o, np.float32)
        return [{k: v[i] for k, v in out.items()} for i in range(len(elements))]

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        return sum(len(e[1]) for e in batch)

    def get_metrics_namespace(self) -> str:
        return "illustration_tl_features"
