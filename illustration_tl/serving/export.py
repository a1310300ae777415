"""One SavedModel for the whole classifier: image bytes in, top-k classes out.

Every served model of this project, the paper's best model (§7.2: a CNN whose fc2
activations feed an SVM) and ``fit``'s (a multilayer feature extractor and its head),
is built by one function, :func:`write_classifier`: the extractor, the
:class:`illustration_tl.heads.head.Head` (or the CNN's own softmax when there is
none) and the top-k, written with Keras 3's ``keras.export.ExportArchive`` (not the
legacy ``save_format="tf"``) by :func:`write_archive`:

* ``serving_default(image_bytes: string[B])``: decode PNG/JPEG/GIF/BMP/WebP,
  composite alpha on white, resize to the model's input size, the backbone's
  ``preprocess_input``, the extractor, then the head's calibrated probabilities
  (or the CNN's own softmax head when there is no head) and the top-k;
* ``classify_images(images: float32[B, S, S, 3])``: the same from RGB pixels in
  [0, 255] already decoded and resized (what ``predict`` feeds after decoding
  with :mod:`illustration_tl.datasets.ingestion`, so its pixels equal the dataset's);
* ``metadata()``: a JSON string with class names, wnids, image size, backbone,
  the head (its configuration, temperature, SVM parameters) and the sources, also
  written beside the SavedModel as :data:`METADATA_FILE`.

Both classifying signatures return ``class_names`` (string[B, k]),
``class_indices`` (int32[B, k]), ``scores`` (float32[B, k]: the top-k
probabilities) and ``all_scores`` (float32[B, n_classes]), plus ``probabilities``
(the same as ``all_scores``) when a head classifies, for any number of classes from
2 up (``k`` is at most the number of classes).

On a Keras backend other than TensorFlow (``KERAS_BACKEND=jax``) the network's
layers run JAX ops, which a TensorFlow graph cannot hold (``ExportArchive`` would
convert the whole endpoint with ``jax2tf``, string inputs and TensorFlow image
decoding included, and its graph would hold an opaque ``XlaCallModule`` that
:mod:`illustration_tl.serving.model_check` refuses). :func:`tf_model` therefore
rebuilds the network with TensorFlow: the model, weights included, is saved as a
``.keras`` file and reloaded by a TensorFlow-backend subprocess, and the graph it
writes is what the endpoints call. Every backend's export holds the same ops.

The ``svm`` stage's head comes from ``head.npz`` + ``head.json`` (plain arrays, no
pickle; an earlier version's ``svm.npz`` is read as the same head). The export folder
is written beside the target and swapped in when complete
(:func:`illustration_tl.core.outputs.writing`): an existing target is replaced only
with ``overwrite`` and only if it is an earlier export holding nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Sequence

from illustration_tl.core import common_settings, outputs
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.features.store import PAPER_BLOCK
from illustration_tl.models import backbones

FORMAT = "illustration-tl classifier v1"   # the metadata of every export (fit's names its own)
METADATA_FILE = "illustration_tl.json"
OUTPUT_MARKER = "export"  # outputs.prepare_output marker of an export folder
TWIN_BACKEND = "tensorflow"  # the Keras backend whose ops a SavedModel can hold
TWIN_ENDPOINT = "call"       # the twin SavedModel's one function: the model, training=False


def tf_model(model: Any) -> Callable[[Any], Any]:
    """``model`` (inference mode) as a function of TensorFlow tensors, for the
    endpoints of :func:`write_archive`. On the TensorFlow backend that is the model
    itself; on another backend (JAX) it is the model rebuilt by TensorFlow
    (:func:`_tensorflow_twin`), with the same weights and outputs."""
    import keras

    if keras.backend.backend() == TWIN_BACKEND:
        return lambda x: model(x, training=False)
    return _tensorflow_twin(model)


def _tensorflow_twin(model: Any) -> Callable[[Any], Any]:
    """The Keras ``model`` of a non-TensorFlow backend as TensorFlow ops: saved to a
    ``.keras`` file, loaded by a subprocess on the TensorFlow backend
    (:func:`_write_twin`), written as a SavedModel of one function and loaded back
    here (its variables are read into memory, so the temporary folder goes)."""
    import tensorflow as tf

    tmp = tempfile.mkdtemp(prefix="illustration_tl_twin_")
    try:
        keras_file = os.path.join(tmp, "model.keras")
        saved = os.path.join(tmp, "saved_model")
        model.save(keras_file)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                               if p)
        env = {**os.environ, "KERAS_BACKEND": TWIN_BACKEND, "PYTHONPATH": path}
        code = ("import sys; from illustration_tl.serving import export; "
                "export._write_twin(sys.argv[1], sys.argv[2])")
        done = subprocess.run([sys.executable, "-c", code, keras_file, saved], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rebuilding {model.name!r} with TensorFlow for the export "
                               f"failed:\n{done.stderr[-3000:]}")
        loaded = tf.saved_model.load(saved)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Through ``loaded``: the restored function alone would not keep its variables alive.
    return lambda x: getattr(loaded, TWIN_ENDPOINT)(x)


def _write_twin(keras_file: str, out: str) -> None:
    """Run on the TensorFlow backend: the ``.keras`` model at ``keras_file`` as a
    SavedModel at ``out`` with one function, the model in inference mode on float
    images of its input shape (any batch). The file is this process's parent's own,
    written a moment ago into a private temporary folder, so Keras's safe mode (which
    refuses the Lambda layers of KerasHub towers) is not needed."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(keras_file, compile=False, safe_mode=False)
    shape = [None, *model.inputs[0].shape[1:]]
    archive = keras.export.ExportArchive()
    archive.add_endpoint(TWIN_ENDPOINT, lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    archive.write_out(out, verbose=False)


@dataclasses.dataclass
class Scale:
    """One more input size of a classifier (``fit --scales``): its network (taking
    preprocessed images of ``image_size``, giving the feature blocks ``blocks``) and its
    head, whose probabilities are averaged with the main size's."""

    image_size: int
    model: Any
    blocks: Sequence[str]
    head: Any


def decode_image_bytes(data: Any, background: Sequence[int] = (255, 255, 255)) -> Any:
    """One encoded image (scalar string) -> float32 RGB [H, W, 3] in [0, 255].

    TensorFlow's decoders, so it runs inside the graph: any channel count is
    brought to RGBA and alpha is composited on ``background``, as the dataset
    ingestion does (paper §4: illustrations are mostly transparent PNGs).
    """
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)
    channels = tf.shape(image)[-1]
    image = tf.cast(image, tf.float32)
    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0)
    rgba = tf.switch_case(channels - 1, [
        lambda: tf.concat([image, image, image, opaque], -1),              # L
        lambda: tf.concat([image[..., :1]] * 3 + [image[..., 1:2]], -1),   # LA
        lambda: tf.concat([image, opaque], -1),                            # RGB
        lambda: image,                                                     # RGBA
    ])
    alpha = rgba[..., 3:] / 255.0
    return rgba[..., :3] * alpha + tf.constant(list(background), tf.float32) * (1.0 - alpha)


def export_classifier(path: str, *, model: Any, backbone: str, image_size: int,
                      class_names: Sequence[str] | None = None,
                      wnids: Sequence[str] | None = None, head: Any = None,
                      blocks: Sequence[str] = (PAPER_BLOCK,), resize_mode: str = "squash",
                      top_k: int = 5, metadata: dict | None = None,
                      overwrite: bool = False) -> dict:
    """Writes the SavedModel at ``path`` as an export folder and returns its metadata.

    The model is :func:`write_classifier`'s. ``path`` must be new or empty, or with
    ``overwrite`` an earlier export, which is replaced only once the new export has
    been written completely.
    """
    outputs.prepare_output(path, overwrite=overwrite, marker=OUTPUT_MARKER)
    with outputs.writing(path, overwrite=overwrite, marker=OUTPUT_MARKER) as tmp:
        return write_classifier(tmp, model=model, backbone=backbone, image_size=image_size,
                                class_names=class_names, wnids=wnids, head=head,
                                blocks=blocks, resize_mode=resize_mode, top_k=top_k,
                                metadata=metadata)


def write_classifier(path: str, *, model: Any, backbone: str, image_size: int,
                     class_names: Sequence[str] | None = None,
                     wnids: Sequence[str] | None = None, head: Any = None,
                     blocks: Sequence[str] = (PAPER_BLOCK,), resize_mode: str = "squash",
                     top_k: int = 5, metadata: dict | None = None,
                     scales: Sequence[Scale] = ()) -> dict:
    """The one graph builder of every classifier this project serves (the paper's
    CNN + SVM, §7.2, and ``fit``'s model): extractor, head, top-k, written by
    :func:`write_archive` at ``path``; returns the metadata.

    ``model`` takes backbone-preprocessed images. With ``head`` (a
    :class:`illustration_tl.heads.head.Head`: ``fit``'s final head, or the ``svm``
    stage's) it returns the feature blocks named ``blocks`` (one tensor for one block,
    else a list in that order), and the head's
    :meth:`~illustration_tl.heads.head.Head.tf_probabilities` classifies (the mirror
    image too when its config averages with it); without, ``model`` returns class
    probabilities itself (a CNN's softmax). Classes are ranked by the calibrated
    scores in float64 (:meth:`~illustration_tl.heads.head.Head.tf_logits`), as the
    numpy head ranks them. ``class_names`` default to the head's; ``metadata`` is
    added to (and overrides) the common keys. ``scales``: more input sizes, each with its
    network and head; the image is decoded once, resized to each size, and the heads'
    probabilities are averaged (ranked as averaged); ``classify_images`` then also takes
    ``images_<size>``, the pixels at each of them.
    """
    import tensorflow as tf

    from illustration_tl.errors import UserError

    bb = backbones.get(backbone)
    names_list = list(class_names if class_names is not None else head.class_names)
    if len(names_list) < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {len(names_list)}")
    if head is not None:
        _check_head(head, model, names_list, blocks)
    for scale in scales:
        _check_head(scale.head, scale.model, names_list, scale.blocks)
    k = max(1, min(top_k, len(names_list)))
    svm = getattr(head, "svm", None)
    meta = {
        "format": FORMAT, "backbone": bb.name, "image_size": image_size,
        "resize_mode": resize_mode, "class_names": names_list,
        "wnids": list(wnids) if wnids is not None else [""] * len(names_list),
        "head": head.config.classifier if head is not None else "softmax",
        "svm": svm.params() if svm is not None else None, "top_k": k,
        "outputs": "probabilities",
    }
    if head is not None:
        meta.update(config=head.config.as_dict(), label=head.config.label(),
                    temperature=head.temperature)
    meta.update(metadata or {})
    names = tf.constant(names_list)
    network = tf_model(model)
    heads = [(network, blocks, head, head.tf_variables() if head is not None else None)] + [
        (tf_model(s.model), s.blocks, s.head, s.head.tf_variables()) for s in scales]

    def classify(images: Any, *more: Any) -> dict:
        if head is None:
            logits = probs = tf.cast(network(bb.preprocess_input(tf.identity(images))),
                                     tf.float64)
        else:
            logits = [_head_logits(bb.preprocess_input(tf.identity(x)), *h)
                      for x, h in zip((images, *more), heads)]
            probs = tf.nn.softmax(logits[0], axis=1)
            for extra in logits[1:]:
                probs = probs + tf.nn.softmax(extra, axis=1)
            # one size: its calibrated scores rank (no softmax ties); else the average
            logits, probs = (logits[0], probs) if not scales else (probs, probs / len(heads))
        top = tf.math.top_k(logits, k=k)
        out = {"class_names": tf.gather(names, top.indices), "class_indices": top.indices,
               "scores": tf.cast(tf.gather(probs, top.indices, batch_dims=1), tf.float32),
               "all_scores": tf.cast(probs, tf.float32)}
        if head is not None:  # a calibrated head's probabilities, by name (`predict`)
            out["probabilities"] = out["all_scores"]
        return out

    write_archive(path, classify=classify, image_size=image_size, resize_mode=resize_mode,
                  metadata=meta, more_sizes=[s.image_size for s in scales])
    return meta


def _head_logits(x: Any, network: Callable[[Any], Any], blocks: Sequence[str], head: Any,
                 module: Any) -> Any:
    """``head``'s calibrated scores of preprocessed images ``x`` through ``network`` (and
    of their mirrors, when its configuration averages with them)."""
    import tensorflow as tf

    def block_outputs(images: Any) -> dict[str, Any]:
        outs = network(images)
        outs = [outs] if len(blocks) == 1 and not isinstance(outs, (list, tuple)) else outs
        return {b: outs[blocks.index(b)] for b in head.config.blocks}

    flip = block_outputs(tf.image.flip_left_right(x)) if head.config.flip_test else None
    return head.tf_logits(block_outputs(x), flip, module)


def _check_head(head: Any, model: Any, class_names: Sequence[str],
                blocks: Sequence[str]) -> None:
    """One-line :class:`UserError`s for a head that does not fit the names or the
    network (an SVM on embeddings of another width)."""
    from illustration_tl.errors import UserError

    if head.num_classes != len(class_names):
        raise UserError(f"the head scores {head.num_classes} classes but "
                        f"{len(class_names)} class names were given")
    missing = [b for b in head.config.blocks if b not in blocks]
    if missing:
        raise UserError(f"the head reads feature blocks {missing} that the network does "
                        f"not give ({list(blocks)})")
    width = (getattr(model, "output_shape", None) or (None,))[-1]
    if head.svm is not None and len(blocks) == 1 and width is not None \
            and int(width) != head.svm.input_dim:
        raise UserError(f"the SVM was trained on {head.svm.input_dim}-wide embeddings but "
                        f"the network's embedding layer gives {width}; pass the --layer, "
                        "--backbone, --image_size and --seed that `embed` used")


def write_archive(path: str, *, classify: Callable[..., dict], image_size: int,
                  resize_mode: str, metadata: dict, more_sizes: Sequence[int] = ()) -> None:
    """Writes the SavedModel every served model of this project has.

    Endpoints: ``classify_images`` (``classify`` on float RGB pixels at
    ``image_size``), ``serving_default`` (encoded image bytes: decoded, composited
    on white, resized with ``resize_mode`` as in training, then ``classify``) and
    ``metadata`` (``metadata`` as JSON, also written beside as :data:`METADATA_FILE`).
    ``more_sizes``: ``classify`` also takes the pixels at each of these sizes
    (``images_<size>`` in ``classify_images``; each image decoded once for all).
    The models whose variables ``classify`` uses are not passed to
    ``ExportArchive.track``: Keras finds every variable the endpoints use by itself
    (its ``_all_variables``), and tracking a Keras model as well stores each variable
    a second time (keras-team/keras#23553: a VGG16 model
    was 122 MB instead of 59 MB); the checkpoint then holds each variable once.
    The endpoints are traced here as plain ``tf.function``s and handed to the
    archive already traced, so no backend converts them (on JAX, ``ExportArchive``
    would put each through ``jax2tf``, which takes no string input): ``classify``
    must call its networks through :func:`tf_model`.
    """
    import keras
    import tensorflow as tf

    from illustration_tl.datasets import input_pipeline

    sizes = [image_size, *more_sizes]

    def serve_bytes(image_bytes: Any) -> dict:
        def one(data: Any) -> tuple:
            image = decode_image_bytes(data)[None]
            return tuple(input_pipeline.resize(image, s, resize_mode)[0] for s in sizes)
        images = tf.map_fn(one, image_bytes, fn_output_signature=tuple(
            tf.TensorSpec([s, s, 3], tf.float32) for s in sizes))
        return classify(*images)

    meta_json = json.dumps(metadata, sort_keys=True)
    pixels = [tf.TensorSpec([None, s, s, 3], tf.float32, name="images" if i == 0 else
                            f"images_{s}") for i, s in enumerate(sizes)]
    endpoints = [
        ("serving_default", serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        ("classify_images", classify, pixels),
        ("metadata", lambda: {"metadata": tf.constant(meta_json)}, []),
    ]
    archive = keras.export.ExportArchive()
    for name, fn, signature in endpoints:
        traced = tf.function(fn, input_signature=signature, autograph=False)
        traced.get_concrete_function()
        archive.add_endpoint(name, traced)
    archive.write_out(path, verbose=False)
    with open(os.path.join(path, METADATA_FILE), "w") as f:
        f.write(meta_json)


MAX_METADATA_BYTES = 64 * 1024 * 1024


def read_metadata(path: str, flag: str = "--model") -> dict:
    """The metadata of the SavedModel folder ``path``, from :data:`METADATA_FILE`
    beside ``saved_model.pb``; never by running the model's ``metadata`` function
    (that would run the model's graph). One-line :class:`UserError` when missing
    (an export of an earlier version: re-export it) or malformed."""
    from illustration_tl.core import files
    from illustration_tl.errors import UserError

    file = os.path.join(path, METADATA_FILE)
    if not os.path.lexists(file):
        raise UserError(f"{flag}={path}: no {METADATA_FILE} beside saved_model.pb (an export "
                        "of an earlier version, or not one of this project's); re-export it "
                        "with this version (`illustration-tl export`, or rerun `fit`)")
    try:
        meta = json.loads(files.read_regular_file(file, MAX_METADATA_BYTES).decode("utf-8"))
    except (files.UnreadableFile, UnicodeDecodeError, ValueError) as e:
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{flag}={path}: {METADATA_FILE} is not readable JSON ({why}); "
                        "re-export the model") from None
    problem = _metadata_problem(meta)
    if problem:
        raise UserError(f"{flag}={path}: {METADATA_FILE}: {problem}; re-export the model")
    return meta


def _metadata_problem(meta: Any) -> str | None:
    """Why ``meta`` cannot describe a classifier of this project (None if it can)."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    names = meta.get("class_names")
    if not isinstance(names, list) or len(names) < 2 or \
            not all(isinstance(n, str) and n.isprintable() and
                    n.encode("utf-8", "replace").decode("utf-8") == n for n in names):
        return "`class_names` is not a list of at least 2 printable strings"
    size = meta.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
        return "`image_size` is not a whole number of pixels from 1 to 4096"
    sizes = meta.get("scales", [size])
    if not isinstance(sizes, list) or not sizes or sizes[0] != size or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in sizes):
        return "`scales` is not a list of pixel sizes starting with `image_size`"
    if meta.get("resize_mode", "squash") not in common_settings.RESIZE_MODES:
        return f"unknown `resize_mode` {str(meta.get('resize_mode'))[:40]!r}"
    side = meta.get("max_side")
    if side is not None and (not isinstance(side, int) or isinstance(side, bool) or side < 1):
        return "`max_side` is not a positive whole number"
    return None


@dataclasses.dataclass
class ExportConfig:
    """The ``export`` stage's settings, one ``illustration-tl export`` flag each
    (:mod:`config_flags`); for :func:`export_from_artifacts`. A model setting left
    None (not given) is read from the SVM's record of its embeddings, or else takes
    the backbone's default; one given beside ``svm_dir`` must agree with the record."""

    svm_dir: str | None = optional(
        "Output folder of `illustration-tl svm`; the embedding model (backbone, weights, "
        "image size, layer, resize mode) is read from its record of the embeddings, and "
        "--model_dir, --backbone, --weights, --image_size and --layer are only checked "
        "against it. Without it the CNN's softmax head classifies: --model_dir's, or the "
        "ImageNet classifier --backbone names.")
    model_dir: str | None = common_settings.model_dir()
    backbone: str | None = common_settings.backbone(None)
    weights: str | None = common_settings.weights(None)
    image_size: int | None = common_settings.image_size()
    layer: str | None = common_settings.layer()
    output: str | None = optional("Folder to write the SavedModel to.")
    top_k: int = common_settings.top_k()
    overwrite: bool = setting(False, "Replace --output if it holds an earlier export (and "
                              "nothing else); the new export is written beside it and "
                              "swapped in when complete.")


def export_from_artifacts(output: str, *, model_dir: str | None = None,
                          backbone: str | None = None, weights: str | None = None,
                          image_size: int | None = None, svm_dir: str | None = None,
                          layer: str | None = None, top_k: int = 5, seed: int = 0,
                          overwrite: bool = False) -> dict:
    """Exports what earlier stages wrote: an ``optimize`` folder or an ImageNet
    backbone, optionally with the SVM folder of ``illustration-tl svm``.

    With an SVM, the CNN is cut at the embedding layer exactly as ``embed``
    cut it (:func:`embeddings.embedding_source`: fc2 for VGG with its top, the
    pooled last conv block for a bare conv base); ``seed`` must be the one
    ``embed`` used when the backbone is randomly initialized. The embedding
    model's settings (backbone, weights, image size, layer, resize mode, seed)
    are read from the SVM's record of its embeddings; an explicit setting that
    contradicts it is refused (``None``: not given). ``output``: see
    :func:`export_classifier` (checked before anything is loaded).
    """
    from illustration_tl.datasets import imagenet
    from illustration_tl.errors import UserError
    from illustration_tl.features import embeddings
    from illustration_tl.heads import svm
    from illustration_tl.models import layer_surgery

    max_side = None  # the dataset's stored image side, when the SVM's embeddings record it
    if not model_dir and not backbone and not svm_dir:
        raise UserError("pass --svm_dir (an `svm` output), --model_dir (an `optimize` output) "
                        "or --backbone")
    outputs.prepare_output(output, overwrite=overwrite, marker=OUTPUT_MARKER)
    sources: dict[str, Any] = {"model_dir": os.path.abspath(model_dir) if model_dir else None,
                               "weights": None if model_dir else weights}
    head = None
    if svm_dir:
        head, svm_info = svm.load(svm_dir)
        class_names = list(svm_info["class_names"])
        recorded = svm_info.get("embeddings") or {}
        if recorded.get("source"):  # the SVM's embeddings say how to rebuild their model
            source = embeddings.source_from_manifest(
                recorded, os.path.join(svm_dir, "svm.json"), model_dir=model_dir,
                backbone=backbone, weights=weights, image_size=image_size, layer=layer)
        else:
            source = embeddings.embedding_source(
                model_dir=model_dir, backbone=backbone or "vgg19",
                weights="imagenet" if weights is None else weights, image_size=image_size,
                layer=layer, seed=seed)
        model, backbone, image_size = source.model, source.backbone, source.image_size
        resize_mode, layer = source.resize_mode, source.layer
        max_side = recorded.get("max_side")
        sources["svm_dir"] = os.path.abspath(svm_dir)
    elif model_dir:
        model, config = layer_surgery.load_trained(model_dir)
        backbone, image_size = config["backbone"], int(config["image_size"])
        class_names = list(config["class_names"])
        resize_mode = config.get("resize_mode", "squash")
    else:
        image_size = image_size or backbones.get(backbone).image_size
        weights = "imagenet" if weights is None else weights
        model = layer_surgery.imagenet_classifier(backbone, weights, image_size)
        class_names = [c.name for c in imagenet.classes()]
        resize_mode = "squash"
    wnids = [(c.wnid if (c := imagenet.find(n)) else "") for n in class_names]
    return export_classifier(output, model=model, backbone=backbone, image_size=image_size,
                             class_names=class_names, wnids=wnids, head=head,
                             resize_mode=resize_mode, top_k=top_k,
                             metadata={"sources": sources, "layer": layer,
                                       "max_side": max_side},
                             overwrite=overwrite)
