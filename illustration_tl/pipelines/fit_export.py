"""``fit``'s SavedModel: image bytes (or pixels) in, calibrated probabilities out.

The feature extractor the store was computed with
(:func:`illustration_tl.features.multilayer.extractor`, rebuilt from the store's
recipe) and the chosen head (:class:`illustration_tl.heads.head.Head`), handed to the
one graph builder of every export, :func:`illustration_tl.serving.export.write_classifier`
(extractor, head, top-k; the metadata beside the SavedModel). On a backend other than
TensorFlow the extractor is first rebuilt in TensorFlow
(:func:`illustration_tl.serving.export.tf_model`), so a JAX run exports the same graph.
"""

from __future__ import annotations

from typing import Any

from illustration_tl.evaluation import reject as reject_lib

EXPORT_FORMAT = "illustration-tl fit classifier v1"


def export(final_dir: str, feat_dir: str, out: str, top_k: int = 5,
           reject: reject_lib.RejectThreshold | None = None,
           scales: dict[int, str] | None = None) -> dict[str, Any]:
    """Writes the SavedModel: image bytes (or pixels) in, calibrated probabilities out;
    ``reject`` (the threshold of ``--reject``) goes into its metadata. ``scales`` (size ->
    features folder, ``fit --scales``): the extra sizes whose heads ``final`` kept are
    served too, each head on its own size, the probabilities averaged."""
    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import head as head_lib
    from illustration_tl.pipelines import fit_scales
    from illustration_tl.serving import export as export_lib

    h = head_lib.Head.load(final_dir)
    model, blocks, source = _extractor(features.FeatureStore.load(feat_dir).meta["recipe"])
    extra = []
    for size, folder in fit_scales.extra_heads(final_dir, list(scales or {})).items():
        own = _extractor(features.FeatureStore.load(scales[size]).meta["recipe"])
        network = model if _serves(model, own[0], size) else own[0]
        extra.append(export_lib.Scale(size, network, own[1], head_lib.Head.load(folder)))
    # the backbone as the store's recipe names it (a KerasHub preset, not its family)
    meta: dict[str, Any] = {"format": EXPORT_FORMAT, "backbone": source.backbone}
    if extra:
        meta["scales"] = [source.image_size] + [s.image_size for s in extra]
    if reject is not None:
        meta["reject"] = reject.to_dict()
    return export_lib.write_classifier(
        out, model=model, backbone=source.backbone, image_size=source.image_size,
        head=h, blocks=blocks, resize_mode=h.config.resize, top_k=top_k, metadata=meta,
        scales=extra)


def _extractor(recipe: dict[str, Any]) -> tuple[Any, list[str], Any]:
    """The extractor a store's recipe names (:func:`features.multilayer.extractor`)."""
    from illustration_tl.features import multilayer as features

    return features.extractor(
        recipe["backbone"], recipe["weights"], recipe["image_size"],
        recipe["layers"] or None, recipe["seed"], recipe.get("hub_config"),
        recipe.get("include_top", "auto"), precision=recipe.get("precision", "float32"))


def _serves(main: Any, own: Any, size: int) -> bool:
    """Whether the main size's extractor gives, at ``size``, the very outputs of that
    size's own extractor, so one network (one copy of the weights) serves both: on the
    TensorFlow backend, when the outputs are pooled (a fully connected top fixes the input
    size) and the weights are the same, checked on random images. Its declared input
    shape is then lifted (Keras 3 checks it; the convolutions take any size)."""
    import keras
    import numpy as np

    if keras.backend.backend() != "tensorflow":
        return False   # the TensorFlow twin of another backend keeps its input shape
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    spec = main.input_spec
    main.input_spec = None
    try:
        got = main(x, training=False)
    except ValueError:  # a layer of fixed size (fc top): the shapes do not fit
        main.input_spec = spec
        return False
    want = own(x, training=False)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want))
    if not same:
        main.input_spec = spec
    return same
